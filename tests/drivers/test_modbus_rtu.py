"""The pure RTU core: CRC vectors, request frames, the reply parser, line timing."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.drivers.modbus.rtu import (
    NEED_DATA,
    LineSettings,
    ReadRequest,
    Refusal,
    Registers,
    ReplyParser,
    crc16,
)
from gateway.errors import DeviceTimeout, ProtocolError


@pytest.mark.parametrize(("frame", "crc"), [
    # The CRC-16/MODBUS check value (reveng catalogue).
    (b"123456789", 0x4B37),
    # Simply Modbus' worked example: read 3 holding registers from 107 of unit 17...
    (bytes.fromhex("1103006B0003"), 0x8776),
    # ...and its reply.
    (bytes.fromhex("110306AE4156524340"), 0xAD49),
    # Requests seen in every Modbus tool's log.
    (bytes.fromhex("010400000001"), 0xCA31),
    (bytes.fromhex("010300000001"), 0x0A84),
    (bytes.fromhex("01030000000A"), 0xCDC5),
    (b"", 0xFFFF),
])
def test_crc16_known_vectors(frame: bytes, crc: int) -> None:
    assert crc16(frame) == crc


@pytest.mark.parametrize(("request_", "wire"), [
    (ReadRequest(0x11, "holding", 0x6B, 3), "1103006b00037687"),
    (ReadRequest(1, "input", 0, 1), "01040000000131ca"),
    (ReadRequest(1, "holding", 0, 10), "01030000000ac5cd"),
])
def test_request_frames(request_: ReadRequest, wire: str) -> None:
    assert request_.frame.hex() == wire
    assert len(request_.frame) == ReadRequest.SIZE


@pytest.mark.parametrize("bad", [
    {"unit": 0, "table": "input", "start": 0, "count": 1},     # broadcast cannot read
    {"unit": 248, "table": "input", "start": 0, "count": 1},
    {"unit": 1, "table": "input", "start": 0, "count": 126},   # over the protocol limit
    {"unit": 1, "table": "input", "start": 65535, "count": 2},
])
def test_request_limits(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ReadRequest(**bad)  # type: ignore[arg-type]


REQ = ReadRequest(17, "holding", 107, 3)
REPLY = bytes.fromhex("110306AE4156524340") + (0xAD49).to_bytes(2, "little")


def parse(request: ReadRequest, *chunks: bytes) -> object:
    parser = ReplyParser(request)
    event: object = NEED_DATA
    for chunk in chunks:
        parser.feed(chunk)
        event = parser.next_event()
        if event is not NEED_DATA:
            break
    return event


def test_reply_whole_and_byte_by_byte() -> None:
    assert REQ.reply([0xAE41, 0x5652, 0x4340]) == REPLY
    assert parse(REQ, REPLY) == Registers((0xAE41, 0x5652, 0x4340))
    assert parse(REQ, *(REPLY[i:i + 1] for i in range(len(REPLY)))) == \
        Registers((0xAE41, 0x5652, 0x4340))
    assert parse(REQ, REPLY[:-1]) is NEED_DATA


@pytest.mark.parametrize("noise", [
    b"\x00", b"\xff", b"\x11", b"\x11\x03", b"\x11\x03\x06", b"\x11\x03\x06\x00\x01",
    b"\x11\x83", bytes(range(40)), b"\x11\x03\x06" * 5,
])
def test_noise_in_front_is_skipped_not_the_reply(noise: bytes) -> None:
    """One noise byte (or a burst, or a broken header) costs only itself."""
    event = parse(REQ, noise, REPLY)
    assert isinstance(event, Registers)
    assert event.values == (0xAE41, 0x5652, 0x4340)
    assert event.discarded == len(noise)


@given(noise=st.binary(max_size=64), cuts=st.lists(st.integers(0, 80), max_size=6))
def test_resync_property(noise: bytes, cuts: list[int]) -> None:
    """Whatever noise comes first and however the bytes are split, the reply is found."""
    stream = noise + REPLY
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    event = parse(REQ, *chunks)
    assert isinstance(event, Registers)
    assert event.values == (0xAE41, 0x5652, 0x4340)


def test_stale_replies_are_not_taken() -> None:
    """Frames that are whole and CRC-valid but not a reply to *this* request."""
    other_unit = ReadRequest(18, "holding", 107, 3).reply([1, 2, 3])
    other_function = ReadRequest(17, "input", 107, 3).reply([1, 2, 3])
    other_count = ReadRequest(17, "holding", 0, 4).reply([1, 2, 3, 4])
    for stale in (other_unit, other_function, other_count):
        parser = ReplyParser(REQ)
        parser.feed(stale)
        assert parser.next_event() is NEED_DATA
        assert parser.received == 0
        parser.feed(REPLY)
        assert parser.next_event() == Registers((0xAE41, 0x5652, 0x4340),
                                                discarded=len(stale))
    # Alone, the late reply is named as what it is.
    parser = ReplyParser(REQ)
    parser.feed(other_count)
    assert parser.next_event() is NEED_DATA
    error = parser.failure("bus/unit 17", 0.5)
    assert isinstance(error, ProtocolError)
    assert "late reply" in str(error)


def test_refusal() -> None:
    frame = REQ.refusal(2)
    assert frame[:3] == b"\x11\x83\x02"
    event = parse(REQ, b"\x00", frame)
    assert event == Refusal(code=2, discarded=1)
    assert isinstance(event, Refusal)
    error = event.error(REQ, "ttyUSB0/unit 17")
    assert (error.code, error.retryable, error.device) == (2, False, "ttyUSB0/unit 17")
    assert "illegal data address" in str(error)
    assert "holding registers 107..109" in str(error)
    assert Refusal(code=6).error(REQ, "d").retryable


def test_crc_error_is_a_protocol_error_truncation_too_silence_a_timeout() -> None:
    broken = REPLY[:-1] + bytes([REPLY[-1] ^ 0x01])
    parser = ReplyParser(REQ)
    parser.feed(broken)
    assert parser.next_event() is NEED_DATA
    error = parser.failure("d", 0.5)
    assert isinstance(error, ProtocolError) and "CRC mismatch" in str(error)

    parser = ReplyParser(REQ)
    parser.feed(REPLY[:7])
    assert parser.next_event() is NEED_DATA
    error = parser.failure("d", 0.5)
    assert isinstance(error, ProtocolError) and "truncated reply: 7 of 11 bytes" in str(error)

    for cut, text in ((1, "1 byte, not even a header"), (2, "2 bytes, not even a header"),
                      (3, "3 of 11 bytes")):
        parser = ReplyParser(REQ)
        parser.feed(REPLY[:cut])
        assert parser.next_event() is NEED_DATA
        assert f"truncated reply: {text}" in str(parser.failure("d", 0.5))
    parser = ReplyParser(REQ)
    parser.feed(REQ.refusal(2)[:4])
    assert parser.next_event() is NEED_DATA
    assert "truncated reply: 4 of 5 bytes" in str(parser.failure("d", 0.5))

    parser = ReplyParser(REQ)
    parser.feed(b"\x00\x01\x02")
    assert parser.next_event() is NEED_DATA
    error = parser.failure("d", 0.5)
    assert isinstance(error, DeviceTimeout)
    assert "within 0.5 s; 3 stray bytes discarded" in str(error)


def test_a_bad_frame_then_a_good_one() -> None:
    """A corrupted copy in front (an echo, a collision) does not hide the good reply."""
    broken = bytearray(REPLY)
    broken[4] ^= 0x10
    assert parse(REQ, bytes(broken) + REPLY) == Registers((0xAE41, 0x5652, 0x4340),
                                                          discarded=len(REPLY))


def test_refusal_inside_an_incomplete_candidate() -> None:
    """An exception reply shorter than the normal reply a noise header announced."""
    event = parse(REQ, b"\x11\x03\x06" + REQ.refusal(6))
    assert event == Refusal(code=6, discarded=3)


MS = Fraction(1, 1000)


@pytest.mark.parametrize(("line", "char_ms", "silence_ms"), [
    (LineSettings(9600), Fraction(11, 9600) / MS, Fraction(77, 19200) / MS),
    (LineSettings(9600, "N"), Fraction(11, 9600) / MS, Fraction(77, 19200) / MS),  # 8N2
    (LineSettings(9600, "N", 1), Fraction(10, 9600) / MS, Fraction(70, 19200) / MS),  # 8N1
    (LineSettings(19200, "O"), Fraction(11, 19200) / MS, Fraction(77, 38400) / MS),
    (LineSettings(38400), Fraction(11, 38400) / MS, Fraction(7, 4)),   # fixed above 19200
    (LineSettings(115200, "N"), Fraction(11, 115200) / MS, Fraction(7, 4)),
])
def test_character_and_silence_times(line: LineSettings, char_ms: Fraction,
                                     silence_ms: Fraction) -> None:
    assert line.char_s / MS == char_ms
    assert line.silence_s / MS == silence_ms


def test_transaction_time_is_the_domain_formula() -> None:
    line = LineSettings(9600)
    tc, t35 = line.char_s, line.silence_s
    assert line.transaction_s(10) == (13 + 20) * tc + 2 * t35
    assert line.transaction_s(80, 50 * MS) == (13 + 160) * tc + 2 * t35 + 50 * MS
    assert line.wire_s(8) == 8 * tc
    # About 45.8 ms for 10 registers at 9,600 baud 8E1, no turnaround.
    assert round(float(line.transaction_s(10)) * 1000, 1) == 45.8
