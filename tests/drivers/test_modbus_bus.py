"""The RTU bus against a real peer: a simulated multi-drop line on a pseudo-terminal.

Most tests run the line at 115,200 baud to stay quick; the late-reply tests rely on
timeouts, not on the baud rate.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.drivers.modbus.bus import Bus, BusPool
from gateway.drivers.modbus.rtu import LineSettings, ReadRequest
from gateway.drivers.modbus.serial_link import SerialStream, TcpStream
from gateway.errors import (
    ConfigError,
    ConnectError,
    DeviceError,
    DeviceTimeout,
    ProtocolError,
)
from gateway.profiles import load_profiles
from gateway.sim import MeterSpec
from gateway.sim.rtu_bus import Faults, RtuBus, serve_rtu_bus

from .profiles_for_tests import TEST_DEVICES

START = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
PROFILES = load_profiles() | load_profiles(TEST_DEVICES)
FAST = LineSettings(115200)
TIMEOUT_S = 0.15


def specs() -> list[MeterSpec]:
    return [
        MeterSpec("sdm630-1", PROFILES["eastron_sdm630"], seed=1, device_id=1,
                  start_energy_wh=1_234_567),
        MeterSpec("sdm120-2", PROFILES["eastron_sdm120"], seed=2, device_id=2,
                  start_energy_wh=98_765),
        MeterSpec("pulse-3", PROFILES["pulse16"], seed=3, device_id=3, start_energy_wh=65_000),
    ]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def sim(clock: ManualClock, tmp_path: Path) -> AsyncIterator[RtuBus]:
    async with serve_rtu_bus(specs(), clock, FAST, link=tmp_path / "ttyUSB0") as bus:
        yield bus


@pytest.fixture
async def bus(sim: RtuBus) -> AsyncIterator[Bus]:
    line = Bus(SerialStream(sim.path, FAST), FAST, reopen_base_s=0.02)
    yield line
    await line.close()


def expected(sim: RtuBus, clock: ManualClock, request: ReadRequest) -> tuple[int, ...]:
    words = sim.meter(request.unit).registers(request.table, clock.now())
    return tuple(words.get(a, 0) for a in range(request.start, request.start + request.count))


VOLTS = ReadRequest(1, "input", 0, 6)         # the SDM630's three voltages
CURRENTS = ReadRequest(1, "input", 6, 6)      # the same shape, other registers
ENERGY = ReadRequest(1, "input", 72, 4)       # import and export energy


async def read(bus: Bus, request: ReadRequest, timeout_s: float = TIMEOUT_S) -> tuple[int, ...]:
    return await bus.read(request, device=f"{bus.name}/unit {request.unit}",
                          timeout_s=timeout_s)


async def test_reads_each_unit_on_the_bus(sim: RtuBus, bus: Bus, clock: ManualClock) -> None:
    for request in (VOLTS, ENERGY, ReadRequest(2, "input", 0, 2), ReadRequest(3, "holding", 0, 2)):
        assert await read(bus, request) == expected(sim, clock, request)
    assert (sim.requests(1), sim.requests(2), sim.requests(3)) == (2, 1, 1)
    assert bus.stats.replies == 4 and bus.stats.discarded_bytes == 0


async def test_unknown_unit_is_silent_and_the_others_answer(sim: RtuBus, bus: Bus,
                                                            clock: ManualClock) -> None:
    with pytest.raises(DeviceTimeout, match=r"unit 9: no reply to reading input registers 0\.\.5"):
        await read(bus, ReadRequest(9, "input", 0, 6))
    assert sim.unanswered == 1
    assert await read(bus, VOLTS) == expected(sim, clock, VOLTS)


@pytest.mark.parametrize("noise", [b"\x00", b"\x01", b"\x01\x04", b"\xff" * 17,
                                   b"\x01\x04\x0c\x00"])
async def test_noise_before_a_reply_is_skipped(sim: RtuBus, bus: Bus, clock: ManualClock,
                                               noise: bytes) -> None:
    sim.set_faults(1, Faults(noise=noise, times=1))
    assert await read(bus, VOLTS) == expected(sim, clock, VOLTS)
    assert bus.stats.discarded_bytes == len(noise)


async def test_crc_error_and_truncation_are_protocol_errors(sim: RtuBus, bus: Bus,
                                                            clock: ManualClock) -> None:
    sim.set_faults(1, Faults(corrupt_crc=True, times=1))
    with pytest.raises(ProtocolError, match="CRC mismatch"):
        await read(bus, VOLTS)
    sim.set_faults(1, Faults(truncate_to=9, times=1))
    with pytest.raises(ProtocolError, match="truncated reply: 9 of 17 bytes"):
        await read(bus, VOLTS)
    assert await read(bus, VOLTS) == expected(sim, clock, VOLTS)


async def test_exception_replies_are_device_errors_naming_the_device(sim: RtuBus,
                                                                     bus: Bus) -> None:
    sim.set_faults(2, Faults(refuse=6, times=1))
    with pytest.raises(DeviceError) as busy:
        await read(bus, ReadRequest(2, "input", 0, 2))
    assert busy.value.code == 6 and busy.value.retryable
    assert busy.value.device == f"{sim.path}/unit 2"
    assert "server device busy" in str(busy.value)
    # Not retryable: asking again for registers the device lacks cannot help.
    sim.set_faults(3, Faults(refuse=2, times=1))
    with pytest.raises(DeviceError, match="illegal data address") as missing:
        await read(bus, ReadRequest(3, "holding", 0, 4))
    assert not missing.value.retryable


async def test_a_late_reply_of_another_shape_is_never_taken(sim: RtuBus, bus: Bus,
                                                            clock: ManualClock) -> None:
    """The peer answers the voltages after the timeout, while the energy request waits."""
    sim.set_faults(1, Faults(late_s=TIMEOUT_S + 0.05, times=1))
    with pytest.raises(DeviceTimeout):
        await read(bus, VOLTS)
    started = time.monotonic()
    assert await read(bus, ENERGY) == expected(sim, clock, ENERGY)
    # The stale voltages reply arrived during the energy request and was skipped.
    assert bus.stats.discarded_bytes == VOLTS.reply_size
    assert time.monotonic() - started < TIMEOUT_S


async def test_a_late_reply_of_the_same_shape_is_never_taken(sim: RtuBus, bus: Bus,
                                                             clock: ManualClock) -> None:
    """Currents are read like voltages (unit 1, function 4, 6 registers): only the line
    can tell them apart, so after a timeout the bus listens before asking again."""
    assert expected(sim, clock, VOLTS) != expected(sim, clock, CURRENTS)
    sim.set_faults(1, Faults(late_s=TIMEOUT_S + 0.05, times=1))
    with pytest.raises(DeviceTimeout):
        await read(bus, VOLTS)
    assert await read(bus, CURRENTS) == expected(sim, clock, CURRENTS)


async def test_without_the_guard_the_same_shape_would_be_taken(sim: RtuBus,
                                                               clock: ManualClock) -> None:
    """Why the guard exists: RTU has no transaction id (the failure pymodbus shows)."""
    bus = Bus(SerialStream(sim.path, FAST), FAST, late_guard_s=0.0)
    try:
        sim.set_faults(1, Faults(late_s=TIMEOUT_S + 0.05, times=1))
        with pytest.raises(DeviceTimeout):
            await read(bus, VOLTS)
        assert await read(bus, CURRENTS) == expected(sim, clock, VOLTS)
    finally:
        await bus.close()


async def test_a_dead_device_costs_the_others_only_its_timeouts(sim: RtuBus, bus: Bus,
                                                                clock: ManualClock) -> None:
    """Three devices polled concurrently, a failing one backing off as the poller does.

    Waiting for the bus does not count against a device's timeout (the clock starts
    when its request is written), so the live devices never fail: a dead neighbour only
    delays them, by at most one timeout per attempt it makes.
    """
    sim.set_faults(2, Faults(silent=True))
    requests = {1: ENERGY, 2: ReadRequest(2, "input", 0, 2), 3: ReadRequest(3, "holding", 0, 2)}
    ok = dict.fromkeys(requests, 0)
    failed = dict.fromkeys(requests, 0)
    worst = dict.fromkeys(requests, 0.0)
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + 1.0

    async def poll(unit: int) -> None:
        backoff = 0.1
        while loop.time() < stop_at:
            began = loop.time()
            try:
                await read(bus, requests[unit])
                ok[unit] += 1
                worst[unit] = max(worst[unit], loop.time() - began)
                await asyncio.sleep(0.02)
            except DeviceTimeout:
                failed[unit] += 1
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, 0.4)

    await asyncio.gather(poll(1), poll(2), poll(3))
    assert failed == {1: 0, 2: failed[2], 3: 0} and failed[2] >= 3
    assert ok[2] == 0 and ok[1] > 12 and ok[3] > 12
    # A live read waits at most for the one transaction in front of it: a dead device's
    # timeout, or the other live device's read.
    assert max(worst[1], worst[3]) < TIMEOUT_S + 0.1


async def test_unplug_and_replug_reopen_without_leaking_descriptors(
        sim: RtuBus, bus: Bus, clock: ManualClock) -> None:
    assert await read(bus, VOLTS) == expected(sim, clock, VOLTS)
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(25):
        sim.unplug()
        with pytest.raises(ConnectError):
            await read(bus, VOLTS)
        with pytest.raises(ConnectError):  # while gone: refused fast, not hammered
            await read(bus, VOLTS)
        sim.replug()
        async with asyncio.timeout(5):
            while True:
                try:
                    assert await read(bus, VOLTS) == expected(sim, clock, VOLTS)
                    break
                except ConnectError:
                    await asyncio.sleep(0.01)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert bus.stats.port_failures >= 25


async def _device_server(path: str) -> tuple[asyncio.Server, int]:
    """A serial device server: TCP on one side, the serial port on the other."""

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        loop.add_reader(fd, lambda: writer.write(os.read(fd, 4096)))
        try:
            while data := await reader.read(4096):
                os.write(fd, data)
        finally:
            loop.remove_reader(fd)
            os.close(fd)
            writer.close()

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_rtu_over_tcp(sim: RtuBus, clock: ManualClock) -> None:
    server, port = await _device_server(sim.path)
    bus = Bus(TcpStream("127.0.0.1", port), FAST)
    try:
        sim.set_faults(1, Faults(noise=b"\x00\x01", times=1))
        assert await read(bus, VOLTS) == expected(sim, clock, VOLTS)
        assert await read(bus, ReadRequest(2, "input", 0, 2)) == \
            expected(sim, clock, ReadRequest(2, "input", 0, 2))
        with pytest.raises(DeviceTimeout):
            await read(bus, ReadRequest(9, "input", 0, 2))
    finally:
        await bus.close()
        server.close()
        await server.wait_closed()
    with pytest.raises(ConnectError, match="cannot connect"):
        await read(Bus(TcpStream("127.0.0.1", port), FAST), VOLTS)


async def test_one_port_one_bus_one_format() -> None:
    pool = BusPool()
    first = pool.serial("/dev/ttyUSB3", LineSettings(9600))
    assert pool.serial("/dev/ttyUSB3", LineSettings(9600)) is first
    assert pool.serial("/dev/ttyUSB4", LineSettings(9600)) is not first
    with pytest.raises(ConfigError, match="already in use at 9600 baud, parity E, 1 stop bits"):
        pool.serial("/dev/ttyUSB3", LineSettings(19200))
    await pool.close()
