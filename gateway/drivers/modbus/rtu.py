"""Modbus RTU framing and line timing (pure: no serial port, no socket, no clock).

Why our own framing instead of pymodbus' (which stays for Modbus TCP): RTU has no
transaction id, so the only defence against a late reply being taken for the answer
to the next request is to check everything a reply can be checked by (unit id,
function code, byte count against the registers asked for, CRC) and to throw away
what came before. pymodbus 3.16 accepts a reply that arrives after its timeout as the
answer to the next request, and loses a whole reply to one noise byte in front of it.
The framing is small; owning it gives the guarantee.

Shape (after h11): a :class:`ReadRequest` gives its bytes; a :class:`ReplyParser` for
that request is fed the bytes that arrive and ``next_event()`` returns
:data:`NEED_DATA`, the :class:`Registers` asked for, or a :class:`Refusal` (a Modbus
exception reply). Bytes that cannot start this request's reply are dropped one at a
time (resynchronisation), so noise in front of a reply costs only the noise. When the
caller gives up waiting, :meth:`ReplyParser.failure` explains what did arrive, as a
typed error.

Line timing (Modbus over Serial Line V1.02, 2.5.1.1; domain.md "Modbus RTU timing"):
a character is start + 8 data + parity + stop bits (11: 8E1, 8O1, 8N2); the silence
between frames is 3.5 characters up to 19,200 baud and a fixed 1.75 ms above.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar, Final, Literal

from gateway.drivers.crc import reflected_table
from gateway.drivers.modbus.codes import EXCEPTION_NAMES, RETRYABLE_CODES
from gateway.drivers.modbus.plan import MODBUS_MAX_REGISTERS, SerialLink
from gateway.errors import DeviceError, DeviceTimeout, DriverError, ProtocolError
from gateway.profiles import Table

__all__ = [
    "NEED_DATA",
    "LineSettings",
    "NeedData",
    "Parity",
    "ReadRequest",
    "Refusal",
    "Registers",
    "ReplyParser",
    "crc16",
]

Parity = Literal["N", "E", "O"]


_CRC_TABLE: Final = reflected_table(0xA001)


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def _with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class LineSettings:
    """A serial line's character format and what it means for timing."""

    baud: int
    parity: Parity = "E"
    #: 1 or 2; None: 1 with parity, 2 without (the spec's 11-bit character).
    stopbits: int | None = None

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise ValueError("baud must be positive")
        if self.stopbits not in (None, 1, 2):
            raise ValueError("stopbits is 1 or 2")

    @property
    def stop_bits(self) -> int:
        if self.stopbits is not None:
            return self.stopbits
        return 2 if self.parity == "N" else 1

    @property
    def bits_per_char(self) -> int:
        return 1 + 8 + (self.parity != "N") + self.stop_bits

    @property
    def link(self) -> SerialLink:
        """The planner's view of this line (one formula for both)."""
        return SerialLink(self.baud, self.bits_per_char)

    @property
    def char_s(self) -> Fraction:
        return self.link.char_s

    @property
    def silence_s(self) -> Fraction:
        """t3.5, the silence that ends a frame and must precede the next."""
        return self.link.silence_s

    def wire_s(self, size: int) -> Fraction:
        """Time ``size`` bytes take on the line."""
        return size * self.char_s

    def transaction_s(self, count: int, turnaround_s: Fraction = Fraction(0)) -> Fraction:
        """A read of ``count`` registers: request and reply, a silence before each, and
        the device's turnaround: (13 + 2N) Tc + 2 t3.5 + turnaround."""
        return (self.wire_s(ReadRequest.SIZE + ReadRequest.reply_size_for(count))
                + 2 * self.silence_s + turnaround_s)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read Holding (3) or Input (4) Registers from one unit."""

    unit: int
    table: Table
    start: int
    count: int

    #: Every read request is 8 bytes: unit, function, start, count, CRC.
    SIZE: ClassVar[int] = 8

    def __post_init__(self) -> None:
        if not 1 <= self.unit <= 247:
            raise ValueError(f"unit id {self.unit} is outside 1..247 (0 is broadcast, "
                             "which a read cannot use)")
        if not 1 <= self.count <= MODBUS_MAX_REGISTERS:
            raise ValueError(f"count {self.count} is outside 1..{MODBUS_MAX_REGISTERS}")
        if not 0 <= self.start <= 0xFFFF - self.count + 1:
            raise ValueError(f"registers {self.start}+{self.count} run past 65535")

    @property
    def function(self) -> int:
        return 4 if self.table == "input" else 3

    @property
    def frame(self) -> bytes:
        return _with_crc(bytes((self.unit, self.function)) + self.start.to_bytes(2, "big")
                         + self.count.to_bytes(2, "big"))

    @property
    def reply_size(self) -> int:
        return self.reply_size_for(self.count)

    @staticmethod
    def reply_size_for(count: int) -> int:
        """unit, function, byte count, 2 bytes a register, CRC."""
        return 5 + 2 * count

    def describe(self) -> str:
        return f"{self.table} registers {self.start}..{self.start + self.count - 1}"

    def reply(self, registers: list[int]) -> bytes:
        """The frame a device answers with (for simulators and tests)."""
        body = bytes((self.unit, self.function, 2 * len(registers)))
        return _with_crc(body + b"".join(w.to_bytes(2, "big") for w in registers))

    def refusal(self, code: int) -> bytes:
        """An exception reply with ``code`` (for simulators and tests)."""
        return _with_crc(bytes((self.unit, self.function | 0x80, code)))


class NeedData:
    """More bytes are needed (h11's NEED_DATA)."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class Registers:
    """The validated reply: exactly the registers asked for."""

    values: tuple[int, ...]
    #: Bytes dropped in front of the reply (noise, a stale reply) to find it.
    discarded: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A Modbus exception reply from the unit asked."""

    code: int
    discarded: int = 0

    @property
    def name(self) -> str:
        return EXCEPTION_NAMES.get(self.code, "unknown exception")

    def error(self, request: ReadRequest, device: str) -> DeviceError:
        return DeviceError(f"device refused reading {request.describe()}: {self.name}",
                           code=self.code, device=device,
                           retryable=self.code in RETRYABLE_CODES)


Event = NeedData | Registers | Refusal

# What a candidate frame at one offset turned out to be.
_NO, _SHORT, _BAD_CRC, _WRONG_COUNT, _OK = range(5)


class ReplyParser:
    """Finds the reply to one request in the bytes that arrive after it was sent.

    A reply can only start with this request's unit id followed by its function code
    (or the function code with the exception bit). At each such offset the frame the
    header announces is checked whole; anything that is not a valid reply to *this*
    request (noise, another unit's frame, a late reply of another size) is skipped and
    the search goes on from the next byte.
    """

    def __init__(self, request: ReadRequest) -> None:
        self.request = request
        self._buf = bytearray()
        self._discarded = 0
        self._done = False
        #: The best explanation of bytes that did not make a reply, for :meth:`failure`.
        self._problem: tuple[int, str] | None = None

    def feed(self, data: bytes) -> None:
        if self._done:
            return  # bytes after the reply belong to nobody; the next request flushes them
        self._buf += data

    @property
    def received(self) -> int:
        """Bytes received and not yet consumed or discarded."""
        return len(self._buf)

    def next_event(self) -> Event:
        """The reply or refusal once whole, else NEED_DATA."""
        if self._done:
            raise RuntimeError("the reply was already taken; a parser serves one request")
        buf = self._buf
        first_short: int | None = None
        for offset in range(len(buf)):
            verdict, size = self._judge(buf, offset)
            if verdict == _OK:
                event = self._take(offset, size)
                self._done = True
                return event
            if verdict == _SHORT and first_short is None:
                first_short = offset
        # Keep only what might still become a reply: from the first incomplete candidate.
        keep_from = len(buf) if first_short is None else first_short
        if keep_from:
            self._discarded += keep_from
            del buf[:keep_from]
        return NEED_DATA

    def failure(self, device: str, waited_s: float) -> DriverError:
        """Why there is no reply after ``waited_s``: a timeout if nothing usable came,
        a ProtocolError naming the defect if a frame for this request was broken."""
        what = self.request.describe()
        if self._buf:
            verdict, size = self._judge(self._buf, 0)
            if verdict == _SHORT:
                got = len(self._buf)
                self._note(2, f"truncated reply: {got} of {size} bytes" if size else
                           f"truncated reply: {got} byte{'s' * (got > 1)}, not even a header")
        extra = f"; {self._discarded} stray bytes discarded" if self._discarded else ""
        if self._problem is not None:
            return ProtocolError(f"bad reply to reading {what}: {self._problem[1]}{extra}",
                                 device=device)
        return DeviceTimeout(f"no reply to reading {what} within {waited_s:g} s{extra}",
                             device=device)

    # -- internals -----------------------------------------------------------------

    def _judge(self, buf: bytearray, offset: int) -> tuple[int, int]:
        """(verdict, frame size) for a frame starting at ``offset``."""
        request = self.request
        left = len(buf) - offset
        if buf[offset] != request.unit:
            return _NO, 0
        if left < 2:
            return _SHORT, 0
        function = buf[offset + 1]
        if function == request.function | 0x80:
            size = 5
        elif function == request.function:
            if left < 3:
                return _SHORT, 0
            declared = buf[offset + 2]
            size = request.reply_size
            if declared != 2 * request.count:
                # A whole, CRC-valid frame of another size is a reply, just not to
                # this request (a late one, or a device bug): worth naming if no
                # reply comes.
                other = 5 + declared
                if left >= other and self._crc_ok(buf, offset, other):
                    self._note(1, f"a reply of {declared} bytes of data, not the "
                                  f"{2 * request.count} asked for (a late reply to an "
                                  "earlier request, or a device fault)")
                return _WRONG_COUNT, 0
        else:
            return _NO, 0
        if left < size:
            return _SHORT, size
        if not self._crc_ok(buf, offset, size):
            self._note(3, "CRC mismatch")
            return _BAD_CRC, size
        return _OK, size

    @staticmethod
    def _crc_ok(buf: bytearray, offset: int, size: int) -> bool:
        frame = memoryview(buf)[offset:offset + size]
        try:
            return crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")
        finally:
            frame.release()

    def _take(self, offset: int, size: int) -> Registers | Refusal:
        frame = bytes(self._buf[offset:offset + size])
        discarded = self._discarded + offset
        del self._buf[:offset + size]
        if frame[1] & 0x80:
            return Refusal(code=frame[2], discarded=discarded)
        data = frame[3:-2]
        values = tuple(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
        return Registers(values=values, discarded=discarded)

    def _note(self, rank: int, text: str) -> None:
        if self._problem is None or rank >= self._problem[0]:
            self._problem = (rank, text)
