"""The agent polling RTU meters on one simulated RS-485 bus, one of them dead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from edge.agent import Agent
from edge.assembly import assemble
from gateway.clock import ScaledClock
from gateway.drivers.modbus.rtu import LineSettings
from gateway.profiles import load_profiles
from gateway.settings import load_config
from gateway.sim import MeterSpec
from gateway.sim.rtu_bus import Faults, serve_rtu_bus

PROFILES = load_profiles()


async def eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {within_s} s")


def config(tmp_path: Path, port: str) -> Path:
    lines = ["[gateway]", 'data_dir = "data"', "[store]", 'synchronous = "NORMAL"',
             "[api]", "enabled = false"]
    for unit in (1, 2, 3):
        lines += ["[[meters]]", f'meter_id = "RTU-{unit}"', 'profile = "eastron_sdm630"',
                  'protocol = "modbus_rtu"', f'port = "{port}"', "baudrate = 115200",
                  f"unit_id = {unit}", "poll_interval_s = 300", "timeout_s = 0.1",
                  "inter_request_ms = 0"]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_a_dead_meter_on_the_bus_costs_the_others_no_polls(tmp_path: Path) -> None:
    # Five simulated minutes a quarter of a real second: a poll every 0.25 s per meter.
    clock = ScaledClock(datetime(2026, 3, 2, tzinfo=UTC), speed=1200)
    specs = [MeterSpec(f"RTU-{u}", PROFILES["eastron_sdm630"], seed=u, device_id=u,
                       start_energy_wh=1_000_000 * u) for u in (1, 2, 3)]
    async with serve_rtu_bus(specs, clock, LineSettings(115200),
                             link=tmp_path / "ttyUSB0") as sim:
        sim.set_faults(2, Faults(silent=True))
        agent = Agent(assemble(load_config(config(tmp_path, sim.path))), clock)
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.sleep(1.2)
            stats = {p.meter_id: p.stats for p in agent.pollers}
            for alive in ("RTU-1", "RTU-3"):
                assert stats[alive].polls >= 3
                assert stats[alive].failed_polls == 0  # not one poll lost to the dead one
            dead = stats["RTU-2"]
            # Every poll of it failed (the last may still be waiting for its timeout).
            assert dead.failing and dead.readings == 0 and dead.failed_polls >= 2
            assert dead.failed_polls >= dead.polls - 1
            assert "no reply" in (dead.last_error or "")
            # It comes back: read again at its next try, without a restart.
            sim.set_faults(2, Faults())
            await eventually(lambda: not stats["RTU-2"].failing)
            assert stats["RTU-2"].readings > 0
            assert stats["RTU-1"].failed_polls == stats["RTU-3"].failed_polls == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_the_adapter_unplugged_and_back_reading_resumes(tmp_path: Path) -> None:
    clock = ScaledClock(datetime(2026, 3, 2, tzinfo=UTC), speed=1200)
    specs = [MeterSpec(f"RTU-{u}", PROFILES["eastron_sdm630"], seed=u, device_id=u)
             for u in (1, 2, 3)]
    async with serve_rtu_bus(specs, clock, LineSettings(115200),
                             link=tmp_path / "ttyUSB0") as sim:
        agent = Agent(assemble(load_config(config(tmp_path, sim.path))), clock)
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.sleep(0.4)
            stats = [p.stats for p in agent.pollers]
            assert all(s.polls and not s.failing for s in stats)
            sim.unplug()
            await eventually(lambda: all(s.failing for s in stats))
            assert all("ttyUSB0" in (s.last_error or "") for s in stats)
            await asyncio.sleep(0.2)
            sim.replug()
            await eventually(lambda: not any(s.failing for s in stats))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
