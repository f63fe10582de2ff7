"""The HDLC core: CRC, published frames, the streaming parser, parameters, and client and
server exchanging APDUs over clean, noisy and lossy lines."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.drivers.dlms.hdlc import (
    NEED_DATA,
    ApduReceived,
    Control,
    DiscardReason,
    FrameDiscarded,
    FrameKind,
    FrameParser,
    HdlcAddress,
    HdlcClient,
    HdlcError,
    HdlcFrame,
    HdlcParameters,
    HdlcServer,
    LinkDown,
    LinkState,
    LinkUp,
    Refused,
    crc16_x25,
)
from gateway.errors import ProtocolError

CLIENT = HdlcAddress.client(16)
SERVER = HdlcAddress.server(1, 17, width=4)

# "Examples for DLMS/COSEM information exchange", Gyozo Kmethy (DLMS UA), section 1:
# SNRM from public client 16 to server 1/17 without parameters, and the meter's UA with
# 128/128 bytes and window 1/1 (values in 2 and 4 bytes); section 2: the AARQ I-frame.
KMETHY_SNRM = bytes.fromhex("7EA00A00020023219318717E")
KMETHY_UA = bytes.fromhex(
    "7EA023210002002373F6C58180140502008006020080070400000001080400000001CE6A7E")
KMETHY_AARQ = bytes.fromhex(
    "7EA02E0002002321107ECBE6E600601DA109060760857405080101BE10040E01000000"
    "065F1F040000301DFFFFD4C57E")
# Gurux forum, "DLMS (HDLC) Packet Description Needs" (gurux.fi/index.php/node/20546):
# a GET of 0.0.40.0.0.255 attribute 1 from client 32 to server 1 (1-byte addresses).
GURUX_GET = bytes.fromhex("7EA0190341B23239E6E600C001C1000F0000280000FF0100F9797E")
# Gurux forum comment 28751: a meter's reply with a 4-byte source address.
GURUX_REPLY = bytes.fromhex(
    "7EA01B4100020401 96A089E6E7004E45584552524F524E4F2D31B8007E".replace(" ", ""))
# Gurux forum, "what these three bytes represent" (gurux.fi/comment/10430): a SET
# request from client 48 to server 1.
GURUX_SET = bytes.fromhex(
    "7EA02A036154 06F1E6E600C101C1001600000F0000FF0400010102020904100A27FF090507E10406FF"
    "56D97E".replace(" ", ""))


def test_crc_check_values() -> None:
    assert crc16_x25(b"123456789") == 0x906E  # CRC-16/X.25 check (reveng catalogue)
    assert crc16_x25(b"") == 0x0000


@pytest.mark.parametrize(("raw", "described"), [
    (KMETHY_SNRM, "SNRM P/F 16->1/17 info 0 bytes"),
    (KMETHY_UA, "UA P/F 1/17->16 info 23 bytes"),
    (KMETHY_AARQ, "I N(S)=0 N(R)=0 P/F 16->1/17 info 34 bytes"),
    (GURUX_GET, "I N(S)=1 N(R)=5 P/F 32->1 info 16 bytes"),
    (GURUX_REPLY, "I N(S)=3 N(R)=4 P/F 1/256->32 info 15 bytes"),
    (GURUX_SET, "I N(S)=2 N(R)=2 P/F 48->1 info 33 bytes"),
])
def test_published_frames(raw: bytes, described: str) -> None:
    frame = HdlcFrame.decode(raw)
    assert frame.describe() == described
    assert frame.encode() == raw


def test_kmethy_ua_parameters_and_snrm_from_client() -> None:
    ua = HdlcFrame.decode(KMETHY_UA)
    assert HdlcParameters.decode(ua.info) == HdlcParameters(128, 128, 1, 1)
    client = HdlcClient(CLIENT, SERVER)
    client.connect()
    assert client.data_to_send() == KMETHY_SNRM
    client.receive_data(KMETHY_UA)
    assert client.next_event() == LinkUp(HdlcParameters(128, 128, 1, 1))
    client.send_apdu(HdlcFrame.decode(KMETHY_AARQ).info[3:])
    assert client.data_to_send() == KMETHY_AARQ


@pytest.mark.parametrize(("address", "wire"), [
    (HdlcAddress.client(16), "21"),
    (HdlcAddress.client(1), "03"),
    (HdlcAddress.server(1), "03"),
    (HdlcAddress.server(1, 17), "0223"),
    (HdlcAddress.server(1, 17, width=4), "00020023"),
    (HdlcAddress.server(0x3FFF, 0x3FFF), "fefefeff"),
])
def test_addresses(address: HdlcAddress, wire: str) -> None:
    assert address.encode().hex() == wire
    assert HdlcAddress.decode(bytes.fromhex(wire), 0) == (address, len(wire) // 2)


@pytest.mark.parametrize("bad", [(1, 128, 2), (0x4000, 1, 4), (1, None, 2), (1, 1, 3)])
def test_address_limits(bad: tuple[int, int | None, int]) -> None:
    with pytest.raises(ValueError):
        HdlcAddress(*bad)


@given(st.sampled_from(list(FrameKind)), st.booleans(), st.integers(0, 7), st.integers(0, 7))
def test_control_round_trip(kind: FrameKind, pf: bool, ns: int, nr: int) -> None:
    control = Control(kind, pf, ns if kind is FrameKind.I else 0,
                      nr if kind in (FrameKind.I, FrameKind.RR, FrameKind.RNR) else 0)
    assert Control.decode(control.encode()) == control


frames = st.builds(
    HdlcFrame,
    destination=st.sampled_from([CLIENT, SERVER, HdlcAddress.server(3), HdlcAddress(5, 9)]),
    source=st.sampled_from([CLIENT, SERVER, HdlcAddress.client(1)]),
    control=st.builds(Control, st.sampled_from(list(FrameKind)), st.booleans()),
    info=st.binary(max_size=300),
    segmented=st.booleans(),
)


@given(st.lists(frames, min_size=1, max_size=5), st.lists(st.binary(max_size=8)),
       st.booleans())
def test_parser_finds_every_frame_through_noise(
        sent: list[HdlcFrame], noise: list[bytes], shared_flags: bool) -> None:
    stream = b""
    for i, frame in enumerate(sent):
        wire = frame.encode()
        junk = noise[i].replace(b"\x7e", b"") if i < len(noise) else b""
        if shared_flags and stream.endswith(b"\x7e") and not junk:
            wire = wire[1:]
        stream += junk + wire
    parser = FrameParser()
    got: list[HdlcFrame] = []
    for byte in stream:
        parser.receive_data(bytes((byte,)))
        while (event := parser.next_event()) is not NEED_DATA:
            if isinstance(event, HdlcFrame):
                got.append(event)
            else:  # noise, or noise that looked like the start of a frame
                assert isinstance(event, FrameDiscarded)
    assert got == sent
    assert parser.frames == len(sent)


def events(parser: FrameParser, data: bytes) -> list[HdlcFrame | FrameDiscarded]:
    parser.receive_data(data)
    out: list[HdlcFrame | FrameDiscarded] = []
    while (event := parser.next_event()) is not NEED_DATA:
        assert not isinstance(event, type(NEED_DATA))
        out.append(event)
    return out


def test_parser_reports_bad_frames_and_recovers() -> None:
    parser = FrameParser()
    bad_fcs = bytearray(KMETHY_AARQ)
    bad_fcs[20] ^= 0xFF
    bad_hcs = bytearray(KMETHY_UA)
    bad_hcs[9] ^= 0x01  # the HCS itself
    got = events(parser, b"\x00\x13" + bytes(bad_fcs) + bytes(bad_hcs) + KMETHY_SNRM)
    reasons = [e.reason for e in got if isinstance(e, FrameDiscarded)]
    assert reasons[:3] == [DiscardReason.NOISE, DiscardReason.BAD_FCS, DiscardReason.BAD_HCS]
    assert got[-1] == HdlcFrame.decode(KMETHY_SNRM)
    assert parser.noise_bytes >= 2
    assert parser.discarded[DiscardReason.BAD_FCS] == 1


def test_parser_truncated_frame() -> None:
    parser = FrameParser()
    assert events(parser, KMETHY_AARQ[:20]) == []
    partial = parser.discard_partial()
    assert partial is not None and partial.reason is DiscardReason.TRUNCATED
    assert partial.raw == KMETHY_AARQ[:20]
    # A frame cut short and followed by the next one: reported, the next one found.
    got = events(parser, KMETHY_AARQ[:20] + KMETHY_UA + KMETHY_SNRM * 2)
    assert any(isinstance(e, FrameDiscarded) and e.reason is DiscardReason.TRUNCATED
               for e in got)
    assert got[-1] == HdlcFrame.decode(KMETHY_SNRM)


@pytest.mark.parametrize(("raw", "message"), [
    ("7eb00a00020023219318717e", "not frame format type 3"),
    ("7ea00b00020023219318717e", "length field"),
    ("7ea00a00020023219318727e", "FCS"),
    ("7ea007217e", "not a frame"),
])
def test_decode_errors_are_protocol_errors(raw: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        HdlcFrame.decode(bytes.fromhex(raw))


@given(st.binary(max_size=600))
def test_garbage_never_raises_anything_but_protocol_error(data: bytes) -> None:
    for station in (HdlcClient(CLIENT, SERVER), HdlcServer(SERVER)):
        if isinstance(station, HdlcClient):
            station.connect()
        for start in range(0, len(data), 7):
            station.receive_data(data[start:start + 7])
            try:
                while station.next_event() is not NEED_DATA:
                    pass
            except ProtocolError:
                pass
    with contextlib.suppress(ProtocolError):
        HdlcFrame.decode(b"\x7e" + data + b"\x7e")
    with contextlib.suppress(ProtocolError):
        HdlcParameters.decode(data)


params = st.builds(HdlcParameters, st.integers(1, 2030), st.integers(1, 2030),
                   st.integers(1, 7), st.integers(1, 7))


@given(params)
def test_parameters_round_trip(p: HdlcParameters) -> None:
    assert HdlcParameters.decode(p.encode()) == p


def test_parameters_defaults_and_errors() -> None:
    assert HdlcParameters.decode(b"") == HdlcParameters(128, 128, 1, 1)
    assert HdlcParameters.decode(bytes.fromhex("818003070101")) == HdlcParameters(
        window_tx=1)
    with pytest.raises(HdlcError, match="81 80"):
        HdlcParameters.decode(b"\x80\x80\x00")
    with pytest.raises(HdlcError, match="out of range"):
        HdlcParameters.decode(bytes.fromhex("818003070108"))
    with pytest.raises(HdlcError, match="length 3"):
        HdlcParameters.decode(bytes.fromhex("8180050503000080"))


def test_negotiation_the_server_wins() -> None:
    proposal = HdlcParameters(2030, 2030, 7, 7)
    ua = proposal.answer(HdlcParameters(512, 256, 3, 2))
    assert ua == HdlcParameters(512, 256, 3, 2)
    # The client sends no more than the server receives, and takes what it sends.
    assert proposal.accept(ua) == HdlcParameters(256, 512, 2, 3)
    assert HdlcParameters().accept(ua) == HdlcParameters(128, 512, 1, 3)


# -- client and server over a line ------------------------------------------------

Filter = Callable[[str, HdlcFrame], bool]


class Line:
    """Both ends, and a line that may drop or corrupt frames (``keep`` decides)."""

    def __init__(self, limits: HdlcParameters, keep: Filter | None = None) -> None:
        self.client = HdlcClient(CLIENT, SERVER)
        self.server = HdlcServer(SERVER, limits)
        self.keep = keep or (lambda _direction, _frame: True)
        self.client_events: list[object] = []
        self.server_events: list[object] = []
        self.frames: list[tuple[str, HdlcFrame]] = []
        self.echo = True
        #: Times the client's answer did not come and the shell polled again (once at the
        #: end of every exchange too: ``done`` waits for the server's last frames to be
        #: acknowledged, which a real client leaves to its next request).
        self.timeouts = 0

    def _carry(self, direction: str, data: bytes) -> bytes:
        out = b""
        parser = FrameParser()
        for event in events(parser, data):
            assert isinstance(event, HdlcFrame)
            self.frames.append((direction, event))
            if self.keep(direction, event):
                out += event.encode()
        return out

    def run(self, rounds: int = 2000) -> None:
        for _ in range(rounds):
            up = self.client.data_to_send()
            down = self.server.data_to_send()
            if not up and not down:
                if self.done():
                    return
                up = self.client.poll_again()  # the shell's timeout
                self.timeouts += 1
                if not up:
                    return
            self.server.receive_data(self._carry("up", up))
            self.client.receive_data(self._carry("down", down))
            while (event := self.server.next_event()) is not NEED_DATA:
                self.server_events.append(event)
                if isinstance(event, ApduReceived) and self.echo:
                    self.server.send_apdu(event.apdu[::-1] + event.apdu)
            while (event := self.client.next_event()) is not NEED_DATA:
                self.client_events.append(event)
        raise AssertionError("the exchange did not finish")

    def done(self) -> bool:
        c = self.client
        if c.state in (LinkState.CONNECTING, LinkState.DISCONNECTING):
            return False
        answered = any(isinstance(e, ApduReceived) for e in self.client_events)
        return not (c.busy or self.server.busy) and (answered or not self.awaiting)

    awaiting = False

    def connect(self, proposal: HdlcParameters) -> HdlcParameters:
        self.client.connect(proposal)
        self.run()
        up = [e for e in self.client_events if isinstance(e, LinkUp)]
        assert up, self.client_events
        return up[-1].params

    def exchange(self, apdu: bytes) -> bytes:
        self.client_events.clear()
        self.client.send_apdu(apdu)
        self.awaiting = True
        self.run()
        self.awaiting = False
        answers = [e for e in self.client_events if isinstance(e, ApduReceived)]
        assert len(answers) == 1, "an APDU was delivered twice"
        return answers[0].apdu


def check_limits(line: Line, client: HdlcParameters) -> None:
    """Every I-frame fits the receiver's maximum; no more than a window between polls."""
    run = {"up": 0, "down": 0}
    for direction, frame in line.frames:
        if frame.kind is not FrameKind.I:
            run[direction] = 0
            continue
        limit = client.max_info_tx if direction == "up" else client.max_info_rx
        window = client.window_tx if direction == "up" else client.window_rx
        assert len(frame.info) <= limit
        run[direction] += 1
        assert run[direction] <= window
        if frame.control.pf:
            run[direction] = 0


SIZES = st.sampled_from([32, 128, 2030])
WINDOWS = st.sampled_from([1, 3, 7])


APDUS = st.one_of(st.binary(max_size=64),
                  st.integers(0, 5000).map(lambda n: bytes(i * 7 % 251 for i in range(n))))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(APDUS, SIZES, SIZES, WINDOWS, WINDOWS, SIZES, WINDOWS)
def test_exchange_every_size_and_window(apdu: bytes, c_tx: int, c_rx: int, c_wtx: int,
                                        c_wrx: int, s_max: int, s_win: int) -> None:
    line = Line(HdlcParameters(s_max, s_max, s_win, s_win))
    params = line.connect(HdlcParameters(c_tx, c_rx, c_wtx, c_wrx))
    assert params.max_info_tx == min(c_tx, s_max)
    assert params.window_rx == min(c_wrx, s_win)
    assert line.exchange(apdu) == apdu[::-1] + apdu
    assert line.exchange(apdu[:7]) == apdu[:7][::-1] + apdu[:7]
    check_limits(line, params)
    line.client.disconnect()
    line.run()
    assert LinkDown() in line.client_events and LinkDown() in line.server_events


@pytest.mark.parametrize("window", [1, 3, 7])
@pytest.mark.parametrize("victim", ["client RR", "server I", "client I", "corrupt"])
def test_lost_frames_are_recovered_once(window: int, victim: str) -> None:
    lost: list[HdlcFrame] = []

    def keep(direction: str, frame: HdlcFrame) -> bool:
        if lost:
            return True
        hit = {
            "client RR": direction == "up" and frame.kind is FrameKind.RR,
            "server I": direction == "down" and frame.kind is FrameKind.I
            and frame.control.ns == 2,
            "client I": direction == "up" and frame.kind is FrameKind.I
            and frame.control.ns == 1,
            "corrupt": direction == "down" and frame.kind is FrameKind.I
            and frame.control.ns == 1,
        }[victim]
        if hit:
            lost.append(frame)
        return not hit

    line = Line(HdlcParameters(32, 32, window, window), keep)
    line.connect(HdlcParameters(32, 32, window, window))
    apdu = bytes(range(256)) * 2
    assert line.exchange(apdu) == apdu[::-1] + apdu
    assert lost, "the scenario never happened"
    assert line.exchange(b"\xc0\x01") == b"\x01\xc0\xc0\x01"


@pytest.mark.parametrize("window", [1, 3, 7])
def test_a_late_answer_and_the_re_polled_one_are_taken_once_without_a_second_poll(
        window: int) -> None:
    """The server's answer comes after the client's timeout, together with its answer to
    the re-poll: the second copy is reported as duplicates, never delivered, and not
    answered (a second poll in flight would bring every later window twice)."""
    line = Line(HdlcParameters(32, 32, window, window))
    line.connect(HdlcParameters(32, 32, window, window))
    carry = line._carry
    held: list[bytes] = []

    def late(direction: str, data: bytes) -> bytes:
        out = carry(direction, data)
        if direction == "down" and not held and b"\xe6\xe7" in out:
            held.append(out)  # the answer's first window, LLC header and all,
            return b""  # still on its way when the client's timeout fires
        if direction == "down" and out and len(held) == 1:
            held.append(out)
            return held[0] + out
        return out

    line._carry = late  # type: ignore[method-assign]
    assert line.exchange(b"\x01" * 200) == b"\x01" * 400
    assert line.timeouts == clean_timeouts(window, b"\x01" * 200) + 1
    assert line.client.duplicates == window
    drops = [e for e in line.client_events if isinstance(e, FrameDiscarded)]
    assert {e.reason for e in drops} == {DiscardReason.DUPLICATE}
    segments = -(-403 // 32)  # the 400-byte answer and its LLC header, 32 bytes a frame
    sent = sum(1 for d, f in line.frames if d == "down" and f.kind is FrameKind.I)
    assert sent == segments + window  # one window twice, nothing more


@pytest.mark.parametrize("window", [3, 7])
def test_a_frame_lost_inside_a_window_is_asked_for_again_without_a_timeout(
        window: int) -> None:
    """With window 7 the frames after a lost one look like repeats (N(S) counts modulo
    8); the window's final frame still answers our only poll, so the client asks for
    the lost frame at once."""
    lost: list[HdlcFrame] = []

    def keep(direction: str, frame: HdlcFrame) -> bool:
        hit = not lost and direction == "down" and frame.kind is FrameKind.I \
            and frame.control.ns == 0 and not frame.control.pf
        if hit:
            lost.append(frame)
        return not hit

    line = Line(HdlcParameters(32, 32, window, window), keep)
    line.connect(HdlcParameters(32, 32, window, window))
    apdu = bytes(range(256)) * 2
    assert line.exchange(apdu) == apdu[::-1] + apdu
    assert lost and line.timeouts == clean_timeouts(window, apdu)


def clean_timeouts(window: int, apdu: bytes) -> int:
    """The harness's timeouts for the same exchange on a clean line."""
    line = Line(HdlcParameters(32, 32, window, window))
    line.connect(HdlcParameters(32, 32, window, window))
    line.exchange(apdu)
    return line.timeouts


def test_out_of_sequence_i_frame_is_an_error_event() -> None:
    line = Line(HdlcParameters())
    line.connect(HdlcParameters())
    ahead = HdlcFrame(CLIENT, SERVER, Control(FrameKind.I, True, ns=5), b"\xe6\xe7\x00\x01")
    line.client.receive_data(ahead.encode())
    event = line.client.next_event()
    assert isinstance(event, FrameDiscarded)
    assert event.reason is DiscardReason.OUT_OF_SEQUENCE and "expected 0" in event.detail
    assert line.client.out_of_sequence == 1


def test_dm_refusal_and_frames_before_snrm() -> None:
    server = HdlcServer(SERVER)
    server.receive_data(HdlcFrame(SERVER, CLIENT, Control(FrameKind.I), b"\xe6\xe6\x00").encode())
    assert isinstance(server.next_event(), FrameDiscarded)
    dm = server.data_to_send()
    assert HdlcFrame.decode(dm).kind is FrameKind.DM
    client = HdlcClient(CLIENT, SERVER)
    client.connect()
    client.receive_data(dm)
    event = client.next_event()
    assert isinstance(event, Refused) and event.kind is FrameKind.DM
    assert client.state is LinkState.DISCONNECTED


def test_oversized_i_frame_gets_frmr() -> None:
    line = Line(HdlcParameters(32, 32, 1, 1))
    line.connect(HdlcParameters())
    big = HdlcFrame(SERVER, CLIENT, Control(FrameKind.I), b"\xe6\xe6\x00" + bytes(60))
    line.server.receive_data(big.encode())
    assert isinstance(line.server.next_event(), FrameDiscarded)
    line.client.receive_data(line.server.data_to_send())
    event = line.client.next_event()
    assert isinstance(event, Refused) and event.kind is FrameKind.FRMR


def test_foreign_frames_are_counted_and_ignored() -> None:
    line = Line(HdlcParameters())
    line.connect(HdlcParameters())
    other = HdlcFrame(HdlcAddress.client(1), SERVER, Control(FrameKind.RR))
    line.client.receive_data(other.encode() + b"\x55\x55")
    event = line.client.next_event()
    assert isinstance(event, FrameDiscarded) and event.reason is DiscardReason.NOISE
    assert line.client.next_event() is NEED_DATA
    assert line.client.foreign_frames == 1


def test_noise_between_frames_does_not_break_an_exchange() -> None:
    line = Line(HdlcParameters(128, 128, 3, 3))
    line.connect(HdlcParameters(128, 128, 3, 3))
    carry = line._carry
    line._carry = lambda d, data: b"\x00\xff" + carry(d, data) + b"\x13"  # type: ignore[method-assign]
    assert line.exchange(bytes(700)) == bytes(1400)
    assert line.client.parser.noise_bytes > 0


def test_bad_llc_header_is_a_protocol_error() -> None:
    line = Line(HdlcParameters())
    line.connect(HdlcParameters())
    line.client.receive_data(HdlcFrame(CLIENT, SERVER, Control(FrameKind.I), b"\x01").encode())
    with pytest.raises(ProtocolError, match="LLC"):
        line.client.next_event()


def test_local_misuse() -> None:
    client = HdlcClient(CLIENT, SERVER)
    with pytest.raises(RuntimeError, match="disconnected"):
        client.send_apdu(b"\x01")
    assert client.poll_again() == b""
