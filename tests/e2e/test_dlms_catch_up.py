"""A DLMS meter through config, assembly, poller, pipeline and store: its load profile is
read from where the store stops, so a gateway that was down (and restarted) catches up
from the meter's own memory exactly the intervals it lacks, and a meter power outage
shows as power-fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.assembly import assemble, build_driver
from gateway import log
from gateway.clock import ManualClock
from gateway.drivers.modbus.bus import BusPool
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.poller import Poller
from gateway.model import Flag, IntervalReading, Quality
from gateway.settings import load_config
from gateway.sim.dlms_link import DlmsServer, serve_dlms
from gateway.sim.dlms_objects import DlmsMeterSpec
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
CHANNELS = ("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255")
DAY = datetime(2026, 6, 10, tzinfo=UTC)


def write_config(tmp_path: Path, server: DlmsServer) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join([
        "[gateway]", 'data_dir = "data"', 'timezone = "UTC"',
        "[store]", 'synchronous = "NORMAL"',
        "[[meters]]", 'meter_id = "DLMS-1"', 'protocol = "dlms_tcp"',
        'profile = "dlms_generic_electricity"', 'host = "127.0.0.1"', f"port = {server.port}",
        "poll_interval_s = 900", "catch_up_days = 1", "timeout_s = 2",
    ]) + "\n")
    return path


async def poll(cfg: Path, clock: ManualClock, store: SqliteStore) -> Poller:
    """One poll by a freshly started gateway (pipeline restored from the store)."""
    assembly = assemble(load_config(cfg))
    [plan] = assembly.meters
    pipeline = await Pipeline.open(store, assembly.polled_series())
    poller = Poller(meter_id="DLMS-1", timezone="UTC", protocol="dlms_tcp",
                    profile=plan.profile.name,
                    driver=build_driver(plan, clock, BusPool(), cursor=pipeline.last_read_at),
                    pipeline=pipeline, store=store, clock=clock, interval_s=900,
                    transitions=log.Transitions(log.get("test")))
    assert await poller.poll_once(), poller.stats.last_error
    return poller


async def intervals(store: SqliteStore, channel: str = CH) -> list[IntervalReading]:
    return await store.intervals("DLMS-1", channel, DAY - timedelta(days=3),
                                 DAY + timedelta(days=3))


async def test_catch_up_fills_exactly_the_missing_intervals(tmp_path: Path) -> None:
    clock = ManualClock(DAY + timedelta(hours=10, minutes=7))
    spec = DlmsMeterSpec("DLMS-1", serial="40001234", start_energy_wh=7_000_000)
    async with serve_dlms([spec], clock, medium="tcp") as server:
        meter = server.meter("DLMS-1")
        cfg = write_config(tmp_path, server)
        store = SqliteStore(tmp_path / "data" / "store.db", synchronous="NORMAL")
        await store.open()
        try:
            # First start: a day back (catch_up_days = 1): rows 10:15 yesterday .. 10:00.
            await poll(cfg, clock, store)
            first = await intervals(store)
            assert first[0].start == DAY - timedelta(hours=13, minutes=45)
            assert first[-1].end == DAY + timedelta(hours=10)
            assert len(first) == 95

            # The gateway is down six hours; a new process catches up from the store.
            clock.set(DAY + timedelta(hours=16, minutes=7))
            await poll(cfg, clock, store)
            got = await intervals(store)
            assert len(got) == 95 + 24
            starts = [iv.start for iv in got]
            assert starts == [got[0].start + timedelta(minutes=15 * i) for i in range(119)]
            assert {iv.quality for iv in got} == {Quality.VALID}
            # Each interval is the meter's own register advance, exactly.
            for iv in got:
                assert iv.value == meter.registers_wh(iv.end)[0] \
                    - meter.registers_wh(iv.start)[0], iv.start
            for channel in CHANNELS[1:]:
                assert len(await intervals(store, channel)) == 119

            # The meter loses power 17:20-18:10: no captures 17:30-18:00, and the first
            # one after (18:15) says power down.
            meter.add_outage(DAY + timedelta(hours=17, minutes=20),
                             DAY + timedelta(hours=18, minutes=10))
            clock.set(DAY + timedelta(hours=19, minutes=7))
            poller = await poll(cfg, clock, store)
            got = await intervals(store)
            assert len(got) == 119 + 12 and got[-1].end == DAY + timedelta(hours=19)
            assert poller.stats.quarantined == 0
            outage = [iv for iv in got if DAY + timedelta(hours=17, minutes=15) <= iv.start
                      < DAY + timedelta(hours=18, minutes=15)]
            assert len(outage) == 4
            # The meter captured nothing in them: the register's advance across the
            # outage is spread (estimated), and each says power failed in it.
            assert all(iv.quality is Quality.ESTIMATED_LINEAR and iv.flags & Flag.POWER_FAIL
                       for iv in outage)
            assert not any(iv.flags & Flag.POWER_FAIL for iv in got if iv not in outage)
            # Nothing before the outage was touched, and the sum is the register advance.
            total = sum(iv.value for iv in got)
            assert total == meter.registers_wh(got[-1].end)[0] \
                - meter.registers_wh(got[0].start)[0]

            # Polling again at once reads nothing new and changes nothing.
            await poll(cfg, clock, store)
            assert await intervals(store) == got
        finally:
            await store.close()


async def test_readings_dropped_while_the_store_refuses_writes_are_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The poller keeps what the store refused, up to a bound; past it a DLMS meter's
    readings are dropped whole and read again from the meter once the store is back,
    so no interval is lost (a Modbus meter's oldest would be)."""
    import gateway.ingest.poller as poller_module

    monkeypatch.setattr(poller_module, "MAX_PENDING", 60)
    clock = ManualClock(DAY + timedelta(hours=10, minutes=7))
    spec = DlmsMeterSpec("DLMS-1", serial="40001234", start_energy_wh=7_000_000)
    async with serve_dlms([spec], clock, medium="tcp") as server:
        meter = server.meter("DLMS-1")
        cfg = write_config(tmp_path, server)
        store = SqliteStore(tmp_path / "data" / "store.db", synchronous="NORMAL")
        await store.open()
        try:
            poller = await poll(cfg, clock, store)  # a day caught up, stored
            await store.close()  # the store now refuses every write
            for hours in (3, 6):  # 12 rows x 4 channels each, then past the bound
                clock.set(DAY + timedelta(hours=10 + hours, minutes=7))
                assert await poller.poll_once()  # the meter answered; the commit failed
            assert poller._pending == []  # dropped whole, not the oldest only
            await store.open()
            clock.set(DAY + timedelta(hours=16, minutes=22))
            assert await poller.poll_once()
            got = await intervals(store)
            assert len(got) == 95 + 25 and got[-1].end == DAY + timedelta(hours=16, minutes=15)
            assert {iv.quality for iv in got} == {Quality.VALID}  # no gap, no estimate
            for iv in got:
                assert iv.value == meter.registers_wh(iv.end)[0] \
                    - meter.registers_wh(iv.start)[0]
        finally:
            await store.close()
