"""IEC 62056-21 mode E sign-on: messages, baud selection, timing, and the two sides."""

from __future__ import annotations

import contextlib
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.drivers.dlms.mode_e import (
    NEED_DATA,
    SIGN_ON_SERIAL,
    SWITCH_WAIT_S,
    AckReceived,
    Identification,
    ModeEError,
    ModeEUnsupported,
    RequestReceived,
    SerialSettings,
    SignOnClient,
    SignOnServer,
    acknowledgement,
    request,
)
from gateway.errors import ProtocolError

# An identification built to 62056-21 6.3.2: manufacturer "ABC", baud character 5
# (9600), the enhanced identification \2 (HDLC available), then the device type.
IDENT = b"/ABC5\\2METER-1000\r\n"


def test_messages() -> None:
    assert request() == b"/?!\r\n"
    assert request("12345678") == b"/?12345678!\r\n"
    assert acknowledgement("5") == b"\x06252\r\n"
    with pytest.raises(ValueError):
        acknowledgement("A")
    with pytest.raises(ValueError):
        request("a!b")


def test_identification_decode_and_encode() -> None:
    ident = Identification.decode(IDENT)
    assert ident == Identification("ABC", "5", ("2",), "METER-1000")
    assert ident.baud == 9600 and ident.supports_hdlc
    assert ident.min_reaction_s == Fraction(1, 5)
    assert ident.encode() == IDENT
    # A lower-case third letter announces a 20 ms minimum reaction time.
    assert Identification.decode(b"/ABc6\\2X\r\n").min_reaction_s == Fraction(1, 50)


@given(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=3, max_size=3),
       st.sampled_from("0123456"), st.lists(st.sampled_from("0123456789"), max_size=2),
       st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", max_size=16))
def test_identification_round_trip(maker: str, z: str, enhanced: list[str], text: str) -> None:
    ident = Identification(maker, z, tuple(enhanced), text)
    assert Identification.decode(ident.encode()) == ident


def sign_on(client: SignOnClient, server: SignOnServer) -> tuple[Identification, AckReceived]:
    server.receive_data(client.request_bytes)
    assert isinstance(server.next_event(), RequestReceived)
    client.receive_data(client.request_bytes + server.data_to_send())  # with the echo
    ident = client.next_event()
    assert isinstance(ident, Identification)
    server.receive_data(client.data_to_send())
    ack = server.next_event()
    assert isinstance(ack, AckReceived)
    return ident, ack


@pytest.mark.parametrize(("offered", "cap", "agreed"), [
    ("5", None, 9600), ("6", None, 19200), ("6", 9600, 9600), ("0", None, 300),
    ("4", 4000, 2400),
])
def test_client_and_server_agree(offered: str, cap: int | None, agreed: int) -> None:
    client = SignOnClient(max_baud=cap)
    server = SignOnServer(Identification("ABC", offered, ("2",), "SIM"))
    _, ack = sign_on(client, server)
    assert ack.baud == client.agreed_baud == agreed
    assert client.hdlc_serial == SerialSettings(agreed, 8, "N")


def test_serial_settings_and_timing() -> None:
    serial = SIGN_ON_SERIAL
    assert (serial.baud, serial.bytesize, serial.parity, serial.stopbits) == (300, 7, "E", 1)
    # ACK 2 Z 2 CR LF: 6 characters of 10 bits at 300 baud.
    assert SIGN_ON_SERIAL.wire_s(len(acknowledgement("5"))) == Fraction(1, 5)
    assert Fraction(1, 5) <= SWITCH_WAIT_S <= Fraction(3, 2)


@pytest.mark.parametrize("line", [b"/ABC5METER\r\n", b"/ABCAMETER\r\n", b"/ABC5\\1X\r\n"])
def test_meter_without_mode_e(line: bytes) -> None:
    client = SignOnClient()
    client.receive_data(line)
    with pytest.raises(ModeEUnsupported):
        client.next_event()


def test_addressed_request_and_bad_ack() -> None:
    server = SignOnServer(Identification("ABC", "5", ("2",), "SIM"), address="42")
    server.receive_data(request("41"))
    assert server.next_event() == RequestReceived("41")
    assert server.data_to_send() == b""  # another device's request: silent
    server.receive_data(request("42"))
    assert server.next_event() == RequestReceived("42")
    assert server.data_to_send() == Identification("ABC", "5", ("2",), "SIM").encode()
    server.receive_data(b"\x06060\r\n")  # protocol mode C data readout, not HDLC
    with pytest.raises(ModeEError, match="does not select HDLC"):
        server.next_event()
    server.receive_data(b"\x06262\r\n")
    with pytest.raises(ModeEError, match="above"):
        server.next_event()


def test_partial_messages_need_data() -> None:
    client = SignOnClient()
    client.receive_data(IDENT[:6])
    assert client.next_event() is NEED_DATA
    client.receive_data(IDENT[6:])
    assert isinstance(client.next_event(), Identification)


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_protocol_error(data: bytes) -> None:
    client = SignOnClient()
    server = SignOnServer(Identification("ABC", "5", ("2",), "SIM"))
    for side in (client, server):
        side.receive_data(data)
        with contextlib.suppress(ProtocolError):
            for _ in range(5):
                side.next_event()
    with contextlib.suppress(ProtocolError):
        Identification.decode(data)
