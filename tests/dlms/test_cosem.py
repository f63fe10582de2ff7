"""COSEM values: OBIS, date-times and their deviation sign, scaler/unit, descriptors."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.cosem import (
    CLOCK,
    AttributeDescriptor,
    CaptureObject,
    ClockStatus,
    CosemClass,
    CosemDateTime,
    DeviationSign,
    DlmsUnit,
    Obis,
    ScalerUnit,
    UnmappedUnit,
)
from gateway.errors import ProtocolError
from gateway.model import Unit

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("text", ["1.0.1.8.0.255", "1-0:1.8.0*255", "1-0:1.8.0.255",
                                  "1-0:1.8.0", " 1.0.1.8.0.255 "])
def test_obis_notations(text: str) -> None:
    obis = Obis.parse(text)
    assert obis == Obis(1, 0, 1, 8, 0, 255)
    assert str(obis) == "1.0.1.8.0.255"
    assert obis.reduced() == "1-0:1.8.0*255"
    assert obis.to_bytes().hex() == "0100010800ff"


@pytest.mark.parametrize("bad", ["1.0.1.8.0", "1.0.1.8.0.256", "a.b.c.d.e.f", "1-0:1.8", ""])
def test_obis_refuses_bad_text(bad: str) -> None:
    with pytest.raises(ValueError):
        Obis.parse(bad)


def test_obis_from_wire() -> None:
    assert Obis.from_bytes(bytes.fromhex("0000010000ff")) == CLOCK
    with pytest.raises(ProtocolError, match="6 bytes"):
        Obis.from_bytes(b"\x00" * 5)


@given(st.tuples(*[st.integers(0, 255)] * 6))
def test_obis_round_trips(groups: tuple[int, int, int, int, int, int]) -> None:
    obis = Obis(*groups)
    assert Obis.parse(str(obis)) == obis == Obis.parse(obis.reduced())
    assert Obis.from_bytes(obis.to_bytes()) == obis


# --- date-time ------------------------------------------------------------------------

# A load profile entry's time, recorded from a meter (dlms-cosem tests/test_xdlms/
# test_get.py): 2019-12-19 02:00:00.00, Thursday, deviation -60 (CET), status 0.
PUBLISHED = bytes.fromhex("07e30c130402000000ffc400")
# The range descriptor of dlms-cosem tests/test_xdlms/test_selective_access.py:
# 2017-10-01 00:00, Sunday, hundredths 0, deviation -60, daylight saving active.
PUBLISHED_DST = bytes.fromhex("07e10a0107000000" "00ffc480")


def test_published_date_time() -> None:
    dt = CosemDateTime.from_bytes(PUBLISHED)
    assert (dt.year, dt.month, dt.day, dt.weekday, dt.hour, dt.deviation) == (
        2019, 12, 19, 4, 2, -60)
    assert dt.status == ClockStatus.NONE
    assert dt.to_datetime() == datetime(2019, 12, 19, 1, 0, tzinfo=UTC)
    assert dt.to_datetime(sign=DeviationSign.ISO) == datetime(2019, 12, 19, 3, 0, tzinfo=UTC)
    assert dt.to_bytes() == PUBLISHED
    dst = CosemDateTime.from_bytes(PUBLISHED_DST)
    assert dst.status == ClockStatus.DAYLIGHT_SAVING and dst.hundredths == 0
    assert dst.to_bytes() == PUBLISHED_DST


def test_blue_book_sign_from_an_aware_datetime() -> None:
    # dlms-cosem tests/test_xdlms/test_selective_access.py encodes
    # 2020-01-01T00:03:00+02:00 as deviation 0xFF88 (-120), the Blue Book sign.
    at = datetime(2020, 1, 1, 0, 3, tzinfo=timezone(timedelta(hours=2)))
    dt = CosemDateTime.from_datetime(at)
    published = bytes.fromhex("07e40101ff00030000ff8800")  # weekday left unspecified
    assert dt.to_bytes() == published[:4] + b"\x03" + published[5:]  # a Wednesday
    assert CosemDateTime.from_datetime(at, sign=DeviationSign.ISO).deviation == 120
    assert dt.to_datetime() == at


def test_summer_time_sets_the_flag_and_round_trips() -> None:
    at = datetime(2024, 7, 1, 12, 30, 15, 250_000, tzinfo=BERLIN)
    dt = CosemDateTime.from_datetime(at)
    assert dt.deviation == -120 and dt.status == ClockStatus.DAYLIGHT_SAVING
    assert dt.hundredths == 25
    assert dt.to_datetime() == at.astimezone(UTC)


def test_unspecified_deviation_needs_the_zone_and_uses_the_dst_flag() -> None:
    # 2024-10-27 02:30 happens twice in Berlin; the DST bit tells which.
    summer = CosemDateTime(2024, 10, 27, 7, 2, 30, 0, 0, None, ClockStatus.DAYLIGHT_SAVING)
    winter = CosemDateTime(2024, 10, 27, 7, 2, 30, 0, 0, None, ClockStatus.NONE)
    assert summer.to_datetime(zone=BERLIN) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    assert winter.to_datetime(zone=BERLIN) == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    with pytest.raises(ProtocolError, match="no deviation"):
        winter.to_datetime()
    assert summer.to_bytes()[9:11] == b"\x80\x00"


def test_not_specified_fields() -> None:
    raw = bytes.fromhex("ffffffffff" "0a00" "00ff" "8000" "ff")
    dt = CosemDateTime.from_bytes(raw)
    assert dt.year is None and dt.month is None and dt.weekday is None
    assert dt.hour == 10 and dt.hundredths is None
    assert dt.deviation is None and dt.status is None
    assert dt.to_bytes() == raw
    with pytest.raises(ProtocolError, match="not an instant"):
        dt.to_datetime(zone=BERLIN)


def test_dst_and_last_day_patterns_are_kept_but_are_not_instants() -> None:
    raw = bytes.fromhex("07e8fefeff020000008000ff")  # DST begin month, last day
    dt = CosemDateTime.from_bytes(raw)
    assert (dt.month, dt.day) == (0xFE, 0xFE) and dt.to_bytes() == raw
    with pytest.raises(ProtocolError, match="pattern"):
        dt.to_datetime()


@pytest.mark.parametrize(("raw", "field"), [
    ("07e30d13040200000000000000"[:24], "month 13"),
    ("07e30c13080200000000000000"[:24], "weekday 8"),
    ("07e30c13041800000000000000"[:24], "hour 24"),
    ("07e30c130402000064000000"[:24], "hundredths 100"),
    ("07e30c1304020000000400000"[:24], "deviation 1024"),
])
def test_out_of_range_fields_are_protocol_errors(raw: str, field: str) -> None:
    with pytest.raises(ProtocolError, match=field):
        CosemDateTime.from_bytes(bytes.fromhex(raw))


def test_impossible_date_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="day is out of range"):
        CosemDateTime(2023, 2, 30, None, 0, 0, 0, 0, 0, None).to_datetime()


def test_date_time_from_data() -> None:
    assert CosemDateTime.from_data(axdr.OctetString(PUBLISHED)).year == 2019
    assert CosemDateTime.from_data(axdr.DateTimeData(PUBLISHED)).year == 2019
    with pytest.raises(ProtocolError, match="expected octet-string"):
        CosemDateTime.from_data(axdr.Unsigned(1))


def _maybe(strategy: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    return st.none() | strategy


DATE_TIMES = st.builds(
    CosemDateTime,
    _maybe(st.integers(0, 0xFFFE)), _maybe(st.integers(1, 12) | st.sampled_from([0xFD, 0xFE])),
    _maybe(st.integers(1, 31) | st.sampled_from([0xFD, 0xFE])), _maybe(st.integers(1, 7)),
    _maybe(st.integers(0, 23)), _maybe(st.integers(0, 59)), _maybe(st.integers(0, 59)),
    _maybe(st.integers(0, 99)), _maybe(st.integers(-720, 720)),
    st.none() | st.integers(0, 0xFE).map(ClockStatus))


@given(DATE_TIMES)
def test_date_time_bytes_round_trip(dt: CosemDateTime) -> None:
    assert CosemDateTime.from_bytes(dt.to_bytes()) == dt


@given(st.binary(min_size=12, max_size=12))
def test_date_time_garbage_raises_only_protocol_error(raw: bytes) -> None:
    try:
        dt = CosemDateTime.from_bytes(raw)
    except ProtocolError:
        return
    assert dt.to_bytes() == raw
    with contextlib.suppress(ProtocolError):
        dt.to_datetime(zone=BERLIN)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                    timezones=st.sampled_from([UTC, BERLIN, ZoneInfo("America/New_York"),
                                               timezone(timedelta(hours=-9, minutes=-30))])),
       st.sampled_from(DeviationSign))
def test_instant_round_trip_in_both_conventions(at: datetime, sign: DeviationSign) -> None:
    at = at.replace(microsecond=at.microsecond // 10_000 * 10_000)
    at = at.astimezone(UTC).astimezone(at.tzinfo)  # a wall time that exists (no DST gap)
    dt = CosemDateTime.from_datetime(at, sign=sign)
    assert CosemDateTime.from_bytes(dt.to_bytes()) == dt
    assert dt.to_datetime(sign=sign) == at.astimezone(UTC)  # PEP 495: compare in UTC
    flagged = dt.status is not None and ClockStatus.DAYLIGHT_SAVING in dt.status
    assert flagged == bool(at.dst())


# --- scaler/unit ----------------------------------------------------------------------

@pytest.mark.parametrize(("value", "scaler", "expected"), [
    (axdr.DoubleLongUnsigned(12345), -3, "12.345"),
    (axdr.DoubleLongUnsigned(12345), 0, "12345"),
    (axdr.Long64Unsigned(2**64 - 1), -3, "18446744073709551.615"),
    (axdr.Long(-5), 2, "-5E+2"),
    (axdr.Float32.of(0.1), 0, "0.1"),
    (axdr.Float32.of(0.1), -2, "0.001"),
    (axdr.Float64.of(230.07), 0, "230.07"),
])
def test_scaler_applies_exactly(value: axdr.Data, scaler: int, expected: str) -> None:
    result = ScalerUnit(scaler, DlmsUnit.WATT_HOUR).apply(value)
    assert result == Decimal(expected)
    assert str(result) == expected


def test_scaler_refuses_non_numbers() -> None:
    with pytest.raises(ProtocolError, match="not a number"):
        ScalerUnit(0, DlmsUnit.WATT).apply(axdr.Float32.of(float("nan")))
    with pytest.raises(ProtocolError, match="expected an integer"):
        ScalerUnit(0, DlmsUnit.WATT).apply(axdr.OctetString(b""))


def test_scaler_unit_from_data_and_units() -> None:
    wire = bytes.fromhex("02020ffd161e")  # {integer -3, enum 30 (Wh)}
    su = ScalerUnit.from_data(axdr.decode(wire))
    assert su == ScalerUnit(-3, DlmsUnit.WATT_HOUR)
    assert axdr.encode(su.to_data()) == wire
    assert su.model_unit is Unit.WH
    assert ScalerUnit(0, DlmsUnit.WATT).model_unit is Unit.W
    assert ScalerUnit(0, DlmsUnit.COUNT).model_unit is Unit.COUNT
    with pytest.raises(UnmappedUnit, match=r"DLMS unit 9 \(CELSIUS\) has no gateway unit"):
        _ = ScalerUnit(0, DlmsUnit.CELSIUS).model_unit
    with pytest.raises(ProtocolError, match="unit 58 is not in the DLMS unit table"):
        ScalerUnit.from_data(axdr.decode(bytes.fromhex("02020f00163a")))


def test_unit_codes_of_the_blue_book_table() -> None:
    assert [DlmsUnit(c).name for c in (1, 7, 9, 13, 14, 27, 28, 29, 30, 31, 32, 33, 35, 44)] == [
        "YEAR", "SECOND", "CELSIUS", "CUBIC_METRE", "CUBIC_METRE_CORRECTED", "WATT",
        "VOLT_AMPERE", "VAR", "WATT_HOUR", "VOLT_AMPERE_HOUR", "VAR_HOUR", "AMPERE", "VOLT",
        "HERTZ"]


def test_descriptors() -> None:
    # dlms-cosem tests/test_xdlms/test_get.py: GET of 0.0.43.1.0.255 (class 1) attribute 2.
    assert AttributeDescriptor(CosemClass.DATA, Obis(0, 0, 43, 1, 0), 2).to_bytes().hex() == (
        "00010000" "2b0100ff02")
    capture = CaptureObject(CosemClass.CLOCK, CLOCK, 2, 0)
    assert axdr.encode(capture.to_data()).hex() == "020412000809060000010000ff0f02120000"
    assert CaptureObject.from_data(capture.to_data()) == capture
