"""The outbox delivered to a real influxd: every interval arrives with its exact value,
quality and flags; an InfluxDB that goes away for a while (its port closed) gets
everything once it is back, and the status tells the story meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.ingest.delivery import Delivery
from gateway.model import Flag, IntervalReading, Quality, Unit
from gateway.settings import load_config
from gateway.sinks.build import build_sinks
from gateway.sinks.influx_http import InfluxHttp
from gateway.status import gateway_status
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from tests.influx_server import free_port, running_influxd

CH = "1.0.1.8.0.255"
T0 = datetime(2026, 3, 7, tzinfo=UTC)


class TcpGate:
    """A port in front of influxd that can be shut (connections refused, open ones cut)
    and opened again on the same port: an outage on a real socket."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def shut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_w), copy(up_r, writer))
        self._writers -= {writer, up_w}


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with running_influxd(tmp_path_factory.mktemp("influxd-delivery")) as url:
        yield url


def config(tmp_path: Path, url: str, database: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join([
        "[gateway]", 'data_dir = "data"',
        "[[sinks]]", 'kind = "influxdb"', 'name = "tsdb"', f'url = "{url}"',
        f'database = "{database}"', "create_database = true", "timeout_s = 2", "retries = 0",
        "batch_lines = 500",
    ]) + "\n")
    return path


def intervals(n: int, meter: str = "M-1") -> list[IntervalReading]:
    out = []
    for i in range(n):
        quality = Quality.ESTIMATED_LINEAR if i % 97 == 5 else Quality.VALID
        flags = int(Flag.GAP_SPANNED) if quality is Quality.ESTIMATED_LINEAR else 0
        out.append(IntervalReading(meter_id=meter, channel=CH,
                                   start=T0 + timedelta(minutes=15 * i), length_s=900,
                                   value=(i * 37) % 1000, unit=Unit.WH, quality=quality,
                                   flags=flags))
    return out


@contextlib.asynccontextmanager
async def store_with_sink(tmp_path: Path, url: str, database: str
                          ) -> AsyncIterator[tuple[SqliteStore, Delivery]]:
    cfg = load_config(config(tmp_path, url, database))
    store = SqliteStore(cfg.store_path, synchronous="NORMAL")
    await store.open()
    await store.register_series(SeriesInfo(meter_id="M-1", channel=CH, unit=Unit.WH,
                                           interval_s=900, timezone="UTC"))
    await store.use_sinks(["tsdb"])
    [sink] = build_sinks(cfg, store)
    delivery = Delivery(store, sink, batch_size=500, idle_s=0.02, max_backoff_s=0.2)
    try:
        yield store, delivery
    finally:
        await store.close()


async def stored(url: str, database: str) -> list[tuple[int, int, int, int]]:
    """(time, value, quality, flags) of every interval in InfluxDB, oldest first."""
    http = InfluxHttp(url, database)
    await http.open()
    try:
        [result] = await http.query('SELECT "value", "quality", "flags" FROM "interval"')
    finally:
        await http.close()
    if not result.series:
        return []
    return [tuple(row) for row in result.series[0].values]  # type: ignore[misc]


def expected(rows: list[IntervalReading]) -> list[tuple[int, int, int, int]]:
    return [(int(iv.start.timestamp()), iv.value, int(iv.quality), iv.flags) for iv in rows]


async def until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s / 0.02)):
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_every_stored_interval_reaches_influxdb_exactly(tmp_path: Path, influx: str
                                                              ) -> None:
    rows = intervals(2000)
    async with store_with_sink(tmp_path, influx, "exact") as (store, delivery):
        await store.write_intervals(rows[:1200])
        task = asyncio.create_task(delivery.run())
        await store.write_intervals(rows[1200:])  # live data behind the backlog

        async def drained() -> bool:
            return (await store.outbox_status())[0].depth == 0

        await until(drained)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        [status] = await store.outbox_status()
        assert status.delivered_total == 2000 and status.quarantined == 0
    got = await stored(influx, "exact")
    assert [(t, v, q, f) for t, v, q, f in got] == expected(rows)


async def test_an_influxdb_outage_delays_delivery_and_loses_nothing(tmp_path: Path,
                                                                    influx: str) -> None:
    gate = TcpGate(int(influx.rsplit(":", 1)[1]))
    await gate.open()
    rows = intervals(900)
    async with store_with_sink(tmp_path, f"http://127.0.0.1:{gate.port}", "outage") as (
            store, delivery):
        task = asyncio.create_task(delivery.run())
        await store.write_intervals(rows[:300])

        async def drained() -> bool:
            return (await store.outbox_status())[0].depth == 0

        await until(drained)
        await gate.shut()  # InfluxDB unreachable: refused connections
        await store.write_intervals(rows[300:600])

        async def failing() -> bool:
            return delivery.stats.failing

        await until(failing)
        cfg = load_config(tmp_path / "gateway.toml")
        view = await gateway_status(store, cfg.settings.outbox,
                                    {"tsdb": delivery.stats})
        [sink] = view.sinks
        assert view.status == "degraded" and sink.failing and sink.depth == 300
        assert sink.oldest_undelivered is not None and sink.last_error
        await store.write_intervals(rows[600:])  # the gateway keeps storing meanwhile
        await gate.open()
        await until(drained)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        [after] = await store.outbox_status()
        assert after.delivered_total == 900 and after.last_error is None
    await gate.shut()
    assert [(t, v, q, f) for t, v, q, f in await stored(influx, "outage")] == expected(rows)
