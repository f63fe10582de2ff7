"""A central ingest worker's graceful stop against a real Mosquitto: what it holds is
stored and acked before it disconnects, the broker has the PUBACK of every message it
took (its next session gets none of them again), and a message that arrives while it
stops is left at the broker for that next session, not taken and dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.ingest.central import CentralIngest, SqliteTarget
from gateway.ingest.central_link import MAX_INFLIGHT, BrokerLink
from gateway.store.sqlite import SqliteStore
from tests.mosquitto_server import Broker, mosquitto_server
from tests.mqtt.central_harness import (
    ACL,
    USERS,
    Edge,
    batch,
    link_options,
    stored_count,
    wait_until,
)

#: More batches held at the stop than acks the link keeps in flight at once.
HELD = 3 * MAX_INFLIGHT


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with mosquitto_server(tmp_path / "mqtt", users=USERS, acl=ACL) as b:
        yield b


@pytest.fixture
def edge_a(broker: Broker) -> Iterator[Edge]:
    edge = Edge(broker, "edge-a")
    yield edge
    edge.close()


async def _connected(broker: Broker) -> BrokerLink:
    link = BrokerLink(link_options(broker))
    await link.start()
    await asyncio.wait_for(link.connected.wait(), 5)
    await asyncio.sleep(0.05)  # the SUBACK
    return link


async def _next_session_gets(broker: Broker, quiet_s: float = 0.5) -> int:
    """How many messages the broker sends the same client id's next connection."""
    link = await _connected(broker)
    await asyncio.sleep(quiet_s)
    await link.stop()
    return link.received


async def test_a_stop_stores_and_acks_what_it_holds_before_it_disconnects(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    store = SqliteStore(db)
    await store.open()
    link = await _connected(broker)
    ingest = CentralIngest(link, SqliteTarget(store), registry=store)
    try:
        for k in range(HELD):
            edge_a.send_batch(batch("edge-a", 10 * k, 10))
        async def all_held() -> bool:
            return link.backlog == HELD

        # Received, not yet stored: the stop comes while the worker holds them all.
        await wait_until(all_held)
        await ingest.shutdown()
        assert await stored_count(db) == 10 * HELD
        # Every ack left before the DISCONNECT (more than the 20 in flight at a time).
        acks = await asyncio.to_thread(edge_a.collect, HELD, 2.0)
        assert len(acks) == HELD and not edge_a.unacked
    finally:
        await link.stop()
        await store.close()
    assert ingest.counters.stored == 10 * HELD
    assert await _next_session_gets(broker) == 0  # every PUBACK went before the DISCONNECT


async def test_a_stop_right_after_a_commit_leaves_nothing_to_redeliver(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.db")
    await store.open()
    link = await _connected(broker)
    ingest = CentralIngest(link, SqliteTarget(store), registry=store)
    stop = asyncio.Event()
    task = asyncio.create_task(ingest.run(stop))
    try:
        async def acked() -> bool:
            return ingest.counters.acked == 1

        edge_a.send_batch(batch("edge-a", 0, 10))
        await wait_until(acked)  # committed and its ack published
        stop.set()
        await task
        await ingest.shutdown()
    finally:
        stop.set()
        await link.stop()
        await store.close()
    assert len(await asyncio.to_thread(edge_a.collect, 1, 2.0)) == 1
    assert await _next_session_gets(broker) == 0


async def test_a_message_arriving_while_it_stops_waits_for_the_next_session(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.db")
    await store.open()
    link = await _connected(broker)
    ingest = CentralIngest(link, SqliteTarget(store), registry=store)
    try:
        link.stop_taking()
        edge_a.send_batch(batch("edge-a", 0, 10))
        await asyncio.sleep(0.3)  # delivered to the link, which does not take it
        await ingest.shutdown()
        assert link.received == 0 and ingest.counters.received == 0
    finally:
        await link.stop()
        await store.close()
    # Not acknowledged, so not lost: the broker sends it to the next connection.
    assert await _next_session_gets(broker) == 1
