"""Workarounds from a meter's config, seen from the peer: the simulated TCP meter, a
scripted TCP peer that notes connections and request times, and the pty RTU bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.assembly import assemble, build_driver
from gateway.clock import ManualClock
from gateway.drivers.modbus.bus import BusPool
from gateway.drivers.modbus.driver import ModbusDriver
from gateway.drivers.modbus.rtu import LineSettings
from gateway.errors import DeviceError, ProtocolError
from gateway.profiles import load_profiles
from gateway.settings import load_config
from gateway.sim import MeterSpec, SimulatedMeter, serve_meters
from gateway.sim.rtu_bus import RtuBus, rtu_meters, serve_sources

from .peers import Script, scripted_peer

START = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
PROFILES = load_profiles()
SDM120 = PROFILES["eastron_sdm120"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def tcp_meter(port: int, workarounds: str = "") -> str:
    return (f'[[meters]]\nmeter_id = "T1"\nprofile = "eastron_sdm120"\nhost = "127.0.0.1"\n'
            f"port = {port}\ninter_request_ms = 0\ntimeout_s = 1\n{workarounds}\n")


def rtu_meter(path: str, unit: int, workarounds: str = "") -> str:
    return (f'[[meters]]\nmeter_id = "R{unit}"\nprofile = "eastron_sdm120"\n'
            f'protocol = "modbus_rtu"\nport = "{path}"\nbaudrate = 115200\nunit_id = {unit}\n'
            f"inter_request_ms = 0\ntimeout_s = 0.2\n{workarounds}\n")


def drivers(tmp_path: Path, clock: ManualClock, text: str,
            buses: BusPool | None = None) -> list[ModbusDriver]:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    built = [build_driver(plan, clock, buses) for plan in assemble(load_config(path)).meters]
    assert all(isinstance(d, ModbusDriver) for d in built)
    return [d for d in built if isinstance(d, ModbusDriver)]


@pytest.fixture
async def picky(clock: ManualClock) -> AsyncIterator[SimulatedMeter]:
    """An SDM120 whose firmware refuses reads across unmapped registers, though the
    model's profile allows them."""
    unit = SDM120.model_copy(update={"allow_gap_reads": False})
    async with serve_meters([MeterSpec("T1", unit, seed=2, start_energy_wh=98_765)],
                            clock) as (meter,):
        yield meter


def values_of(meter: SimulatedMeter, clock: ManualClock) -> dict[str, object]:
    return {p.channel: meter.register_value(p.channel, clock.now()) for p in SDM120.points}


async def test_no_gap_reads_gets_a_picky_unit_read(picky: SimulatedMeter, clock: ManualClock,
                                                   tmp_path: Path) -> None:
    (plain,) = drivers(tmp_path, clock, tcp_meter(picky.port))
    with pytest.raises(DeviceError) as refused:
        await plain.read()
    assert refused.value.code == 2
    await plain.close()
    (driver,) = drivers(tmp_path, clock, tcp_meter(picky.port, "workarounds = { "
                                                   "no_gap_reads = true }"))
    picky.requests = 0
    try:
        readings = await driver.read()
    finally:
        await driver.close()
    assert {r.channel: r.value for r in readings} == values_of(picky, clock)
    assert picky.requests == len(driver.blocks) > len(plain.blocks)


@pytest.mark.parametrize(("workarounds", "requests"), [
    ("", 3),
    ("workarounds = { one_request_per_value = true }", len(SDM120.points)),
    ("workarounds = { max_registers_per_request = 10 }", 6),
])
async def test_the_peer_sees_the_requests_the_workarounds_ask_for(
    clock: ManualClock, tmp_path: Path, workarounds: str, requests: int
) -> None:
    async with serve_meters([MeterSpec("T1", SDM120, seed=2)], clock) as (meter,):
        (driver,) = drivers(tmp_path, clock, tcp_meter(meter.port, workarounds))
        try:
            readings = await driver.read()
        finally:
            await driver.close()
    assert {r.channel: r.value for r in readings} == values_of(meter, clock)
    assert meter.requests == len(driver.blocks) == requests
    assert max(b.count for b in driver.blocks) <= (10 if "max_" in workarounds else 80)


@pytest.mark.parametrize(("workarounds", "connections"), [
    ("", 1),
    ("workarounds = { close_after_poll = true }", 3),
])
async def test_close_after_poll_connects_anew_for_every_poll(
    clock: ManualClock, tmp_path: Path, workarounds: str, connections: int
) -> None:
    script = Script("registers", registers=[0])
    async with scripted_peer(script) as port:
        (driver,) = drivers(tmp_path, clock, tcp_meter(port, workarounds))
        try:
            await driver.connect()
            for _ in range(3):
                await driver.read()
            # The peer has seen each close by the time the next connection arrives.
            await asyncio.sleep(0.02)
        finally:
            await driver.close()
    assert script.connections == connections
    assert [len(requests) for _, requests in script.timeline] == \
        [3 * len(driver.blocks) // connections] * connections


async def test_a_failed_poll_closes_too(clock: ManualClock, tmp_path: Path) -> None:
    script = Script("short", registers=[0])
    async with scripted_peer(script) as port:
        (driver,) = drivers(tmp_path, clock, tcp_meter(port, "workarounds = { "
                                                       "close_after_poll = true }"))
        try:
            for _ in range(2):
                with pytest.raises(ProtocolError):  # one register short
                    await driver.read()
        finally:
            await driver.close()
    assert script.connections == 2


@pytest.mark.parametrize(("pause_ms", "low", "high"), [(0, 0.0, 0.05), (150, 0.15, 0.3)])
async def test_pause_after_connect_delays_the_first_request(
    clock: ManualClock, tmp_path: Path, pause_ms: int, low: float, high: float
) -> None:
    script = Script("registers", registers=[0])
    quirks = f"workarounds = {{ pause_after_connect_ms = {pause_ms}, close_after_poll = true }}"
    async with scripted_peer(script) as port:
        (driver,) = drivers(tmp_path, clock, tcp_meter(port, quirks))
        try:
            for _ in range(2):
                await driver.read()
        finally:
            await driver.close()
    assert script.connections == 2
    for accepted, requests in script.timeline:  # every connection waits, not only the first
        assert low <= requests[0] - accepted < high
        # ...and only before its first request.
        assert requests[-1] - requests[0] < 0.1


@pytest.fixture
async def bus(clock: ManualClock, tmp_path: Path) -> AsyncIterator[RtuBus]:
    specs = [MeterSpec(f"R{u}", SDM120, seed=u, device_id=u) for u in (1, 2)]
    async with serve_sources(rtu_meters(specs, clock), clock, LineSettings(115200),
                             link=tmp_path / "ttyUSB0", record=True) as sim:
        yield sim


async def test_rtu_one_request_per_value(bus: RtuBus, clock: ManualClock,
                                         tmp_path: Path) -> None:
    buses = BusPool()
    one, two = drivers(tmp_path, clock, rtu_meter(bus.path, 1, "workarounds = { "
                                                  "one_request_per_value = true }")
                       + rtu_meter(bus.path, 2), buses)
    try:
        for driver in (one, two):
            await driver.connect()
            await driver.read()
    finally:
        for driver in (one, two):
            await driver.close()
        await buses.close()
    assert (bus.requests(1), bus.requests(2)) == (len(SDM120.points), 3)


async def test_rtu_pause_after_connect_holds_up_only_its_device(
    bus: RtuBus, clock: ManualClock, tmp_path: Path
) -> None:
    buses = BusPool()
    slow, quick = drivers(tmp_path, clock, rtu_meter(bus.path, 1, "workarounds = { "
                                                     "pause_after_connect_ms = 200 }")
                          + rtu_meter(bus.path, 2), buses)
    loop = asyncio.get_running_loop()
    try:
        for driver in (slow, quick):
            await driver.connect()
        opened = buses.serial(bus.path, LineSettings(115200)).opened_at

        async def timed(driver: ModbusDriver) -> float:
            await driver.read()
            return loop.time()

        slow_done, quick_done = await asyncio.gather(timed(slow), timed(quick))
        assert quick_done - opened < 0.1 <= 0.2 <= slow_done - opened
        # Its neighbour had the line meanwhile: all of its requests came first.
        assert bus.log is not None
        assert [request.unit for request, _ in bus.log] == [2] * 3 + [1] * 3
        # Once the port has been open long enough, no more waiting.
        started = loop.time()
        await slow.read()
        assert loop.time() - started < 0.1
    finally:
        for driver in (slow, quick):
            await driver.close()
        await buses.close()
