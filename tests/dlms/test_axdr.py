"""A-XDR ``Data``: published bytes, exact round trips, garbage, streaming, typed reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.axdr import (
    Array,
    ArrayStream,
    Structure,
    TruncatedData,
    TypeDescription,
)
from gateway.errors import ProtocolError

# The first block of a load profile buffer read by a GET-Response-With-Datablock, as
# published in dlms-cosem's tests (tests/test_xdlms/test_get.py, a recorded meter
# reply): an array of 1440 entries {date-time as octet-string, status unsigned, two
# double-long-unsigned}; after the first entry the date-time is null-data (the meter
# leaves out what follows from the capture period). The block ends inside entry 78.
FIRST_ENTRY = bytes.fromhex("0204090c07e30c1304020000" "00ffc400" "1106" "06000005ed" "0600000654")
NEXT_ENTRY = bytes.fromhex("0204" "00" "1106" "06000005ed" "0600000654")
PROFILE_BLOCK_1 = bytes.fromhex("018205a0") + FIRST_ENTRY + NEXT_ENTRY * 76 + NEXT_ENTRY[:10]


@pytest.mark.parametrize(("wire", "value"), [
    # dlms-cosem tests/test_xdlms/test_get.py: GET-Response data 5009.
    ("0600001391", axdr.DoubleLongUnsigned(5009)),
    # dlms-cosem tests/test_xdlms/test_selective_access.py: capture object of the clock.
    ("020412000809060000010000ff0f02120000", Structure((
        axdr.LongUnsigned(8), axdr.OctetString(bytes.fromhex("0000010000ff")),
        axdr.Integer(2), axdr.LongUnsigned(0)))),
    # An empty array: "all columns" in a range descriptor (same source).
    ("0100", Array(())),
    ("00", axdr.NullData()),
    ("ff", axdr.DontCare()),
    ("0301", axdr.Boolean(True)),
    ("0300", axdr.Boolean(False)),
    ("040bfe20", axdr.BitString(11, b"\xfe\x20")),
    ("05ffffffff", axdr.DoubleLong(-1)),
    ("0a03414243", axdr.VisibleString(b"ABC")),
    ("0c02c3a9", axdr.Utf8String("é".encode())),
    ("0d12", axdr.Bcd(0x12)),
    ("0ffd", axdr.Integer(-3)),
    ("10fc18", axdr.Long(-1000)),
    ("1105", axdr.Unsigned(5)),
    ("12ffff", axdr.LongUnsigned(65535)),
    ("14ffffffffffffffff", axdr.Long64(-1)),
    ("15000000e8d4a51000", axdr.Long64Unsigned(10**12)),
    ("161e", axdr.Enum(30)),
    ("173dcccccd", axdr.Float32(bytes.fromhex("3dcccccd"))),
    ("183fb999999999999a", axdr.Float64.of(0.1)),
    ("1907e30c1304020000" "00ffc400", axdr.DateTimeData(bytes.fromhex("07e30c130402000000ffc400"))),
    ("1a07e30c13ff", axdr.DateData(bytes.fromhex("07e30c13ff"))),
    ("1b02000000", axdr.TimeData(bytes.fromhex("02000000"))),
])
def test_known_encodings(wire: str, value: axdr.Data) -> None:
    assert axdr.decode(bytes.fromhex(wire)) == value
    assert axdr.encode(value).hex() == wire


def test_published_profile_block_decodes_as_a_stream() -> None:
    stream = ArrayStream()
    entries = stream.feed(PROFILE_BLOCK_1)
    assert len(entries) == 77 and not stream.done  # 1440 announced, entry 78 cut
    first = axdr.as_items(entries[0], count=4)
    assert axdr.as_bytes(first[0]) == bytes.fromhex("07e30c130402000000ffc400")
    assert [axdr.as_int(v) for v in first[1:]] == [6, 1517, 1620]
    assert isinstance(axdr.as_items(entries[1])[0], axdr.NullData)
    with pytest.raises(TruncatedData):
        axdr.decode(PROFILE_BLOCK_1)
    with pytest.raises(ProtocolError, match="1363 elements missing"):
        stream.close()


@pytest.mark.parametrize(("n", "wire"), [
    (0, "00"), (0x7F, "7f"), (0x80, "8180"), (0xFF, "81ff"), (0x100, "820100"),
    (0xFFFF, "82ffff"), (0x10000, "8400010000"),
])
def test_lengths(n: int, wire: str) -> None:
    assert axdr.encode_length(n).hex() == wire
    assert axdr.read_length(bytes.fromhex(wire), 0) == (n, len(wire) // 2)


def test_long_octet_string_uses_the_long_length_forms() -> None:
    for size, head in ((200, "0981c8"), (1000, "098203e8")):
        wire = axdr.encode(axdr.OctetString(bytes(size)))
        assert wire.hex().startswith(head)
        assert axdr.decode(wire) == axdr.OctetString(bytes(size))


def test_non_minimal_length_is_accepted_and_reencoded_short() -> None:
    wire = bytes.fromhex("0981020102")
    assert axdr.decode(wire) == axdr.OctetString(b"\x01\x02")


@pytest.mark.parametrize(("wire", "message"), [
    ("", "offset 0"),
    ("07", "unknown Data tag 7"),
    ("0902aa", "cut"),
    ("060000", "cut"),
    ("0185", "0x85"),
    ("1100ff", "1 bytes left"),
    ("0101" * 40 + "00", "deeper than 32"),
])
def test_malformed(wire: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        axdr.decode(bytes.fromhex(wire))


def test_typed_reads_name_expected_and_got() -> None:
    with pytest.raises(ProtocolError, match="expected octet-string, got long-unsigned"):
        axdr.as_bytes(axdr.LongUnsigned(1))
    with pytest.raises(ProtocolError, match="expected an integer, got null-data"):
        axdr.as_int(axdr.NullData())
    with pytest.raises(ProtocolError, match="expected 4 elements, got 2"):
        axdr.as_items(Structure((axdr.NullData(), axdr.NullData())), count=4)
    with pytest.raises(ProtocolError, match="not UTF-8"):
        axdr.as_str(axdr.Utf8String(b"\xff"))
    assert axdr.as_str(axdr.VisibleString(b"LGZ1234")) == "LGZ1234"
    assert axdr.as_float(axdr.Float32.of(0.5)) == 0.5
    assert axdr.as_bool(axdr.Boolean(True))


def test_tags_are_kept_not_just_values() -> None:
    assert axdr.Long(5) != axdr.Unsigned(5)
    assert axdr.encode(axdr.Long(5)) != axdr.encode(axdr.Unsigned(5))


def test_out_of_range_number_is_refused_on_encode() -> None:
    with pytest.raises(ValueError, match="does not fit a unsigned"):
        axdr.encode(axdr.Unsigned(256))


def test_float_nan_payload_survives() -> None:
    wire = bytes.fromhex("177fa00001")  # a signalling NaN with a payload
    assert axdr.encode(axdr.decode(wire)) == wire


# --- compact-array ----------------------------------------------------------------------

ROW = TypeDescription(axdr.Tag.STRUCTURE, 2, (TypeDescription(axdr.Tag.DOUBLE_LONG_UNSIGNED),
                                             TypeDescription(axdr.Tag.OCTET_STRING)))


def test_compact_array_round_trip() -> None:
    rows = (Structure((axdr.DoubleLongUnsigned(5), axdr.OctetString(b"ab"))),
            Structure((axdr.DoubleLongUnsigned(6), axdr.OctetString(b""))))
    packed = axdr.compact_array(ROW, rows)
    wire = axdr.encode(packed)
    # tag 19, description 02 02 06 09, contents length 12, then untagged elements
    assert wire.hex() == "13020206090c" "00000005" "026162" "00000006" "00"
    assert axdr.decode(wire) == packed
    assert axdr.compact_items(packed) == rows


def test_compact_array_of_fixed_arrays() -> None:
    desc = TypeDescription(axdr.Tag.ARRAY, 3, (TypeDescription(axdr.Tag.LONG_UNSIGNED),))
    item = Array((axdr.LongUnsigned(1), axdr.LongUnsigned(2), axdr.LongUnsigned(3)))
    packed = axdr.compact_array(desc, (item, item))
    # description: array of 3 long-unsigned; contents 12 bytes
    assert axdr.encode(packed).hex() == "1301000312" "0c" "000100020003" "000100020003"
    assert axdr.compact_items(axdr.decode(axdr.encode(packed))) == (item, item)


def test_compact_array_refuses_mismatch_and_cut_contents() -> None:
    with pytest.raises(ValueError, match="type description says"):
        axdr.compact_array(ROW, (axdr.Unsigned(1),))
    cut = axdr.CompactArray(ROW, bytes.fromhex("0000000502"))
    with pytest.raises(ProtocolError, match="element 0 is cut"):
        axdr.compact_items(cut)
    with pytest.raises(ProtocolError, match="not allowed in a compact-array"):
        axdr.decode(bytes.fromhex("131300"))


# --- properties ---------------------------------------------------------------------------

def _numbers() -> st.SearchStrategy[axdr.Data]:
    def of(cls: type[axdr.Number]) -> st.SearchStrategy[axdr.Data]:
        fmt = cls.FORMAT.format[-1]
        bits = cls.FORMAT.size * 8
        if fmt.islower():
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        else:
            lo, hi = 0, (1 << bits) - 1
        return st.integers(lo, hi).map(cls)
    return st.one_of([of(c) for c in (
        axdr.DoubleLong, axdr.DoubleLongUnsigned, axdr.Bcd, axdr.Integer, axdr.Long,
        axdr.Unsigned, axdr.LongUnsigned, axdr.Long64, axdr.Long64Unsigned, axdr.Enum)])


def _bit_strings() -> st.SearchStrategy[axdr.Data]:
    return st.integers(0, 40).flatmap(
        lambda n: st.binary(min_size=(n + 7) // 8, max_size=(n + 7) // 8).map(
            lambda b: axdr.BitString(n, b)))


LEAVES: st.SearchStrategy[axdr.Data] = st.one_of(
    st.just(axdr.NullData()), st.just(axdr.DontCare()), st.booleans().map(axdr.Boolean),
    _numbers(), _bit_strings(),
    st.binary(max_size=300).map(axdr.OctetString), st.binary(max_size=20).map(axdr.VisibleString),
    st.binary(max_size=20).map(axdr.Utf8String),
    st.binary(min_size=4, max_size=4).map(axdr.Float32),
    st.binary(min_size=8, max_size=8).map(axdr.Float64),
    st.binary(min_size=12, max_size=12).map(axdr.DateTimeData),
    st.binary(min_size=5, max_size=5).map(axdr.DateData),
    st.binary(min_size=4, max_size=4).map(axdr.TimeData),
)
DATA: st.SearchStrategy[axdr.Data] = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=6).map(lambda x: Array(tuple(x))),
                            st.lists(inner, max_size=6).map(lambda x: Structure(tuple(x)))),
    max_leaves=40)


@given(DATA)
def test_round_trip(value: axdr.Data) -> None:
    wire = axdr.encode(value)
    assert axdr.decode(wire) == value
    assert axdr.encode(axdr.decode(wire)) == wire


@given(st.binary(max_size=64))
def test_garbage_raises_only_protocol_error(wire: bytes) -> None:
    try:
        value = axdr.decode(wire)
    except ProtocolError:
        return
    assert axdr.decode(axdr.encode(value)) == value


@given(st.lists(DATA, max_size=20), st.integers(1, 50))
@settings(max_examples=50)
def test_stream_in_any_chunking_equals_whole_decode(items: list[axdr.Data], chunk: int) -> None:
    wire = axdr.encode(Array(tuple(items)))
    stream, got = ArrayStream(), []
    for i in range(0, len(wire), chunk):
        got += stream.feed(wire[i:i + chunk])
    stream.close()
    assert stream.done and got == items


def test_stream_refuses_bytes_after_the_array() -> None:
    with pytest.raises(ProtocolError, match="after the last array element"):
        ArrayStream().feed(bytes.fromhex("0101110500"))
    with pytest.raises(ProtocolError, match="expected an array"):
        ArrayStream().feed(bytes.fromhex("0201"))


def test_a_large_profile_buffer_decodes_whole() -> None:
    # 7 days of a 4-channel 15-minute profile: 672 rows... times 10. Its speed is measured
    # by benchmarks/dlms_profile.py, not timed here (a loaded machine would fail a timing).
    row = Structure((axdr.OctetString(bytes(12)), axdr.Unsigned(0),
                     axdr.DoubleLongUnsigned(1517), axdr.DoubleLongUnsigned(1620),
                     axdr.DoubleLongUnsigned(7), axdr.DoubleLongUnsigned(9)))
    wire = axdr.encode(Array((row,) * 6720))
    value = axdr.decode(memoryview(wire))
    items = axdr.as_items(value)
    assert len(items) == 6720
    assert items[-1] == row and items[0] == row
