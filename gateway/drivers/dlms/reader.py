"""A bounds-checked cursor over an APDU: every read names what ran out, nothing is sliced
twice, and :meth:`Reader.end` refuses bytes left over instead of dropping them."""

from __future__ import annotations

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.data import Data
from gateway.errors import ProtocolError

__all__ = ["Reader", "ber_length"]


def ber_length(n: int) -> bytes:
    """A BER definite length (ISO 8825-1 8.1.3), the same bytes as an A-XDR length for
    the sizes an APDU can have."""
    if n > 0xFFFF:
        raise ValueError(f"BER length {n} is beyond an APDU")
    return axdr.encode_length(n)


class Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise axdr.TruncatedData(f"APDU cut: {n} bytes wanted at offset {self.pos}, "
                                     f"{len(self.buf) - self.pos} left")
        value, self.pos = self.buf[self.pos:end], end
        return value

    def u8(self) -> int:
        if self.pos >= len(self.buf):
            raise axdr.TruncatedData(f"APDU cut at offset {self.pos}")
        self.pos += 1
        return self.buf[self.pos - 1]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def length(self) -> int:
        """An A-XDR length."""
        n, self.pos = axdr.read_length(self.buf, self.pos)
        return n

    def ber_length(self) -> int:
        first = self.u8()
        if first < 0x80:
            return first
        if first not in (0x81, 0x82):
            raise ProtocolError(f"BER length byte 0x{first:02X} at offset {self.pos - 1}")
        return int.from_bytes(self.take(first - 0x80), "big")

    def data(self) -> Data:
        value, self.pos = axdr.decode_from(self.buf, self.pos)
        return value

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def end(self, what: str) -> None:
        if self.pos != len(self.buf):
            raise ProtocolError(f"{len(self.buf) - self.pos} bytes left after the {what}")
