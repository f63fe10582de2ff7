"""MQTT meter input against a real Mosquitto: payloads published by a device client
become stored intervals; bad payloads are quarantined with their reason; the
subscriber survives a broker restart and keeps its session while it is away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from edge.agent import Agent
from edge.assembly import Assembly, assemble
from gateway import log
from gateway.clock import ManualClock
from gateway.ingest.mqtt_input import MqttSubscriber, Route, printable
from gateway.ingest.pipeline import Pipeline
from gateway.model import IntervalReading
from gateway.settings import load_config
from gateway.store.sqlite import SqliteStore
from tests.mosquitto_server import Broker, mosquitto_server
from tests.mqtt_peer import Peer, connected

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)
CH_IN, CH_OUT = "1.0.1.8.0.255", "1.0.2.8.0.255"
USERS = {"gateway": "gw-secret", "device": "dev-secret"}

METERS = """
[[meters]]
meter_id = "tas-1"
protocol = "mqtt"
topic = "tele/{device}/SENSOR"
codec = "tasmota_sml"
max_power_w = 20000
[meters.codec_options]
sensor = "SML"
max_payload_bytes = 256

[[meters]]
meter_id = "shelly-1"
protocol = "mqtt"
topic = "shellypro3em-0001/status/{component}"
codec = "shelly_gen2_em"
max_power_w = 20000

[[meters]]
meter_id = "json-1"
protocol = "mqtt"
topic = "site/{meter_id}/energy"
codec = "json"
max_power_w = 20000
channels = ["1.0.1.8.0.255"]
[meters.codec_options]
timestamp = { path = "ts", format = "epoch_s" }
channels = [
  { channel = "1.0.1.8.0.255", value = "energy.import", unit = "kWh" },
  { channel = "1.0.16.7.0.255", value = "power", unit = "W", kind = "instant" },
]
"""


def write_config(tmp: Path, broker: Broker, *, api: bool = False, client_id: str = "gw-test",
                 tls: bool = False) -> Path:
    api_lines = '[api]\nhost = "127.0.0.1"\nport = 0\n' if api else "[api]\nenabled = false\n"
    port = f"port = {broker.port}\n"
    if tls:
        port = f'port = {broker.tls_port}\ntls = true\nca_file = "{broker.ca_file}"\n'
    text = (f'[gateway]\ndata_dir = "data"\n[store]\nsynchronous = "NORMAL"\n{api_lines}'
            f'[mqtt]\nhost = "{broker.host}"\n{port}username = "gateway"\n'
            f'password_env = "AMI_TEST_MQTT_PASSWORD"\nclient_id = "{client_id}"\n'
            f"session_expiry_s = 600\n{METERS}")
    path = tmp / "gateway.toml"
    path.write_text(text)
    return path


def tasmota(at: datetime, kwh: str) -> bytes:
    time = at.strftime("%Y-%m-%dT%H:%M:%S")
    return f'{{"Time":"{time}","SML":{{"Total_in":{kwh},"Total_out":0.5,"Power_curr":900}}}}'\
        .encode()


def shelly(wh: str) -> bytes:
    return json.dumps({"id": 0, "total_act": float(wh), "total_act_ret": 10.0,
                       "a_total_act_energy": 1.0}).replace(str(float(wh)), wh).encode()


def generic(at: datetime, kwh: str) -> bytes:
    return f'{{"ts":{int(at.timestamp())},"energy":{{"import":{kwh}}},"power":1200}}'.encode()


@dataclass
class Rig:
    broker: Broker
    assembly: Assembly
    store: SqliteStore
    pipeline: Pipeline
    clock: ManualClock
    sub: MqttSubscriber
    task: asyncio.Task[None]

    async def publish(self, peer: Peer, topic: str, payload: bytes) -> None:
        assert not (await asyncio.to_thread(peer.publish, topic, payload)).is_failure

    async def intervals(self, meter_id: str, channel: str = CH_IN) -> list[IntervalReading]:
        return await self.store.intervals(meter_id, channel, T0 - STEP, T0 + 40 * STEP)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


def routes(assembly: Assembly) -> list[Route]:
    return [Route(meter_id=p.meter.meter_id, timezone=p.timezone, codec_name=p.meter.codec,
                  codec=p.codec, qos=p.meter.qos) for p in assembly.mqtt]


async def eventually(check: Callable[[], object]) -> None:
    """Wait (at most 3 s) until ``check()`` (or the coroutine it returns) is truthy."""
    async with asyncio.timeout(3):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


def subscriber(assembly: Assembly, pipeline: Pipeline, store: SqliteStore,
               clock: ManualClock) -> MqttSubscriber:
    assert assembly.mqtt_link is not None
    return MqttSubscriber(link=assembly.mqtt_link, routes=routes(assembly), pipeline=pipeline,
                          store=store, clock=clock,
                          transitions=log.Transitions(log.get("test")), window_s=0.05,
                          backoff_base_s=0.05, backoff_cap_s=0.2)


def start_subscriber(rig: Rig) -> None:
    rig.sub = subscriber(rig.assembly, rig.pipeline, rig.store, rig.clock)
    rig.task = asyncio.create_task(rig.sub.run())


@asynccontextmanager
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, tls: bool = False
              ) -> AsyncIterator[Rig]:
    monkeypatch.setenv("AMI_TEST_MQTT_PASSWORD", USERS["gateway"])
    async with mosquitto_server(tmp_path / "broker", users=USERS, tls=tls) as broker:
        assembly = assemble(load_config(write_config(tmp_path, broker, tls=tls)))
        store = SqliteStore(tmp_path / "store.db", synchronous="NORMAL")
        await store.open()
        clock = ManualClock(T0)
        pipeline = await Pipeline.open(store, assembly.pushed_series())
        sub = subscriber(assembly, pipeline, store, clock)
        r = Rig(broker, assembly, store, pipeline, clock, sub, asyncio.create_task(sub.run()))
        try:
            await asyncio.wait_for(r.sub.subscribed.wait(), 3)
            yield r
        finally:
            if not r.task.done():
                await r.stop()
            await store.close()


async def test_three_codecs_become_stored_intervals(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(tmp_path, monkeypatch) as r:
        with connected(r.broker, "device", USERS["device"], client_id="dev") as peer:
            for k in range(5):
                at = T0 + k * STEP
                r.clock.set(at)
                await r.publish(peer, "tele/meter-a/SENSOR", tasmota(at, f"{1000 + k}.25"))
                await r.publish(peer, "shellypro3em-0001/status/emdata:0",
                                shelly(f"{50000 + 400 * k}.5"))
                await r.publish(peer, "site/json-1/energy", generic(at, f"{20 + k}.5"))
                # Other Shelly components on the same prefix give no readings, no quarantine.
                await r.publish(peer, "shellypro3em-0001/status/sys", b'{"uptime":5}')
                # Shelly's status has no timestamp: taken at reception, before time moves on.
                await eventually(lambda k=k: r.sub.stats.messages == 4 * (k + 1))

            async def four_each() -> bool:
                return all([len(await r.intervals(m)) == 4
                            for m in ("tas-1", "shelly-1", "json-1")])
            await eventually(four_each)
        tas, shel, js = [await r.intervals(m) for m in ("tas-1", "shelly-1", "json-1")]
        assert [iv.start for iv in tas] == [T0 + k * STEP for k in range(4)]
        assert {iv.value for iv in tas} == {1000} and {iv.value for iv in shel} == {400}
        assert {iv.value for iv in js} == {1000}
        assert len(await r.intervals("tas-1", CH_OUT)) == 4  # every cumulative channel
        assert len(await r.intervals("shelly-1", CH_OUT)) == 4
        assert await r.store.quarantine_count() == 0
        status = await r.store.meter("tas-1")
        assert status is not None and status.status == "ok" and status.protocol == "mqtt"
        assert status.profile == "tasmota_sml" and status.last_read_at is not None
        assert r.sub.stats.messages == 20 and r.sub.stats.ignored == 0


BAD = [
    (b'{"Time":"2026-03-02T09:15:00","SML":{"Total_in":12', "invalid JSON"),
    (b'{"Time":"2026-03-02T09:15:00","SML":{"Total_in":NaN}}', "NaN"),
    (b'{"Time":"2026-03-02T09:15:00","SML":{"Total_in":"lots"}}', "SML.Total_in"),
    (b'{"Time":"2026-03-02T09:15:00","SML":{"Total_in":1.5},"pad":"' + b"x" * 300 + b'"}',
     "exceeds the limit of 256"),
    (b'\xff\xfe\x00garbage', "not UTF-8"),
]


async def test_malformed_payloads_are_quarantined_and_the_next_good_one_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(tmp_path, monkeypatch) as r:
        with connected(r.broker, "device", USERS["device"], client_id="dev") as peer:
            await r.publish(peer, "tele/meter-a/SENSOR", tasmota(T0, "1000"))
            r.clock.set(T0 + STEP)
            for payload, _ in BAD:
                await r.publish(peer, "tele/meter-a/SENSOR", payload)
            await r.publish(peer, "tele/meter-a/SENSOR", tasmota(T0 + STEP, "1001"))
            await eventually(lambda: r.intervals("tas-1"))
        held = await r.store.quarantined()
        assert len(held) == len(BAD)
        by_payload = sorted(held, key=lambda q: q.payload)
        for payload, reason in BAD:
            [item] = [q for q in by_payload if q.payload == printable(payload)]
            assert reason in item.reason, (reason, item.reason)
            assert item.source == "mqtt:tele/meter-a/SENSOR" and item.meter_id == "tas-1"
        oversized = next(q for q in held if "exceeds" in q.reason)
        assert oversized.payload.endswith(f"... ({len(BAD[3][0])} bytes)")
        assert "\\xff" in next(q for q in held if "UTF-8" in q.reason).payload
        [iv] = await r.intervals("tas-1")
        assert iv.start == T0 and iv.value == 1000


async def test_a_topic_no_meter_reads_is_ignored_not_quarantined(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The persistent session remembers a filter of an older config: its messages still
    arrive, and no meter's pattern matches them."""
    async with rig(tmp_path, monkeypatch) as r:
        await r.stop()
        with connected(r.broker, "gateway", USERS["gateway"], client_id="gw-test",
                       clean_start=False, session_expiry_s=600) as old:
            assert not old.subscribe("old/+/data")[0].is_failure
        start_subscriber(r)
        await asyncio.wait_for(r.sub.subscribed.wait(), 3)
        with connected(r.broker, "device", USERS["device"], client_id="dev") as peer:
            await r.publish(peer, "old/x/data", b"not even json")
            await r.publish(peer, "site/json-1/energy", generic(T0, "20"))
            await eventually(lambda: r.sub.stats.readings == 2 and r.sub.stats.ignored == 1)
        await asyncio.sleep(0.1)  # a flush window: nothing more is written
        assert await r.store.quarantine_count() == 0


async def test_subscribes_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(tmp_path, monkeypatch, tls=True) as r:
        assert r.assembly.mqtt_link is not None
        assert r.assembly.mqtt_link.device.startswith("mqtts://")
        with connected(r.broker, "device", USERS["device"], client_id="dev") as peer:
            await r.publish(peer, "site/json-1/energy", generic(T0, "20"))
            await eventually(lambda: r.sub.stats.readings == 2)


async def test_reconnects_after_a_broker_restart(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(tmp_path, monkeypatch) as r:
        with connected(r.broker, "device", USERS["device"], client_id="dev") as peer:
            await r.publish(peer, "site/json-1/energy", generic(T0, "20"))
        await eventually(lambda: r.sub.stats.readings == 2)
        await asyncio.to_thread(r.broker.restart)
        await eventually(lambda: r.sub.stats.connects == 2)
        with connected(r.broker, "device", USERS["device"], client_id="dev") as peer:
            for k in (1, 2):
                r.clock.set(T0 + k * STEP)
                await r.publish(peer, "site/json-1/energy", generic(T0 + k * STEP, f"2{k}"))
            await eventually(lambda: r.intervals("json-1"))
        assert [iv.value for iv in await r.intervals("json-1")] == [1000, 1000]


async def test_a_broker_outage_is_logged_once_and_marks_the_meters_failing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(tmp_path, monkeypatch) as r:
        with capture_logs() as logs:
            await asyncio.to_thread(r.broker.stop)
            await asyncio.sleep(0.6)  # several reconnect attempts (backoff 0.05-0.2 s)
            status = await r.store.meter("json-1")
            assert status is not None and status.status == "failing" and status.last_error
            await asyncio.to_thread(r.broker.start)
            await eventually(lambda: r.sub.stats.connects == 2)
        events = [e["event"] for e in logs]
        assert events.count("device failing") == 1 and events.count("device recovered") == 1


async def test_readings_published_while_the_gateway_is_away_are_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig(tmp_path, monkeypatch) as r:
        await r.stop()  # the session stays at the broker (session_expiry_s)
        with connected(r.broker, "device", USERS["device"], client_id="dev") as peer:
            for k in range(3):
                await r.publish(peer, "site/json-1/energy", generic(T0 + k * STEP, f"2{k}"))
        r.clock.set(T0 + 2 * STEP)
        start_subscriber(r)
        await eventually(lambda: r.intervals("json-1"))
        await eventually(lambda: r.sub.stats.readings == 6)
        assert len(await r.intervals("json-1")) == 2


async def test_the_agent_serves_an_mqtt_meter(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMI_TEST_MQTT_PASSWORD", USERS["gateway"])
    async with mosquitto_server(tmp_path / "broker", users=USERS) as broker:
        clock = ManualClock(T0)
        agent = Agent(assemble(load_config(write_config(tmp_path, broker, api=True))), clock)
        ready = asyncio.Event()

        async def started(_: Agent) -> None:
            ready.set()

        task = asyncio.create_task(agent.run(started=started))
        try:
            await asyncio.wait_for(ready.wait(), 5)
            assert agent.mqtt_input is not None
            await asyncio.wait_for(agent.mqtt_input.subscribed.wait(), 3)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as http:
                listed = (await http.get("/api/v1/meters")).json()["meters"]
                assert {m["meter_id"] for m in listed} == {"tas-1", "shelly-1", "json-1"}
                with connected(broker, "device", USERS["device"], client_id="dev") as peer:
                    for k in range(3):
                        clock.set(T0 + k * STEP)
                        await asyncio.to_thread(peer.publish, "site/json-1/energy",
                                                generic(T0 + k * STEP, f"2{k}"))
                params = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}

                async def two() -> bool:
                    got = await http.get("/api/v1/meters/json-1/intervals", params=params)
                    return len(got.json()["intervals"]) == 2
                await eventually(two)
                got = (await http.get("/api/v1/meters/json-1/intervals", params=params)).json()
                assert [iv["value"] for iv in got["intervals"]] == [1000, 1000]
                listed = (await http.get("/api/v1/meters")).json()["meters"]
                [meter] = [m for m in listed if m["meter_id"] == "json-1"]
                assert meter["status"] == "ok"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
