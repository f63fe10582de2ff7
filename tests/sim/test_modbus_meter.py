"""Simulated meters as real Modbus TCP servers on a shared clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.clock import ManualClock, ScaledClock
from gateway.drivers.modbus.client import TcpRegisterClient
from gateway.profiles import load_profiles
from gateway.sim import LoadShape, MeterSpec, serve_meters

TEST_DEVICES = Path(__file__).resolve().parent.parent / "data" / "devices"
PROFILES = load_profiles() | load_profiles(TEST_DEVICES)
START = datetime(2026, 3, 1, tzinfo=UTC)


async def test_one_server_per_meter_on_free_ports() -> None:
    clock = ManualClock(START)
    specs = [MeterSpec(f"m{i}", PROFILES["eastron_sdm120"], seed=i) for i in range(3)]
    async with serve_meters(specs, clock) as meters:
        ports = {m.port for m in meters}
        assert len(ports) == 3 and 0 not in ports
        for meter in meters:
            client = TcpRegisterClient(meter.host, meter.port, meter.device_id, timeout_s=2)
            await client.connect()
            words = await client.read_registers("input", 0, 76)
            expected = meter.registers("input", clock.now())
            assert words == [expected.get(a, 0) for a in range(76)]
            await client.close()
        assert all(m.requests == 1 for m in meters)


async def test_registers_follow_the_injected_clock() -> None:
    clock = ManualClock(START)
    spec = MeterSpec("p", PROFILES["pulse16"], seed=1, start_energy_wh=65_500,
                     shape=LoadShape(base_w=3000, peak_w=6000))
    async with serve_meters([spec], clock) as (meter,):
        client = TcpRegisterClient(meter.host, meter.port, 1, timeout_s=2)
        await client.connect()
        (first, _) = await client.read_registers("holding", 0, 2)
        assert first == 65_500
        clock.set(START + timedelta(hours=1))
        (wrapped, _) = await client.read_registers("holding", 0, 2)
        assert wrapped == meter.true_energy_wh(clock.now()) - 65_536
        assert meter.true_energy_wh(clock.now()) > 65_536
        await client.close()


async def test_epoch_fixes_the_start_reading() -> None:
    clock = ManualClock(START + timedelta(hours=5))
    spec = MeterSpec("e", PROFILES["pulse16"], seed=2, epoch=START, start_energy_wh=10)
    async with serve_meters([spec], clock) as (meter,):
        assert meter.true_energy_wh(START) == 10
        assert meter.true_energy_wh(clock.now()) > 10


async def test_scaled_clock_runs_the_demo_fast() -> None:
    clock = ScaledClock(START, speed=3600.0)  # an hour of meter time per second
    spec = MeterSpec("s", PROFILES["eastron_sdm120"], seed=3)
    async with serve_meters([spec], clock) as (meter,):
        client = TcpRegisterClient(meter.host, meter.port, 1, timeout_s=2)
        await client.connect()
        before = await client.read_registers("input", 72, 2)
        await asyncio.sleep(0.3)
        after = await client.read_registers("input", 72, 2)
        assert after != before
        await client.close()
