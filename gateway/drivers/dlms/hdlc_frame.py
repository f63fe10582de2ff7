"""HDLC frames as DLMS uses them: IEC 62056-46 (Green Book ch. 8), frame format type 3.

Pure: bytes in, frames or discard reports out. The link state machines (SNRM/UA, I-frame
sequencing, segmentation) are in :mod:`gateway.drivers.dlms.hdlc`, which re-exports
everything here.

A frame on the wire (62056-46 6.4, ISO/IEC 13239 4.1)::

    7E | format (2) | destination (1, 2 or 4) | source (1, 2 or 4) | control (1)
       | HCS (2, only when there is an information field) | information | FCS (2) | 7E

- format: type 3 (``1010`` in the top nibble), the segmentation bit S, and an 11-bit
  length counting every byte between the flags;
- addresses: 7 bits a byte, the low bit set on the last byte (the extension bit);
- HCS covers format..control, FCS everything before it: CRC-16/X.25 (the HDLC FCS of
  RFC 1662), sent low byte first.

There is no byte stuffing on an asynchronous DLMS line: the length in the format field,
not the flag, says where a frame ends, so a 0x7E inside the information field is data.
One flag may close one frame and open the next (ISO/IEC 13239 4.3.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from gateway.drivers.crc import reflected_table
from gateway.errors import ProtocolError

__all__ = [
    "FLAG",
    "MAX_FRAME_LENGTH",
    "Control",
    "FrameKind",
    "HdlcAddress",
    "HdlcError",
    "HdlcFrame",
    "crc16_x25",
    "fcs",
]

FLAG: Final = 0x7E
#: The format field's 11-bit length.
MAX_FRAME_LENGTH: Final = 0x7FF
FORMAT_TYPE_3: Final = 0xA000
_SEGMENTED: Final = 0x0800


class HdlcError(ProtocolError):
    """Bytes or frames that break IEC 62056-46."""


_CRC_TABLE: Final = reflected_table(0x8408)


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25: poly 0x1021 reflected, init and xorout 0xFFFF (check 0x906E)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def fcs(data: bytes | bytearray | memoryview) -> bytes:
    """The HCS or FCS of ``data`` as sent: CRC-16/X.25, low byte first."""
    return crc16_x25(data).to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class HdlcAddress:
    """An HDLC address: a client's (1 byte: SAP) or a server's (62056-46 6.4.2.2).

    A server address of 1 byte holds only the upper HDLC address (the logical device);
    of 2 bytes, upper and lower (the physical device) 7 bits each; of 4 bytes, 14 bits
    each. ``width`` is the width on the wire; it is not part of the identity.
    """

    upper: int
    lower: int | None = None
    width: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        width = self.width or self._smallest()
        object.__setattr__(self, "width", width)
        if width not in (1, 2, 4):
            raise ValueError(f"an HDLC address is 1, 2 or 4 bytes, not {width}")
        if (width == 1) != (self.lower is None):
            raise ValueError("a 1-byte address has no lower part; a wider one needs it")
        limit = 1 << (7 * max(1, width // 2))
        for part in (self.upper, self.lower or 0):
            if not 0 <= part < limit:
                raise ValueError(f"address part {part} does not fit {width} bytes")

    def _smallest(self) -> int:
        if self.lower is None:
            return 1
        return 2 if max(self.upper, self.lower) < 0x80 else 4

    @classmethod
    def client(cls, sap: int) -> HdlcAddress:
        """A client's address: its SAP in one byte (16 is the public client)."""
        return cls(sap)

    @classmethod
    def server(cls, logical: int = 1, physical: int | None = None,
               width: int = 0) -> HdlcAddress:
        return cls(logical, physical, width)

    def encode(self) -> bytes:
        half = max(1, self.width // 2)
        parts = [self.upper] if self.lower is None else [self.upper, self.lower]
        out = bytearray()
        for part in parts:
            out += bytes(((part >> (7 * i)) & 0x7F) << 1 for i in reversed(range(half)))
        out[-1] |= 1
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes | bytearray, offset: int) -> tuple[HdlcAddress, int]:
        """The address starting at ``offset`` and the offset after it."""
        end = offset
        while end < len(data) and not data[end] & 1:
            end += 1
        width = end - offset + 1
        if end >= len(data):
            raise HdlcError("address runs past the frame header")
        if width not in (1, 2, 4):
            raise HdlcError(f"address of {width} bytes (62056-46 allows 1, 2 or 4)")
        raw = data[offset:end + 1]
        if width == 1:
            return cls(raw[0] >> 1, None, 1), end + 1
        half = width // 2

        def part(chunk: bytes | bytearray) -> int:
            value = 0
            for byte in chunk:
                value = value << 7 | byte >> 1
            return value

        return cls(part(raw[:half]), part(raw[half:]), width), end + 1

    def __str__(self) -> str:
        return f"{self.upper}" if self.lower is None else f"{self.upper}/{self.lower}"


class FrameKind(Enum):
    """Control field kinds DLMS uses (62056-46 6.4.3), with their bits sans P/F."""

    I = 0x00  # noqa: E741 - the standard's name
    RR = 0x01
    RNR = 0x05
    SNRM = 0x83
    DISC = 0x43
    UA = 0x63
    DM = 0x0F
    FRMR = 0x87
    UI = 0x03


_UNNUMBERED: Final = {k.value: k for k in FrameKind if k.value & 0x03 == 0x03}


@dataclass(frozen=True, slots=True)
class Control:
    """A control field: kind, poll/final bit, and N(S)/N(R) where the kind has them."""

    kind: FrameKind
    pf: bool = True
    ns: int = 0
    nr: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.ns < 8 and 0 <= self.nr < 8):
            raise ValueError("sequence numbers are modulo 8")

    def encode(self) -> int:
        pf = 0x10 if self.pf else 0
        if self.kind is FrameKind.I:
            return self.nr << 5 | pf | self.ns << 1
        if self.kind in (FrameKind.RR, FrameKind.RNR):
            return self.nr << 5 | pf | int(self.kind.value)
        return int(self.kind.value) | pf

    @classmethod
    def decode(cls, byte: int) -> Control:
        pf = bool(byte & 0x10)
        if not byte & 1:
            return cls(FrameKind.I, pf, ns=byte >> 1 & 7, nr=byte >> 5)
        if byte & 0x03 == 0x01:
            if byte & 0x0F == 0x01:
                return cls(FrameKind.RR, pf, nr=byte >> 5)
            if byte & 0x0F == 0x05:
                return cls(FrameKind.RNR, pf, nr=byte >> 5)
            raise HdlcError(f"supervisory frame 0x{byte:02X} is not RR or RNR "
                            "(REJ and SREJ are not used by 62056-46)")
        kind = _UNNUMBERED.get(byte & ~0x10 & 0xFF)
        if kind is None:
            raise HdlcError(f"unknown unnumbered frame 0x{byte:02X}")
        return cls(kind, pf)


@dataclass(frozen=True, slots=True)
class HdlcFrame:
    """One frame. ``segmented`` is the format field's S bit (more segments follow)."""

    destination: HdlcAddress
    source: HdlcAddress
    control: Control
    info: bytes = b""
    segmented: bool = False

    @property
    def kind(self) -> FrameKind:
        return self.control.kind

    def encode(self) -> bytes:
        """The frame with both flags."""
        addresses = self.destination.encode() + self.source.encode()
        length = 2 + len(addresses) + 1 + 2 + (len(self.info) + 2 if self.info else 0)
        if length > MAX_FRAME_LENGTH:
            raise ValueError(f"frame of {length} bytes exceeds the 11-bit length field")
        fmt = FORMAT_TYPE_3 | (_SEGMENTED if self.segmented else 0) | length
        header = fmt.to_bytes(2, "big") + addresses + bytes((self.control.encode(),))
        body = header + fcs(header) + self.info if self.info else header
        return bytes((FLAG,)) + body + fcs(body) + bytes((FLAG,))

    @classmethod
    def decode(cls, raw: bytes | bytearray) -> HdlcFrame:
        """One whole frame, flags included; :class:`HdlcError` names what is wrong."""
        if len(raw) < 9 or raw[0] != FLAG or raw[-1] != FLAG:
            raise HdlcError("not a frame between two flags")
        fmt = int.from_bytes(raw[1:3], "big")
        if fmt & 0xF000 != FORMAT_TYPE_3:
            raise HdlcError(f"format 0x{fmt:04X} is not frame format type 3")
        if fmt & 0x7FF != len(raw) - 2:
            raise HdlcError(f"length field says {fmt & 0x7FF} bytes, "
                            f"the frame has {len(raw) - 2}")
        body = raw[1:-1]
        destination, at = HdlcAddress.decode(body, 2)
        source, at = HdlcAddress.decode(body, at)
        if at >= len(body):
            raise HdlcError("frame ends before its control field")
        control = Control.decode(body[at])
        at += 1
        rest = len(body) - at
        if rest == 2:
            info = b""
        elif rest >= 5:
            if fcs(body[:at]) != body[at:at + 2]:
                raise HdlcError("header check sequence (HCS) mismatch")
            info = bytes(body[at + 2:-2])
        else:
            raise HdlcError(f"{rest} bytes after the control field: neither an FCS "
                            "alone nor HCS, information and FCS")
        if fcs(body[:-2]) != body[-2:]:
            raise HdlcError("frame check sequence (FCS) mismatch")
        return cls(destination, source, control, info, bool(fmt & _SEGMENTED))

    def describe(self) -> str:
        c = self.control
        seq = (f" N(S)={c.ns} N(R)={c.nr}" if c.kind is FrameKind.I else
               f" N(R)={c.nr}" if c.kind in (FrameKind.RR, FrameKind.RNR) else "")
        return (f"{c.kind.name}{seq}{' P/F' if c.pf else ''}{' S' if self.segmented else ''}"
                f" {self.source}->{self.destination} info {len(self.info)} bytes")
