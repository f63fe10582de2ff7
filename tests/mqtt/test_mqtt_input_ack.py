"""The MQTT meter input acknowledges a message only once what it brought is stored,
against a real Mosquitto: a store that refuses writes leaves the messages at the
broker, which sends them again; redeliveries are taken once (no double intervals, no
quarantine noise); and the gateway killed with SIGKILL at random moments ends with
exactly what the same readings fed in one go give."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.assembly import assemble
from gateway.errors import DataError
from gateway.ingest.mqtt_acks import AckLedger
from gateway.ingest.mqtt_input import printable
from gateway.ingest.pipeline import Pipeline
from gateway.model import Reading
from gateway.settings import load_config
from gateway.store import QuarantineItem
from gateway.store.sqlite import SqliteStore
from tests.mosquitto_server import Broker, mosquitto_server
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


async def stop_at_broker(r: Rig) -> None:
    """Stop the subscriber and wait until the broker has read its goodbye: a client
    that reconnects at once takes the session over, and the broker may drop what the
    old connection sent last (acknowledgements included) unread."""
    gone = r.broker.log().count("Client gw-test disconnected")
    await r.stop()
    await eventually(lambda: r.broker.log().count("Client gw-test disconnected") > gone)


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
        await stop_at_broker(r)
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



# -- the gateway killed with SIGKILL at random moments

REPO = Path(__file__).resolve().parents[2]
CRASH_METERS = 5
CRASH_STEPS = 300
CRASH_ID = "gw-crash"


def crash_config(tmp: Path, broker: Broker) -> Path:
    text = (f'[gateway]\ndata_dir = "data"\n[store]\nsynchronous = "NORMAL"\n'
            f'[api]\nenabled = false\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'username = "gateway"\npassword_env = "AMI_TEST_MQTT_PASSWORD"\n'
            f'client_id = "{CRASH_ID}"\nsession_expiry_s = 600\n')
    for m in range(CRASH_METERS):
        text += (f'[[meters]]\nmeter_id = "tas-{m}"\nprotocol = "mqtt"\n'
                 f'topic = "tele/tas-{m}/SENSOR"\ncodec = "tasmota_sml"\n'
                 'max_power_w = 20000\ntimezone = "UTC"\n'
                 '[meters.codec_options]\nsensor = "SML"\n')
    path = tmp / "gateway.toml"
    path.write_text(text)
    return path


def crash_sequence() -> list[tuple[str, bytes]]:
    """Every meter's readings 15 minutes apart, meters interleaved, and now and then a
    truncated payload (each one different) for the quarantine."""
    out = []
    for k in range(CRASH_STEPS):
        at = T0 + k * STEP
        for m in range(CRASH_METERS):
            kwh = f"{1000 + 100 * m + k * (m + 1) * 0.125:.3f}"
            out.append((f"tele/tas-{m}/SENSOR", tasmota(at, kwh)))
        if k % 40 == 7:
            out.append((f"tele/tas-{k % CRASH_METERS}/SENSOR",
                        f'{{"Time":"{at:%Y-%m-%dT%H:%M:%S}","SML":{{"Total_in":'.encode()))
    return out


class Gateway:
    """``python -m gateway run`` as a subprocess, each run logging to its own file."""

    def __init__(self, cfg: Path, tmp: Path) -> None:
        self.cfg, self.tmp, self.runs = cfg, tmp, 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "run-0.log"

    def start(self) -> None:
        self.runs += 1
        self.log = self.tmp / f"run-{self.runs}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.cfg)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)})

    async def subscribed(self) -> None:
        async with asyncio.timeout(10):
            while "subscribed" not in self.log.read_text(errors="replace"):
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                await asyncio.sleep(0.02)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(10)


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        return int(conn.execute("SELECT count(*) FROM interval").fetchone()[0])


async def reference(tmp: Path, cfg: Path, sequence: list[tuple[str, bytes]]) -> SqliteStore:
    """The same readings fed in one go (one feed per topic), the refused payloads
    quarantined as the input does."""
    assembly = assemble(load_config(cfg))
    store = SqliteStore(tmp / "reference.db", synchronous="NORMAL")
    await store.open()
    pipeline = await Pipeline.open(store, assembly.pushed_series())
    now = datetime.now(UTC)
    by_topic: dict[str, list[Reading]] = {}
    refused = []
    for topic, payload in sequence:
        for route in routes(assembly):
            if route.codec.pattern.match(topic) is None:
                continue
            try:
                by_topic.setdefault(topic, []).extend(route.codec.decode(topic, payload, now))
            except DataError as exc:
                refused.append(QuarantineItem(at=now, source=f"mqtt:{topic}", payload=printable(
                    payload), reason=str(exc), meter_id=route.meter_id))
    for topic, readings in by_topic.items():
        await pipeline.feed(readings, source=f"mqtt:{topic}", now=now)
    await store.write_intervals([], quarantine=refused)
    return store


async def contents(store: SqliteStore) -> tuple[list[tuple[object, ...]], Counter[object]]:
    rows = []
    for info in sorted(await store.series(), key=lambda s: (s.meter_id, s.channel)):
        for iv in await store.intervals(info.meter_id, info.channel, T0 - STEP,
                                        T0 + (CRASH_STEPS + 1) * STEP):
            rows.append((info.meter_id, info.channel, iv.start, iv.value, iv.quality, iv.flags))
    held = Counter(quarantine_key(q) for q in await store.quarantined(limit=100_000))
    return rows, held


async def test_the_gateway_killed_at_random_moments_keeps_every_reading_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = int(os.environ.get("AMI_CRASH_SEED") or random.randrange(2**32))
    print(f"crash test seed {seed} (AMI_CRASH_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    monkeypatch.setenv("AMI_TEST_MQTT_PASSWORD", USERS["gateway"])
    sequence = crash_sequence()
    async with mosquitto_server(tmp_path / "broker", users=USERS) as broker:
        # Mosquitto drops a session's queue beyond 1,000 messages by default.
        broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 1000000\n")
        await asyncio.to_thread(broker.restart)
        cfg = crash_config(tmp_path, broker)
        # The gateway's session exists before the first publish (as after its first run).
        with connected(broker, "gateway", USERS["gateway"], client_id=CRASH_ID,
                       clean_start=False, session_expiry_s=600) as session:
            for m in range(CRASH_METERS):
                assert not session.subscribe(f"tele/tas-{m}/SENSOR")[0].is_failure

        def publish(chunk: list[tuple[str, bytes]]) -> None:
            with connected(broker, "device", USERS["device"], client_id="dev") as peer:
                for topic, payload in chunk:
                    assert not peer.publish(topic, payload).is_failure
                    time.sleep(0.001)  # a stream the kill falls into, not one burst

        gateway = Gateway(cfg, tmp_path)
        kills = rng.randint(5, 10)
        cuts = sorted(rng.sample(range(1, len(sequence)), kills - 1))
        bounds = [0, *cuts, len(sequence)]
        for i in range(kills):
            gateway.start()
            await gateway.subscribed()
            publisher = asyncio.create_task(
                asyncio.to_thread(publish, sequence[bounds[i]:bounds[i + 1]]))
            await asyncio.sleep(rng.uniform(0.02, 0.3))
            gateway.kill()  # mostly mid-stream: the rest waits at the broker
            await publisher
        gateway.start()
        db = tmp_path / "data" / "store.db"
        want = CRASH_METERS * 2 * (CRASH_STEPS - 1)
        try:
            for _ in range(300):  # 15 s
                if await asyncio.to_thread(stored, db) >= want:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # anything more would be a double
        finally:
            gateway.kill(signal.SIGTERM)
    got = SqliteStore(db)
    await got.open()
    ref = await reference(tmp_path, cfg, sequence)
    try:
        rows, held = await contents(got)
        ref_rows, ref_held = await contents(ref)
        assert len(ref_rows) == want and sum(ref_held.values()) == len(sequence) - 5 * 300
        assert rows == ref_rows, f"seed {seed}"
        assert held == ref_held, f"seed {seed}: {held - ref_held} / {ref_held - held}"
    finally:
        await got.close()
        await ref.close()


async def test_a_stop_stores_and_acknowledges_before_disconnecting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(tmp_path, monkeypatch) as r:
        await publish_three(r, r.broker)
        await eventually(lambda: r.sub.stats.messages == 4)
        await stop_at_broker(r)  # most likely within the flush window: the stop's flush
        assert r.sub.stats.acked == 4
        start_subscriber(r)
        await asyncio.wait_for(r.sub.subscribed.wait(), 3)
        await asyncio.sleep(0.2)
        assert r.sub.stats.messages == 0  # nothing left at the broker to send again
        await check_stored_once(r)
