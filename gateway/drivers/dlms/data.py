"""The COSEM ``Data`` values: one frozen class per A-XDR type, the exact tag kept.

``Data`` is the CHOICE of IEC 62056-6-2 / DLMS UA Blue Book 4.1.5 ("Common data
types"). A ``Long`` 5 is not an ``Unsigned`` 5; floats and date-times keep their bytes
(``Float32.raw``), so their binary value survives untouched and exact decimal
conversion stays with the caller (``cosem.ScalerUnit``). The wire codec is ``axdr``.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar

from gateway.errors import ProtocolError

__all__ = [
    "Array",
    "Bcd",
    "BitString",
    "Boolean",
    "CompactArray",
    "Data",
    "DateData",
    "DateTimeData",
    "DontCare",
    "DoubleLong",
    "DoubleLongUnsigned",
    "Enum",
    "Fixed",
    "Float32",
    "Float64",
    "Integer",
    "Long",
    "Long64",
    "Long64Unsigned",
    "LongUnsigned",
    "NullData",
    "Number",
    "OctetString",
    "Octets",
    "Structure",
    "Tag",
    "TimeData",
    "TypeDescription",
    "Unsigned",
    "Utf8String",
    "VisibleString",
    "as_bool",
    "as_bytes",
    "as_float",
    "as_int",
    "as_items",
    "as_str",
    "type_name",
]


class Tag(enum.IntEnum):
    """The tags of the ``Data`` CHOICE (Blue Book 4.1.5, "Common data types")."""

    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27
    DONT_CARE = 255


def type_name(tag: int) -> str:
    """The Blue Book name of a tag ("double-long-unsigned"), or its number."""
    try:
        return Tag(tag).name.lower().replace("_", "-")
    except ValueError:
        return f"tag {tag}"


@dataclass(frozen=True, slots=True)
class NullData:
    TAG: ClassVar[int] = Tag.NULL_DATA


@dataclass(frozen=True, slots=True)
class DontCare:
    TAG: ClassVar[int] = Tag.DONT_CARE


@dataclass(frozen=True, slots=True)
class Array:
    items: tuple[Data, ...]
    TAG: ClassVar[int] = Tag.ARRAY


@dataclass(frozen=True, slots=True)
class Structure:
    items: tuple[Data, ...]
    TAG: ClassVar[int] = Tag.STRUCTURE


@dataclass(frozen=True, slots=True)
class Boolean:
    value: bool
    TAG: ClassVar[int] = Tag.BOOLEAN


@dataclass(frozen=True, slots=True)
class BitString:
    """``bits`` bits, first bit in the top of the first byte; unused low bits kept."""

    bits: int
    data: bytes
    TAG: ClassVar[int] = Tag.BIT_STRING


@dataclass(frozen=True, slots=True)
class Number:
    """A fixed-size integer; each subclass names its tag and big-endian format."""

    value: int
    TAG: ClassVar[int]
    FORMAT: ClassVar[struct.Struct]


class DoubleLong(Number):
    __slots__ = ()
    TAG = Tag.DOUBLE_LONG
    FORMAT = struct.Struct(">i")


class DoubleLongUnsigned(Number):
    __slots__ = ()
    TAG = Tag.DOUBLE_LONG_UNSIGNED
    FORMAT = struct.Struct(">I")


class Bcd(Number):
    """One byte, two BCD digits, kept as its unsigned byte value."""

    __slots__ = ()
    TAG = Tag.BCD
    FORMAT = struct.Struct(">B")


class Integer(Number):
    __slots__ = ()
    TAG = Tag.INTEGER
    FORMAT = struct.Struct(">b")


class Long(Number):
    __slots__ = ()
    TAG = Tag.LONG
    FORMAT = struct.Struct(">h")


class Unsigned(Number):
    __slots__ = ()
    TAG = Tag.UNSIGNED
    FORMAT = struct.Struct(">B")


class LongUnsigned(Number):
    __slots__ = ()
    TAG = Tag.LONG_UNSIGNED
    FORMAT = struct.Struct(">H")


class Long64(Number):
    __slots__ = ()
    TAG = Tag.LONG64
    FORMAT = struct.Struct(">q")


class Long64Unsigned(Number):
    __slots__ = ()
    TAG = Tag.LONG64_UNSIGNED
    FORMAT = struct.Struct(">Q")


class Enum(Number):
    __slots__ = ()
    TAG = Tag.ENUM
    FORMAT = struct.Struct(">B")


@dataclass(frozen=True, slots=True)
class Octets:
    """A length-prefixed string of bytes, kept as sent."""

    value: bytes
    TAG: ClassVar[int]


class OctetString(Octets):
    __slots__ = ()
    TAG = Tag.OCTET_STRING


class VisibleString(Octets):
    """ASCII text in principle; kept as bytes so any byte round-trips (``as_str``)."""

    __slots__ = ()
    TAG = Tag.VISIBLE_STRING


class Utf8String(Octets):
    __slots__ = ()
    TAG = Tag.UTF8_STRING


@dataclass(frozen=True, slots=True)
class Fixed:
    """A fixed-size value kept as its bytes: floats keep their exact binary value
    (NaN payloads too), date-times are interpreted by ``cosem.CosemDateTime``."""

    raw: bytes
    TAG: ClassVar[int]
    SIZE: ClassVar[int]

    def __post_init__(self) -> None:
        if len(self.raw) != self.SIZE:
            raise ValueError(f"{type_name(self.TAG)} is {self.SIZE} bytes, not {len(self.raw)}")


class Float32(Fixed):
    __slots__ = ()
    TAG = Tag.FLOAT32
    SIZE = 4

    @classmethod
    def of(cls, value: float) -> Float32:
        return cls(struct.pack(">f", value))

    @property
    def value(self) -> float:
        return float(struct.unpack(">f", self.raw)[0])


class Float64(Fixed):
    __slots__ = ()
    TAG = Tag.FLOAT64
    SIZE = 8

    @classmethod
    def of(cls, value: float) -> Float64:
        return cls(struct.pack(">d", value))

    @property
    def value(self) -> float:
        return float(struct.unpack(">d", self.raw)[0])


class DateTimeData(Fixed):
    __slots__ = ()
    TAG = Tag.DATE_TIME
    SIZE = 12


class DateData(Fixed):
    __slots__ = ()
    TAG = Tag.DATE
    SIZE = 5


class TimeData(Fixed):
    __slots__ = ()
    TAG = Tag.TIME
    SIZE = 4


@dataclass(frozen=True, slots=True)
class TypeDescription:
    """A compact-array's element type: a simple tag, an array of ``count`` elements of
    ``children[0]``, or a structure of ``children`` (Blue Book 4.1.5, compact-array)."""

    tag: int
    count: int = 0
    children: tuple[TypeDescription, ...] = ()


@dataclass(frozen=True, slots=True)
class CompactArray:
    """A compact-array: one type description, then the elements without their tags.

    Kept as sent (``contents`` are the bytes of the array-contents octet string);
    ``axdr.compact_items`` decodes the elements, ``axdr.compact_array`` builds one."""

    description: TypeDescription
    contents: bytes
    TAG: ClassVar[int] = Tag.COMPACT_ARRAY


Data = (
    NullData | DontCare | Array | Structure | Boolean | BitString | DoubleLong
    | DoubleLongUnsigned | Bcd | Integer | Long | Unsigned | LongUnsigned | Long64
    | Long64Unsigned | Enum | OctetString | VisibleString | Utf8String | Float32 | Float64
    | DateTimeData | DateData | TimeData | CompactArray
)


# --- typed reads -----------------------------------------------------------------------


def _mismatch(expected: str, got: Data) -> ProtocolError:
    return ProtocolError(f"expected {expected}, got {type_name(got.TAG)}")


def as_int(value: Data) -> int:
    """The integer of any integer type (integer ... long64-unsigned, enum, bcd)."""
    if isinstance(value, Number):
        return value.value
    raise _mismatch("an integer", value)


def as_bytes(value: Data) -> bytes:
    if isinstance(value, OctetString):
        return value.value
    raise _mismatch("octet-string", value)


def as_str(value: Data) -> str:
    """Text of a visible-string (ASCII; other bytes as Latin-1) or utf8-string."""
    if isinstance(value, VisibleString):
        return value.value.decode("latin-1")
    if isinstance(value, Utf8String):
        try:
            return value.value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"utf8-string is not UTF-8: {exc.reason}") from exc
    raise _mismatch("visible-string or utf8-string", value)


def as_bool(value: Data) -> bool:
    if isinstance(value, Boolean):
        return value.value
    raise _mismatch("boolean", value)


def as_float(value: Data) -> float:
    if isinstance(value, Float32 | Float64):
        return value.value
    raise _mismatch("float32 or float64", value)


def as_items(value: Data, *, count: int | None = None) -> tuple[Data, ...]:
    """The elements of an array or structure, ``count`` checked (a compact-array's
    elements: ``axdr.compact_items``)."""
    if isinstance(value, Array | Structure):
        items = value.items
    else:
        raise _mismatch("array or structure", value)
    if count is not None and len(items) != count:
        raise ProtocolError(f"expected {count} elements, got {len(items)} in a "
                            f"{type_name(value.TAG)}")
    return items
