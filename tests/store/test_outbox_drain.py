"""Draining the outbox batch after batch with the next batch read ahead: everything in
order, each batch acknowledged only after the sink confirmed it, and a failure midway
leaves the read-ahead batch queued (delivered after the retry, not lost, not doubled)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.errors import SinkError
from gateway.ingest.delivery import Delivery
from gateway.model import IntervalReading
from gateway.store.sqlite import SqliteStore
from tests.store.test_outbox import Recorder, open_store, quarters


class Watcher(Recorder):
    """Records the queue depth the store reports while each batch is being delivered,
    and fails the call numbered ``fail_call`` (1-based)."""

    def __init__(self, store: SqliteStore, fail_call: int = 0) -> None:
        super().__init__()
        self.store = store
        self.fail_call = fail_call
        self.calls = 0
        self.depths: list[int] = []

    async def deliver(self, batch: Sequence[IntervalReading]) -> list[tuple[int, str]]:
        self.calls += 1
        [status] = await self.store.outbox_status()
        self.depths.append(status.depth)
        if self.calls == self.fail_call:
            raise SinkError("sink down", retryable=True)
        return await super().deliver(batch)


async def test_a_batch_read_after_a_given_entry(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    await store.write_intervals(quarters(6))
    first = await store.outbox_batch("a", 4)
    rest = await store.outbox_batch("a", 4, after=first[1].seq)
    assert [e.interval for e in rest] == quarters(6)[2:]
    # Reading ahead moves nothing: the position is still at the start.
    assert [e.interval for e in await store.outbox_batch("a", 10)] == quarters(6)
    await store.close()


async def test_drain_delivers_everything_in_order_acknowledging_after_each_batch(
        tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    await store.write_intervals(quarters(12))
    sink = Watcher(store)
    delivery = Delivery(store, sink, batch_size=5)
    assert await delivery.drain() == 12
    assert sink.got == quarters(12)
    # While a batch is with the sink, it is still queued: 12, then 7, then 2 left.
    assert sink.depths == [12, 7, 2]
    assert delivery.stats.batches == 3 and delivery.stats.delivered == 12
    [status] = await store.outbox_status()
    assert status.depth == 0 and status.delivered_total == 12
    assert await delivery.drain() == 0
    await store.close()


async def test_a_failure_midway_keeps_the_batch_read_ahead_queued(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    await store.write_intervals(quarters(12))
    sink = Watcher(store, fail_call=2)
    delivery = Delivery(store, sink, batch_size=5)
    try:
        await delivery.drain()
    except SinkError:
        pass
    else:
        raise AssertionError("the sink's failure did not propagate")
    assert sink.got == quarters(5)
    [status] = await store.outbox_status()
    assert status.depth == 7
    assert await delivery.drain() == 7
    assert sink.got == quarters(12)
    await store.close()
