"""The central ingest writing straight to InfluxDB (``[ingest] target = "<sink>"``):
a batch is acked only after InfluxDB's 204, a duplicate changes nothing there, and a
malformed message is still quarantined in the local store. Real Mosquitto, real influxd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.ingest.central import CentralIngest
from gateway.ingest.central_link import BrokerLink
from gateway.ingest.central_run import InfluxTarget
from gateway.sinks.influx_http import InfluxWriter
from gateway.sinks.influx_sink import InfluxSink
from gateway.store.sqlite import SqliteStore
from tests.influx_server import influx_server
from tests.mosquitto_server import Broker, mosquitto_server
from tests.mqtt.central_harness import ACL, USERS, Edge, batch, link_options


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with mosquitto_server(tmp_path / "mqtt", users=USERS, acl=ACL) as b:
        yield b


async def _count(writer: InfluxWriter) -> int:
    result = await writer.query("SELECT count(value) FROM interval")
    series = result[0].series
    return int(series[0].values[0][1] or 0) if series else 0


async def test_batches_go_straight_to_influxdb_and_are_acked_after_its_204(
        broker: Broker, tmp_path: Path) -> None:
    async with influx_server(tmp_path / "influx") as url:
        writer = InfluxWriter(url, "central", auth=None)
        sink = InfluxSink("influxdb", writer, create_database=True)
        await sink.open()
        store = SqliteStore(tmp_path / "quarantine.db")
        await store.open()
        link = BrokerLink(link_options(broker))
        ingest = CentralIngest(link, InfluxTarget(sink, store), registry=None)
        stop = asyncio.Event()
        await link.start()
        await asyncio.wait_for(link.connected.wait(), 5)
        await asyncio.sleep(0.05)
        task = asyncio.create_task(ingest.run(stop))
        edge = Edge(broker, "edge-a")
        try:
            b = batch("edge-a", 0, 48, channels=2)
            edge.send_batch(b)
            ack = (await asyncio.to_thread(edge.collect, 1))[0]
            assert (ack["stored"], ack["rejected"]) == (96, [])
            assert await _count(writer) == 96  # written before the ack was sent
            edge.send_batch(b)
            edge.send(b'{"v": 1, "batch": "edge-a:7-8", "edge": "edge-a"}')
            acks = await asyncio.to_thread(edge.collect, 2)
            assert acks[0] == ack and acks[1]["stored"] == 0
            assert await _count(writer) == 96
            assert await store.quarantine_count() == 1
        finally:
            edge.close()
            stop.set()
            await task
            await link.stop()
            await sink.close()
            await store.close()
