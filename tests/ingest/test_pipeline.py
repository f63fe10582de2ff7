"""The pipeline commits intervals with the cursors that produced them, and rewinds on failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import SinkError
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.series import SeriesConfig
from gateway.model import SERIAL_NUMBER, Flag, Kind, Reading, Unit
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
T0 = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # local midnight in Chicago on the 25-hour day
NOW = T0 + timedelta(days=10)


def config(meter: str = "M1") -> SeriesConfig:
    return SeriesConfig(meter_id=meter, channel=CH, unit=Unit.KWH, interval_s=900,
                        snap_tolerance_s=5, max_gap_s=1800, modulus=Decimal(10_000_000),
                        max_power_w=Decimal(20_000), future_tolerance_s=120)


def reads(n: int, *, start_kwh: str = "9990.000", step_wh: int = 311, every_s: int = 300,
          meter: str = "M1") -> list[Reading]:
    """Register reads of a 4-digit kWh register (wraps at 10,000 kWh) every few minutes."""
    value = Decimal(start_kwh)
    out = []
    for i in range(n):
        out.append(Reading(meter_id=meter, channel=CH, at=T0 + timedelta(seconds=every_s * i),
                           value=value % 10_000, unit=Unit.KWH))
        value += Decimal(step_wh) / 1000
    return out


async def open_pipeline(path: Path) -> tuple[SqliteStore, Pipeline]:
    store = SqliteStore(path)
    await store.open()
    return store, await Pipeline.open(store, [(config(), "America/Chicago")])


async def stored_values(store: SqliteStore) -> list[tuple[datetime, int, int]]:
    got = await store.intervals("M1", CH, T0 - timedelta(days=1), T0 + timedelta(days=2))
    return [(iv.start, iv.value, iv.flags) for iv in got]


def poll(minutes: int, serial: str, kwh: str) -> list[Reading]:
    """One poll of a meter that reports its serial number beside its energy register."""
    at = T0 + timedelta(minutes=minutes)
    return [Reading(meter_id="M1", channel=SERIAL_NUMBER, at=at, value=Decimal(serial),
                    unit=Unit.COUNT, kind=Kind.IDENTITY),
            Reading(meter_id="M1", channel=CH, at=at, value=Decimal(kwh), unit=Unit.KWH)]


async def uninterrupted(path: Path, data: list[Reading]) -> list[tuple[datetime, int, int]]:
    """What a run without restarts or failures stores: the reference for the others."""
    store, pipeline = await open_pipeline(path)
    await pipeline.feed(data, source="test", now=NOW)
    straight = await stored_values(store)
    await store.close()
    return straight


async def test_intervals_are_exact_across_a_rollover(tmp_path: Path) -> None:
    store, pipeline = await open_pipeline(tmp_path / "s.db")
    data = reads(3 * 100 + 1)  # 25 hours of 5-minute reads, through 9999.999 -> 0000
    result = await pipeline.feed(data, source="test", now=NOW)
    assert result.intervals == 100 and result.quarantined == 0
    [day] = await store.daily("M1", CH, T0.date(), T0.date())
    assert (day.expected, day.present, day.value) == (100, 100, 300 * 311)
    wraps = [start for start, _, f in await stored_values(store) if f & Flag.ROLLOVER]
    assert len(wraps) == 1  # 9999.999 -> 0000.x: one interval carries the wrap
    await store.close()


async def test_restart_resumes_from_the_cursor_without_double_counting(tmp_path: Path) -> None:
    data = reads(200)
    straight = await uninterrupted(tmp_path / "a.db", data)

    store, pipeline = await open_pipeline(tmp_path / "b.db")
    await pipeline.feed(data[:77], source="test", now=NOW)  # stop mid-interval
    await store.close()
    store, pipeline = await open_pipeline(tmp_path / "b.db")
    again = await pipeline.feed(data[:77], source="test", now=NOW)  # a replay: nothing new
    assert again.written.inserted == 0
    await pipeline.feed(data[77:], source="test", now=NOW)
    assert await stored_values(store) == straight
    await store.close()


async def test_failed_write_rewinds_so_the_same_readings_can_be_fed_again(tmp_path: Path) -> None:
    data = reads(120)
    straight = await uninterrupted(tmp_path / "a.db", data)

    store, pipeline = await open_pipeline(tmp_path / "b.db")
    await pipeline.feed(data[:50], source="test", now=NOW)
    await store.close()  # the store goes away: a real failure, not a fake one
    with pytest.raises(SinkError, match="not open"):
        await pipeline.feed(data[50:], source="test", now=NOW)
    await store.open()
    await pipeline.feed(data[50:], source="test", now=NOW)
    assert await stored_values(store) == straight
    await store.close()


class FailingWrites:
    """The real store, but its ``fail_at``-th write fails as a full disk would: the
    moment of a real disk failure cannot be arranged deterministically here."""

    def __init__(self, store: SqliteStore, fail_at: int) -> None:
        self._store = store
        self._fail_at = fail_at
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write_intervals(self, batch: Any, **kw: Any) -> Any:
        self.writes += 1
        if self.writes == self._fail_at:
            raise SinkError("database or disk is full", retryable=True)
        return await self._store.write_intervals(batch, **kw)


async def test_feed_batches_rewinds_to_the_first_uncommitted_batch(tmp_path: Path) -> None:
    data = reads(240)
    batches = [data[i:i + 40] for i in range(0, 240, 40)]
    store, pipeline = await open_pipeline(tmp_path / "a.db")
    total = await pipeline.feed_batches(batches, source="test", now=NOW)
    assert total.readings == 240 and total.intervals == 79
    straight = await stored_values(store)
    await store.close()

    store = SqliteStore(tmp_path / "b.db")
    await store.open()
    failing = FailingWrites(store, fail_at=3)
    pipeline = await Pipeline.open(failing, [(config(), "America/Chicago")])  # type: ignore[arg-type]
    with pytest.raises(SinkError, match="disk is full") as err:
        await pipeline.feed_batches(batches, source="test", now=NOW)
    assert err.value.__notes__ == ["readings committed before the failure: 80"]
    # Batches 3 and 4 were processed (one in flight, one waiting) and are undone:
    # feeding from reading 80 on gives exactly what the uninterrupted run stored.
    await pipeline.feed_batches(batches[2:], source="test", now=NOW)
    assert await stored_values(store) == straight
    await store.close()


async def test_unknown_series_is_quarantined_and_instant_values_skipped(tmp_path: Path) -> None:
    store, pipeline = await open_pipeline(tmp_path / "s.db")
    stray = reads(1, meter="M9")
    power = Reading(meter_id="M1", channel="1.0.16.7.0.255", at=T0, value=Decimal("1.5"),
                    unit=Unit.KW, kind=Kind.INSTANT)
    result = await pipeline.feed([*stray, power], source="test", now=NOW)
    assert (result.quarantined, result.skipped) == (1, 1)
    [item] = await store.quarantined()
    assert "M9" in item.reason and item.source == "test"
    await store.close()


async def test_a_read_from_the_future_is_quarantined_not_used(tmp_path: Path) -> None:
    store, pipeline = await open_pipeline(tmp_path / "s.db")
    data = reads(10)
    result = await pipeline.feed(data, source="poll", now=T0 + timedelta(minutes=20))
    assert result.quarantined == 5  # reads after now + 120 s: 25, 30 ... 45 minutes
    assert all("ahead of the gateway clock" in q.reason for q in await store.quarantined())
    await store.close()


async def test_an_absurd_value_is_quarantined_and_other_channels_lose_nothing(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    other = "1.0.15.8.0.255"
    pipeline = await Pipeline.open(store, [
        (config(), "UTC"),
        (SeriesConfig(meter_id="M1", channel=other, unit=Unit.KWH, interval_s=900), "UTC"),
    ])
    polls = []
    for i in range(5):
        at = T0 + timedelta(minutes=15 * i)
        polls.append(Reading(meter_id="M1", channel=CH, at=at, value=Decimal(1000 + i),
                             unit=Unit.KWH))
        value = Decimal("1E+20") if i == 2 else Decimal(2000 + i)  # a float32 gone wild
        polls.append(Reading(meter_id="M1", channel=other, at=at, value=value, unit=Unit.KWH))
    result = await pipeline.feed(polls, source="poll", now=NOW)
    assert result.quarantined == 1
    [item] = await store.quarantined()
    assert item.channel == other and "not a usable register value" in item.reason
    main = await store.intervals("M1", CH, T0, T0 + timedelta(hours=1))
    assert [iv.value for iv in main] == [1000] * 4
    side = await store.intervals("M1", other, T0, T0 + timedelta(hours=1))
    assert sum(iv.value for iv in side) == 4000  # 2000 -> 2004 kWh across the bad read
    await store.close()


async def test_a_meter_exchange_in_poll_order_splits_the_series_at_the_swap(
    tmp_path: Path,
) -> None:
    """Polls give the serial number beside the energy register; the swap falls inside
    one batch. The old meter's reads end its intervals, the new one's start a baseline."""
    polls = [poll(0, "1111", "5000"), poll(15, "1111", "5000.4"), poll(30, "1111", "5000.9"),
             poll(45, "2222", "0.2"), poll(60, "2222", "0.6"), poll(75, "2222", "1.3")]
    store, pipeline = await open_pipeline(tmp_path / "a.db")
    result = await pipeline.feed([r for p in polls for r in p], source="poll", now=NOW)
    assert result.quarantined == 0
    got = await stored_values(store)
    assert [(start - T0, value) for start, value, _ in got] == [
        (timedelta(0), 400), (timedelta(minutes=15), 500),  # the old meter
        (timedelta(minutes=45), 400), (timedelta(minutes=60), 700)]  # the new one
    assert got[2][2] & Flag.METER_EXCHANGE
    [event] = await store.events("M1")
    assert (event.kind, event.channel, event.at) == ("exchange", CH, T0 + timedelta(minutes=45))
    assert "1111 -> 2222" in event.reason and "final read 5000900" in event.reason
    await store.close()
    # The same polls fed one by one give the same store.
    store, pipeline = await open_pipeline(tmp_path / "b.db")
    for p in polls:
        await pipeline.feed(p, source="poll", now=NOW)
    assert await stored_values(store) == got
    await store.close()


async def test_two_exchanges_in_one_batch_each_fall_between_their_reads(
    tmp_path: Path,
) -> None:
    polls = [poll(0, "1", "5000"), poll(15, "1", "5000.4"),
             poll(30, "2", "0.1"), poll(45, "2", "0.6"),
             poll(60, "3", "7.0"), poll(75, "3", "7.2")]
    store, pipeline = await open_pipeline(tmp_path / "a.db")
    await pipeline.feed([r for p in polls for r in p], source="import", now=NOW)
    got = await stored_values(store)
    assert [(start - T0, value) for start, value, _ in got] == [
        (timedelta(0), 400), (timedelta(minutes=30), 500), (timedelta(minutes=60), 200)]
    kinds = [(e.kind, e.reason.split(";")[0]) for e in await store.events("M1")]
    assert kinds == [("exchange", "meter exchange: serial 1 -> 2"),
                     ("exchange", "meter exchange: serial 2 -> 3")]
    await store.close()
    store, pipeline = await open_pipeline(tmp_path / "b.db")
    for p in polls:
        await pipeline.feed(p, source="poll", now=NOW)
    assert await stored_values(store) == got
    await store.close()
