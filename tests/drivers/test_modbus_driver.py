"""The Modbus TCP driver against real peers: simulated meters and scripted failures."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.clock import ManualClock
from gateway.drivers import PolledDriver
from gateway.drivers.modbus import ModbusTcpDriver
from gateway.drivers.modbus.client import TcpRegisterClient
from gateway.errors import ConnectError, DataError, DeviceError, DeviceTimeout, ProtocolError
from gateway.model import SERIAL_NUMBER, Kind
from gateway.profiles import DeviceProfile, load_profiles
from gateway.sim import MeterSpec, SimulatedMeter, serve_meters

from .peers import Script, scripted_peer
from .profiles_for_tests import TEST_DEVICES, make_profile

START = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
PROFILES = load_profiles() | load_profiles(TEST_DEVICES)


def fast(profile: DeviceProfile) -> DeviceProfile:
    """The same map without the inter-request pause, to keep the tests quick."""
    return profile.model_copy(update={"inter_request_ms": 0})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def meters(clock: ManualClock) -> AsyncIterator[dict[str, SimulatedMeter]]:
    specs = [
        MeterSpec("sdm630-1", PROFILES["eastron_sdm630"], seed=1, start_energy_wh=1_234_567),
        MeterSpec("sdm120-1", PROFILES["eastron_sdm120"], seed=2, start_energy_wh=98_765),
        MeterSpec("pulse-1", PROFILES["pulse16"], seed=3, start_energy_wh=65_000),
        MeterSpec("scaled-1", PROFILES["scaled32"], seed=4, start_energy_wh=4_294_967_000),
    ]
    async with serve_meters(specs, clock) as running:
        yield {m.meter_id: m for m in running}


def driver_for(meter: SimulatedMeter, clock: ManualClock, **options: object) -> ModbusTcpDriver:
    return ModbusTcpDriver(meter.meter_id, meter.host, meter.port, meter.device_id,
                           fast(meter.profile), clock, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("meter_id", ["sdm630-1", "sdm120-1", "pulse-1", "scaled-1"])
async def test_values_decode_to_what_the_meter_holds(
    meters: dict[str, SimulatedMeter], clock: ManualClock, meter_id: str
) -> None:
    meter = meters[meter_id]
    driver: PolledDriver = driver_for(meter, clock)
    await driver.connect()
    try:
        for step in (timedelta(0), timedelta(hours=3, minutes=7, seconds=11)):
            clock.set(clock.now() + step)
            readings = await driver.read()
            assert [r.channel for r in readings] == sorted(
                (p.channel for p in meter.profile.points),
                key=[p.channel for p in meter.profile.points].index)
            points = {p.channel: p for p in meter.profile.points}
            for reading in readings:
                point = points[reading.channel]
                assert reading.meter_id == meter_id
                assert reading.at == clock.now()
                assert (reading.unit, reading.kind) == (point.unit, point.kind)
                assert reading.value == meter.register_value(reading.channel, clock.now())
                resolution = point.scale if not point.type.startswith("float") else \
                    abs(meter.true_value(reading.channel, clock.now())) * Decimal("1e-7")
                assert abs(reading.value - meter.true_value(reading.channel, clock.now())) \
                    <= resolution
    finally:
        await driver.close()


async def test_energy_register_tracks_the_exact_model(
    meters: dict[str, SimulatedMeter], clock: ManualClock
) -> None:
    meter = meters["sdm120-1"]
    driver = driver_for(meter, clock)
    clock.set(START + timedelta(minutes=42, seconds=17))
    readings = {r.channel: r.value for r in await driver.read()}
    assert readings["1.0.1.8.0.255"] * 1000 == meter.true_energy_wh(clock.now())
    assert readings["1.0.1.8.0.255"] > Decimal("98.765")
    await driver.close()


async def test_sixteen_bit_counter_rolls_over(
    meters: dict[str, SimulatedMeter], clock: ManualClock
) -> None:
    meter = meters["pulse-1"]
    driver = driver_for(meter, clock)
    values = []
    for _ in range(12):
        (energy, _power) = await driver.read()
        assert energy.kind is Kind.CUMULATIVE
        assert energy.value == meter.true_energy_wh(clock.now()) % 65536
        values.append(energy.value)
        clock.set(clock.now() + timedelta(minutes=15))
    assert any(later < earlier for earlier, later in itertools.pairwise(values))
    await driver.close()


async def test_exception_replies_become_device_errors(
    meters: dict[str, SimulatedMeter], clock: ManualClock
) -> None:
    meter = meters["sdm120-1"]
    driver = driver_for(meter, clock)
    meter.fail_with(6)
    with pytest.raises(DeviceError) as busy:
        await driver.read()
    assert (busy.value.code, busy.value.retryable) == (6, True)
    assert busy.value.device == driver.device == f"127.0.0.1:{meter.port}/unit 1"
    meter.fail_with(4)
    with pytest.raises(DeviceError) as failure:
        await driver.read()
    assert (failure.value.code, failure.value.retryable) == (4, False)
    meter.fail_with(None)
    assert len(await driver.read()) == len(meter.profile.points)
    await driver.close()


async def test_reading_an_unmapped_address_is_illegal_address(
    meters: dict[str, SimulatedMeter], clock: ManualClock
) -> None:
    meter = meters["sdm630-1"]
    client = TcpRegisterClient(meter.host, meter.port, meter.device_id, timeout_s=2)
    await client.connect()
    assert len(await client.read_registers("input", 0, 80)) == 80
    with pytest.raises(DeviceError) as caught:
        await client.read_registers("input", 1000, 2)
    assert (caught.value.code, caught.value.retryable) == (2, False)
    with pytest.raises(DeviceError) as holding:
        await client.read_registers("holding", 0, 2)
    assert holding.value.code == 2
    await client.close()
    # A profile that maps more than the device has fails the same way through the driver.
    wrong = make_profile([{"address": 0, "table": "input", "type": "float32"},
                          {"address": 400, "table": "input", "type": "float32"}])
    driver = ModbusTcpDriver("x", meter.host, meter.port, 1, wrong, clock, timeout_s=2)
    with pytest.raises(DeviceError, match="illegal data address"):
        await driver.read()
    await driver.close()


async def test_unknown_unit_answers_like_a_gateway_without_that_target(
    meters: dict[str, SimulatedMeter], clock: ManualClock
) -> None:
    meter = meters["sdm120-1"]
    driver = ModbusTcpDriver("other", meter.host, meter.port, 7, fast(meter.profile), clock,
                             timeout_s=2)
    with pytest.raises(DeviceError) as caught:
        await driver.read()
    assert (caught.value.code, caught.value.retryable) == (11, True)
    await driver.close()


async def test_gap_reads_refused_when_the_device_forbids_them(clock: ManualClock) -> None:
    strict = make_profile([{"address": 0}, {"address": 5}], allow_gap_reads=False)
    async with serve_meters([MeterSpec("q", strict)], clock) as (meter,):
        client = TcpRegisterClient(meter.host, meter.port, 1, timeout_s=2)
        await client.connect()
        with pytest.raises(DeviceError) as caught:
            await client.read_registers("holding", 0, 6)
        assert caught.value.code == 2
        await client.close()
        driver = driver_for(meter, clock)
        assert len(await driver.read()) == 2  # the plan reads the two points apart
        await driver.close()


async def test_closed_port_is_a_connect_error(clock: ManualClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    driver = ModbusTcpDriver("m", "127.0.0.1", port, 1, PROFILES["pulse16"], clock,
                             timeout_s=1)
    with pytest.raises(ConnectError) as caught:
        await driver.connect()
    assert caught.value.device == f"127.0.0.1:{port}/unit 1"
    with pytest.raises(ConnectError):
        await driver.read()
    await driver.close()


async def test_silent_device_times_out_then_recovers(
    meters: dict[str, SimulatedMeter], clock: ManualClock
) -> None:
    meter = meters["pulse-1"]
    driver = driver_for(meter, clock, timeout_s=0.3)
    assert len(await driver.read()) == 2
    meter.set_silent(True)
    with pytest.raises(DeviceTimeout):
        await driver.read()
    meter.set_silent(False)
    assert len(await driver.read()) == 2  # reconnects after the dropped connection
    await driver.close()


async def test_peer_that_never_answers_times_out(clock: ManualClock) -> None:
    script = Script("silent")
    async with scripted_peer(script) as port:
        driver = ModbusTcpDriver("m", "127.0.0.1", port, 1, PROFILES["pulse16"], clock,
                                 timeout_s=0.3)
        await driver.connect()
        with pytest.raises(DeviceTimeout, match=r"within 0\.3 s"):
            await driver.read()
        assert script.requests == 1
        await driver.close()


@pytest.mark.parametrize(("mode", "error"), [
    ("short", ProtocolError),
    # pymodbus drops a frame from another unit id, so the answer never comes.
    ("other_unit", DeviceTimeout),
])
async def test_malformed_or_foreign_replies(
    clock: ManualClock, mode: str, error: type[Exception]
) -> None:
    async with scripted_peer(Script(mode, [7])) as port:
        driver = ModbusTcpDriver("m", "127.0.0.1", port, 1, PROFILES["pulse16"], clock,
                                 timeout_s=0.3)
        with pytest.raises(error):
            await driver.read()
        await driver.close()


async def test_nan_from_the_device_is_a_data_error_naming_the_point(
    clock: ManualClock
) -> None:
    async with scripted_peer(Script("registers", [0x7FC0, 0x0000])) as port:
        driver = ModbusTcpDriver("m", "127.0.0.1", port, 1, fast(PROFILES["eastron_sdm120"]),
                                 clock, timeout_s=1)
        with pytest.raises(DataError, match=r"1\.0\.32\.7\.0\.255"):
            await driver.read()
        await driver.close()


async def test_inter_request_pause_is_kept_between_blocks(
    meters: dict[str, SimulatedMeter], clock: ManualClock
) -> None:
    meter = meters["sdm630-1"]
    driver = ModbusTcpDriver(meter.meter_id, meter.host, meter.port, 1,
                             meter.profile.model_copy(update={"inter_request_ms": 60}), clock)
    started = time.monotonic()
    await driver.read()
    # Four blocks (three of input registers, the serial number's holding one), three pauses.
    assert time.monotonic() - started >= 0.18
    await driver.close()


@pytest.mark.parametrize("profile", ["eastron_sdm630", "eastron_sdm120"])
async def test_eastron_serial_number_is_read_from_holding_registers_beside_the_energy(
    clock: ManualClock, profile: str
) -> None:
    """The identity point lives in the holding table (function 03), the energy in the input
    table (function 04): one poll reads both, and a swapped meter reports its new serial."""
    spec = MeterSpec("sdm-serial", PROFILES[profile], seed=9, start_energy_wh=5_000,
                     serial=4_294_967_295)
    async with serve_meters([spec], clock) as (meter,):
        driver = driver_for(meter, clock)
        by_channel = {r.channel: r for r in await driver.read()}
        serial = by_channel[SERIAL_NUMBER]
        assert (serial.kind, serial.value) == (Kind.IDENTITY, Decimal(4_294_967_295))
        assert by_channel["1.0.1.8.0.255"].value == Decimal("5")  # kWh
        meter.exchange(serial=21_000_042, start_energy_wh=0, at=clock.now())
        clock.set(clock.now() + timedelta(minutes=1))
        by_channel = {r.channel: r for r in await driver.read()}
        assert by_channel[SERIAL_NUMBER].value == Decimal(21_000_042)
        await driver.close()
