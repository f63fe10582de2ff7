"""Busy devices are asked again within the poll, a few times, a short wait apart; no
other failure is retried there. Against the simulated TCP meter and the pty RTU bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.drivers.modbus.bus import Bus
from gateway.drivers.modbus.driver import BusyRetry, ModbusDriver, ModbusTcpDriver
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.rtu_client import RtuRegisterClient
from gateway.drivers.modbus.serial_link import SerialStream
from gateway.errors import DeviceError, DeviceTimeout
from gateway.profiles import load_profiles
from gateway.sim import MeterSpec, SimulatedMeter, serve_meters
from gateway.sim.rtu_bus import Faults, RtuBus, rtu_meters, serve_sources

START = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
SDM120 = load_profiles()["eastron_sdm120"].model_copy(update={"inter_request_ms": 0})
QUICK = BusyRetry(retries=2, wait_s=0.05)
LINE = LineSettings(115200)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def meter(clock: ManualClock) -> AsyncIterator[SimulatedMeter]:
    async with serve_meters([MeterSpec("T1", SDM120, seed=2)], clock) as (running,):
        yield running


def tcp_driver(meter: SimulatedMeter, clock: ManualClock,
               busy: BusyRetry = QUICK) -> ModbusTcpDriver:
    return ModbusTcpDriver("T1", meter.host, meter.port, 1, SDM120, clock, timeout_s=1,
                           busy=busy)


@pytest.mark.parametrize("code", [6, 5])
async def test_busy_twice_then_the_values(meter: SimulatedMeter, clock: ManualClock,
                                          code: int) -> None:
    driver = tcp_driver(meter, clock)
    meter.fail_with(code, times=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        readings = await driver.read()
    finally:
        await driver.close()
    assert loop.time() - started >= 2 * QUICK.wait_s
    assert {r.channel: r.value for r in readings} == {
        p.channel: meter.register_value(p.channel, clock.now()) for p in SDM120.points}
    assert meter.requests == len(driver.blocks) + 2
    assert driver.busy_retries == 2


async def test_busy_for_good_fails_after_the_bounded_retries(meter: SimulatedMeter,
                                                             clock: ManualClock) -> None:
    driver = tcp_driver(meter, clock)
    meter.fail_with(6)
    try:
        with pytest.raises(DeviceError) as caught:
            await driver.read()
    finally:
        await driver.close()
    error = caught.value
    assert (error.code, error.retryable, error.device) == (6, True, driver.device)
    assert meter.requests == 1 + QUICK.retries  # the first block, asked three times
    assert str(error) == (f"{driver.device}: device refused reading input registers 0..75: "
                          "server device busy, still after 2 retries 50 ms apart (code 6)")


@pytest.mark.parametrize("code", [1, 2, 3, 4, 11])
async def test_other_refusals_are_not_retried(meter: SimulatedMeter, clock: ManualClock,
                                              code: int) -> None:
    driver = tcp_driver(meter, clock)
    meter.fail_with(code)
    try:
        with pytest.raises(DeviceError) as caught:
            await driver.read()
    finally:
        await driver.close()
    assert caught.value.code == code
    assert meter.requests == 1
    assert driver.busy_retries == 0


async def test_no_retries_when_switched_off(meter: SimulatedMeter, clock: ManualClock) -> None:
    driver = tcp_driver(meter, clock, BusyRetry(retries=0))
    meter.fail_with(6, times=1)
    try:
        with pytest.raises(DeviceError, match=r"server device busy \(code 6\)"):
            await driver.read()
        assert meter.requests == 1
        assert len(await driver.read()) == len(SDM120.points)
    finally:
        await driver.close()


@pytest.fixture
async def sim(clock: ManualClock, tmp_path: Path) -> AsyncIterator[RtuBus]:
    specs = [MeterSpec(f"R{u}", SDM120, seed=u, device_id=u) for u in (1, 2)]
    async with serve_sources(rtu_meters(specs, clock), clock, LINE, link=tmp_path / "tty",
                             record=True) as running:
        yield running


@pytest.fixture
async def bus(sim: RtuBus) -> AsyncIterator[Bus]:
    line = Bus(SerialStream(sim.path, LINE), LINE)
    yield line
    await line.close()


def rtu_driver(bus: Bus, unit: int, clock: ManualClock,
               busy: BusyRetry = QUICK) -> ModbusDriver:
    client = RtuRegisterClient(bus, unit, timeout_s=0.2)
    return ModbusDriver(f"R{unit}", client, SDM120, clock, link=LINE.link, busy=busy)


async def test_rtu_busy_wait_leaves_the_bus_to_the_others(sim: RtuBus, bus: Bus,
                                                          clock: ManualClock) -> None:
    busy, neighbour = rtu_driver(bus, 1, clock, BusyRetry(2, 0.15)), rtu_driver(bus, 2, clock)
    for driver in (busy, neighbour):
        await driver.connect()
    sim.set_faults(1, Faults(refuse=6, times=2))
    loop = asyncio.get_running_loop()

    async def done(driver: ModbusDriver) -> float:
        await driver.read()
        return loop.time()

    started = loop.time()
    busy_done, neighbour_done = await asyncio.gather(done(busy), done(neighbour))
    assert neighbour_done - started < 0.1 < 0.3 <= busy_done - started
    assert sim.log is not None
    # Unit 1 is refused, unit 2 is read whole during the wait, then unit 1 is read.
    assert [(request.unit, reply is not None and reply[1] > 0x80) for request, reply in
            sim.log] == [(1, True), *[(2, False)] * 3, (1, True), *[(1, False)] * 3]
    assert bus.stats.refusals == 2
    for driver in (busy, neighbour):
        await driver.close()


async def test_rtu_busy_for_good_and_illegal_address(sim: RtuBus, bus: Bus,
                                                     clock: ManualClock) -> None:
    driver = rtu_driver(bus, 1, clock)
    await driver.connect()
    sim.set_faults(1, Faults(refuse=6))
    with pytest.raises(DeviceError) as busy:
        await driver.read()
    assert (busy.value.code, busy.value.device) == (6, f"{sim.path}/unit 1")
    assert "still after 2 retries" in str(busy.value)
    assert sim.requests(1) == 3
    sim.set_faults(1, Faults(refuse=2))
    with pytest.raises(DeviceError) as illegal:
        await driver.read()
    assert (illegal.value.code, illegal.value.retryable) == (2, False)
    assert sim.requests(1) == 4  # asked once
    await driver.close()


async def test_rtu_timeouts_are_left_to_the_poller(sim: RtuBus, bus: Bus,
                                                   clock: ManualClock) -> None:
    driver = rtu_driver(bus, 1, clock)
    await driver.connect()
    sim.set_faults(1, Faults(silent=True))
    with pytest.raises(DeviceTimeout):
        await driver.read()
    assert sim.requests(1) == 1
    await driver.close()
