"""Load profile rows as readings: columns found by object, null-data compression undone,
values scaled exactly, the AMR status byte and the clock status mapped to flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.cosem import (
    CaptureObject,
    ClockStatus,
    CosemDateTime,
    DlmsUnit,
    Obis,
    ScalerUnit,
)
from gateway.drivers.dlms.profile import (
    CLOCK_ADJUSTED,
    POWER_DOWN,
    ProfileLayout,
    WantedChannel,
    flags_of_status,
    rows_to_readings,
)
from gateway.errors import ProtocolError
from gateway.model import Flag, Unit

CET = ZoneInfo("Europe/Berlin")
IMPORT = Obis.parse("1.0.1.8.0.255")
EXPORT = Obis.parse("1.0.2.8.0.255")
STATUS = Obis.parse("0.0.96.10.1.255")
CAPTURE = [CaptureObject(8, Obis.parse("0.0.1.0.0.255"), 2), CaptureObject(1, STATUS, 2),
           CaptureObject(3, IMPORT, 2), CaptureObject(3, EXPORT, 2)]
WANTED = [WantedChannel("1.0.1.8.0.255", IMPORT, 2, Unit.WH),
          WantedChannel("1.0.2.8.0.255", EXPORT, 2, Unit.KWH)]


def layout() -> ProfileLayout:
    return ProfileLayout.build(CAPTURE, WANTED, status_obis=STATUS, device="m")


def stamp(at: datetime, status: ClockStatus | None = None) -> axdr.Data:
    return CosemDateTime.from_datetime(at.astimezone(CET), status=status).to_data()


def row(*items: axdr.Data) -> axdr.Structure:
    return axdr.Structure(tuple(items))


def test_rows_become_readings_at_capture_times_in_the_stored_units() -> None:
    t0 = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)  # across the CET -> CEST change
    buffer = axdr.Array((
        row(stamp(t0), axdr.Unsigned(0), axdr.DoubleLongUnsigned(123456),
            axdr.DoubleLongUnsigned(7)),
        row(axdr.NullData(), axdr.Unsigned(POWER_DOWN), axdr.DoubleLongUnsigned(123470),
            axdr.NullData()),
        row(stamp(t0 + timedelta(minutes=30)), axdr.Unsigned(CLOCK_ADJUSTED),
            axdr.DoubleLongUnsigned(123501), axdr.DoubleLongUnsigned(9)),
    ))
    scalers = {"1.0.1.8.0.255": ScalerUnit(0, DlmsUnit.WATT_HOUR),
               "1.0.2.8.0.255": ScalerUnit(1, DlmsUnit.WATT_HOUR)}
    got = rows_to_readings(buffer, layout(), scalers, meter_id="M1", period_s=900, zone=CET,
                           device="m")
    imports = [(r.at, r.value, r.flags) for r in got if r.channel == "1.0.1.8.0.255"]
    assert imports == [
        (t0, Decimal(123456), 0),
        (t0 + timedelta(minutes=15), Decimal(123470), Flag.POWER_FAIL),
        (t0 + timedelta(minutes=30), Decimal(123501), Flag.CLOCK_ADJUSTED),
    ]
    exports = [(r.value, r.unit) for r in got if r.channel == "1.0.2.8.0.255"]
    # 7 x 10 Wh = 0.07 kWh exactly; the null-data value repeats the row before.
    assert exports == [(Decimal("0.07"), Unit.KWH), (Decimal("0.07"), Unit.KWH),
                       (Decimal("0.09"), Unit.KWH)]
    assert all(r.meter_at == r.at for r in got)


def test_an_invalid_or_doubtful_capture_time_is_clock_untrusted() -> None:
    t0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    buffer = axdr.Array((row(stamp(t0, ClockStatus.DOUBTFUL), axdr.Unsigned(0),
                             axdr.DoubleLongUnsigned(1), axdr.DoubleLongUnsigned(1)),))
    scalers = {w.channel: ScalerUnit(0, DlmsUnit.WATT_HOUR) for w in WANTED}
    got = rows_to_readings(buffer, layout(), scalers, meter_id="M1", period_s=900, zone=CET,
                           device="m")
    assert {r.flags for r in got} == {Flag.CLOCK_UNTRUSTED}


def test_status_bits() -> None:
    assert flags_of_status(0x02) == Flag.CLOCK_UNTRUSTED
    assert flags_of_status(0x04) == Flag.METER_INVALID
    assert flags_of_status(0x01) == Flag.METER_INVALID
    assert flags_of_status(0x08) == 0  # daylight saving: information, not a problem
    assert flags_of_status(0xA0) == Flag.POWER_FAIL | Flag.CLOCK_ADJUSTED


def test_a_profile_without_the_wanted_column_or_clock_is_refused_with_what_it_has() -> None:
    with pytest.raises(ProtocolError, match=r"does not capture 1\.0\.2\.8\.0\.255 \(it "
                                            r"captures 0\.0\.1\.0\.0\.255"):
        ProfileLayout.build(CAPTURE[:3], WANTED, status_obis=STATUS, device="m")
    with pytest.raises(ProtocolError, match="captures no clock"):
        ProfileLayout.build(CAPTURE[1:], WANTED, status_obis=STATUS, device="m")


def test_a_row_of_the_wrong_width_or_a_first_row_without_time_is_refused() -> None:
    scalers = {w.channel: ScalerUnit(0, DlmsUnit.WATT_HOUR) for w in WANTED}
    short = axdr.Array((row(axdr.NullData(), axdr.Unsigned(0)),))
    with pytest.raises(ProtocolError, match="row 1 has 2 values"):
        rows_to_readings(short, layout(), scalers, meter_id="M", period_s=900, zone=CET,
                         device="m")
    timeless = axdr.Array((row(axdr.NullData(), axdr.Unsigned(0), axdr.DoubleLongUnsigned(1),
                               axdr.DoubleLongUnsigned(1)),))
    with pytest.raises(ProtocolError, match="row 1 has no time"):
        rows_to_readings(timeless, layout(), scalers, meter_id="M", period_s=900, zone=CET,
                         device="m")


def test_a_unit_of_another_dimension_is_refused() -> None:
    scalers = {"1.0.1.8.0.255": ScalerUnit(0, DlmsUnit.VOLT),
               "1.0.2.8.0.255": ScalerUnit(0, DlmsUnit.WATT_HOUR)}
    buffer = axdr.Array((row(stamp(datetime(2026, 1, 5, tzinfo=UTC)), axdr.Unsigned(0),
                             axdr.DoubleLongUnsigned(1), axdr.DoubleLongUnsigned(1)),))
    with pytest.raises(ProtocolError, match="in V on the meter, but the device profile "
                                            "stores it in Wh"):
        rows_to_readings(buffer, layout(), scalers, meter_id="M", period_s=900, zone=CET,
                         device="m")
