"""InfluxDB down for a while, and an outbox that fills up, with the real components.

An outage: ingest goes on, the status says the sink is failing and how deep the queue
is, and once InfluxDB is back everything queued is delivered, in queue order, exactly
once. A full outbox: the edge agent with a DLMS meter and a Modbus billing meter and an
unreachable InfluxDB raises its alarm once, stops reading the DLMS meter (its load
profile keeps the data) while the billing meter is read and queued as always, and once
InfluxDB is reachable drains, reads the DLMS meter again and catches up what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge.agent import Agent
from edge.assembly import assemble
from gateway.clock import ScaledClock
from gateway.ingest.delivery import Delivery, Sink
from gateway.ingest.pipeline import Pipeline
from gateway.model import IntervalReading, Quality
from gateway.profiles import DeviceProfile, load_profiles
from gateway.settings import DEFAULT_PROFILES_DIR, load_config
from gateway.sim import MeterSpec, serve_meters
from gateway.sim.dlms_link import serve_dlms
from gateway.sim.dlms_objects import DlmsMeterSpec
from gateway.sinks.build import build_sinks
from gateway.sinks.influx_http import InfluxHttp
from gateway.status import gateway_status
from gateway.store.outbox import OutboxEntry
from gateway.store.sqlite import SqliteStore
from tests.e2e.crash_child import CH, T0, Plan, meter_ids, readings, series
from tests.e2e.test_influx_delivery import TcpGate
from tests.influx_server import running_influxd

PROFILES = load_profiles(DEFAULT_PROFILES_DIR)
DAY = datetime(2026, 6, 10, tzinfo=UTC)
DLMS_CHANNELS = ("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255")


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with running_influxd(tmp_path_factory.mktemp("influxd-outage")) as url:
        yield url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0,
                what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not met within {timeout_s} s")
        await asyncio.sleep(0.02)


async def in_influx(url: str, database: str) -> dict[tuple[str, str], list[tuple[object, ...]]]:
    """Per (meter, channel): (start, value, quality, flags) of every point, oldest first."""
    http = InfluxHttp(url, database)
    await http.open()
    try:
        [result] = await http.query('SELECT "value", "quality", "flags" FROM "interval" '
                                    'GROUP BY "meter_id", "channel"')
    finally:
        await http.close()
    points: dict[tuple[str, str], list[tuple[object, ...]]] = {
        (s.tags["meter_id"], s.tags["channel"]): [tuple(r) for r in s.values]
        for s in result.series if s.tags is not None}
    return points


def as_points(rows: Sequence[IntervalReading]) -> list[tuple[object, ...]]:
    return [(int(iv.start.timestamp()), iv.value, int(iv.quality), iv.flags) for iv in rows]


async def depth(store: SqliteStore) -> int:
    return max((s.depth for s in await store.outbox_status()), default=0)


def count(store: SqliteStore, sql: str) -> int:
    """One number from the store's file, read beside the store's own connections."""
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        row = conn.execute(sql).fetchone()
    return 0 if row is None else int(row[0])


async def queued_total(store: SqliteStore) -> int:
    """How many entries were ever queued (the last queue number handed out)."""
    return count(store, "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")


# -- InfluxDB down for a while ---------------------------------------------------------


class SeqStore(SqliteStore):
    """The store, remembering the queue number of every interval it hands out (the
    delivery passes the very objects on to the sink)."""

    handed: dict[int, tuple[int, IntervalReading]]

    async def outbox_batch(self, sink: str, limit: int, *, after: int | None = None
                           ) -> list[OutboxEntry]:
        entries = await super().outbox_batch(sink, limit, after=after)
        if not hasattr(self, "handed"):
            self.handed = {}
        # The interval is kept with its number, so its id() is not reused meanwhile.
        self.handed.update((id(e.interval), (e.seq, e.interval)) for e in entries)
        return entries


class RecordingSink:
    """The InfluxDB sink, recording the queue numbers of every batch it has stored."""

    def __init__(self, inner: Sink, store: SeqStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.store = store
        self.stored: list[int] = []
        self.failed = 0

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def deliver(self, batch: Sequence[IntervalReading]) -> list[tuple[int, str]]:
        seqs = [self.store.handed[id(iv)][0] for iv in batch]
        try:
            refused = await self.inner.deliver(batch)
        except BaseException:
            self.failed += 1
            raise
        self.stored.extend(seqs)
        return refused


def sink_config(tmp_path: Path, url: str, database: str, extra: Sequence[str] = ()) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join([
        "[gateway]", 'data_dir = "data"', 'timezone = "UTC"',
        "[store]", 'synchronous = "NORMAL"', *extra,
        "[[sinks]]", 'kind = "influxdb"', 'name = "tsdb"', f'url = "{url}"',
        f'database = "{database}"', "create_database = true", "timeout_s = 1",
        "retries = 0", "batch_lines = 100",
    ]) + "\n")
    return path


async def test_influxdb_down_then_back_delivers_everything_in_order(tmp_path: Path,
                                                                   influx: str) -> None:
    gate = TcpGate(port_of(influx))
    await gate.open()
    cfg = load_config(sink_config(tmp_path, f"http://127.0.0.1:{gate.port}", "outage"))
    plan = Plan(meters=6, reads=240, batch_meters=3, batch_reads=4)
    batches = readings(plan)
    thirds = [batches[: len(batches) // 3], batches[len(batches) // 3: 2 * len(batches) // 3],
              batches[2 * len(batches) // 3:]]
    store = SeqStore(cfg.store_path, synchronous="NORMAL")
    await store.open()
    await store.use_sinks(["tsdb"])
    [influx_sink] = build_sinks(cfg, store)
    sink = RecordingSink(influx_sink, store)
    delivery = Delivery(store, sink, batch_size=100, idle_s=0.02, max_backoff_s=0.2)
    pipeline = await Pipeline.open(store, series(plan))
    task = asyncio.create_task(delivery.run())

    async def feed(part: list[list]) -> None:  # type: ignore[type-arg]
        for batch in part:
            await pipeline.feed(batch, source="poll", now=plan.now())
            delivery.nudge()
            await asyncio.sleep(0)

    async def drained() -> bool:
        return await depth(store) == 0

    try:
        await feed(thirds[0])
        await until(drained, what="first third delivered")
        delivered_before = await queued_total(store)
        await gate.shut()  # InfluxDB unreachable: connections refused, open ones cut
        await feed(thirds[1])

        async def failing() -> bool:
            return delivery.stats.failing

        await until(failing, what="delivery failing")
        view = await gateway_status(store, cfg.settings.outbox, {"tsdb": delivery.stats})
        [state] = view.sinks
        backlog = await queued_total(store) - delivered_before
        assert backlog >= 400
        assert view.status == "degraded" and state.failing and state.last_error
        assert state.depth == view.outbox.depth == backlog
        assert state.oldest_undelivered is not None
        await feed(thirds[2])  # ingest goes on while InfluxDB is away
        during = await gateway_status(store, cfg.settings.outbox, {"tsdb": delivery.stats})
        assert during.sinks[0].depth == await queued_total(store) - delivered_before
        assert during.sinks[0].failing
        await gate.open()
        await until(drained, what="backlog delivered after the outage")
        after = await gateway_status(store, cfg.settings.outbox, {"tsdb": delivery.stats})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gate.shut()
    try:
        total = await queued_total(store)
        assert sink.failed >= 1
        # Stored by InfluxDB in queue order, each queue entry exactly once.
        assert sink.stored == list(range(1, total + 1))
        assert after.status == "ok" and not after.sinks[0].failing
        assert after.sinks[0].delivered_total == total and after.sinks[0].last_error is None
        points = await in_influx(influx, "outage")
        count = 0
        for meter in meter_ids(plan):
            rows = await store.intervals(meter, CH, T0, plan.now())
            assert points[(meter, CH)] == as_points(rows), meter
            count += len(rows)
        assert count == sum(len(v) for v in points.values()) > 0
    finally:
        await store.close()


# -- a full outbox ---------------------------------------------------------------------


class QuickAgent(Agent):
    """The agent, looking at the outbox's depth every 50 ms rather than every 2 s."""

    async def _watch_outbox(self, every_s: float = 0.05) -> None:
        await super()._watch_outbox(every_s)


def agent_config(tmp_path: Path, sink_url: str, dlms_port: int, modbus_port: int) -> Path:
    return sink_config(tmp_path, sink_url, "full", extra=[
        "[api]", "enabled = false",
        "[outbox]", "alarm_depth = 200", "pause_depth = 300",
        "[[meters]]", 'meter_id = "DLMS-1"', 'protocol = "dlms_tcp"',
        'profile = "dlms_generic_electricity"', 'host = "127.0.0.1"', f"port = {dlms_port}",
        "poll_interval_s = 900", "catch_up_days = 1", "timeout_s = 2",
        "[[meters]]", 'meter_id = "MB-1"', 'profile = "eastron_sdm630"',
        'host = "127.0.0.1"', f"port = {modbus_port}", "poll_interval_s = 300",
        "inter_request_ms = 0",
    ])


async def test_a_full_outbox_pauses_dlms_keeps_billing_and_catches_up(tmp_path: Path,
                                                                      influx: str) -> None:
    # An hour a second: the DLMS meter is due every 0.25 s, the Modbus meter every 0.08 s.
    clock = ScaledClock(DAY + timedelta(hours=10, minutes=7), speed=3600)
    gate = TcpGate(port_of(influx))  # not open yet: InfluxDB's port is closed
    dlms_spec = DlmsMeterSpec("DLMS-1", serial="40001234", start_energy_wh=7_000_000)
    modbus_profile = PROFILES["eastron_sdm630"]
    assert isinstance(modbus_profile, DeviceProfile)
    modbus_spec = MeterSpec(meter_id="MB-1", profile=modbus_profile,
                            start_energy_wh=5_000_000)
    async with serve_dlms([dlms_spec], clock, medium="tcp") as dlms, \
            serve_meters([modbus_spec], clock) as [modbus]:
        cfg = agent_config(tmp_path, f"http://127.0.0.1:{gate.port}", dlms.port, modbus.port)
        agent = QuickAgent(assemble(load_config(cfg)), clock)
        ready = asyncio.Event()

        async def started(a: Agent) -> None:
            for d in a.deliveries:  # retry a refused InfluxDB often, to see it back soon
                d.max_backoff_s, d.idle_s = 0.2, 0.05
            ready.set()

        with capture_logs() as logs:
            task = asyncio.create_task(agent.run(started=started))
            try:
                await asyncio.wait_for(ready.wait(), 10)
                store = agent.store
                by_id = {p.meter_id: p for p in agent.pollers}
                dlms_poller, modbus_poller = by_id["DLMS-1"], by_id["MB-1"]

                async def paused() -> bool:
                    if task.done():
                        task.result()  # the agent's failure is the test's
                    return agent.outbox_paused and dlms_poller.stats.paused

                await until(paused, what="DLMS meter paused by a full outbox")
                view = await agent.status()
                assert view.status == "alarm" and view.outbox.alarm and view.outbox.paused
                assert view.sinks[0].failing and view.outbox.depth >= 300
                dlms_polls, modbus_polls = dlms_poller.stats.polls, modbus_poller.stats.polls
                modbus_rows = len(await stored(store, "MB-1"))
                queued = await queued_total(store)
                pause_began = clock.now()
                await asyncio.sleep(1.5)  # an hour and a half with InfluxDB away

                # The billing meter is read and queued as always; the DLMS meter waits.
                assert dlms_poller.stats.polls == dlms_polls and dlms_poller.stats.paused
                assert modbus_poller.stats.polls >= modbus_polls + 5
                more = len(await stored(store, "MB-1")) - modbus_rows
                assert more >= 4  # about six quarter hours passed
                assert await queued_total(store) - queued >= more  # queued, none dropped
                assert await depth(store) == await queued_total(store)  # nothing delivered

                await gate.open()  # InfluxDB reachable again

                async def caught_up() -> bool:
                    if agent.outbox_paused or dlms_poller.stats.polls == dlms_polls:
                        return False
                    rows = await stored(store, "DLMS-1")  # read up to the last quarter hour
                    return (rows[-1].end >= clock.now() - timedelta(minutes=30)
                            and await depth(store) == 0)

                await until(caught_up, what="drained, DLMS read again and delivered")
                resumed = clock.now()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await gate.shut()
        store = SqliteStore(cfg.parent / "data" / "store.db")
        await store.open()
        try:
            got = await stored(store, "DLMS-1")
            # The DLMS meter's intervals run without a hole across the pause, each its
            # meter's own register advance: caught up from its load profile.
            assert [iv.start for iv in got] == [got[0].start + timedelta(minutes=15 * i)
                                                for i in range(len(got))]
            assert got[0].start <= pause_began - timedelta(hours=1)
            assert got[-1].end >= resumed - timedelta(minutes=30) > pause_began
            assert {iv.quality for iv in got} == {Quality.VALID}
            meter = dlms.meter("DLMS-1")
            for iv in got:
                assert iv.value == meter.registers_wh(iv.end)[0] - meter.registers_wh(
                    iv.start)[0], iv.start
            # Everything stored reached InfluxDB.
            points = await in_influx(influx, "full")
            for s in await store.series():
                rows = await store.intervals(s.meter_id, s.channel, DAY - timedelta(days=3),
                                             DAY + timedelta(days=3))
                assert points.get((s.meter_id, s.channel), []) == as_points(rows), s
            assert sum(len(v) for v in points.values()) == await queued_total_distinct(store)
        finally:
            await store.close()
    alarms = [e for e in logs if e["event"].startswith("outbox past its alarm depth")]
    pauses = [e for e in logs if e["event"].startswith("outbox past its pause depth")]
    assert len(alarms) == 1 and alarms[0]["log_level"] == "critical"
    assert len(pauses) == 1 and pauses[0]["log_level"] == "critical"
    assert any(e["event"].startswith("outbox drained") for e in logs)


async def stored(store: SqliteStore, meter: str, channel: str = CH) -> list[IntervalReading]:
    return await store.intervals(meter, channel, DAY - timedelta(days=3),
                                 DAY + timedelta(days=3))


async def queued_total_distinct(store: SqliteStore) -> int:
    """How many distinct intervals the store holds (each one InfluxDB point)."""
    return count(store, "SELECT count(*) FROM interval")
