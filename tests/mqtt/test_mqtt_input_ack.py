"""The MQTT meter input acknowledges a message only once what it brought is stored,
against a real Mosquitto: a store that refuses writes leaves the messages at the
broker, which sends them again; redeliveries are taken once (no double intervals, no
quarantine noise); and the gateway killed with SIGKILL at random moments ends with
exactly what the same readings fed in one go give."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.errors import DataError
from gateway.ingest.mqtt_acks import AckLedger
from gateway.ingest.mqtt_input import printable
from gateway.store import QuarantineItem
from tests.mosquitto_server import Broker
from tests.mqtt.test_mqtt_input import (
    STEP,
    T0,
    USERS,
    Rig,
    eventually,
    rig,
    routes,
    start_subscriber,
    tasmota,
)
from tests.mqtt_peer import connected

TOPIC = "tele/meter-a/SENSOR"
BROKEN = b'{"Time":"2026-03-02T09:20:00","SML":{"Total_in":12'


def test_the_ledger_acknowledges_in_order_what_is_settled() -> None:
    acks = AckLedger()
    acks.received(1, 1, "a", b"1")
    acks.received(2, 1, "b", b"2", done=True)  # ignored: done at once, waits for mid 1
    assert acks.ready() == []
    upto = acks.mark()
    acks.received(3, 1, "a", b"3")  # after the flush began: not settled by it
    acks.received(4, 0, "a", b"4")  # QoS 0: nothing to acknowledge
    assert acks.settle(upto) == [(1, 1), (2, 1)]
    assert len(acks) == 1
    acks.disconnected()  # mid 3's content still waits: an orphan
    assert len(acks) == 0 and acks.orphans == 1
    assert not acks.adopt("a", b"other") and acks.adopt("a", b"3") and acks.orphans == 0


async def publish_three(r: Rig, broker: Broker) -> None:
    r.clock.set(T0 + timedelta(days=1))  # the readings are not in the future
    with connected(broker, "device", USERS["device"], client_id="dev") as peer:
        for k in range(3):
            await r.publish(peer, TOPIC, tasmota(T0 + k * STEP, f"{1000 + k}"))
        await r.publish(peer, TOPIC, BROKEN)


async def check_stored_once(r: Rig) -> None:
    ivs = await r.intervals("tas-1")
    assert [(iv.start, iv.value) for iv in ivs] == [(T0, 1000), (T0 + STEP, 1000)]
    [held] = await r.store.quarantined()
    assert held.payload == printable(BROKEN)


async def test_a_store_refusing_writes_leaves_the_messages_unacknowledged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not acknowledged: a new gateway process (a new subscriber, nothing in memory)
    gets them from the broker and stores them, once."""
    async with rig(tmp_path, monkeypatch) as r:
        await r.store.close()  # refuses every write from here on
        await publish_three(r, r.broker)
        await eventually(lambda: r.sub.stats.messages == 4)
        await asyncio.sleep(0.2)  # flush windows: every one fails
        assert r.sub.stats.acked == 0 and r.sub.unacknowledged() == 4
        await r.stop()
        await r.store.open()
        start_subscriber(r)
        await eventually(lambda: r.sub.stats.messages == 4 and r.sub.unacknowledged() == 0)
        assert r.sub.stats.acked == 4
        await check_stored_once(r)


async def test_a_redelivery_after_a_reconnect_is_taken_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same subscriber holds the readings in memory while the broker restarts and
    sends the messages again: they are adopted, not added a second time."""
    async with rig(tmp_path, monkeypatch) as r:
        await r.store.close()
        await publish_three(r, r.broker)
        await eventually(lambda: r.sub.stats.messages == 4)
        await asyncio.to_thread(r.broker.restart)
        await eventually(lambda: r.sub.stats.connects == 2 and r.sub.stats.messages == 8)
        assert r.sub.stats.adopted == 4 and r.sub.stats.acked == 0
        await r.store.open()
        await eventually(lambda: r.sub.unacknowledged() == 0 and r.sub.stats.acked == 4)
        await check_stored_once(r)
        # Acknowledged for good: a new session start gets nothing again.
        await r.stop()
        start_subscriber(r)
        await asyncio.wait_for(r.sub.subscribed.wait(), 3)
        await asyncio.sleep(0.2)
        assert r.sub.stats.messages == 0


async def test_messages_stored_but_not_acknowledged_come_again_and_add_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that died between its commit and its acknowledgements: a raw session
    under the gateway's client id takes the messages without acknowledging them, and
    their readings and refused payload are already in the store. The broker sends
    them again flagged DUP: no stale-read quarantine, no second quarantine entry."""
    async with rig(tmp_path, monkeypatch) as r:
        await r.stop()
        raw = connected(r.broker, "gateway", USERS["gateway"], client_id="gw-test",
                        clean_start=False, session_expiry_s=600)
        with raw as session:
            session.client.manual_ack_set(True)
            await publish_three(r, r.broker)
            taken = [await asyncio.to_thread(session.messages.get, True, 2) for _ in range(4)]
            assert [m.payload for m in taken][-1] == BROKEN
        readings = [reading for m in taken[:3] for route in routes(r.assembly)
                    if route.codec.pattern.match(TOPIC)
                    for reading in route.codec.decode(TOPIC, m.payload, T0)]
        await r.pipeline.feed(readings, source=f"mqtt:{TOPIC}", now=T0 + timedelta(days=1))
        await r.store.write_intervals([], quarantine=[QuarantineItem(
            at=T0, source=f"mqtt:{TOPIC}", meter_id="tas-1", payload=printable(BROKEN),
            reason=_reason(r, BROKEN))])
        start_subscriber(r)
        await eventually(lambda: r.sub.stats.messages == 4 and r.sub.unacknowledged() == 0)
        assert r.sub.stats.replayed == 2 * 2  # 09:00 and 09:15, both cumulative channels
        await asyncio.sleep(0.1)
        await check_stored_once(r)


def _reason(r: Rig, payload: bytes) -> str:
    [route] = [x for x in routes(r.assembly) if x.codec.pattern.match(TOPIC)]
    try:
        route.codec.decode(TOPIC, payload, T0)
    except DataError as exc:
        return str(exc)
    raise AssertionError("the payload decodes")


def quarantine_key(q: QuarantineItem) -> tuple[str, str | None, str | None, str, str]:
    return (q.source, q.meter_id, q.channel, q.payload, q.reason)

