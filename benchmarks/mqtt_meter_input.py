"""MQTT meter input throughput through a real Mosquitto (the gateway's own subscriber).

50 Tasmota meters (one topic each) publish ``--messages`` QoS 1 readings in all, 15
minutes apart per meter, through a publisher that keeps up to 1,000 in flight. The
gateway's ``MqttSubscriber`` (persistent session, QoS 1) feeds them to the real
pipeline and SQLite store. Timed from the first publish until every reading's
intervals are committed and every message is acknowledged. The broker runs with
``max_queued_messages 1000000`` and its default in-flight window (20 per client).

    .venv/bin/python benchmarks/mqtt_meter_input.py [--messages 5000] [--meters 50]
        [--runs 3] [--ack-early 16] [--receive-maximum 500]

``--ack-early 100000 --receive-maximum 0`` shows what acknowledging after the commit
costs without the early flush: the broker stops at 20 unacknowledged messages and
waits for each 100 ms window.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from edge.assembly import assemble
from gateway import log
from gateway.clock import ManualClock
from gateway.ingest import mqtt_input
from gateway.ingest.mqtt_input import MqttSubscriber, Route
from gateway.ingest.pipeline import Pipeline
from gateway.settings import load_config
from gateway.store.sqlite import SqliteStore
from tests.mosquitto_server import Broker, running_mosquitto

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)


def config(tmp: Path, broker: Broker, meters: int) -> Path:
    text = (f'[gateway]\ndata_dir = "data"\n[store]\nsynchronous = "NORMAL"\n'
            f'[api]\nenabled = false\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            'client_id = "gw-bench"\nsession_expiry_s = 600\n')
    for m in range(meters):
        text += (f'[[meters]]\nmeter_id = "tas-{m:02d}"\nprotocol = "mqtt"\n'
                 f'topic = "tele/tas-{m:02d}/SENSOR"\ncodec = "tasmota_sml"\n'
                 'max_power_w = 20000\ntimezone = "UTC"\n'
                 '[meters.codec_options]\nsensor = "SML"\n')
    path = tmp / "gateway.toml"
    path.write_text(text)
    return path


def payload(at: datetime, kwh: float) -> bytes:
    return (f'{{"Time":"{at:%Y-%m-%dT%H:%M:%S}","SML":{{"Total_in":{kwh:.3f},'
            f'"Total_out":0.5,"Power_curr":900}}}}').encode()


def publish_all(broker: Broker, messages: int, meters: int) -> None:
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub",
                      protocol=MQTTProtocolVersion.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    infos = []
    for k in range(messages):
        m, step = k % meters, k // meters
        infos.append(pub.publish(f"tele/tas-{m:02d}/SENSOR",
                                 payload(T0 + step * STEP, 1000 + step * 0.25), qos=1))
    for info in infos:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()


async def run(messages: int, meters: int, ack_early: int) -> float:
    with tempfile.TemporaryDirectory() as d, running_mosquitto(Path(d) / "broker") as broker:
        tmp = Path(d)
        # Mosquitto's default max_queued_messages (1,000) drops what a lagging
        # subscriber has not taken yet: not what is measured here. Not 0 (no limit):
        # Mosquitto 2.0 then ignores the in-flight window too.
        broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 1000000\n")
        broker.restart()
        assembly = assemble(load_config(config(tmp, broker, meters)))
        assert assembly.mqtt_link is not None
        store = SqliteStore(tmp / "store.db", synchronous="NORMAL")
        await store.open()
        pipeline = await Pipeline.open(store, assembly.pushed_series())
        routes = [Route(meter_id=p.meter.meter_id, timezone=p.timezone,
                        codec_name=p.meter.codec, codec=p.codec, qos=p.meter.qos)
                  for p in assembly.mqtt]
        sub = MqttSubscriber(link=assembly.mqtt_link, routes=routes, pipeline=pipeline,
                             store=store, clock=ManualClock(T0 + timedelta(days=400)),
                             transitions=log.Transitions(log.get("bench")),
                             ack_early=ack_early)
        task = asyncio.create_task(sub.run())
        await asyncio.wait_for(sub.subscribed.wait(), 5)
        per_meter = messages // meters
        want = 2 * meters * (per_meter - 1)  # two cumulative channels per meter
        start = time.perf_counter()
        publisher = asyncio.create_task(asyncio.to_thread(publish_all, broker, messages, meters))
        while sub.stats.intervals < want or not _all_acked(sub):
            await asyncio.sleep(0.005)
            if time.perf_counter() - start > 60:
                raise SystemExit(f"timed out: {sub.stats}")
        elapsed = time.perf_counter() - start
        await publisher
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
        print(f"{messages} messages, {meters} meters: {elapsed:.2f} s, "
              f"{messages / elapsed:,.0f} messages/s (acked {sub.stats.acked})")
        return messages / elapsed


def _all_acked(sub: MqttSubscriber) -> bool:
    unacked = getattr(sub, "unacknowledged", None)
    return unacked is None or unacked() == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ack-early", type=int, default=mqtt_input.ACK_EARLY)
    parser.add_argument("--receive-maximum", type=int, default=mqtt_input.RECEIVE_MAXIMUM,
                        help="0: do not ask the broker for a larger in-flight window")
    args = parser.parse_args()
    log.configure(level="warning")
    mqtt_input.RECEIVE_MAXIMUM = args.receive_maximum or None  # type: ignore[assignment]
    rates = sorted(asyncio.run(run(args.messages, args.meters, args.ack_early))
                   for _ in range(args.runs))
    print(f"median: {rates[len(rates) // 2]:,.0f} messages/s")


if __name__ == "__main__":
    main()
