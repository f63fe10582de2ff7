"""Register words <-> exact values (pure).

Modbus carries 16-bit registers, each big-endian on the wire. A profile says how a
value is spread over them: ``word_order`` "big" puts the most significant register
first, "little" the least significant; ``byte_order`` "little" means each register's
two bytes are swapped. Values come out as exact ``Decimal``: ``raw * scale + offset``.

Floats become the shortest decimal that converts back to the same binary value, so a
float32 register holding 1234.567 reads as ``Decimal("1234.567")``, not as the binary
value 1234.5670166015625. For float32 the shortest form has at most 9 significant
digits, and every decimal of up to 6 digits survives a float32 round trip (FLT_DIG = 6),
so the correctly rounded 6-digit form is the shortest whenever one of <= 6 digits
exists, and the search starts there: one format and one check for short values. Results are
memoised by bit pattern (meter registers repeat from poll to poll), in one bounded
table shared by all meters: the common case is one dictionary lookup.

The hot path decodes a whole :class:`ReadBlock` reply: the registers are packed into
bytes once, each point then unpacks its slice. :func:`encode` is the inverse, for
simulators and tests.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal

from gateway.drivers.modbus.plan import ReadBlock
from gateway.errors import DataError
from gateway.profiles import PointSpec

__all__ = ["BlockDecoder", "decode", "encode", "shortest_float32"]

# Enough digits that raw * scale + offset is exact for any 64-bit integer or double.
_EXACT = Context(prec=60)
_FORMAT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
           "int64": "q", "uint64": "Q", "float32": "f", "float64": "d"}
_F32 = struct.Struct(">f")
_ZERO = Decimal(0)
#: float32 bit pattern (4 big-endian bytes) -> shortest Decimal; cleared when full.
_F32_MEMO: dict[bytes, Decimal] = {}
_F32_MEMO_MAX = 1 << 16
_F32_MIN_NORMAL = 2.0**-126
#: The last three bytes of a float32 that is an exact power of two (mantissa all zero).
_POWER_OF_TWO_TAILS = frozenset({b"\x00\x00\x00", b"\x80\x00\x00"})

_PointDecoder = Callable[[bytes], Decimal]


def shortest_float32(raw: bytes) -> Decimal:
    """The shortest decimal whose nearest float32 has the big-endian bytes ``raw``."""
    value = _F32_MEMO.get(raw)
    return _shortest_float32(raw) if value is None else value


def _shortest_float32(raw: bytes, unpack: Callable[[bytes], tuple[float]] = _F32.unpack,
                      pack: Callable[[float], bytes] = _F32.pack) -> Decimal:
    """Memo miss: the correctly rounded forms of 6, 7, 8 then 9 digits (9 always fits).

    If a decimal of p digits converts back, so does the nearest one of p + 1 digits, so
    the first length that fits is the shortest. Subnormals and exact powers of two,
    where that argument does not hold, take the careful path. (A bisection over 6..9
    measured no faster on meter-like values and twice as slow on short ones.)
    """
    number = unpack(raw)[0]
    if not math.isfinite(number):
        raise ValueError(f"value is {number}, not a number")
    if number == 0:
        return _ZERO  # also folds -0.0
    if abs(number) < _F32_MIN_NORMAL or raw[1:] in _POWER_OF_TWO_TAILS:
        value = _shortest_careful(number, raw)
    else:
        # %-formatting: measurably faster than format() here, and this is the hot path.
        # "%g" drops trailing zeros, so the 6-digit try also finds 1 to 5 digits.
        text = "%.6g" % number  # noqa: UP031
        if pack(float(text)) != raw:
            text = "%.7g" % number  # noqa: UP031
            if pack(float(text)) != raw:
                text = "%.8g" % number  # noqa: UP031
                if pack(float(text)) != raw:
                    text = "%.9g" % number  # noqa: UP031
        value = Decimal(text)
    if len(_F32_MEMO) >= _F32_MEMO_MAX:
        _F32_MEMO.clear()
    _F32_MEMO[raw] = value
    return value


def _shortest_careful(number: float, raw: bytes) -> Decimal:
    """Digit by digit, trying the nearest decimal and both neighbours at each length.

    Below 2**-126 a float32 has fewer than 6 significant digits, and at an exact power
    of two the interval that rounds to it is lopsided (half as wide below), so the
    nearest p-digit decimal may miss while its neighbour above fits.
    """
    exact = Decimal(number)
    for digits in range(1, 10):
        nearest = f"{number:.{digits}g}"
        if _F32.pack(float(nearest)) == raw:
            return Decimal(nearest)
        for rounding in (ROUND_CEILING, ROUND_FLOOR):
            candidate = Context(prec=digits, rounding=rounding).plus(exact)
            if _F32.pack(float(candidate)) == raw:
                return candidate.normalize()
    return Decimal(f"{number:.9g}")


class BlockDecoder:
    """Decodes every point of one read block; build once per block, call per reply."""

    def __init__(self, block: ReadBlock) -> None:
        self.block = block
        self._words = struct.Struct(f">{block.count}H")
        self._points = [(_point_decoder(p.point, 2 * p.offset), p.point)
                        for p in block.points]

    def __call__(self, registers: Sequence[int]) -> list[Decimal]:
        """Values in the order of ``block.points``; DataError names the failing point."""
        try:
            buf = self._words.pack(*registers)
        except struct.error as exc:
            raise DataError(f"reply of {len(registers)} registers does not fit "
                            f"{self.block.count} 16-bit words",
                            source=f"{self.block.table} {self.block.start}") from exc
        values = []
        for decoder, point in self._points:
            try:
                values.append(decoder(buf))
            except ValueError as exc:
                raise DataError(str(exc), source=_where(point)) from exc
        return values


def decode(point: PointSpec, registers: Sequence[int]) -> Decimal:
    """The value of ``point`` from exactly its own registers (convenience, not hot path)."""
    try:
        buf = struct.pack(f">{point.width}H", *registers)
    except struct.error as exc:
        raise DataError(f"needs {point.width} 16-bit registers, got {list(registers)}",
                        source=_where(point)) from exc
    try:
        return _point_decoder(point, 0)(buf)
    except ValueError as exc:
        raise DataError(str(exc), source=_where(point)) from exc


def encode(point: PointSpec, value: Decimal) -> list[int]:
    """Registers a device would hold for ``value`` (the inverse of :func:`decode`).

    Integers are ``floor((value - offset) / scale)`` wrapped to the type's width (a
    counter past its top starts again at 0); floats round to the nearest binary value.
    """
    raw_value = _EXACT.divide(_EXACT.subtract(value, point.offset), point.scale)
    if point.type.startswith("float"):
        raw = struct.pack(">" + _FORMAT[point.type], float(raw_value))
    else:
        bits = 16 * point.width
        number = int(raw_value.to_integral_value(rounding=ROUND_FLOOR)) % (1 << bits)
        raw = number.to_bytes(bits // 8, "big")
    return list(struct.unpack(f">{point.width}H", _to_wire(point, raw)))


def _point_decoder(point: PointSpec, start: int) -> _PointDecoder:
    """A closure that turns the block's bytes into this point's exact value."""
    size = 2 * point.width
    end = start + size
    reorder = point.word_order == "little" or point.byte_order == "little"
    scale, offset = point.scale, point.offset
    identity = scale == 1 and offset == 0
    mul, add = _EXACT.multiply, _EXACT.add

    if point.type == "float32":
        memo_get, slow = _F32_MEMO.get, _shortest_float32

        def as_float32(buf: bytes) -> Decimal:
            raw = buf[start:end]
            if reorder:
                raw = _from_wire(point, raw)
            value = memo_get(raw) or slow(raw)
            return value if identity else add(mul(value, scale), offset)
        return as_float32

    unpack = struct.Struct(">" + _FORMAT[point.type]).unpack
    is_float = point.type == "float64"

    def as_number(buf: bytes) -> Decimal:
        raw = buf[start:end]
        (number,) = unpack(_from_wire(point, raw) if reorder else raw)
        if is_float:
            if not math.isfinite(number):
                raise ValueError(f"value is {number}, not a number")
            value = Decimal(repr(number)) if number else _ZERO
        else:
            value = Decimal(number)
        return value if identity else add(mul(value, scale), offset)
    return as_number


def _from_wire(point: PointSpec, raw: bytes) -> bytes:
    """Wire bytes of a value -> its big-endian bytes (the reverse of :func:`_to_wire`)."""
    if point.byte_order == "little":
        raw = _swap_pairs(raw)
    if point.word_order == "little":
        raw = b"".join(raw[i:i + 2] for i in range(len(raw) - 2, -1, -2))
    return raw


def _to_wire(point: PointSpec, raw: bytes) -> bytes:
    if point.word_order == "little":
        raw = b"".join(raw[i:i + 2] for i in range(len(raw) - 2, -1, -2))
    if point.byte_order == "little":
        raw = _swap_pairs(raw)
    return raw


def _swap_pairs(raw: bytes) -> bytes:
    swapped = bytearray(raw)
    swapped[0::2], swapped[1::2] = raw[1::2], raw[0::2]
    return bytes(swapped)


def _where(point: PointSpec) -> str:
    return f"{point.channel} ({point.table} {point.address}, {point.type})"
