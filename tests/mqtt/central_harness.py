"""What the central-ingest tests share: the broker with the shipped ACL, an edge that
encodes batches per the uplink contract (v1) and keeps what is unacked, and a worker
running in the test's event loop over a real SqliteStore."""

from __future__ import annotations

import asyncio
import json
import queue
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.ingest.central import CentralIngest, SqliteTarget
from gateway.ingest.central_link import BrokerLink, LinkOptions
from gateway.mqtt_names import acks_topic, intervals_topic, shared_intervals
from gateway.store.sqlite import SqliteStore
from tests.mosquitto_server import Broker

REPO = Path(__file__).resolve().parents[2]
ACL = (REPO / "config" / "mosquitto" / "acl").read_text()
USERS = {"edge-a": "pw-a", "edge-b": "pw-b", "ingest": "pw-ingest"}
T0 = 1_764_547_200  # 2025-12-01T00:00:00Z, on every grid


def batch(edge: str, first: int, n: int, *, meter: str = "m1", value: int = 7,
          start0: int = T0, channels: int = 1) -> dict[str, Any]:
    """A valid batch of ``n`` quarter-hours per channel, ids by queue numbers."""
    series = [[meter, f"ch{c}", "Wh", 900, "Europe/Berlin"] for c in range(channels)]
    intervals = [[c, start0 + 900 * (first + i), value + i, 0, 0, None]
                 for c in range(channels) for i in range(n)]
    return {"v": 1, "edge": edge, "batch": f"{edge}:{first}-{first + len(intervals) - 1}",
            "sent_at": "2026-12-02T15:00:00Z", "series": series, "intervals": intervals}


def encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Edge:
    """An edge over paho: publishes batches, collects acks, resends what is unacked."""

    broker: Broker
    edge_id: str
    acks: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    unacked: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.edge_id}-test",
                        protocol=MQTTProtocolVersion.MQTTv5)
        c.username_pw_set(self.edge_id, USERS[self.edge_id])
        c.max_inflight_messages_set(1000)
        c.reconnect_delay_set(1, 2)
        subscribed = queue.Queue[int]()
        c.on_connect = lambda cl, *_a: cl.subscribe(acks_topic(self.edge_id), 1)
        c.on_subscribe = lambda *_a: subscribed.put(1)
        c.on_message = lambda _c, _u, m: self.acks.put(json.loads(m.payload))
        c.connect(self.broker.host, self.broker.port)
        c.loop_start()
        subscribed.get(timeout=5)
        self.client = c

    def send(self, payload: bytes, batch_id: str | None = None, *, keep: bool = True) -> None:
        if keep and batch_id is not None:
            self.unacked[batch_id] = payload
        self.client.publish(intervals_topic(self.edge_id), payload, qos=1)

    def send_batch(self, obj: dict[str, Any]) -> None:
        self.send(encode(obj), obj["batch"])

    def collect(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """``n`` acks (each removes its batch from the unacked)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ack = self.acks.get(timeout=max(deadline - time.monotonic(), 0.01))
            self.unacked.pop(ack["batch"], None)
            out.append(ack)
        return out

    def drain_acks(self, quiet_s: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            try:
                ack = self.acks.get(timeout=quiet_s)
            except queue.Empty:
                return out
            self.unacked.pop(ack["batch"], None)
            out.append(ack)

    def window(self, limit: int, ack_timeout_s: float = 2.0) -> None:
        """Wait until fewer than ``limit`` batches await their ack (an edge keeps a
        bounded number in flight); after ``ack_timeout_s`` of silence, resend them."""
        while len(self.unacked) >= limit:
            try:
                ack = self.acks.get(timeout=ack_timeout_s)
            except queue.Empty:
                self.resend_unacked()
                continue
            self.unacked.pop(ack["batch"], None)

    def resend_unacked(self) -> int:
        for bid, payload in list(self.unacked.items()):
            self.send(payload, bid)
        return len(self.unacked)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def link_options(broker: Broker, client_id: str = "ingest-0", **kw: Any) -> LinkOptions:
    return LinkOptions(host=broker.host, port=broker.port, client_id=client_id,
                       username="ingest", password=USERS["ingest"],
                       subscription=shared_intervals(), **kw)


@dataclass
class Worker:
    ingest: CentralIngest
    store: SqliteStore
    task: asyncio.Task[None] | None = None


@asynccontextmanager
async def running_worker(broker: Broker, store_path: Path, client_id: str = "ingest-0",
                         **kw: Any) -> AsyncIterator[Worker]:
    """A worker in this event loop; stops (and drains) when the block ends."""
    store = SqliteStore(store_path)
    await store.open()
    link = BrokerLink(link_options(broker, client_id))
    ingest = CentralIngest(link, SqliteTarget(store), registry=store, **kw)
    stop = asyncio.Event()
    await link.start()
    await asyncio.wait_for(link.connected.wait(), 5)
    await asyncio.sleep(0.05)  # the SUBACK
    task = asyncio.create_task(ingest.run(stop))
    try:
        yield Worker(ingest, store, task)
    finally:
        stop.set()
        await task
        await ingest.shutdown()
        await store.close()


async def stored_count(store_path: Path) -> int:
    import sqlite3

    def q() -> int:
        with sqlite3.connect(store_path) as conn:
            return int(conn.execute("SELECT count(*) FROM interval").fetchone()[0])
    return await asyncio.to_thread(q)


async def wait_until(pred: Any, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


def values(readings: Iterable[Any]) -> list[int]:
    return [r.value for r in readings]
