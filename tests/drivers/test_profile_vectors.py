"""The bundled device profiles against their test vectors, the planner and the simulator.

Each Modbus profile in ``config/devices`` has a vector file in ``tests/data/profile_vectors``
(same name): replies of register words, as the meter would send them, and the exact
values they stand for. The words go through the real read path (a planned
:class:`ReadBlock` and its :class:`BlockDecoder`), so a wrong address, type, word
order, scale or unit in a profile fails here.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.drivers.modbus import ModbusTcpDriver
from gateway.drivers.modbus.decode import BlockDecoder
from gateway.drivers.modbus.plan import (
    MODBUS_MAX_REGISTERS,
    Link,
    PlannedPoint,
    ReadBlock,
    SerialLink,
    TcpLink,
    plan_reads,
)
from gateway.model import Kind
from gateway.profiles import PROFILES_DIR, DeviceProfile, modbus_profiles
from gateway.sim import MeterSpec, serve_meters

VECTORS_DIR = Path(__file__).resolve().parent.parent / "data" / "profile_vectors"
PROFILES = modbus_profiles(PROFILES_DIR)  # DLMS profiles: tests/test_profiles_dlms.py
NAMES = sorted(PROFILES)
LINKS: list[Link] = [SerialLink(9600), SerialLink(19200), SerialLink(115200), TcpLink()]


def vectors(name: str) -> list[dict[str, Any]]:
    data = tomllib.loads((VECTORS_DIR / f"{name}.toml").read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = data["vectors"]
    return found


def block_for(profile: DeviceProfile, vector: dict[str, Any]) -> ReadBlock:
    """The read block a reply of ``vector['words']`` from ``vector['start']`` answers."""
    start, count = vector["start"], len(vector["words"])
    points = sorted((p for p in profile.points if p.table == vector["table"]
                     and p.address >= start and p.end <= start + count),
                    key=lambda p: p.address)
    return ReadBlock(table=vector["table"], start=start, count=count,
                     points=tuple(PlannedPoint(point=p, offset=p.address - start)
                                  for p in points))


def test_every_bundled_profile_has_vectors_and_every_vector_file_a_profile() -> None:
    assert len(PROFILES) >= 6
    assert {path.stem for path in VECTORS_DIR.glob("*.toml")} == set(PROFILES)


@pytest.mark.parametrize("name", NAMES)
def test_vectors_decode_to_the_exact_values(name: str) -> None:
    profile = PROFILES[name]
    for index, vector in enumerate(vectors(name)):
        block = block_for(profile, vector)
        where = f"{name} vector {index} ({vector['table']} {vector['start']})"
        assert all(0 <= word <= 0xFFFF for word in vector["words"]), where
        # A vector is one reply the device can give: within its request limit.
        assert block.count <= profile.max_registers_per_request, where
        decoded = {planned.point.channel: (value, planned.point.unit)
                   for planned, value in zip(block.points, BlockDecoder(block)(vector["words"]),
                                             strict=True)}
        expected = {channel: (Decimal(value), unit)
                    for channel, (value, unit) in vector["expect"].items()}
        # Every point the reply covers is checked, and nothing is expected of a register
        # the profile does not map.
        assert set(decoded) == set(expected), where
        for channel, (value, unit) in expected.items():
            got, got_unit = decoded[channel]
            assert (got, str(got_unit)) == (value, unit), f"{where}: {channel}"
            assert isinstance(got, Decimal)


@pytest.mark.parametrize("name", NAMES)
def test_vectors_cover_every_point(name: str) -> None:
    profile = PROFILES[name]
    covered = {p.point.channel for v in vectors(name) for p in block_for(profile, v).points}
    assert covered == {p.channel for p in profile.points}


@pytest.mark.parametrize("name", NAMES)
def test_profile_has_the_core_channels_and_cites_its_source(name: str) -> None:
    profile = PROFILES[name]
    points = {p.channel: p for p in profile.points}
    energy = points["1.0.1.8.0.255"]
    assert energy.kind is Kind.CUMULATIVE
    assert str(energy.unit) in {"Wh", "kWh"}
    assert "1.0.32.7.0.255" in points and "1.0.14.7.0.255" in points
    assert profile.max_power_w > 0 and len(profile.source) > 40
    header = (PROFILES_DIR / f"{name}.toml").read_text(encoding="utf-8")
    assert header.startswith("#") and "Register map" in header
    identities = [p for p in profile.points if p.kind is Kind.IDENTITY]
    assert len(identities) <= 1
    assert all(p.channel == "0.0.96.1.0.255" for p in identities)


@pytest.mark.parametrize("link", LINKS, ids=repr)
@pytest.mark.parametrize("name", NAMES)
def test_plans_respect_the_request_limit_and_read_every_point_once(
    name: str, link: Link
) -> None:
    profile = PROFILES[name]
    blocks = plan_reads(profile, link)
    limit = min(MODBUS_MAX_REGISTERS, profile.max_registers_per_request)
    assert all(1 <= block.count <= limit for block in blocks)
    planned = [p.point.channel for block in blocks for p in block.points]
    assert sorted(planned) == sorted(p.channel for p in profile.points)
    for block in blocks:
        for p in block.points:
            assert p.point.table == block.table
            assert p.offset >= 0 and p.offset + p.point.width <= block.count


START = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", NAMES)
async def test_the_simulated_meter_serves_the_profile(name: str) -> None:
    """The demo and the end-to-end tests build simulators from profiles: each bundled
    profile is served, read through the driver and decoded to what the meter holds."""
    clock = ManualClock(START)
    profile = PROFILES[name].model_copy(update={"inter_request_ms": 0})
    spec = MeterSpec(f"sim-{name}", profile, seed=7, start_energy_wh=12_345_678,
                     serial=7_012_345)
    async with serve_meters([spec], clock) as (meter,):
        driver = ModbusTcpDriver(meter.meter_id, meter.host, meter.port, meter.device_id,
                                 profile, clock)
        await driver.connect()
        try:
            for step in (timedelta(0), timedelta(hours=5, minutes=3)):
                clock.set(clock.now() + step)
                readings = await driver.read()
                assert {r.channel for r in readings} == {p.channel for p in profile.points}
                for reading in readings:
                    assert reading.value == meter.register_value(reading.channel, clock.now())
                energy = next(r for r in readings if r.channel == "1.0.1.8.0.255")
                assert energy.value * energy.unit.factor > 12_345_000
        finally:
            await driver.close()
