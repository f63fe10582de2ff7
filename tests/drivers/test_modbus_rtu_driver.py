"""RTU meters from a gateway config to readings, over a simulated RS-485 bus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest

from edge.assembly import assemble, build_driver
from gateway.clock import ManualClock
from gateway.drivers.modbus.bus import BusPool
from gateway.drivers.modbus.driver import ModbusDriver
from gateway.drivers.modbus.plan import SerialLink, plan_reads
from gateway.drivers.modbus.rtu import LineSettings
from gateway.errors import DeviceTimeout
from gateway.profiles import load_profiles
from gateway.settings import ConfigInvalid, RtuMeterConfig, load_config
from gateway.sim import MeterSpec
from gateway.sim.rtu_bus import Faults, RtuBus, serve_rtu_bus

START = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
PROFILES = load_profiles()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def bus_specs() -> list[MeterSpec]:
    return [
        MeterSpec("RTU-1", PROFILES["eastron_sdm630"], seed=1, device_id=1,
                  start_energy_wh=1_234_567),
        MeterSpec("RTU-2", PROFILES["eastron_sdm120"], seed=2, device_id=2,
                  start_energy_wh=98_765),
        MeterSpec("RTU-3", PROFILES["eastron_sdm120"], seed=3, device_id=3),
    ]


def write_config(tmp_path: Path, port: str, meters: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[gateway]\ndata_dir = "data"\n{meters.format(port=port)}')
    return path


METERS = """
[[meters]]
meter_id = "RTU-1"
profile = "eastron_sdm630"
protocol = "modbus_rtu"
port = "{port}"
baudrate = 115200
unit_id = 1
timeout_s = 0.2
inter_request_ms = 0

[[meters]]
meter_id = "RTU-2"
profile = "eastron_sdm120"
protocol = "modbus_rtu"
port = "{port}"
baudrate = 115200
unit_id = 2
timeout_s = 0.2
inter_request_ms = 0

[[meters]]
meter_id = "RTU-3"
profile = "eastron_sdm120"
protocol = "modbus_rtu"
port = "{port}"
baudrate = 115200
unit_id = 3
timeout_s = 0.2
inter_request_ms = 0
"""


@pytest.fixture
async def sim(clock: ManualClock, tmp_path: Path) -> AsyncIterator[RtuBus]:
    async with serve_rtu_bus(bus_specs(), clock, LineSettings(115200),
                             link=tmp_path / "ttyUSB0") as bus:
        yield bus


async def test_config_to_readings_over_one_shared_bus(sim: RtuBus, clock: ManualClock,
                                                      tmp_path: Path) -> None:
    assembly = assemble(load_config(write_config(tmp_path, sim.path, METERS)))
    meter = assembly.meters[0].meter
    assert isinstance(meter, RtuMeterConfig)
    assert (meter.baudrate, meter.parity, meter.stopbits) == (115200, "E", None)
    buses = BusPool()
    drivers = [build_driver(plan, clock, buses) for plan in assembly.meters]
    try:
        assert [d.device for d in drivers] == [f"{sim.path}/unit {u}" for u in (1, 2, 3)]
        for driver, unit in zip(drivers, (1, 2, 3), strict=True):
            await driver.connect()
            readings = await driver.read()
            source = sim.meter(unit)
            assert {r.channel: r.value for r in readings} == {
                p.channel: source.register_value(p.channel, clock.now())
                for p in source.profile.points}
        # One port, one owner: every request went through the same bus.
        bus = buses.serial(sim.path, LineSettings(115200))
        assert bus.stats.replies == sum(len(d.blocks) for d in drivers if
                                        isinstance(d, ModbusDriver))
        # A dead neighbour: the others keep reading.
        sim.set_faults(2, Faults(silent=True))
        with pytest.raises(DeviceTimeout):
            await drivers[1].read()
        await drivers[1].close()  # the poller starts clean after a failure...
        assert len(await drivers[2].read()) == len(PROFILES["eastron_sdm120"].points)
        assert len(await drivers[0].read()) == len(PROFILES["eastron_sdm630"].points)
    finally:
        for driver in drivers:
            await driver.close()
        await buses.close()


GAPPY = """
manufacturer = "Test"
model = "Gappy"
source = "tests: two values 13 unused registers apart"
max_power_w = 10000
[[points]]
channel = "1.0.1.7.0.255"
address = 0
type = "uint16"
unit = "W"
kind = "instant"
[[points]]
channel = "1.0.2.7.0.255"
address = 14
type = "uint16"
unit = "W"
kind = "instant"
"""


@pytest.mark.parametrize(("baud", "parity", "blocks"), [
    (9600, "E", [(0, 1), (14, 1)]),     # G* = 10 registers: a new request is cheaper
    (115200, "E", [(0, 15)]),           # G* = 24.8: reading the gap is cheaper
    (19200, "N", [(0, 1), (14, 1)]),
])
def test_the_plan_follows_the_line(clock: ManualClock, tmp_path: Path, baud: int,
                                   parity: str, blocks: list[tuple[int, int]]) -> None:
    """The planner's link is the configured baud rate and character format."""
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "gappy.toml").write_text(GAPPY)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nprofiles_dir = "devices"\n[[meters]]\nmeter_id = "G"\n'
                      f'profile = "gappy"\nprotocol = "modbus_rtu"\nport = "/dev/ttyUSB7"\n'
                      f'baudrate = {baud}\nparity = "{parity}"\n')
    (plan,) = assemble(load_config(config)).meters
    driver = build_driver(plan, clock)
    assert isinstance(driver, ModbusDriver)
    assert [(b.start, b.count) for b in driver.blocks] == blocks
    assert driver.blocks == plan_reads(plan.profile, SerialLink(baud, 11))


@pytest.mark.parametrize(("change", "message", "fix"), [
    ('baudrate = 9600\n', "at baudrate 9600, parity E, stopbits default, but "
     "meters[0](meter_id=RTU-1) on the same line says 115200", "same baudrate"),
    ('parity = "N"\n', "parity N", "same baudrate, parity and stopbits"),
    ("unit_id = 1\n", "has unit_id 1, like meters[0]", "its own unit_id"),
])
def test_meters_on_one_port_must_agree(tmp_path: Path, change: str, message: str,
                                       fix: str) -> None:
    second = METERS.split("[[meters]]")[2]
    for key in ("baudrate", "unit_id"):
        if change.startswith(key):
            second = "\n".join(line for line in second.splitlines()
                               if not line.startswith(key)) + "\n"
    meters = "[[meters]]" + METERS.split("[[meters]]")[1] + "[[meters]]" + second + change
    with pytest.raises(ConfigInvalid) as caught:
        load_config(write_config(tmp_path, "/dev/ttyUSB0", meters))
    (problem,) = caught.value.problems
    assert problem.key == "meters"
    assert "meters[1](meter_id=RTU-2)" in problem.reason and message in problem.reason
    assert fix in problem.fix
    assert str(tmp_path / "gateway.toml") in str(problem)


def test_rtu_over_tcp_config(tmp_path: Path, clock: ManualClock) -> None:
    meters = """
[[meters]]
meter_id = "GW-1"
profile = "eastron_sdm120"
protocol = "modbus_rtu_tcp"
host = "10.0.0.5"
baudrate = 19200
unit_id = 4
"""
    assembly = assemble(load_config(write_config(tmp_path, "", meters)))
    driver = build_driver(assembly.meters[0], clock)
    assert driver.device == "10.0.0.5:4001/unit 4"


def poll_floor_s(driver: ModbusDriver, line: LineSettings) -> Fraction:
    """The domain formula for the driver's requests: (13 + 2N) Tc + 2 t3.5 +
    turnaround each, and the device's pause between them."""
    profile = driver.profile
    turnaround = Fraction(profile.turnaround_ms, 1000)
    pause = Fraction(profile.inter_request_ms, 1000)
    return sum((line.transaction_s(b.count, turnaround) for b in driver.blocks),
               Fraction(0)) + pause * (len(driver.blocks) - 1)


@pytest.mark.parametrize("baud", [9600, 19200])
async def test_sdm630_poll_time_near_the_line_floor(clock: ManualClock, tmp_path: Path,
                                                    baud: int) -> None:
    """At the emulated line rate, with the profile's turnaround and pause, a poll takes
    the time the wire and the device need and little more."""
    line = LineSettings(baud)
    profile = PROFILES["eastron_sdm630"]
    spec = MeterSpec("RTU-1", profile, seed=1, device_id=1, start_energy_wh=1_234_567)
    async with serve_rtu_bus([spec], clock, line, link=tmp_path / "tty",
                             turnaround_s=profile.turnaround_ms / 1000) as sim:
        meters = METERS.split("[[meters]]")[1].replace("baudrate = 115200",
                                                       f"baudrate = {baud}")
        meters = meters.replace("inter_request_ms = 0", "").replace("timeout_s = 0.2",
                                                                      "timeout_s = 1")
        assembly = assemble(load_config(write_config(tmp_path, sim.path, "[[meters]]" + meters)))
        driver = build_driver(assembly.meters[0], clock)
        assert isinstance(driver, ModbusDriver)
        try:
            await driver.connect()
            await driver.read()  # the first poll pays for opening the port
            took = []
            for _ in range(2):
                # Polls come an interval apart: the device's pause after the last
                # poll's final reply is over when the next poll starts.
                await asyncio.sleep(profile.inter_request_ms / 1000)
                started = time.perf_counter()
                await driver.read()
                took.append(time.perf_counter() - started)
        finally:
            await driver.close()
    floor = float(poll_floor_s(driver, line))
    ratio = min(took) / floor
    print(f"\nSDM630 at {baud} baud: {len(driver.blocks)} requests, poll "
          f"{min(took) * 1000:.1f} ms, floor {floor * 1000:.1f} ms, ratio {ratio:.3f}")
    assert 0.9 < ratio < 1.10
