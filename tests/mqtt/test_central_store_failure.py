"""When the store fails, the central ingest stops acking (never the worker): a
retryable failure is retried until the write commits, and only then is the batch
acked; a batch the store refuses for good is found among its group, quarantined and
acked as rejected while the others are stored. The target here is the real SQLite
store behind a first-class fake that fails on cue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import pytest

from gateway.errors import SinkError
from gateway.ingest.central import CentralIngest, SqliteTarget, Written
from gateway.ingest.central_link import BrokerLink
from gateway.model import IntervalReading
from gateway.store import QuarantineItem
from gateway.store.sqlite import SqliteStore
from tests.mosquitto_server import Broker, mosquitto_server
from tests.mqtt.central_harness import ACL, USERS, Edge, batch, link_options, stored_count


class FailingTarget:
    """SqliteTarget that raises ``error(readings)`` instead of writing while it is not None."""

    def __init__(self, store: SqliteStore,
                 error: Callable[[Sequence[IntervalReading]], SinkError | None]) -> None:
        self.inner = SqliteTarget(store)
        self.error = error
        self.calls = 0

    async def write(self, readings: Sequence[IntervalReading],
                    quarantine: Sequence[QuarantineItem]) -> Written:
        self.calls += 1
        exc = self.error(readings)
        if exc is not None:
            raise exc
        return await self.inner.write(readings, quarantine)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with mosquitto_server(tmp_path / "mqtt", users=USERS, acl=ACL) as b:
        yield b


@pytest.fixture
def edge_a(broker: Broker) -> Iterator[Edge]:
    edge = Edge(broker, "edge-a")
    yield edge
    edge.close()


async def _worker(broker: Broker, store: SqliteStore, target: FailingTarget,
                  stop: asyncio.Event) -> tuple[CentralIngest, asyncio.Task[None], BrokerLink]:
    link = BrokerLink(link_options(broker))
    ingest = CentralIngest(link, target, registry=store, batch_ms=20)
    await link.start()
    await asyncio.wait_for(link.connected.wait(), 5)
    await asyncio.sleep(0.05)
    return ingest, asyncio.create_task(ingest.run(stop)), link


async def test_a_failing_store_holds_the_ack_until_the_write_commits(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.db")
    await store.open()
    failures = [SinkError("disk full", retryable=True)] * 3
    target = FailingTarget(store, lambda _r: failures.pop() if failures else None)
    stop = asyncio.Event()
    ingest, task, link = await _worker(broker, store, target, stop)
    try:
        edge_a.send_batch(batch("edge-a", 0, 10))
        early = await asyncio.to_thread(edge_a.drain_acks, 0.25)
        assert early == [] and await stored_count(tmp_path / "central.db") == 0
        ack = (await asyncio.to_thread(edge_a.collect, 1, 10.0))[0]
        assert ack["stored"] == 10
        assert await stored_count(tmp_path / "central.db") == 10
        assert ingest.counters.store_failures == 3 and target.calls == 4
        edge_a.send_batch(batch("edge-a", 10, 10))  # and the worker goes on as before
        assert (await asyncio.to_thread(edge_a.collect, 1))[0]["stored"] == 10
        assert not task.done()
    finally:
        stop.set()
        await task
        await link.stop()
        await store.close()


async def test_a_batch_the_store_refuses_for_good_is_singled_out(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.db")
    await store.open()

    def poison(readings: Sequence[IntervalReading]) -> SinkError | None:
        if any(r.meter_id == "poison" for r in readings):
            return SinkError("constraint failed", retryable=False)
        return None

    target = FailingTarget(store, poison)
    stop = asyncio.Event()
    ingest, task, link = await _worker(broker, store, target, stop)
    try:
        edge_a.send_batch(batch("edge-a", 0, 5))
        edge_a.send_batch(batch("edge-a", 5, 5, meter="poison"))
        edge_a.send_batch(batch("edge-a", 10, 5))
        acks = {a["batch"]: a for a in await asyncio.to_thread(edge_a.collect, 3)}
        assert acks["edge-a:0-4"]["stored"] == acks["edge-a:10-14"]["stored"] == 5
        refused = acks["edge-a:5-9"]
        assert refused["stored"] == 0 and len(refused["rejected"]) == 5
        assert "constraint failed" in refused["rejected"][0][1]
        assert await stored_count(tmp_path / "central.db") == 10
        (held,) = await store.quarantined()
        assert held.payload == "edge-a:5-9" and "constraint failed" in held.reason
        assert ingest.counters.groups >= 3
    finally:
        stop.set()
        await task
        await link.stop()
        await store.close()
