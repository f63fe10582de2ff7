"""The decoder: every type and order, exact scale/offset, shortest floats, bad values."""

from __future__ import annotations

import struct
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.drivers.modbus import decode as decoding
from gateway.drivers.modbus.decode import BlockDecoder, decode, encode, shortest_float32
from gateway.drivers.modbus.plan import TcpLink, plan_reads
from gateway.errors import DataError

from .profiles_for_tests import make_point, make_profile

# (type, byte_order, word_order, registers as on the wire, expected value)
VECTORS = [
    ("uint16", "big", "big", [0x1234], "4660"),
    ("uint16", "little", "big", [0x3412], "4660"),
    ("int16", "big", "big", [0xFFFF], "-1"),
    ("int16", "big", "big", [0x8000], "-32768"),
    ("uint32", "big", "big", [0x0001, 0x0002], "65538"),
    ("uint32", "big", "little", [0x0002, 0x0001], "65538"),
    ("uint32", "little", "big", [0x3412, 0x7856], str(0x12345678)),
    ("uint32", "little", "little", [0x7856, 0x3412], str(0x12345678)),
    ("int32", "big", "big", [0xFFFF, 0xFFFE], "-2"),
    ("int32", "big", "little", [0xFFFE, 0xFFFF], "-2"),
    ("uint64", "big", "big", [0xFFFF] * 4, str(2**64 - 1)),
    ("uint64", "big", "little", [0x0004, 0x0003, 0x0002, 0x0001], str(0x0001000200030004)),
    ("int64", "big", "big", [0x8000, 0, 0, 0], str(-(2**63))),
    ("int64", "little", "little", [0xFFFF, 0xFFFF, 0xFFFF, 0xFF7F], str(2**63 - 1)),
    ("float32", "big", "big", [0x3F80, 0x0000], "1"),
    ("float32", "big", "big", [0xC020, 0x0000], "-2.5"),
    ("float32", "big", "big", [0x3DCC, 0xCCCD], "0.1"),
    ("float32", "big", "big", [0x4366, 0x199A], "230.1"),
    ("float32", "big", "big", [0x449A, 0x5225], "1234.567"),
    ("float32", "big", "big", [0x449A, 0x5226], "1234.5671"),
    ("float32", "big", "big", [0x4247, 0xF5C3], "49.99"),
    ("float32", "big", "big", [0x7F7F, 0xFFFF], "3.4028235e38"),
    ("float32", "big", "big", [0x0000, 0x0001], "1e-45"),  # smallest subnormal
    ("float32", "big", "big", [0x0080, 0x0000], "1.1754944e-38"),  # smallest normal
    ("float32", "big", "big", [0x8000, 0x0000], "0"),
    ("float32", "big", "little", [0x5225, 0x449A], "1234.567"),
    ("float32", "little", "big", [0x9A44, 0x2552], "1234.567"),
    ("float32", "little", "little", [0x2552, 0x9A44], "1234.567"),
    ("float64", "big", "big", [0x3FB9, 0x9999, 0x9999, 0x999A], "0.1"),
    ("float64", "big", "little", [0x999A, 0x9999, 0x9999, 0x3FB9], "0.1"),
    ("float64", "little", "big", [0xB93F, 0x9999, 0x9999, 0x9A99], "0.1"),
]


@pytest.mark.parametrize(("kind", "byte_order", "word_order", "registers", "expected"), VECTORS)
def test_known_vectors(kind: str, byte_order: str, word_order: str, registers: list[int],
                       expected: str) -> None:
    point = make_point(type=kind, byte_order=byte_order, word_order=word_order)
    value = decode(point, registers)
    assert value == Decimal(expected)
    assert str(value) == str(Decimal(expected)) or kind != "float32"
    assert encode(point, value) == registers or value == 0


@pytest.mark.parametrize(
    ("kind", "registers", "scale", "offset", "expected"),
    [
        ("uint16", [2301], "0.1", "0", "230.1"),
        ("int16", [0xFFFB], "0.01", "273.15", "273.10"),
        ("uint32", [0x0001, 0xE240], "0.001", "0", "123.456"),
        ("uint32", [0xFFFF, 0xFFFF], "0.01", "0", "42949672.95"),
        ("int32", [0xFFFF, 0xFFFF], "1000", "-5", "-1005"),
        ("uint64", [0xFFFF] * 4, "0.001", "0", "18446744073709551.615"),
        ("float32", [0x4366, 0x199A], "0.001", "0", "0.2301"),
        ("float32", [0x449A, 0x5225], "1000", "0", "1234567"),
        ("float64", [0x3FB9, 0x9999, 0x9999, 0x999A], "3", "0.7", "1.0"),
    ],
)
def test_scale_and_offset_are_exact(kind: str, registers: list[int], scale: str, offset: str,
                                    expected: str) -> None:
    point = make_point(type=kind, scale=scale, offset=offset)
    assert decode(point, registers) == Decimal(expected)


@pytest.mark.parametrize(
    ("kind", "registers"),
    [
        ("float32", [0x7FC0, 0x0000]),  # quiet NaN
        ("float32", [0xFFFF, 0xFFFF]),  # NaN with payload
        ("float32", [0x7F80, 0x0000]),  # +infinity
        ("float32", [0xFF80, 0x0000]),  # -infinity
        ("float64", [0x7FF8, 0, 0, 0]),
        ("float64", [0xFFF0, 0, 0, 0]),
    ],
)
def test_not_a_number_is_a_data_error_naming_the_point(kind: str, registers: list[int]) -> None:
    point = make_point(type=kind, channel="1.0.32.7.0.255", address=12)
    with pytest.raises(DataError) as caught:
        decode(point, registers)
    assert "1.0.32.7.0.255" in str(caught.value)
    assert "12" in str(caught.value)


def test_wrong_register_count_or_range_is_a_data_error() -> None:
    with pytest.raises(DataError):
        decode(make_point(type="uint32"), [1])
    with pytest.raises(DataError):
        decode(make_point(type="uint16"), [70000])


def test_block_decoder_maps_offsets_and_names_the_bad_point() -> None:
    profile = make_profile([
        {"address": 0, "type": "uint16", "scale": "0.1", "unit": "V"},
        {"address": 3, "type": "float32"},
        {"address": 5, "type": "int32", "word_order": "little"},
    ])
    (block,) = plan_reads(profile, TcpLink())
    decoder = BlockDecoder(block)
    registers = [2301, 0, 0, 0x4247, 0xF5C3, 0xFFFE, 0xFFFF]
    assert decoder(registers) == [Decimal("230.1"), Decimal("49.99"), Decimal(-2)]
    registers[3:5] = [0x7FC0, 0]
    with pytest.raises(DataError, match="c1"):
        decoder(registers)
    with pytest.raises(DataError):
        decoder(registers[:-1])


def _nearest_float32_bits(value: Fraction) -> int:
    """Round an exact rational to float32 (nearest, ties to even) without double rounding."""
    try:
        guess = struct.unpack(">I", struct.pack(">f", float(value)))[0]
    except OverflowError:
        return 0x7F800000  # beyond the largest float32 by more than half a step
    best: tuple[Fraction, int, int] | None = None
    for bits in (guess - 1, guess, guess + 1):
        if not 0 <= bits < 0x7F800000:
            continue
        exact = Fraction(struct.unpack(">f", struct.pack(">I", bits))[0])
        key = (abs(exact - value), bits & 1, bits)
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    st.integers(1, 0x7F7FFFFF),
    st.integers(1, 0x007FFFFF),  # subnormals
    st.integers(1, 254).map(lambda exponent: exponent << 23),  # powers of two
    st.integers(1, 254).map(lambda exponent: exponent << 23 | 1),  # just above them
    st.integers(1, 254).map(lambda exponent: (exponent << 23) - 1),  # just below them
))
def test_float32_decodes_to_the_shortest_round_tripping_decimal(bits: int) -> None:
    raw = bits.to_bytes(4, "big")
    decoding._F32_MEMO.clear()
    value = shortest_float32(raw)
    assert _nearest_float32_bits(Fraction(value)) == bits
    digits = len(value.as_tuple().digits)
    if digits > 1:
        # The (digits-1)-digit decimals on either side of the exact value do not convert
        # back; if none of those two does, no shorter decimal does.
        exact = Decimal(struct.unpack(">f", raw)[0])
        for rounding in (ROUND_FLOOR, ROUND_CEILING):
            shorter = Context(prec=digits - 1, rounding=rounding).plus(exact)
            assert _nearest_float32_bits(Fraction(shorter)) != bits


@settings(max_examples=500, deadline=None)
@given(st.floats(width=64, allow_nan=False, allow_infinity=False))
def test_float64_decodes_to_its_shortest_repr(number: float) -> None:
    point = make_point(type="float64")
    registers = list(struct.unpack(">4H", struct.pack(">d", number)))
    value = decode(point, registers)
    assert float(value) == number
    assert value == (Decimal(repr(number)) if number else 0)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["int16", "uint16", "int32", "uint32", "int64", "uint64"]),
    st.sampled_from(["big", "little"]), st.sampled_from(["big", "little"]),
    st.integers(0, 2**64 - 1), st.sampled_from(["1", "0.1", "0.001", "10"]),
    st.sampled_from(["0", "-40", "0.5"]),
)
def test_integers_round_trip_through_encode(kind: str, byte_order: str, word_order: str,
                                            seed: int, scale: str, offset: str) -> None:
    point = make_point(type=kind, byte_order=byte_order, word_order=word_order, scale=scale,
                       offset=offset)
    bits = 16 * point.width
    raw = seed % (1 << bits)
    if kind.startswith("int") and raw >= 1 << (bits - 1):
        raw -= 1 << bits
    value = Decimal(raw) * Decimal(scale) + Decimal(offset)
    registers = encode(point, value)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(point, registers) == value


def test_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "_F32_MEMO_MAX", 8)
    decoding._F32_MEMO.clear()
    for bits in range(0x3F800000, 0x3F800000 + 20):
        shortest_float32(bits.to_bytes(4, "big"))
    assert len(decoding._F32_MEMO) <= 8
