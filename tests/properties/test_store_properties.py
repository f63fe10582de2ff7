"""Properties issue 3 names: replays change nothing; DST days sum their intervals."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.pipeline import Pipeline
from gateway.ingest.series import SeriesConfig
from gateway.model import IntervalReading, Reading, Unit
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
T0 = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # local midnight in Chicago, spring forward
NOW = T0 + timedelta(days=30)


def cfg() -> SeriesConfig:
    return SeriesConfig(meter_id="M1", channel=CH, unit=Unit.KWH, interval_s=900,
                        snap_tolerance_s=5, max_gap_s=1800, modulus=Decimal(100_000_000),
                        max_power_w=Decimal(30_000))


def reads_from(steps: list[int], offsets: list[int]) -> list[Reading]:
    """Rising 5-digit kWh register reads every 5 minutes (give or take), wrapping at 100,000."""
    value, out = 99_990_000, []
    for i, (step, off) in enumerate(zip(steps, offsets, strict=True)):
        at = T0 + timedelta(seconds=300 * i + off)
        out.append(Reading(meter_id="M1", channel=CH, at=at,
                           value=Decimal(value % 100_000_000) / 1000, unit=Unit.KWH))
        value += step
    return out


async def stored(path: Path, batches: list[list[Reading]]) -> list[tuple[datetime, int, int]]:
    store = SqliteStore(path, synchronous="OFF")
    await store.open()
    pipeline = await Pipeline.open(store, [(cfg(), "America/Chicago")])
    for batch in batches:
        await pipeline.feed(batch, source="prop", now=NOW)
    got = await store.intervals("M1", CH, T0 - timedelta(days=1), T0 + timedelta(days=2))
    days = await store.daily("M1", CH, date(2026, 3, 7), date(2026, 3, 9))
    await store.close()
    for d in days:  # every day's total is the sum of its stored intervals
        lo = datetime(d.day.year, d.day.month, d.day.day, tzinfo=ZoneInfo("America/Chicago"))
        hi = lo + timedelta(days=1)  # wall-clock arithmetic: the next local midnight
        assert d.value == sum(iv.value for iv in got if lo <= iv.start < hi)
    return [(iv.start, iv.value, iv.flags) for iv in got]


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.integers(0, 2_000), min_size=20, max_size=60),
    data=st.data(),
)
def test_replaying_any_subset_in_any_order_changes_nothing(steps: list[int],
                                                           data: st.DataObject) -> None:
    offsets = data.draw(st.lists(st.integers(-4, 4), min_size=len(steps), max_size=len(steps)))
    reads = reads_from(steps, offsets)
    replay = data.draw(st.permutations(reads).flatmap(
        lambda perm: st.lists(st.sampled_from(perm), max_size=len(perm))))
    with tempfile.TemporaryDirectory() as tmp:
        once = asyncio.run(stored(Path(tmp) / "a.db", [reads]))
        twice = asyncio.run(stored(Path(tmp) / "b.db", [reads, replay]))
    assert once == twice
    assert sum(v for _, v, _ in once) >= 0


@settings(max_examples=10, deadline=None)
@given(values=st.lists(st.integers(0, 5_000), min_size=100, max_size=100),
       day=st.sampled_from([date(2026, 3, 8), date(2026, 11, 1), date(2026, 6, 1)]))
def test_dst_days_hold_their_quarter_hours_and_sum_them(values: list[int], day: date) -> None:
    tz = ZoneInfo("America/Chicago")
    lo = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    nxt = day + timedelta(days=1)
    hi = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
    n = int((hi - lo).total_seconds() // 900)
    assert n == {date(2026, 3, 8): 92, date(2026, 11, 1): 100, date(2026, 6, 1): 96}[day]

    async def go() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            from gateway.store import SeriesInfo

            store = SqliteStore(Path(tmp) / "s.db", synchronous="OFF")
            await store.open()
            await store.register_series(SeriesInfo(meter_id="M1", channel=CH, unit=Unit.WH,
                                                   interval_s=900, timezone="America/Chicago"))
            await store.write_intervals([
                IntervalReading(meter_id="M1", channel=CH, start=lo + timedelta(minutes=15 * i),
                                length_s=900, value=values[i], unit=Unit.WH)
                for i in range(n)])
            [d] = await store.daily("M1", CH, day, day)
            assert (d.expected, d.present, d.value) == (n, n, sum(values[:n]))
            await store.close()

    asyncio.run(go())
