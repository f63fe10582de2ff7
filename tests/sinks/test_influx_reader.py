"""The InfluxDB reader gives what SqliteStore gives for the same intervals: the same
intervals back, and the same local-day rollups across DST days of both hemispheres'
rules, with estimated, questionable, edited and derived intervals and gaps mixed in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.model import Flag, IntervalReading, Quality, Unit
from gateway.sinks.influx_http import InfluxWriter
from gateway.sinks.influx_line import encode_lines
from gateway.store import SeriesInfo
from gateway.store.influx import InfluxReader
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
#: Each zone's 2026 spring-forward and fall-back days; Havana's clocks jump at midnight.
ZONES = {
    "America/Chicago": (date(2026, 3, 8), date(2026, 11, 1)),
    "Europe/Berlin": (date(2026, 3, 29), date(2026, 10, 25)),
    "America/Havana": (date(2026, 3, 8), date(2026, 11, 1)),
}


def quality_of_index(i: int) -> tuple[Quality, int, int | None]:
    """A spread of qualities, each with its flags and (for edits) the raw value."""
    if i % 17 == 0:
        return Quality.EDITED, int(Flag.EDITED), i
    if i % 13 == 0:
        return Quality.QUESTIONABLE, int(Flag.SPIKE), None
    if i % 11 == 0:
        return Quality.ESTIMATED_REFERENCE_DAY, int(Flag.REFERENCE_DAY), None
    if i % 7 == 0:
        return Quality.ESTIMATED_LINEAR, int(Flag.GAP_SPANNED), None
    if i % 5 == 0:
        return Quality.DERIVED, int(Flag.INTERPOLATED), None
    return Quality.VALID, 0, None


def readings(meter: str, tz: ZoneInfo, days: list[date]) -> list[IntervalReading]:
    """Quarter-hours of three local days around each given day, with gaps."""
    out: list[IntervalReading] = []
    for day in days:
        lo = datetime(day.year, day.month, day.day, tzinfo=tz) - timedelta(days=1)
        at = lo.astimezone(UTC)
        end = (lo + timedelta(days=3)).astimezone(UTC)
        i = 0
        while at < end:
            if i % 23 != 3:  # a missing interval now and then
                quality, flags, raw = quality_of_index(i)
                out.append(IntervalReading(
                    meter_id=meter, channel=CH, start=at, length_s=900, value=100 + i % 97,
                    unit=Unit.WH, quality=quality, flags=flags, raw=raw))
            at += timedelta(minutes=15)
            i += 1
    return out


@pytest.fixture
async def stores(tmp_path: Path, influx_url: str,
                 database: str) -> AsyncIterator[tuple[SqliteStore, InfluxReader, InfluxReader]]:
    sqlite = SqliteStore(tmp_path / "store.db")
    await sqlite.open()
    writer = InfluxWriter(influx_url, database, auth=None)
    await writer.open()
    await writer.ensure_database()
    for zone, days in ZONES.items():
        meter = "M-" + zone.split("/")[1]
        await sqlite.register_series(SeriesInfo(meter_id=meter, channel=CH, unit=Unit.WH,
                                                interval_s=900, timezone=zone))
        batch = readings(meter, ZoneInfo(zone), list(days))
        # A lone interval on a day of its own, in the middle of a later day.
        batch.append(IntervalReading(
            meter_id=meter, channel=CH, unit=Unit.WH, length_s=900, value=5,
            start=datetime(2026, 12, 24, 12, tzinfo=ZoneInfo(zone)).astimezone(UTC)))
        await sqlite.write_intervals(batch)
        assert (await writer.write(encode_lines(batch))).rejected == []
    await writer.close()
    readers = (InfluxReader(influx_url, database, auth=None),
               InfluxReader(influx_url, database, auth=None, aggregate=False))
    for reader in readers:
        await reader.open()
    yield sqlite, *readers
    for reader in readers:
        await reader.close()
    await sqlite.close()


@pytest.mark.parametrize("zone", list(ZONES))
async def test_intervals_and_daily_equal_sqlite(
    stores: tuple[SqliteStore, InfluxReader, InfluxReader], zone: str,
) -> None:
    sqlite, aggregated, summed = stores
    [series] = await sqlite.series("M-" + zone.split("/")[1])
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    expected = await sqlite.intervals(series.meter_id, CH, start, end)
    assert len(expected) > 500
    assert await aggregated.intervals(series, start, end) == expected
    some = await sqlite.intervals(series.meter_id, CH, expected[10].start, expected[300].start)
    assert await aggregated.intervals(series, expected[10].start, expected[300].start) == some

    first, last = date(2026, 1, 1), date(2026, 12, 31)
    days = await sqlite.daily(series.meter_id, CH, first, last)
    assert sorted({d.expected for d in days}) == [92, 96, 100] or zone == "America/Havana"
    assert sum(d.estimated and d.questionable and d.edited and d.derived > 0
               for d in days) > 0
    assert any(d.present < d.expected for d in days)
    assert await aggregated.daily(series, first, last) == days
    assert await summed.daily(series, first, last) == days
    spring, fall = ZONES[zone]
    for reader in (aggregated, summed):
        assert await reader.daily(series, spring, fall) == [
            d for d in days if spring <= d.day <= fall]
        assert await reader.daily(series, date(2026, 6, 1), date(2026, 6, 30)) == []
    # InfluxDB's tz() buckets are the local days, except where clocks jump at midnight.
    assert (aggregated.fallbacks > 0) == (zone == "America/Havana")
