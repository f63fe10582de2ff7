"""Modbus Read Device Identification (function 43, MEI type 14) framing, for RTU (pure).

Application Protocol V1.1b3, 6.21: the request is ``unit, 0x2B, 0x0E, read code,
object id`` (7 bytes with the CRC); the reply repeats the first four, then conformity
level, "more follows" (0x00 or 0xFF), the next object id, the number of objects and
each object as ``id, length, value`` (ASCII). Basic objects (read code 1): 0
VendorName, 1 ProductCode, 2 MajorMinorRevision. A device without the function answers
exception 1 (illegal function); one with it but not the object, 2.

Shape as :mod:`gateway.drivers.modbus.rtu`: :class:`DeviceIdRequest` gives its bytes;
:class:`DeviceIdParser` is fed what arrives and ``next_event()`` gives
:data:`~gateway.drivers.modbus.rtu.NEED_DATA`, a :class:`DeviceIdReply` or a
:class:`~gateway.drivers.modbus.rtu.Refusal`. The reply's length is only known by
walking its objects, so a candidate frame is judged whole once every object and the
CRC are in; anything that is not a valid reply to this request is skipped a byte at a
time, as for register reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from gateway.drivers.modbus.rtu import NEED_DATA, NeedData, Refusal, crc16
from gateway.errors import DeviceTimeout, DriverError, ProtocolError

__all__ = ["OBJECT_NAMES", "DeviceIdParser", "DeviceIdReply", "DeviceIdRequest"]

FUNCTION: Final = 0x2B
MEI_TYPE: Final = 0x0E

#: Object ids of the basic and regular categories (Application Protocol 6.21).
OBJECT_NAMES: Final = {0: "VendorName", 1: "ProductCode", 2: "MajorMinorRevision",
                       3: "VendorUrl", 4: "ProductName", 5: "ModelName",
                       6: "UserApplicationName"}


def _with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class DeviceIdRequest:
    """Read Device Identification of ``unit``: ``code`` 1 basic, 2 regular, 4 one object."""

    unit: int
    code: int = 1
    object_id: int = 0

    SIZE: ClassVar[int] = 7

    def __post_init__(self) -> None:
        if not 1 <= self.unit <= 247:
            raise ValueError(f"unit id {self.unit} is outside 1..247")
        if self.code not in (1, 2, 3, 4):
            raise ValueError(f"read device id code {self.code} is not 1..4")
        if not 0 <= self.object_id <= 0xFF:
            raise ValueError(f"object id {self.object_id} is outside 0..255")

    @property
    def function(self) -> int:
        return FUNCTION

    @property
    def frame(self) -> bytes:
        return _with_crc(bytes((self.unit, FUNCTION, MEI_TYPE, self.code, self.object_id)))

    def describe(self) -> str:
        return "device identification (function 43/14)"

    def reply(self, objects: tuple[tuple[int, bytes], ...], *, conformity: int = 0x01,
              more_follows: bool = False, next_object: int = 0) -> bytes:
        """The frame a device answers with (for simulators and tests)."""
        body = bytearray((self.unit, FUNCTION, MEI_TYPE, self.code, conformity,
                          0xFF if more_follows else 0x00, next_object, len(objects)))
        for object_id, value in objects:
            body += bytes((object_id, len(value))) + value
        return _with_crc(bytes(body))

    def refusal(self, code: int) -> bytes:
        return _with_crc(bytes((self.unit, FUNCTION | 0x80, code)))


@dataclass(frozen=True, slots=True)
class DeviceIdReply:
    """The objects of one reply; ``more_follows``: ask again from ``next_object``."""

    conformity: int
    more_follows: bool
    next_object: int
    objects: tuple[tuple[int, bytes], ...]
    discarded: int = 0

    def named(self) -> tuple[tuple[str, str], ...]:
        """(name, text) of each object; bytes that are not ASCII are escaped."""
        return tuple((OBJECT_NAMES.get(i, f"object 0x{i:02X}"),
                      value.decode("ascii", "backslashreplace").strip())
                     for i, value in self.objects)


_NO, _SHORT, _BAD, _OK = range(4)


class DeviceIdParser:
    """Finds the reply to one :class:`DeviceIdRequest` in the bytes that arrive."""

    def __init__(self, request: DeviceIdRequest) -> None:
        self.request = request
        self._buf = bytearray()
        self._discarded = 0
        self._done = False
        self._problem: str | None = None

    def feed(self, data: bytes) -> None:
        if not self._done:
            self._buf += data

    @property
    def received(self) -> int:
        return len(self._buf)

    def next_event(self) -> NeedData | DeviceIdReply | Refusal:
        if self._done:
            raise RuntimeError("the reply was already taken; a parser serves one request")
        buf = self._buf
        first_short: int | None = None
        for offset in range(len(buf)):
            verdict, size = self._judge(offset)
            if verdict == _OK:
                self._done = True
                return self._take(offset, size)
            if verdict == _SHORT and first_short is None:
                first_short = offset
        keep_from = len(buf) if first_short is None else first_short
        if keep_from:
            self._discarded += keep_from
            del buf[:keep_from]
        return NEED_DATA

    def failure(self, device: str, waited_s: float) -> DriverError:
        what = self.request.describe()
        if self._buf and self._problem is None:
            self._problem = f"truncated reply: {len(self._buf)} bytes"
        extra = f"; {self._discarded} stray bytes discarded" if self._discarded else ""
        if self._problem is not None:
            return ProtocolError(f"bad reply to {what}: {self._problem}{extra}", device=device)
        return DeviceTimeout(f"no reply to {what} within {waited_s:g} s{extra}", device=device)

    def _judge(self, offset: int) -> tuple[int, int]:
        buf, request = self._buf, self.request
        left = len(buf) - offset
        if buf[offset] != request.unit:
            return _NO, 0
        if left < 2:
            return _SHORT, 0
        function = buf[offset + 1]
        if function == FUNCTION | 0x80:
            size = 5
        elif function == FUNCTION:
            if left >= 3 and buf[offset + 2] != MEI_TYPE:
                return _NO, 0
            if left >= 4 and buf[offset + 3] != request.code:
                return _NO, 0
            size_or_none = self._size(offset)
            if size_or_none is None:
                return _SHORT, 0
            size = size_or_none
        else:
            return _NO, 0
        if left < size:
            return _SHORT, size
        frame = bytes(buf[offset:offset + size])
        if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
            self._problem = "CRC mismatch"
            return _BAD, size
        return _OK, size

    def _size(self, offset: int) -> int | None:
        """The whole frame's size, once enough of it is in to walk its objects."""
        buf = self._buf
        at = offset + 8
        if len(buf) < at:
            return None
        for _ in range(buf[offset + 7]):
            if len(buf) < at + 2:
                return None
            at += 2 + buf[at + 1]
        return at + 2 - offset

    def _take(self, offset: int, size: int) -> DeviceIdReply | Refusal:
        frame = bytes(self._buf[offset:offset + size])
        discarded = self._discarded + offset
        del self._buf[:offset + size]
        if frame[1] & 0x80:
            return Refusal(code=frame[2], discarded=discarded)
        objects: list[tuple[int, bytes]] = []
        at = 8
        for _ in range(frame[7]):
            length = frame[at + 1]
            objects.append((frame[at], frame[at + 2:at + 2 + length]))
            at += 2 + length
        return DeviceIdReply(conformity=frame[4], more_follows=frame[5] == 0xFF,
                             next_object=frame[6], objects=tuple(objects),
                             discarded=discarded)
