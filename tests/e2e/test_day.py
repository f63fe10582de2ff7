"""End to end: simulated meters over real Modbus TCP, the pollers, the pipeline and the
store; the daily total equals the simulated meter's consumption exactly, across a
16-bit register rollover, on America/Chicago's 25-hour day."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from structlog.testing import capture_logs

from edge.assembly import assemble, build_driver
from gateway import log
from gateway.clock import ManualClock, ScaledClock
from gateway.drivers import PolledDriver
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.poller import Poller
from gateway.model import Flag, Quality, Reading
from gateway.profiles import load_profile, load_profiles
from gateway.settings import DEFAULT_PROFILES_DIR, load_config
from gateway.sim import LoadShape, MeterSpec, SimulatedMeter, serve_meters
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
TZ = ZoneInfo("America/Chicago")
DAY_START = datetime(2026, 11, 1, tzinfo=TZ).astimezone(UTC)  # 25 hours long
DAY_END = datetime(2026, 11, 2, tzinfo=TZ).astimezone(UTC)
PULSE16 = Path(__file__).resolve().parent.parent / "data" / "devices" / "pulse16.toml"
WITH_SERIAL = PULSE16.with_name("counter_serial.toml")


def write_config(tmp_path: Path, meters: list[SimulatedMeter]) -> Path:
    devices = tmp_path / "devices"
    devices.mkdir()
    for src in [*DEFAULT_PROFILES_DIR.glob("*.toml"), PULSE16, WITH_SERIAL]:
        (devices / src.name).write_text(src.read_text())
    lines = ["[gateway]", 'data_dir = "data"', 'timezone = "America/Chicago"',
             'profiles_dir = "devices"', "[store]", 'synchronous = "NORMAL"',
             "[api]", "enabled = false"]
    for m in meters:
        lines += ["[[meters]]", f'meter_id = "{m.meter_id}"', f'profile = "{m.profile.name}"',
                  f'host = "{m.host}"', f"port = {m.port}", f"unit_id = {m.device_id}",
                  "poll_interval_s = 900", "timeout_s = 0.2",
                  "inter_request_ms = 0  # simulated meters need no pause"]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_daily_total_equals_simulated_consumption(tmp_path: Path) -> None:
    clock = ManualClock(DAY_START - timedelta(minutes=15))
    profiles = load_profiles(DEFAULT_PROFILES_DIR)
    specs = [
        MeterSpec(meter_id="HOUSE-1", profile=profiles["eastron_sdm630"], seed=3,
                  start_energy_wh=48_215_300, shape=LoadShape(base_w=400, peak_w=5200,
                                                              tz="America/Chicago")),
        MeterSpec(meter_id="PULSE-1", profile=load_profile(PULSE16), seed=4,
                  start_energy_wh=64_000, shape=LoadShape(base_w=1500, peak_w=6000,
                                                          tz="America/Chicago")),
    ]
    async with serve_meters(specs, clock) as meters:
        cfg = load_config(write_config(tmp_path, meters))
        assembly = assemble(cfg)
        store = SqliteStore(cfg.store_path, synchronous=cfg.settings.store.synchronous)
        await store.open()
        pipeline = await Pipeline.open(store, assembly.series())
        transitions = log.Transitions(log.get("test"))
        pollers = [
            Poller(meter_id=p.meter.meter_id, timezone=p.timezone, protocol=p.meter.protocol,
                   profile=p.profile.name, driver=build_driver(p, clock), pipeline=pipeline,
                   store=store, clock=clock, interval_s=900, transitions=transitions)
            for p in assembly.meters
        ]
        at = clock.now()
        while at <= DAY_END:
            clock.set(at)
            for poller in pollers:
                assert await poller.poll_once()
            at += timedelta(minutes=15)
        for poller in pollers:
            await poller._driver.close()

        day = DAY_START.astimezone(TZ).date()
        house, pulse = meters
        [h] = await store.daily("HOUSE-1", CH, day, day)
        wh = round(house.register_value(CH, DAY_END) * 1000) - \
            round(house.register_value(CH, DAY_START) * 1000)
        assert (h.expected, h.present, h.value) == (100, 100, wh)
        assert h.value > 0

        [p] = await store.daily("PULSE-1", CH, day, day)
        consumed = pulse.true_energy_wh(DAY_END) - pulse.true_energy_wh(DAY_START)
        assert consumed > 65_536  # more than a whole turn of the 16-bit register
        assert (p.expected, p.present, p.value) == (100, 100, consumed)
        intervals = await store.intervals("PULSE-1", CH, DAY_START, DAY_END)
        wraps = [iv for iv in intervals if iv.flags & Flag.ROLLOVER]
        assert len(wraps) >= 2
        assert {iv.quality for iv in intervals} == {Quality.VALID}
        await store.close()


async def test_a_silent_meter_is_logged_once_and_its_gap_estimated(tmp_path: Path) -> None:
    start = DAY_START + timedelta(hours=6)
    clock = ManualClock(start)
    profiles = load_profiles(DEFAULT_PROFILES_DIR)
    spec = MeterSpec(meter_id="FLAT-1", profile=profiles["eastron_sdm120"], seed=5,
                     start_energy_wh=1_000_000)
    async with serve_meters([spec], clock) as meters:
        [meter] = meters
        cfg = load_config(write_config(tmp_path, meters))
        [plan] = assemble(cfg).meters
        store = SqliteStore(cfg.store_path, synchronous=cfg.settings.store.synchronous)
        await store.open()
        pipeline = await Pipeline.open(store, assemble(cfg).series())
        poller = Poller(meter_id="FLAT-1", timezone="America/Chicago", protocol="modbus_tcp",
                        profile=plan.profile.name, driver=build_driver(plan, clock),
                        pipeline=pipeline, store=store, clock=clock, interval_s=900,
                        transitions=log.Transitions(log.get("test")))
        results = []
        with capture_logs() as logs:
            for i in range(17):  # 4 hours of 15-minute polls; silent for hours 1 to 3
                clock.set(start + timedelta(minutes=15 * i))
                meter.set_silent(4 <= i < 12)
                results.append(await poller.poll_once())
                if i == 4:
                    down = await store.meter("FLAT-1")
                    assert down is not None and down.status == "failing"
                    assert down.last_error and meter.host in down.last_error
        await poller._driver.close()
        assert results == [True] * 4 + [False] * 8 + [True] * 5
        events = [e["event"] for e in logs]
        assert events.count("device failing") == 1
        assert events.count("device recovered") == 1
        status = await store.meter("FLAT-1")
        assert status is not None and status.status == "ok"
        ivs = await store.intervals("FLAT-1", CH, start, start + timedelta(hours=4))
        assert len(ivs) == 16  # nothing missing: the gap is filled by estimates
        estimated = [iv for iv in ivs if iv.quality is Quality.ESTIMATED_LINEAR]
        assert len(estimated) == 9  # the 2h15 between the last read before and the first after
        first = round(meter.register_value(CH, start) * 1000)
        last = round(meter.register_value(CH, start + timedelta(hours=4)) * 1000)
        assert sum(iv.value for iv in ivs) == last - first
        await store.close()


class DefectOnce:
    """A driver that is the real one, except that its second read hits a defect (a bug,
    not a device error): the one thing working code cannot be made to do on cue."""

    def __init__(self, inner: PolledDriver) -> None:
        self._inner = inner
        self.device = inner.device
        self.reads = 0
        self.fourth = asyncio.Event()

    async def connect(self) -> None:
        await self._inner.connect()

    async def read(self) -> list[Reading]:
        self.reads += 1
        if self.reads == 4:
            self.fourth.set()
        if self.reads == 2:
            raise RuntimeError("a defect")
        return await self._inner.read()

    async def close(self) -> None:
        await self._inner.close()


async def test_a_poller_outlives_a_defect(tmp_path: Path) -> None:
    """An unexpected exception is logged once with its traceback and polling goes on."""
    clock = ScaledClock(DAY_START, speed=3600)
    profile = load_profiles(DEFAULT_PROFILES_DIR)["eastron_sdm120"]
    async with serve_meters([MeterSpec(meter_id="FLAT-3", profile=profile)], clock) as meters:
        cfg = load_config(write_config(tmp_path, meters))
        assembly = assemble(cfg)
        store = SqliteStore(cfg.store_path, synchronous="NORMAL")
        await store.open()
        pipeline = await Pipeline.open(store, assembly.series())
        driver = DefectOnce(build_driver(assembly.meters[0], clock))
        poller = Poller(meter_id="FLAT-3", timezone="America/Chicago", protocol="modbus_tcp",
                        profile="eastron_sdm120", driver=driver, pipeline=pipeline,
                        store=store, clock=clock, interval_s=60,
                        transitions=log.Transitions(log.get("test")))
        with capture_logs() as logs:
            task = asyncio.create_task(poller.run())
            await asyncio.wait_for(driver.fourth.wait(), 20)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert [e["event"] for e in logs].count("poll failed unexpectedly") == 1
        assert any(e["event"] == "poll failed unexpectedly" and e.get("exc_info") for e in logs)
        assert any(e["event"] == "device recovered" for e in logs)
        assert poller.stats.failed_polls == 1 and poller.stats.readings > 0
        await store.close()


async def test_a_meter_exchange_over_modbus_splits_the_day_at_the_swap(tmp_path: Path) -> None:
    """An installer swaps the meter at 10:07; the new one starts near zero. The gateway
    reads the serial number beside the register: the day keeps the old meter's
    consumption up to its last read and the new one's from its first, nothing between."""
    start = DAY_START + timedelta(hours=8)
    clock = ManualClock(start)
    spec = MeterSpec(meter_id="SWAP-1", profile=load_profile(WITH_SERIAL), seed=9,
                     start_energy_wh=7_654_321, serial=10_001)
    async with serve_meters([spec], clock) as meters:
        [meter] = meters
        cfg = load_config(write_config(tmp_path, meters))
        [plan] = assemble(cfg).meters
        store = SqliteStore(cfg.store_path, synchronous="NORMAL")
        await store.open()
        pipeline = await Pipeline.open(store, assemble(cfg).series())
        poller = Poller(meter_id="SWAP-1", timezone="America/Chicago", protocol="modbus_tcp",
                        profile=plan.profile.name, driver=build_driver(plan, clock),
                        pipeline=pipeline, store=store, clock=clock, interval_s=900,
                        transitions=log.Transitions(log.get("test")))
        swap = start + timedelta(hours=2, minutes=7)
        old_first = meter.true_energy_wh(start)
        old_last = meter.true_energy_wh(start + timedelta(hours=2))  # its 10:00 read
        new_first = 0
        for i in range(17):  # 08:00 .. 12:00, every quarter-hour
            at = start + timedelta(minutes=15 * i)
            if at > swap and meter.serial == 10_001:
                meter.exchange(serial=20_002, start_energy_wh=3, at=swap)
                new_first = meter.true_energy_wh(at)  # its first read, 10:15
            clock.set(at)
            assert await poller.poll_once()
        await poller._driver.close()
        ivs = await store.intervals("SWAP-1", CH, start, start + timedelta(hours=4))
        assert all(iv.value >= 0 for iv in ivs)
        by_start = {iv.start: iv for iv in ivs}
        ten = start + timedelta(hours=2)
        assert ten not in by_start  # 10:00-10:15 spans the swap: not known, not invented
        assert by_start[ten + timedelta(minutes=15)].flags & Flag.METER_EXCHANGE
        before = sum(iv.value for iv in ivs if iv.start < ten)
        after = sum(iv.value for iv in ivs if iv.start > ten)
        assert before == old_last - old_first  # the old meter, to its last read
        assert after == meter.true_energy_wh(start + timedelta(hours=4)) - new_first
        [event] = await store.events("SWAP-1")
        assert event.kind == "exchange" and "10001 -> 20002" in event.reason
        await store.close()
