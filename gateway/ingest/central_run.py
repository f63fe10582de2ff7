"""``ami-gateway ingest``: one central ingest worker, built from the config, run until
SIGTERM (exit 0) or SIGINT (exit 130); either way the messages already received are
stored and acked before it disconnects.

Worker ``N`` connects as ``<client_id_prefix>-<N>``. With the SQLite target every
worker writes the ``[store]`` file, and worker 0 alone also delivers its outbox to the
``[[sinks]]`` (one delivery per sink, as the edge agent does), so two workers never
send the same entries twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import log
from gateway.config_checks import read_secret
from gateway.errors import ConfigError
from gateway.ingest.central import CentralIngest, IngestTarget, SqliteTarget, Written
from gateway.ingest.central_link import BrokerLink, LinkOptions, retire_session
from gateway.ingest.delivery import Delivery
from gateway.model import IntervalReading
from gateway.mqtt_names import shared_intervals
from gateway.settings import LoadedConfig
from gateway.settings_sinks import InfluxSinkConfig
from gateway.store import QuarantineItem
from gateway.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from gateway.sinks.influx_sink import InfluxSink

__all__ = ["InfluxTarget", "ingest_password", "link_options", "retire_worker", "run_ingest"]

_log = log.get("gateway.ingest.central")
PROGRESS_S = 10.0


def ingest_password(cfg: LoadedConfig) -> str | None:
    ing = cfg.settings.ingest
    return read_secret(config_file=cfg.file, key="ingest.password", env=ing.password_env,
                       file=ing.password_file, what="the broker password")


def _relative(cfg: LoadedConfig, path: Path) -> Path:
    return path if path.is_absolute() else cfg.file.parent / path


def link_options(cfg: LoadedConfig, worker: int) -> LinkOptions:
    ing = cfg.settings.ingest
    return LinkOptions(
        host=ing.host, port=ing.port, client_id=f"{ing.client_id_prefix}-{worker}",
        username=ing.username, password=ingest_password(cfg),
        subscription=shared_intervals(ing.share_group), tls=ing.tls,
        ca_file=_relative(cfg, ing.ca_file) if ing.ca_file else None,
        session_expiry_s=ing.session_expiry_s, keepalive_s=ing.keepalive_s,
        max_backlog=ing.max_backlog_messages)


class InfluxTarget:
    """Straight to an InfluxDB sink (ack after its 204); quarantine to the local store."""

    def __init__(self, sink: InfluxSink, store: SqliteStore) -> None:
        self.sink = sink
        self.store = store

    async def write(self, readings: Sequence[IntervalReading],
                    quarantine: Sequence[QuarantineItem]) -> Written:
        refused = await self.sink.deliver(readings) if readings else []
        if quarantine:
            await self.store.write_intervals([], quarantine=quarantine)
        # InfluxDB overwrites a point silently: a replay cannot be told from news.
        return Written(refused=refused, changed=len(readings) - len(refused))


@contextlib.asynccontextmanager
async def _target(cfg: LoadedConfig, store: SqliteStore) -> AsyncIterator[IngestTarget]:
    name = cfg.settings.ingest.target
    if name == "sqlite":
        yield SqliteTarget(store)
        return
    influx = _influx_sinks(cfg)
    if name not in influx:
        raise ConfigError(f"ingest.target {name!r} is neither \"sqlite\" nor an InfluxDB sink",
                          file=cfg.file, key="ingest.target",
                          fix="use \"sqlite\" or the name of a [[sinks]] entry of kind "
                              "\"influxdb\": " + (", ".join(influx) or "none is configured"))
    sink = influx[name][0]
    await sink.open()
    try:
        yield InfluxTarget(sink, store)
    finally:
        await sink.close()


async def run_ingest(cfg: LoadedConfig, *, worker: int = 0) -> int:
    """Run one worker until SIGTERM (returns 0) or SIGINT (returns 130)."""
    ing = cfg.settings.ingest
    options = link_options(cfg, worker)
    store = SqliteStore(cfg.store_path, synchronous=cfg.settings.store.synchronous)
    await store.open()
    stop = asyncio.Event()
    code = 0
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        nonlocal code
        code = 130 if sig == signal.SIGINT else 0
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    link = BrokerLink(options)
    try:
        await store.use_sinks([s.name for s in cfg.settings.sinks])
        async with _target(cfg, store) as target, asyncio.TaskGroup() as tg:
            registry = store if ing.target == "sqlite" else None
            worker_ = CentralIngest(link, target, registry=registry, batch_ms=ing.batch_ms,
                                    max_batch_messages=ing.max_batch_messages,
                                    max_batch_bytes=ing.max_batch_bytes)
            side = _side_tasks(cfg, store, worker, worker_, link, tg)
            await link.start()
            _log.info("ingest worker running", worker=worker, client_id=options.client_id,
                      broker=f"{options.host}:{options.port}", target=ing.target,
                      subscription=options.subscription, store=str(store.path))
            await worker_.run(stop)
            await worker_.shutdown()  # those held are stored and acked, then it disconnects
            for task in side:
                task.cancel()
            _log.info("ingest worker stopped", worker=worker, shed=link.shed,
                      **worker_.counters.as_dict())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await link.stop()
        await store.close()
    return code


def _side_tasks(cfg: LoadedConfig, store: SqliteStore, worker: int, ingest: CentralIngest,
                link: BrokerLink, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
    tasks = [tg.create_task(_progress(ingest, link), name="progress")]
    if worker == 0 and cfg.settings.ingest.target == "sqlite":
        for sink, batch_lines in _influx_sinks(cfg).values():
            delivery = Delivery(store, sink, batch_size=batch_lines)
            tasks.append(tg.create_task(delivery.run(), name=f"deliver {sink.name}"))
    return tasks


def _influx_sinks(cfg: LoadedConfig) -> dict[str, tuple[InfluxSink, int]]:
    """The InfluxDB [[sinks]] by name, each with its batch size (the central site
    delivers to InfluxDB only; an uplink sink belongs on an edge)."""
    from gateway.sinks.influx_http import InfluxWriter
    from gateway.sinks.influx_sink import InfluxSink, influx_auth

    out: dict[str, tuple[InfluxSink, int]] = {}
    for i, sc in enumerate(cfg.settings.sinks):
        if not isinstance(sc, InfluxSinkConfig):
            continue
        writer = InfluxWriter(sc.url, sc.database, auth=influx_auth(cfg, sc, f"sinks[{i}]"),
                              retention_policy=sc.retention_policy, gzip=sc.gzip,
                              batch_lines=sc.batch_lines, timeout_s=sc.timeout_s,
                              retries=sc.retries)
        sink = InfluxSink(sc.name, writer, create_database=sc.create_database)
        out[sc.name] = (sink, sc.batch_lines)
    return out


async def _progress(ingest: CentralIngest, link: BrokerLink) -> None:
    last: dict[str, int] = {}
    while True:
        await asyncio.sleep(PROGRESS_S)
        now = ingest.counters.as_dict()
        if now != last:
            _log.info("ingest progress", backlog=link.backlog, shed=link.shed, **now)
            last = now


async def retire_worker(cfg: LoadedConfig, worker: int) -> None:
    """End worker ``worker``'s broker session (scaling down: its share goes to the
    others at once instead of waiting for ``session_expiry_s``). Stop the worker first."""
    await asyncio.to_thread(retire_session, link_options(cfg, worker))
