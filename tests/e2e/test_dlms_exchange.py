"""A DLMS meter exchanged between two polls, through config, assembly, poller, pipeline
and store: the identity reading changes, the store records the exchange, and nothing is
invented across the swap (the intervals after it are the new meter's register advance)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.assembly import assemble, build_driver
from gateway import log
from gateway.clock import ManualClock
from gateway.drivers.dlms.driver import DlmsDriver
from gateway.drivers.modbus.bus import BusPool
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.poller import Poller
from gateway.model import IntervalReading
from gateway.settings import DEFAULT_PROFILES_DIR, load_config
from gateway.sim.dlms_link import serve_dlms
from gateway.sim.dlms_objects import DlmsMeter, DlmsMeterSpec
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
DAY = datetime(2026, 6, 10, tzinfo=UTC)
PERIOD = timedelta(minutes=15)


def write_config(tmp_path: Path, port: int, max_entries: int | None) -> Path:
    """The generic profile; with ``max_entries`` a copy that reads at most that many
    profile rows per poll."""
    gateway = ["[gateway]", 'data_dir = "data"', 'timezone = "UTC"']
    if max_entries is not None:
        text = (DEFAULT_PROFILES_DIR / "dlms_generic_electricity.toml").read_text()
        text = text.replace("max_entries_per_poll = 960", f"max_entries_per_poll = {max_entries}")
        assert f"= {max_entries}\n" in text
        (tmp_path / "devices").mkdir()
        (tmp_path / "devices" / "dlms_generic_electricity.toml").write_text(text)
        gateway.append('profiles_dir = "devices"')
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join([
        *gateway,
        "[[meters]]", 'meter_id = "DLMS-X"', 'protocol = "dlms_tcp"',
        'profile = "dlms_generic_electricity"', 'host = "127.0.0.1"', f"port = {port}",
        "poll_interval_s = 900", "catch_up_days = 1", "timeout_s = 2",
    ]) + "\n")
    return path


async def intervals(store: SqliteStore) -> list[IntervalReading]:
    return await store.intervals("DLMS-X", CH, DAY - timedelta(days=2), DAY + timedelta(days=2))


def advance(meter: DlmsMeter, start: datetime, end: datetime) -> int:
    """The register's advance between two capture times (meter time)."""
    drift = timedelta(seconds=meter.drift_s)
    return meter.registers_wh(end - drift)[0] - meter.registers_wh(start - drift)[0]


async def run_exchange(tmp_path: Path, exchange_at: datetime, polls: list[datetime], *,
                       max_entries: int | None = None, drift_s: float = 0) -> None:
    """Poll at DAY 10:07 (until caught up), exchange the meter at ``exchange_at``, poll
    at each of ``polls``; then check the store."""
    clock = ManualClock(DAY + timedelta(hours=10, minutes=7))
    spec = DlmsMeterSpec("DLMS-X", serial="40001234", start_energy_wh=9_000_000)
    async with serve_dlms([spec], clock, medium="tcp") as server:
        meter = server.meter("DLMS-X")
        meter.set_clock_drift(drift_s)
        cfg = write_config(tmp_path, server.port, max_entries)
        assembly = assemble(load_config(cfg))
        [plan] = assembly.meters
        store = SqliteStore(tmp_path / "data" / "store.db")
        await store.open()
        try:
            pipeline = await Pipeline.open(store, assembly.polled_series())
            drv = build_driver(plan, clock, BusPool(), cursor=pipeline.last_read_at)
            poller = Poller(meter_id="DLMS-X", timezone="UTC", protocol="dlms_tcp",
                            profile=plan.profile.name, driver=drv, pipeline=pipeline,
                            store=store, clock=clock, interval_s=900,
                            transitions=log.Transitions(log.get("test")))
            assert isinstance(drv, DlmsDriver)
            assert await poller.poll_once(), poller.stats.last_error
            while drv.stats.catching_up:
                assert await poller.poll_once(), poller.stats.last_error
            before = await intervals(store)
            assert before[-1].end == DAY + timedelta(hours=10)
            assert await store.events("DLMS-X") == []

            meter.exchange(serial="40009999", start_energy_wh=500, at=exchange_at)
            identities = []
            for at in polls:
                clock.set(at)
                assert await poller.poll_once(), poller.stats.last_error
                identities.append(drv.stats.serial)
                while drv.stats.catching_up:
                    assert await poller.poll_once(), poller.stats.last_error
            assert identities[-1] == "40009999"
            assert poller.stats.quarantined == 0

            events = await store.events("DLMS-X")
            exchanges = [e for e in events if "exchange" in str(e.kind).lower()]
            assert exchanges, events
            assert {e.channel for e in exchanges} >= {CH}
            got = await intervals(store)
            # The old meter's intervals are untouched.
            assert got[:len(before)] == before
            after = got[len(before):]
            # The new meter's first capture is its baseline: its intervals start there
            # and each is its own register advance; nothing spans the swap.
            installed = exchange_at + timedelta(seconds=drift_s)  # on the meter's clock
            first = installed + (-(installed - DAY) % PERIOD)
            assert after, "the new meter's intervals"
            assert after[0].start >= first, (after[0], first)
            for iv in after:
                assert iv.value == advance(meter, iv.start, iv.end), iv
            assert sum(iv.value for iv in after) < advance(meter, installed, after[-1].end)
            assert all(iv.start >= first or iv.end <= DAY + timedelta(hours=10) for iv in got)
        finally:
            await store.close()


async def test_exchange_between_two_polls(tmp_path: Path) -> None:
    exchange = DAY + timedelta(hours=10, minutes=20)
    await run_exchange(tmp_path, exchange, [DAY + timedelta(hours=10, minutes=37),
                                            DAY + timedelta(hours=11, minutes=7)])


async def test_exchange_seen_before_the_new_meter_captured_anything(tmp_path: Path) -> None:
    """The first poll after the swap finds an empty buffer: the identity comes at the
    gateway's clock, before any row of the new meter."""
    exchange = DAY + timedelta(hours=10, minutes=20)
    await run_exchange(tmp_path, exchange, [DAY + timedelta(hours=10, minutes=25),
                                            DAY + timedelta(hours=11, minutes=7)])


async def test_exchange_found_after_a_gateway_outage(tmp_path: Path) -> None:
    """The gateway was down across the swap: the first poll after reads hours of the
    new meter's captures at once."""
    exchange = DAY + timedelta(hours=10, minutes=50)
    await run_exchange(tmp_path, exchange, [DAY + timedelta(hours=14, minutes=7)])


async def test_exchange_found_while_catching_up_a_few_rows_per_poll(tmp_path: Path) -> None:
    """The first poll after a long outage reads only old slots where neither meter
    captured anything (the old one was gone, the new one not yet there): the new
    meter's identity must still hold for the rows the next polls read."""
    exchange = DAY + timedelta(hours=12, minutes=10)
    await run_exchange(tmp_path, exchange, [DAY + timedelta(hours=14, minutes=7)],
                       max_entries=8)


async def test_exchange_of_a_meter_whose_clock_is_behind(tmp_path: Path) -> None:
    """The meter's clock runs 25 s behind (within the limit): the poll right after the
    swap finds no row yet, and the next row's capture time is before the gateway's time
    of that poll."""
    exchange = DAY + timedelta(hours=10, minutes=20)
    await run_exchange(tmp_path, exchange, [DAY + timedelta(hours=10, minutes=30, seconds=10),
                                            DAY + timedelta(hours=11, minutes=7)],
                       drift_s=-25)
