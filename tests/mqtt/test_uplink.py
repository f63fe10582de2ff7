"""The MQTT uplink sink against a real Mosquitto with the shipped ACL, and a small central
ingest in the test: it reads the shared subscription, decodes each batch with the v1
schema and answers with acks, promptly, late, never, for another batch, or rejecting.

What is pinned: ``deliver()`` returns only after the ack of its own batch id; an
unanswered batch stays in the outbox and is sent again as the same entries; a broker
restart mid-delivery loses nothing and keeps the order; an edge publishing on another
edge's topic is refused by the broker and told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.errors import SinkError
from gateway.ingest.delivery import Delivery
from gateway.model import IntervalReading, Unit
from gateway.mqtt_names import (
    SHARED_INTERVALS,
    acks_topic,
    edge_of_intervals_topic,
    intervals_topic,
)
from gateway.sinks.mqtt_uplink import MqttUplinkSink
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from gateway.uplink.schema import Ack, Batch, decode_batch, encode_ack
from tests.mosquitto_server import Broker, mosquitto_server

REPO = Path(__file__).resolve().parents[2]
ACL = (REPO / "config" / "mosquitto" / "acl").read_text()
USERS = {"edge-a": "pw-a", "edge-b": "pw-b", "ingest": "pw-ingest"}
T0 = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
CH = "1.0.1.8.0.255"
TZ = {("m1", CH): "Europe/Berlin", ("m2", CH): "UTC"}
SINK = "uplink"

#: What the central does with the n-th receipt (1-based) of a batch: (delay s, ack) pairs.
Respond = Callable[[Batch, int], list[tuple[float, Ack]]]


def ack_now(batch: Batch, _seen: int) -> list[tuple[float, Ack]]:
    return [(0.0, Ack(batch_id=batch.batch_id, stored=len(batch.intervals)))]


class Central:
    """The central ingest in miniature: a worker on the shared subscription that acks."""

    def __init__(self, broker: Broker, respond: Respond = ack_now) -> None:
        self.broker = broker
        self.respond = respond
        self.received: list[Batch] = []
        self.seen: dict[str, int] = {}
        self.arrived = asyncio.Event()
        self._acks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Serve until cancelled, reconnecting (its session persists) across restarts."""
        while True:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 300
            try:
                async with aiomqtt.Client(
                        self.broker.host, self.broker.port, identifier="ingest-1",
                        username="ingest", password=USERS["ingest"],
                        protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                        properties=props) as client:
                    await client.subscribe(SHARED_INTERVALS, qos=1)
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        self._on_batch(client, str(message.topic), message.payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    def _on_batch(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        batch = decode_batch(payload, topic_edge=edge_of_intervals_topic(topic))
        self.received.append(batch)
        self.seen[batch.batch_id] = n = self.seen.get(batch.batch_id, 0) + 1
        self.arrived.set()
        for delay, ack in self.respond(batch, n):
            task = asyncio.create_task(self._ack(client, batch.edge, delay, ack))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)

    async def _ack(self, client: aiomqtt.Client, edge: str, delay: float, ack: Ack) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(aiomqtt.MqttError):  # the broker went away meanwhile
            await client.publish(acks_topic(edge), encode_ack(ack), qos=1)

    def intervals(self) -> set[tuple[str, datetime]]:
        return {(iv.meter_id, iv.start) for b in self.received for iv in b.intervals}


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with mosquitto_server(tmp_path / "mosquitto", users=USERS, acl=ACL, tls=True) as b:
        yield b


@contextlib.asynccontextmanager
async def serving(central: Central) -> AsyncIterator[Central]:
    task = asyncio.create_task(central.run())
    await asyncio.sleep(0.15)  # subscribed before the edge publishes
    try:
        yield central
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_sink(broker: Broker, *, ack_timeout_s: float = 2.0, edge: str = "edge-a",
              topic: str | None = None, tls: bool = False,
              timezones: Mapping[tuple[str, str], str] = TZ) -> MqttUplinkSink:
    async def zones() -> Mapping[tuple[str, str], str]:
        return timezones

    port = broker.tls_port if tls and broker.tls_port is not None else broker.port
    return MqttUplinkSink(SINK, edge_id=edge, host=broker.host, port=port,
                          password=USERS[edge], timezones=zones, tls=tls,
                          ca_file=broker.ca_file if tls else None,
                          ack_timeout_s=ack_timeout_s, min_backoff_s=0.05,
                          max_backoff_s=0.3, topic=topic)


def quarters(n: int, first: int = 0, meter: str = "m1") -> list[IntervalReading]:
    return [IntervalReading(meter_id=meter, channel=CH, start=T0 + timedelta(minutes=15 * i),
                            length_s=900, value=100 + i, unit=Unit.WH)
            for i in range(first, first + n)]


async def open_store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    for (meter, channel), tz in TZ.items():
        await store.register_series(SeriesInfo(meter_id=meter, channel=channel,
                                               unit=Unit.WH, interval_s=900, timezone=tz))
    await store.use_sinks([SINK])
    return store


async def depth(store: SqliteStore) -> int:
    [status] = await store.outbox_status()
    return status.depth


async def test_deliver_returns_the_ack_only_after_the_central_stored_the_batch(
        broker: Broker) -> None:
    def ack_later(batch: Batch, _seen: int) -> list[tuple[float, Ack]]:
        return [(0.4, Ack(batch_id=batch.batch_id, stored=len(batch.intervals)))]

    batch = quarters(3) + quarters(2, meter="m2")
    async with serving(Central(broker, ack_later)) as central:
        sink = make_sink(broker)
        await sink.open()
        try:
            began = time.monotonic()
            assert await sink.deliver(batch, batch_id="7-11") == []
            took = time.monotonic() - began
        finally:
            await sink.close()
    assert took >= 0.4, "deliver returned before the central's ack"
    [got] = central.received
    assert (got.edge, got.batch_id) == ("edge-a", "edge-a:7-11")
    assert got.intervals == batch
    assert [(s.meter_id, s.timezone) for s in got.series] == [("m1", "Europe/Berlin"),
                                                              ("m2", "UTC")]
    assert sink.client_id == "edge-edge-a"


async def test_over_tls_the_rejected_intervals_come_back_and_are_quarantined(
        broker: Broker, tmp_path: Path) -> None:
    def reject_second(batch: Batch, _seen: int) -> list[tuple[float, Ack]]:
        return [(0.0, Ack(batch_id=batch.batch_id, stored=len(batch.intervals) - 1,
                          rejected=[(1, "meter m1 unknown centrally")]))]

    store = await open_store(tmp_path / "edge.db")
    await store.write_intervals(quarters(3))
    async with serving(Central(broker, reject_second)):
        sink = make_sink(broker, tls=True)
        await sink.open()
        try:
            assert await sink.deliver(quarters(3), batch_id="1-3") == \
                [(1, "meter m1 unknown centrally")]
            assert await Delivery(store, sink).drain_once() == 3
        finally:
            await sink.close()
    assert await depth(store) == 0
    [item] = await store.quarantined()
    assert (item.source, item.reason) == (f"sink:{SINK}", "meter m1 unknown centrally")
    await store.close()


async def test_no_ack_keeps_the_entries_and_the_same_batch_is_sent_again(
        broker: Broker, tmp_path: Path) -> None:
    def ack_second_receipt(batch: Batch, seen: int) -> list[tuple[float, Ack]]:
        return ack_now(batch, seen) if seen >= 2 else []

    store = await open_store(tmp_path / "edge.db")
    await store.write_intervals(quarters(4))
    async with serving(Central(broker, ack_second_receipt)) as central:
        sink = make_sink(broker, ack_timeout_s=0.4)
        await sink.open()
        delivery = Delivery(store, sink)
        try:
            with pytest.raises(SinkError) as failed:
                await delivery.drain()
            assert failed.value.retryable and "no ack" in str(failed.value)
            assert await depth(store) == 4, "released from the outbox without an ack"
            assert await delivery.drain() == 4
        finally:
            await sink.close()
    first, again = central.received
    assert first.batch_id == again.batch_id == "edge-a:1-4"
    assert first.intervals == again.intervals == quarters(4)
    assert await depth(store) == 0
    await store.close()


async def test_a_late_ack_of_an_earlier_attempt_is_ignored(
        broker: Broker, tmp_path: Path) -> None:
    def late(batch: Batch, seen: int) -> list[tuple[float, Ack]]:
        if batch.batch_id == "edge-a:1-3":  # the first attempt: answered too late
            return [(0.6, Ack(batch_id=batch.batch_id, stored=0,
                              rejected=[(0, "stale"), (1, "stale")]))]
        return [(0.9, Ack(batch_id=batch.batch_id, stored=len(batch.intervals)))]

    store = await open_store(tmp_path / "edge.db")
    await store.write_intervals(quarters(3))
    async with serving(Central(broker, late)) as central:
        sink = make_sink(broker, ack_timeout_s=0.4)
        await sink.open()
        delivery = Delivery(store, sink)
        try:
            with pytest.raises(SinkError):
                await delivery.drain()  # 1-3 unanswered in time
            await store.write_intervals(quarters(2, first=3))
            # Now 1-5 goes out; the ack of 1-3 lands while it waits and must not count.
            sink.ack_timeout_s = 2.0
            began = time.monotonic()
            assert await delivery.drain() == 5
            assert time.monotonic() - began >= 0.9
        finally:
            await sink.close()
    assert [b.batch_id for b in central.received] == ["edge-a:1-3", "edge-a:1-5"]
    assert await store.quarantine_count() == 0
    assert await depth(store) == 0
    await store.close()


async def test_a_broker_restart_mid_delivery_loses_nothing_and_keeps_the_order(
        broker: Broker, tmp_path: Path) -> None:
    def slow_first(batch: Batch, seen: int) -> list[tuple[float, Ack]]:
        delay = 0.5 if batch.batch_id == "edge-a:1-10" and seen == 1 else 0.0
        return [(delay, Ack(batch_id=batch.batch_id, stored=len(batch.intervals)))]

    store = await open_store(tmp_path / "edge.db")
    written = quarters(15) + quarters(15, meter="m2")
    await store.write_intervals(written)
    async with serving(Central(broker, slow_first)) as central:
        sink = make_sink(broker)
        delivery = Delivery(store, sink, batch_size=10, idle_s=0.05, max_backoff_s=0.2)
        task = asyncio.create_task(delivery.run())
        try:
            await asyncio.wait_for(central.arrived.wait(), 2)
            await asyncio.to_thread(broker.restart)  # before the first batch is acked
            async with asyncio.timeout(3):
                while await depth(store):  # noqa: ASYNC110 - the store has no event
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert sink.connections >= 2, "the sink did not reconnect"
    assert central.intervals() == {(iv.meter_id, iv.start) for iv in written}
    first_seen = list(dict.fromkeys(b.batch_id for b in central.received))
    assert first_seen == ["edge-a:1-10", "edge-a:11-20", "edge-a:21-30"]
    assert delivery.stats.delivered == 30 and delivery.stats.rejected == 0
    await store.close()


async def test_an_edge_cannot_publish_as_another_edge(broker: Broker) -> None:
    async with serving(Central(broker)) as central:
        sink = make_sink(broker, topic=intervals_topic("edge-b"))
        await sink.open()
        try:
            with pytest.raises(SinkError) as refused:
                await sink.deliver(quarters(2), batch_id="1-2")
        finally:
            await sink.close()
        await asyncio.sleep(0.2)
    assert not refused.value.retryable
    assert "PUBACK 135" in str(refused.value) and "ACL" in str(refused.value)
    assert central.received == []


async def test_without_a_broker_deliver_fails_retryably(tmp_path: Path) -> None:
    broker = Broker(host="127.0.0.1", port=1, tmp=tmp_path, conf=tmp_path / "c",
                    log_file=tmp_path / "l")
    sink = make_sink(broker, ack_timeout_s=0.5)
    await sink.open()
    try:
        with pytest.raises(SinkError) as down:
            await sink.deliver(quarters(1), batch_id="1-1")
    finally:
        await sink.close()
    assert down.value.retryable


async def test_acks_published_while_the_edge_is_away_wait_in_its_session(
        broker: Broker) -> None:
    def ack_late(batch: Batch, _seen: int) -> list[tuple[float, Ack]]:
        return [(0.4, Ack(batch_id=batch.batch_id, stored=len(batch.intervals)))]

    async with serving(Central(broker, ack_late)) as central:
        sink = make_sink(broker, ack_timeout_s=0.2)
        await sink.open()
        with pytest.raises(SinkError):
            await sink.deliver(quarters(2), batch_id="1-2")
        await sink.close()  # away while the central acks
        await asyncio.sleep(0.5)
        again = make_sink(broker, ack_timeout_s=0.2)  # the same edge: the same session
        await again.open()
        try:
            async with asyncio.timeout(2):
                while again.connections == 0:  # noqa: ASYNC110 - a counter, no event
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # the queued ack is handed over on reconnection
            assert await again.deliver(quarters(2), batch_id="1-2") == []
        finally:
            await again.close()
    assert central.seen == {"edge-a:1-2": 1}, "resent although its ack was waiting"


async def test_an_ack_twice_is_harmless_and_each_batch_gets_its_own(broker: Broker) -> None:
    def twice(batch: Batch, _seen: int) -> list[tuple[float, Ack]]:
        why = f"refused in {batch.batch_id}"
        ack = Ack(batch_id=batch.batch_id, stored=1, rejected=[(0, why)])
        return [(0.0, ack), (0.05, ack)]

    async with serving(Central(broker, twice)):
        sink = make_sink(broker)
        await sink.open()
        try:
            assert await sink.deliver(quarters(2), batch_id="1-2") == \
                [(0, "refused in edge-a:1-2")]
            await asyncio.sleep(0.1)  # the second ack of 1-2 arrives with no one waiting
            assert await sink.deliver(quarters(2, first=2), batch_id="3-4") == \
                [(0, "refused in edge-a:3-4")]
        finally:
            await sink.close()
