"""Reference-day estimation through the pipeline and a real store: long gaps take the
shape of a measured day, their total stays the register's change, and a catch-up
replaces the estimates with measured values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from gateway.ingest.pipeline import Pipeline
from gateway.ingest.series import SeriesConfig
from gateway.model import IntervalReading, Kind, Quality, Reading, Unit
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
TZ = "America/Chicago"
ZONE = ZoneInfo(TZ)
MONDAY = datetime(2026, 3, 2, tzinfo=ZONE).astimezone(UTC)  # local midnight, Monday 2 March
#: The Monday after: Chicago moved to summer time on Sunday 8 March, so the reference
#: day (a week before) is on standard time and the gap's day on daylight time.
WEEK2 = datetime(2026, 3, 9, tzinfo=ZONE).astimezone(UTC)
NOW = MONDAY + timedelta(days=30)
BASE = SeriesConfig(meter_id="M1", channel=CH, unit=Unit.WH, interval_s=900,
                    max_gap_s=1800, max_power_w=Decimal(20_000))
SHAPED = msgspec.structs.replace(BASE, reference_day_after_s=4 * 3600)


def use_wh(minute_of_day: int) -> int:
    """A household: 20 Wh a quarter-hour at night, 200 in the evening peak (17-21 h)."""
    return 200 if 17 * 60 <= minute_of_day < 21 * 60 else 20


def reads(first: datetime, days: float, *, start_wh: int = 0,
          skip: tuple[datetime, datetime] | None = None) -> list[Reading]:
    """A read at every quarter-hour boundary; the local time of day drives the use."""
    out, wh = [], start_wh
    for i in range(int(days * 96) + 1):
        at = first + timedelta(minutes=15 * i)
        if skip is None or not skip[0] < at < skip[1]:
            out.append(Reading(meter_id="M1", channel=CH, at=at, value=Decimal(wh),
                               unit=Unit.WH, kind=Kind.CUMULATIVE))
        local = at.astimezone(ZONE)
        wh += use_wh(local.hour * 60 + local.minute)
    return out


async def run(path: Path, config: SeriesConfig, batches: list[list[Reading]]) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    pipeline = await Pipeline.open(store, [(config, TZ)])
    for batch in batches:
        await pipeline.feed(batch, source="test", now=NOW)
    return store


async def day(store: SqliteStore, first: datetime) -> list[IntervalReading]:
    return await store.intervals("M1", CH, first, first + timedelta(days=1))


async def test_a_long_gap_takes_the_shape_of_the_same_weekday_a_week_before(
        tmp_path: Path) -> None:
    week2 = WEEK2
    gap = (week2 + timedelta(hours=12), week2 + timedelta(hours=23))  # 12:00-23:00 local
    data = reads(MONDAY, 8)
    store = await run(tmp_path / "s.db", SHAPED, [
        [r for r in data if r.at <= week2], [r for r in data if r.at > week2 and not
                                              gap[0] < r.at < gap[1]]])
    got = {iv.start: iv for iv in await day(store, week2)}
    inside = [got[gap[0] + timedelta(minutes=15 * i)] for i in range(44)]  # 11 hours
    assert {iv.quality for iv in inside} == {Quality.ESTIMATED_REFERENCE_DAY}
    # the evening peak is where it was a week before, not smeared over the afternoon
    assert [iv.value for iv in inside] == [use_wh(12 * 60 + 15 * i) for i in range(44)]
    [daily] = await store.daily("M1", CH, week2.date(), week2.date())
    assert daily.value == sum(use_wh(m) for m in range(0, 1440, 15))  # exact total
    assert daily.estimated == 44
    await store.close()


async def test_without_a_measured_reference_a_long_gap_stays_linear(tmp_path: Path) -> None:
    gap = (MONDAY + timedelta(hours=12), MONDAY + timedelta(hours=23))
    store = await run(tmp_path / "s.db", SHAPED, [reads(MONDAY, 1, skip=gap)])
    inside = [iv for iv in await day(store, MONDAY) if gap[0] < iv.start < gap[1]]
    assert {iv.quality for iv in inside} == {Quality.ESTIMATED_LINEAR}
    values = [iv.value for iv in inside]
    assert max(values) - min(values) <= 1  # an even spread
    await store.close()


async def test_shorter_gaps_and_the_default_config_stay_linear(tmp_path: Path) -> None:
    week2 = WEEK2
    gap = (week2 + timedelta(hours=12), week2 + timedelta(hours=23))
    data = [r for r in reads(MONDAY, 8) if not gap[0] < r.at < gap[1]]
    store = await run(tmp_path / "s.db", BASE, [data])
    qualities = {iv.quality for iv in await day(store, week2)}
    assert Quality.ESTIMATED_REFERENCE_DAY not in qualities
    assert Quality.ESTIMATED_LINEAR in qualities
    await store.close()


async def test_a_catch_up_replaces_reference_day_estimates_with_measured_values(
        tmp_path: Path) -> None:
    week2 = WEEK2
    gap = (week2 + timedelta(hours=12), week2 + timedelta(hours=23))
    data = reads(MONDAY, 8)
    late = [r for r in data if gap[0] < r.at < gap[1]]
    store = await run(tmp_path / "s.db", SHAPED, [
        [r for r in data if r not in late], late])
    got = await day(store, week2)
    assert {iv.quality for iv in got} == {Quality.VALID}
    assert sum(iv.value for iv in got) == sum(use_wh(m) for m in range(0, 1440, 15))
    events = await store.events("M1")
    assert sum(e.kind == "backfill" for e in events) == len(late)
    await store.close()
