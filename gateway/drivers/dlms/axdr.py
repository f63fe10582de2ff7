"""A-XDR encoding of the COSEM ``Data`` CHOICE (pure: bytes in, values out).

``Data`` (IEC 62056-6-2 / DLMS UA Blue Book, "Data" in the xDLMS ASN.1; Green Book
9.5, A-XDR rules of IEC 61334-6) is a tag byte followed by the value: fixed-size
big-endian numbers, or an A-XDR length (one byte below 0x80, else 0x81/0x82/0x83/0x84
and that many length bytes) and the contents. Every value here is a frozen class that
keeps its exact tag (a ``Long`` 5 is not an ``Unsigned`` 5) and binary content (floats
and date-times keep their bytes), so ``encode(decode(b)) == b`` for every canonical
``b``: shortest lengths, booleans 0x00/0x01. A peer's longer length form or another
true byte is accepted and re-encoded canonically.

Large buffers (a load profile of thousands of entries): :func:`decode_from` works on
offsets into the caller's buffer (``struct.unpack_from``, no slicing but for the
values themselves), and :class:`ArrayStream` decodes the entries of an array as the
blocks of a block transfer arrive, holding only the undecoded tail.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from gateway.drivers.dlms.data import (
    Array,
    Bcd,
    BitString,
    Boolean,
    CompactArray,
    Data,
    DateData,
    DateTimeData,
    DontCare,
    DoubleLong,
    DoubleLongUnsigned,
    Enum,
    Fixed,
    Float32,
    Float64,
    Integer,
    Long,
    Long64,
    Long64Unsigned,
    LongUnsigned,
    NullData,
    Number,
    Octets,
    OctetString,
    Structure,
    Tag,
    TimeData,
    TypeDescription,
    Unsigned,
    Utf8String,
    VisibleString,
    as_bool,
    as_bytes,
    as_float,
    as_int,
    as_items,
    as_str,
    type_name,
)
from gateway.errors import ProtocolError

# The value classes are re-exported: ``axdr.LongUnsigned(5)`` reads as the wire type.
__all__ = [
    "Array", "ArrayStream", "Bcd", "BitString", "Boolean", "CompactArray", "Data",
    "DateData", "DateTimeData", "DontCare", "DoubleLong", "DoubleLongUnsigned", "Enum",
    "Float32", "Float64", "Integer", "Long", "Long64", "Long64Unsigned", "LongUnsigned",
    "NullData", "OctetString", "Structure", "Tag", "TimeData", "TruncatedData",
    "TypeDescription", "Unsigned", "Utf8String", "VisibleString", "as_bool", "as_bytes",
    "as_float", "as_int", "as_items", "as_str", "compact_array", "compact_items", "decode",
    "decode_from", "encode", "encode_length", "read_length", "type_name",
]

#: Deeper nesting than this is refused: no meter nests so deep, and garbage that
#: claims to (01 01 01 ...) must not exhaust the interpreter's stack.
MAX_DEPTH: Final = 32


class TruncatedData(ProtocolError):
    """The bytes end inside a value: more may arrive (block transfer), or it was cut."""


Buffer = bytes | bytearray | memoryview

# --- lengths -------------------------------------------------------------------------


def encode_length(n: int) -> bytes:
    """An A-XDR length in its shortest form (Green Book 9.5: 0x81/0x82/0x84 long forms)."""
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return b"\x82" + n.to_bytes(2, "big")
    if n <= 0xFFFFFFFF:
        return b"\x84" + n.to_bytes(4, "big")
    raise ValueError(f"A-XDR length {n} does not fit in 4 bytes")


def read_length(buf: Buffer, pos: int) -> tuple[int, int]:
    """The A-XDR length at ``pos`` and the offset after it."""
    if pos >= len(buf):
        raise TruncatedData(f"bytes end at offset {pos} where a length starts")
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    size = first & 0x7F
    if not 1 <= size <= 4:
        raise ProtocolError(f"length byte 0x{first:02X} at offset {pos}: "
                            "long forms are 0x81 to 0x84")
    end = pos + 1 + size
    if end > len(buf):
        raise TruncatedData(f"bytes end inside the {size}-byte length at offset {pos}")
    return int.from_bytes(buf[pos + 1:end], "big"), end


# --- decoding --------------------------------------------------------------------------

_Decoder = Callable[[Buffer, int, int], tuple["Data", int]]
_DECODERS: list[_Decoder | None] = [None] * 256


def decode_from(buf: Buffer, pos: int = 0, depth: int = 0) -> tuple[Data, int]:
    """The ``Data`` starting at ``pos`` and the offset just after it (no copy of ``buf``)."""
    if pos >= len(buf):
        raise TruncatedData(f"bytes end at offset {pos} where a Data tag starts")
    decoder = _DECODERS[buf[pos]]
    if decoder is None:
        raise ProtocolError(f"unknown Data tag {buf[pos]} (0x{buf[pos]:02X}) at offset {pos}")
    return decoder(buf, pos + 1, depth)


def decode(buf: Buffer) -> Data:
    """Exactly one ``Data``: bytes left over after it are an error, not dropped."""
    value, end = decode_from(buf)
    if end != len(buf):
        raise ProtocolError(f"{len(buf) - end} bytes left after a {type_name(value.TAG)} "
                            f"of {end} bytes")
    return value


def _take(buf: Buffer, pos: int, n: int, what: str) -> tuple[bytes, int]:
    end = pos + n
    if end > len(buf):
        raise TruncatedData(f"{what} of {n} bytes at offset {pos} is cut at {len(buf)}")
    return bytes(buf[pos:end]), end


def _sequence(cls: type[Array] | type[Structure]) -> _Decoder:
    def decoder(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
        if depth >= MAX_DEPTH:
            raise ProtocolError(f"Data nested deeper than {MAX_DEPTH} at offset {pos}")
        count, pos = read_length(buf, pos)
        if count > len(buf) - pos:  # every element is at least one byte
            raise TruncatedData(f"{type_name(cls.TAG)} of {count} elements at offset {pos}"
                                f" cannot fit in the {len(buf) - pos} bytes left")
        items: list[Data] = []
        append, table, size = items.append, _DECODERS, len(buf)
        for _ in range(count):  # decode_from inlined: this loop carries profile buffers
            if pos >= size:
                raise TruncatedData(f"bytes end at offset {pos} inside a {type_name(cls.TAG)}")
            decoder = table[buf[pos]]
            if decoder is None:
                raise ProtocolError(f"unknown Data tag {buf[pos]} (0x{buf[pos]:02X}) "
                                    f"at offset {pos}")
            item, pos = decoder(buf, pos + 1, depth + 1)
            append(item)
        return cls(tuple(items)), pos
    return decoder


def _number(cls: type[Number]) -> _Decoder:
    unpack, size = cls.FORMAT.unpack_from, cls.FORMAT.size

    def decoder(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
        if pos + size > len(buf):
            raise TruncatedData(f"{type_name(cls.TAG)} at offset {pos} is cut")
        return cls(unpack(buf, pos)[0]), pos + size  # type: ignore[return-value]
    return decoder


def _octets(cls: type[Octets]) -> _Decoder:
    def decoder(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
        n, pos = read_length(buf, pos)
        value, pos = _take(buf, pos, n, type_name(cls.TAG))
        return cls(value), pos  # type: ignore[return-value]
    return decoder


def _fixed(cls: type[Fixed]) -> _Decoder:
    def decoder(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
        raw, pos = _take(buf, pos, cls.SIZE, type_name(cls.TAG))
        return cls(raw), pos  # type: ignore[return-value]
    return decoder


def _null(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
    return NullData(), pos


def _dont_care(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
    return DontCare(), pos


def _boolean(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
    if pos >= len(buf):
        raise TruncatedData(f"boolean at offset {pos} is cut")
    return Boolean(buf[pos] != 0), pos + 1


def _bit_string(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
    bits, pos = read_length(buf, pos)
    data, pos = _take(buf, pos, (bits + 7) // 8, "bit-string")
    return BitString(bits, data), pos


def _compact_array(buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
    description, pos = _read_description(buf, pos, depth)
    n, pos = read_length(buf, pos)
    contents, pos = _take(buf, pos, n, "compact-array contents")
    return CompactArray(description, contents), pos


_DECODERS[Tag.NULL_DATA] = _null
_DECODERS[Tag.DONT_CARE] = _dont_care
_DECODERS[Tag.ARRAY] = _sequence(Array)
_DECODERS[Tag.STRUCTURE] = _sequence(Structure)
_DECODERS[Tag.BOOLEAN] = _boolean
_DECODERS[Tag.BIT_STRING] = _bit_string
_DECODERS[Tag.COMPACT_ARRAY] = _compact_array
for _cls in (DoubleLong, DoubleLongUnsigned, Bcd, Integer, Long, Unsigned, LongUnsigned,
             Long64, Long64Unsigned, Enum):
    _DECODERS[_cls.TAG] = _number(_cls)
for _ocls in (OctetString, VisibleString, Utf8String):
    _DECODERS[_ocls.TAG] = _octets(_ocls)
for _fcls in (Float32, Float64, DateTimeData, DateData, TimeData):
    _DECODERS[_fcls.TAG] = _fixed(_fcls)


# --- encoding --------------------------------------------------------------------------


def encode(value: Data) -> bytes:
    """The A-XDR bytes of ``value``, tag first."""
    out = bytearray()
    _encode_into(value, out)
    return bytes(out)


def _encode_into(value: Data, out: bytearray) -> None:
    out.append(value.TAG)
    if isinstance(value, Number):
        try:
            out += value.FORMAT.pack(value.value)
        except struct.error as exc:
            raise ValueError(f"{value.value} does not fit a {type_name(value.TAG)}") from exc
    elif isinstance(value, Array | Structure):
        out += encode_length(len(value.items))
        for item in value.items:
            _encode_into(item, out)
    elif isinstance(value, Octets):
        out += encode_length(len(value.value))
        out += value.value
    elif isinstance(value, Fixed):
        out += value.raw
    elif isinstance(value, Boolean):
        out.append(1 if value.value else 0)
    elif isinstance(value, BitString):
        if len(value.data) != (value.bits + 7) // 8:
            raise ValueError(f"bit-string of {value.bits} bits needs {(value.bits + 7) // 8}"
                             f" bytes, not {len(value.data)}")
        out += encode_length(value.bits)
        out += value.data
    elif isinstance(value, CompactArray):
        _encode_description(value.description, out)
        out += encode_length(len(value.contents))
        out += value.contents
    # NullData and DontCare have no content.


# --- compact-array (Blue Book 4.1.5: a TypeDescription, then untagged elements) ------

#: Types a compact-array element may be described as (no nested compact-array).
_SIMPLE: Final = frozenset(Tag) - {Tag.ARRAY, Tag.STRUCTURE, Tag.COMPACT_ARRAY}


def _read_description(buf: Buffer, pos: int, depth: int) -> tuple[TypeDescription, int]:
    if depth >= MAX_DEPTH:
        raise ProtocolError(f"type description nested deeper than {MAX_DEPTH}")
    if pos >= len(buf):
        raise TruncatedData(f"bytes end at offset {pos} where a type description starts")
    tag = buf[pos]
    if tag == Tag.ARRAY:  # number-of-elements Unsigned16, then the element type
        if pos + 3 > len(buf):
            raise TruncatedData(f"array type description at offset {pos} is cut")
        child, end = _read_description(buf, pos + 3, depth + 1)
        return TypeDescription(tag, int.from_bytes(buf[pos + 1:pos + 3], "big"), (child,)), end
    if tag == Tag.STRUCTURE:  # SEQUENCE OF TypeDescription
        count, pos = read_length(buf, pos + 1)
        children = []
        for _ in range(count):
            child, pos = _read_description(buf, pos, depth + 1)
            children.append(child)
        return TypeDescription(tag, count, tuple(children)), pos
    if tag not in _SIMPLE:
        raise ProtocolError(f"type description {type_name(tag)} at offset {pos} is not "
                            "allowed in a compact-array")
    return TypeDescription(tag), pos + 1


def _encode_description(description: TypeDescription, out: bytearray) -> None:
    out.append(description.tag)
    if description.tag == Tag.ARRAY:
        out += description.count.to_bytes(2, "big")
    elif description.tag == Tag.STRUCTURE:
        out += encode_length(len(description.children))
    for child in description.children:
        _encode_description(child, out)


def _untagged(desc: TypeDescription, buf: Buffer, pos: int, depth: int) -> tuple[Data, int]:
    if desc.tag in (Tag.ARRAY, Tag.STRUCTURE):
        if depth >= MAX_DEPTH:
            raise ProtocolError(f"compact-array element nested deeper than {MAX_DEPTH}")
        items: list[Data] = []
        kids = desc.children * desc.count if desc.tag == Tag.ARRAY else desc.children
        for child in kids:
            item, pos = _untagged(child, buf, pos, depth + 1)
            items.append(item)
        cls = Array if desc.tag == Tag.ARRAY else Structure
        return cls(tuple(items)), pos
    decoder = _DECODERS[desc.tag]
    assert decoder is not None  # _read_description admits only known simple tags
    return decoder(buf, pos, depth)


def compact_items(value: CompactArray) -> tuple[Data, ...]:
    """The elements of a compact-array, decoded by its type description."""
    buf, pos = value.contents, 0
    items: list[Data] = []
    while pos < len(buf):
        try:
            item, pos = _untagged(value.description, buf, pos, 1)
        except TruncatedData as exc:
            raise ProtocolError(f"compact-array element {len(items)} is cut: {exc}") from exc
        items.append(item)
    return tuple(items)


def _encode_untagged(desc: TypeDescription, value: Data, out: bytearray) -> None:
    if desc.tag != value.TAG:
        raise ValueError(f"compact-array element is {type_name(value.TAG)}, its type "
                         f"description says {type_name(desc.tag)}")
    if isinstance(value, Array | Structure):
        kids = desc.children * desc.count if desc.tag == Tag.ARRAY else desc.children
        if len(kids) != len(value.items):
            raise ValueError(f"{type_name(desc.tag)} of {len(value.items)} elements, "
                             f"its type description says {len(kids)}")
        for child, item in zip(kids, value.items, strict=True):
            _encode_untagged(child, item, out)
    else:
        start = len(out)
        _encode_into(value, out)
        del out[start]  # the tag


def compact_array(description: TypeDescription, items: tuple[Data, ...]) -> CompactArray:
    """A compact-array of ``items``, each matching ``description``."""
    out = bytearray()
    for item in items:
        _encode_untagged(description, item, out)
    return CompactArray(description, bytes(out))


# --- streaming -------------------------------------------------------------------------


class ArrayStream:
    """Decodes the elements of one array as its bytes arrive (block transfer).

    Feed the raw-data of each block; :meth:`feed` returns the elements completed so
    far. Only the undecoded tail is kept, so a buffer of thousands of entries costs
    one pass. :meth:`close` checks that every announced element arrived and that no
    bytes came after them."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._remaining: int | None = None
        self.received = 0

    @property
    def done(self) -> bool:
        return self._remaining == 0

    def feed(self, chunk: Buffer) -> list[Data]:
        self._buf += chunk
        buf, pos = self._buf, 0
        out: list[Data] = []
        try:
            if self._remaining is None:
                if buf and buf[0] != Tag.ARRAY:
                    raise ProtocolError(f"expected an array, got {type_name(buf[0])}")
                if len(buf) < 2:
                    return out
                self._remaining, pos = read_length(buf, 1)
            while self._remaining and pos < len(buf):
                item, pos = decode_from(buf, pos, 1)
                out.append(item)
                self._remaining -= 1
        except TruncatedData:
            pass  # the element continues in the next block
        if self._remaining == 0 and pos < len(buf):
            raise ProtocolError(f"{len(buf) - pos} bytes after the last array element")
        del buf[:pos]
        self.received += len(out)
        return out

    def close(self) -> None:
        if self._remaining is None:
            raise ProtocolError("the array never started")
        if self._remaining or self._buf:
            raise ProtocolError(f"array cut: {self._remaining} elements missing, "
                                f"{len(self._buf)} bytes of a partial element")
