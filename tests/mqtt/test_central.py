"""The central ingest against a real Mosquitto with the shipped ACL and users: batches
stored exactly and acked after the commit, duplicates harmless, malformed messages
quarantined with their reason while the worker keeps going, two workers splitting
one shared subscription."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.ingest.central_link import retire_session
from gateway.store.sqlite import SqliteStore
from tests.mosquitto_server import Broker, mosquitto_server
from tests.mqtt.central_harness import (
    ACL,
    T0,
    USERS,
    Edge,
    batch,
    encode,
    link_options,
    running_worker,
    stored_count,
    wait_until,
)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with mosquitto_server(tmp_path / "mqtt", users=USERS, acl=ACL) as b:
        yield b


@pytest.fixture
def edge_a(broker: Broker) -> Iterator[Edge]:
    edge = Edge(broker, "edge-a")
    yield edge
    edge.close()


async def test_batch_is_stored_exactly_and_acked_after_the_commit(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with running_worker(broker, db) as w:
        b = batch("edge-a", 0, 96, channels=2)
        edge_a.send_batch(b)
        ack = (await asyncio.to_thread(edge_a.collect, 1))[0]
        # The ack came after the commit: a separate connection sees every interval now.
        assert await stored_count(db) == 192
        assert ack == {"v": 1, "batch": "edge-a:0-191", "stored": 192, "rejected": []}
        day = datetime.fromtimestamp(T0, UTC)
        got = await w.store.intervals("m1", "ch1", day, day + timedelta(days=1))
        assert [(int(r.start.timestamp()), r.value, r.length_s) for r in got] == [
            (T0 + 900 * i, 7 + i, 900) for i in range(96)]
        assert [s.timezone for s in await w.store.series("m1")] == ["Europe/Berlin"] * 2
        assert w.ingest.counters.stored == 192


async def test_the_same_batch_twice_changes_nothing_and_is_acked_twice(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with running_worker(broker, db) as w:
        b = batch("edge-a", 0, 10)
        edge_a.send_batch(b)
        first = (await asyncio.to_thread(edge_a.collect, 1))[0]
        edge_a.send_batch(b)
        edge_a.send_batch(b)  # and twice within one group
        again = await asyncio.to_thread(edge_a.collect, 2)
        assert first == again[0] == again[1]
        assert first["stored"] == 10
        assert await stored_count(db) == 10
        # The copies are acked as stored, and counted as the replays they are.
        assert (w.ingest.counters.stored, w.ingest.counters.unchanged) == (10, 20)
        day = datetime.fromtimestamp(T0, UTC)
        got = await w.store.intervals("m1", "ch0", day, day + timedelta(days=1))
        assert [r.value for r in got] == list(range(7, 17))
        assert [r.quality for r in got] == [0] * 10  # no conflict flagged by the replay


async def test_interval_off_its_grid_is_rejected_alone(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with running_worker(broker, db):
        b = batch("edge-a", 0, 4)
        b["intervals"][1][1] += 60  # a minute off the quarter-hour grid
        b["intervals"][2][3] = 99  # no such quality code
        b["intervals"][3][2] = 1.5  # a float where the contract says integer
        edge_a.send_batch(b)
        ack = (await asyncio.to_thread(edge_a.collect, 1))[0]
        assert ack["stored"] == 1
        assert [i for i, _ in ack["rejected"]] == [1, 2, 3]
        assert "grid" in ack["rejected"][0][1]
        assert "quality" in ack["rejected"][1][1]
        assert "integer" in ack["rejected"][2][1]
        assert await stored_count(db) == 1


MALFORMED: list[tuple[str, bytes, str, bool]] = [
    # name, payload, a word of the quarantine reason, acked (batch id readable)
    ("invalid JSON", b'{"v": 1, "batch": ', "not JSON", False),
    ("not an object", b"[1, 2]", "Expected `object`", False),
    ("NaN", encode(batch("edge-a", 0, 2)).replace(b'"intervals":[[0,', b'"intervals":[[NaN,'),
     "not JSON", False),
    ("wrong version", encode({**batch("edge-a", 0, 2), "v": 2}), "version", True),
    ("wrong types", encode({**batch("edge-a", 0, 2), "intervals": "many"}),
     "intervals: Expected `array`", True),
    ("oversized", encode({**batch("edge-a", 0, 2), "pad": "x" * (1 << 20)}), "exceeds", True),
    ("edge mismatch", encode(batch("edge-b", 0, 2)), "on the topic of edge 'edge-a'", True),
    ("no batch id", encode({**batch("edge-a", 0, 2), "batch": 5}), "batch: Expected `str`", False),
]


async def test_malformed_messages_are_quarantined_and_the_worker_goes_on(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with running_worker(broker, db) as w:
        for _name, payload, _word, _acked in MALFORMED:
            edge_a.send(payload)
        good = batch("edge-a", 100, 5)
        edge_a.send_batch(good)
        expected_acks = sum(acked for *_x, acked in MALFORMED) + 1
        acks = await asyncio.to_thread(edge_a.collect, expected_acks)
        assert acks[-1] == {"v": 1, "batch": good["batch"], "stored": 5, "rejected": []}
        refused = {a["batch"]: a for a in acks[:-1]}
        assert all(a["stored"] == 0 for a in refused.values())
        assert refused["edge-a:0-1"]["rejected"][0][0] == 0
        assert len(refused["edge-a:0-1"]["rejected"]) == 2  # every interval rejected
        await wait_until(lambda: _count(w.store, len(MALFORMED)))
        held = list(reversed(await w.store.quarantined(limit=50)))
        assert len(held) == len(MALFORMED)
        for item, (name, payload, word, _acked) in zip(held, MALFORMED, strict=True):
            assert word in item.reason, (name, item.reason)
            assert item.source == "mqtt:ami/v1/edge-a/intervals"
            assert item.payload[:100] == payload[:100].decode(), name
        assert await stored_count(db) == 5
        assert w.ingest.counters.quarantined == len(MALFORMED)
        assert not math.isnan(w.ingest.counters.stored)


async def _count(store: SqliteStore, n: int) -> bool:
    return await store.quarantine_count() >= n


async def test_two_workers_split_a_shared_subscription(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with running_worker(broker, db, "ingest-0") as w0, \
            running_worker(broker, db, "ingest-1") as w1:
        for k in range(100):
            edge_a.send_batch(batch("edge-a", 10 * k, 10))
        acks = await asyncio.to_thread(edge_a.collect, 100)
        assert sorted(a["batch"] for a in acks) == sorted(
            f"edge-a:{10 * k}-{10 * k + 9}" for k in range(100))
        assert all(a["stored"] == 10 for a in acks)
        assert await stored_count(db) == 1000
        split = (w0.ingest.counters.batches, w1.ingest.counters.batches)
        assert sum(split) == 100 and min(split) >= 20, split


async def test_a_series_declared_with_another_grid_is_rejected_not_fatal(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with running_worker(broker, db):
        edge_a.send_batch(batch("edge-a", 0, 4))
        other = batch("edge-a", 8, 4)
        other["series"][0][3] = 1800
        other["intervals"] = [[0, T0 + 1800 * i, 1, 0, 0, None] for i in range(4)]
        edge_a.send_batch(other)
        edge_a.send_batch(batch("edge-a", 20, 4))
        acks = await asyncio.to_thread(edge_a.collect, 3)
        assert [a["stored"] for a in acks] == [4, 0, 4]
        assert all("series refused" in r for _, r in acks[1]["rejected"])
        assert await stored_count(db) == 8


async def test_a_stopped_workers_share_waits_for_it_until_it_is_retired(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with running_worker(broker, db, "ingest-1"):
        pass  # worker 1 ran once: its session (and its share) stays at the broker
    async with running_worker(broker, db, "ingest-0") as w0:
        for k in range(20):
            edge_a.send_batch(batch("edge-a", 10 * k, 10))
        acked = await asyncio.to_thread(edge_a.drain_acks, 0.5)
        assert 0 < len(acked) < 20  # the rest waits in worker 1's session
        await asyncio.to_thread(retire_session, link_options(broker, "ingest-1"))
        edge_a.resend_unacked()
        acked += await asyncio.to_thread(edge_a.drain_acks, 0.5)
        assert not edge_a.unacked and len(acked) == 20
        assert w0.ingest.counters.stored == 200
