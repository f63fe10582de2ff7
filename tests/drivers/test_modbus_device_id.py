"""Read Device Identification (43/14) framing: the request's bytes, and the reply found
whole in whatever arrives (split, behind noise, beside other units' frames)."""

from __future__ import annotations

import pytest

from gateway.drivers.modbus.device_id import DeviceIdParser, DeviceIdReply, DeviceIdRequest
from gateway.drivers.modbus.rtu import NEED_DATA, Refusal
from gateway.errors import DeviceTimeout, ProtocolError

BASIC = ((0, b"Schneider Electric"), (1, b"A9MEM3155"), (2, b"1.2.3"))


def test_request_frame_is_the_one_every_modbus_tool_sends() -> None:
    # Unit 1, basic objects from object 0: "01 2B 0E 01 00" and its CRC 70 77.
    assert DeviceIdRequest(1).frame == bytes.fromhex("012B0E01007077")
    assert len(DeviceIdRequest(17, 4, 5).frame) == DeviceIdRequest.SIZE


@pytest.mark.parametrize(("unit", "code", "object_id"), [(0, 1, 0), (248, 1, 0), (1, 5, 0),
                                                         (1, 1, 256)])
def test_request_refuses_what_no_master_sends(unit: int, code: int, object_id: int) -> None:
    with pytest.raises(ValueError):
        DeviceIdRequest(unit, code, object_id)


def test_reply_layout() -> None:
    frame = DeviceIdRequest(5).reply(BASIC[:1])
    # unit, 2B, 0E, read code, conformity, more follows, next object, count, objects, CRC
    assert frame[:8] == bytes((5, 0x2B, 0x0E, 1, 1, 0, 0, 1))
    assert frame[8:10] == bytes((0, 18)) and frame[10:28] == b"Schneider Electric"
    assert len(frame) == 8 + 2 + 18 + 2


def test_reply_fed_a_byte_at_a_time() -> None:
    request = DeviceIdRequest(5)
    parser = DeviceIdParser(request)
    frame = request.reply(BASIC)
    for byte in frame[:-1]:
        parser.feed(bytes([byte]))
        assert parser.next_event() is NEED_DATA
    parser.feed(frame[-1:])
    event = parser.next_event()
    assert isinstance(event, DeviceIdReply)
    assert event.named() == (("VendorName", "Schneider Electric"), ("ProductCode", "A9MEM3155"),
                             ("MajorMinorRevision", "1.2.3"))
    assert (event.more_follows, event.discarded) == (False, 0)


def test_noise_and_another_units_reply_in_front_are_skipped() -> None:
    request = DeviceIdRequest(5)
    parser = DeviceIdParser(request)
    other = DeviceIdRequest(6).reply(BASIC)
    # 0x05 0x2B in the noise looks like a start for unit 5 but is no whole frame.
    noise = b"\x00\x05\x2b\xff"
    parser.feed(noise + other + request.reply(BASIC, more_follows=True, next_object=3))
    event = parser.next_event()
    assert isinstance(event, DeviceIdReply)
    assert event.discarded == len(noise) + len(other)
    assert (event.more_follows, event.next_object) == (True, 3)


def test_exception_reply_is_a_refusal() -> None:
    request = DeviceIdRequest(9)
    parser = DeviceIdParser(request)
    parser.feed(request.refusal(1))
    assert parser.next_event() == Refusal(code=1)


def test_bad_crc_is_no_reply_and_says_so() -> None:
    request = DeviceIdRequest(9)
    parser = DeviceIdParser(request)
    frame = request.reply(BASIC)
    parser.feed(frame[:-1] + bytes([frame[-1] ^ 1]))
    assert parser.next_event() is NEED_DATA
    failure = parser.failure("ttyUSB0/unit 9", 0.07)
    assert isinstance(failure, ProtocolError) and "CRC" in str(failure)


def test_silence_is_a_timeout() -> None:
    failure = DeviceIdParser(DeviceIdRequest(9)).failure("ttyUSB0/unit 9", 0.07)
    assert isinstance(failure, DeviceTimeout) and "0.07 s" in str(failure)


def test_a_parser_serves_one_reply() -> None:
    request = DeviceIdRequest(9)
    parser = DeviceIdParser(request)
    parser.feed(request.refusal(1))
    parser.next_event()
    with pytest.raises(RuntimeError):
        parser.next_event()
