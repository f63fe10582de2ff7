"""The outbox in the store's file and the delivery that drains it: every written interval
queued in the same transaction, delivered in order, acknowledged only once the sink has
it, refused ones quarantined without blocking the queue, nothing lost across a restart."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.errors import SinkError
from gateway.ingest.delivery import Delivery
from gateway.model import IntervalReading, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SCHEMA_VERSION, SqliteStore

CH = "1.0.1.8.0.255"
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def quarters(n: int, value: int = 100, first: int = 0, meter: str = "m1"
             ) -> list[IntervalReading]:
    return [IntervalReading(meter_id=meter, channel=CH, start=T0 + timedelta(minutes=15 * i),
                            length_s=900, value=value + i, unit=Unit.WH)
            for i in range(first, first + n)]


async def open_store(path: Path, sinks: Sequence[str] = ("a",)) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    for meter in ("m1", "m2"):
        await store.register_series(SeriesInfo(meter_id=meter, channel=CH, unit=Unit.WH,
                                               interval_s=900, timezone="UTC"))
    if sinks:
        await store.use_sinks(list(sinks))
    return store


class Recorder:
    """A sink that keeps what it is given; it can fail or refuse on demand."""

    def __init__(self, name: str = "a") -> None:
        self.name = name
        self.got: list[IntervalReading] = []
        self.fail_next = 0
        self.refuse: set[int] = set()  # interval values to refuse

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def deliver(self, batch: Sequence[IntervalReading]) -> list[tuple[int, str]]:
        if self.fail_next:
            self.fail_next -= 1
            raise SinkError("sink down", retryable=True)
        refused = [(i, f"value {iv.value} refused") for i, iv in enumerate(batch)
                   if iv.value in self.refuse]
        self.got.extend(iv for i, iv in enumerate(batch) if iv.value not in self.refuse)
        return refused


async def test_nothing_is_queued_without_a_sink_and_everything_with_one(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db", sinks=())
    await store.write_intervals(quarters(4))
    assert await store.outbox_status() == []
    await store.use_sinks(["a"])
    await store.write_intervals(quarters(3, first=4))
    [entry_status] = await store.outbox_status()
    assert entry_status.depth == 3 and entry_status.oldest_queued_at is not None
    batch = await store.outbox_batch("a", 100)
    assert [e.interval for e in batch] == quarters(3, first=4)
    assert [e.seq for e in batch] == sorted(e.seq for e in batch)
    await store.close()


async def test_an_entry_leaves_only_when_every_sink_has_it_and_survives_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await open_store(path, sinks=("a", "b"))
    await store.write_intervals(quarters(5))
    batch = await store.outbox_batch("a", 100)
    await store.outbox_ack("a", batch[-1].seq, len(batch), [], 0.01)
    await store.close()
    # A restart (a crash after the commit): b still has all five, a none.
    store = await open_store(path, sinks=("a", "b"))
    assert await store.outbox_batch("a", 100) == []
    assert [e.interval for e in await store.outbox_batch("b", 100)] == quarters(5)
    status = {s.sink: s for s in await store.outbox_status()}
    assert status["a"].depth == 0 and status["b"].depth == 5
    assert status["a"].delivered_total == 5
    batch = await store.outbox_batch("b", 2)
    await store.outbox_ack("b", batch[-1].seq, 2, [], 0.01)
    await store.close()
    with sqlite3.connect(path) as conn:  # what both took is gone from the file
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 3


async def test_a_replaced_value_is_sent_as_it_stands_and_edits_are_queued(
        tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    estimate = quarters(1, value=50)[0]
    estimate = IntervalReading(**{**{f: getattr(estimate, f) for f in estimate.__struct_fields__},
                                  "quality": Quality.ESTIMATED_LINEAR})
    await store.write_intervals([estimate])
    await store.write_intervals(quarters(1, value=70))  # a late read replaces the estimate
    await store.edit_interval("m1", CH, T0, 65, operator="ana", reason="meter test",
                              at=T0 + timedelta(days=1))
    batch = await store.outbox_batch("a", 100)
    assert len(batch) == 3  # three writes, three entries, each the value as it stands
    assert {(e.interval.value, e.interval.quality) for e in batch} == {(65, Quality.EDITED)}
    await store.close()


async def test_delivery_retries_a_failing_sink_in_order_and_quarantines_a_refused_one(
        tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    await store.write_intervals(quarters(12))
    sink = Recorder()
    sink.fail_next = 2
    sink.refuse = {105}
    delivery = Delivery(store, sink, batch_size=5, idle_s=0.01, max_backoff_s=0.01)
    task = asyncio.create_task(delivery.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if delivery.stats.delivered + delivery.stats.rejected == 12:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [iv.value for iv in sink.got] == [100 + i for i in range(12) if i != 5]
    assert delivery.stats.rejected == 1 and not delivery.stats.failing
    [held] = await store.quarantined()
    assert held.source == "sink:a" and held.reason == "value 105 refused"
    assert held.meter_id == "m1" and "value=105" in held.payload
    [status] = await store.outbox_status()
    assert status.depth == 0 and status.quarantined == 1 and status.delivered_total == 11
    await store.close()


async def test_a_sink_added_later_starts_after_the_queue_and_a_dropped_one_reports(
        tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    await store.write_intervals(quarters(4))
    dropped = await store.use_sinks(["a", "new"])
    assert dropped == {}
    assert await store.outbox_batch("new", 100) == []
    await store.write_intervals(quarters(1, first=4))
    assert len(await store.outbox_batch("new", 100)) == 1
    assert await store.use_sinks(["new"]) == {"a": 5}
    await store.close()


async def test_a_schema_1_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '1')")
    store = await open_store(path)
    await store.write_intervals(quarters(2))
    assert len(await store.outbox_batch("a", 10)) == 2
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
            str(SCHEMA_VERSION),)


async def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '99')")
    with pytest.raises(SinkError, match="upgrade the gateway"):
        await open_store(path)
