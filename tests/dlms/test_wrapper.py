"""The IEC 62056-47 wrapper: header layout, streaming, and the errors that end a stream."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.drivers.dlms.wrapper import (
    NEED_DATA,
    PORT,
    WrapperEndpoint,
    WrapperError,
    WrapperFrame,
    WrapperParser,
)
from gateway.errors import ProtocolError

# The AARQ APDU of Gyozo Kmethy's "Examples for DLMS/COSEM information exchange"
# (DLMS UA), section 2, carried here from public client 16 to the management logical
# device 1 behind the 62056-47 header: version 1, wPorts 0x0010 -> 0x0001, length 0x1F.
AARQ = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F040000301DFFFF")
WRAPPED_AARQ = bytes.fromhex("000100100001001F") + AARQ


def test_header_layout() -> None:
    assert PORT == 4059
    assert len(AARQ) == 0x1F
    assert WrapperFrame(16, 1, AARQ).encode() == WRAPPED_AARQ
    parser = WrapperParser()
    parser.receive_data(WRAPPED_AARQ)
    assert parser.next_event() == WrapperFrame(16, 1, AARQ)
    assert parser.next_event() is NEED_DATA


@given(st.lists(st.builds(WrapperFrame, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
                          st.binary(max_size=600)), max_size=5),
       st.integers(1, 50))
def test_stream_round_trip_in_any_chunks(frames: list[WrapperFrame], chunk: int) -> None:
    stream = b"".join(f.encode() for f in frames)
    parser = WrapperParser()
    got = []
    for at in range(0, len(stream), chunk):
        parser.receive_data(stream[at:at + chunk])
        while (event := parser.next_event()) is not NEED_DATA:
            got.append(event)
    assert got == frames
    assert parser.pending == 0


def test_wrong_version_fails_the_stream() -> None:
    parser = WrapperParser()
    parser.receive_data(bytes.fromhex("0002001000010001") + b"\x00")
    with pytest.raises(WrapperError, match="version 0x0002"):
        parser.next_event()
    parser.receive_data(WRAPPED_AARQ)
    with pytest.raises(WrapperError):  # no resynchronisation on a byte stream
        parser.next_event()


def test_oversize_is_refused_before_buffering() -> None:
    parser = WrapperParser(max_apdu=1024)
    parser.receive_data(bytes.fromhex("0001001000010401"))
    with pytest.raises(WrapperError, match="1025 bytes, above the 1024"):
        parser.next_event()
    with pytest.raises(ValueError, match="16-bit"):
        WrapperFrame(1, 1, bytes(0x10000))


def test_endpoints_client_and_server() -> None:
    client = WrapperEndpoint(local=16, remote=1)
    server = WrapperEndpoint(local=1, remote=16)
    server.receive_data(client.wrap(AARQ)[:5])
    assert server.next_apdu() is NEED_DATA
    server.receive_data(client.wrap(AARQ)[5:])
    assert server.next_apdu() == AARQ
    client.receive_data(server.wrap(b"\x61\x00"))
    assert client.next_apdu() == b"\x61\x00"
    stranger = WrapperEndpoint(local=17, remote=1)
    server.receive_data(stranger.wrap(b"\x01"))
    with pytest.raises(WrapperError, match="wPort 17 to 1, expected 16 to 1"):
        server.next_apdu()


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_protocol_error(data: bytes) -> None:
    endpoint = WrapperEndpoint(16, 1, max_apdu=100)
    endpoint.receive_data(data)
    with contextlib.suppress(ProtocolError):
        while endpoint.next_apdu() is not NEED_DATA:
            pass
