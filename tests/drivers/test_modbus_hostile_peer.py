"""No stale replies, against a hostile peer: random noise, late replies, truncation,
broken CRCs, silence and refusals on a bus where the same request shapes repeat.

Every reply the simulated slaves build carries a serial number in each register, so a
reply can only match the request it was built for. Whatever the faults, a read that
succeeds must return exactly the registers built for *its* request; a read that cannot
must fail with a typed error. The default run is bounded; the soak (marked slow) runs
with AMI_SOAK=1.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.drivers.modbus.bus import Bus
from gateway.drivers.modbus.rtu import LineSettings, ReadRequest, ReplyParser
from gateway.drivers.modbus.serial_link import SerialStream
from gateway.errors import DeviceError, DriverError
from gateway.profiles import DeviceProfile, Table, load_profiles
from gateway.sim.rtu_bus import Faults, serve_sources

LINE = LineSettings(115200)
TIMEOUT_S = 0.04
GUARD_S = 0.2


class Stamped:
    """A slave whose every register read is new: (serial number, address) in each word."""

    def __init__(self, unit: int, profile: DeviceProfile) -> None:
        self.device_id = unit
        self.profile = profile
        self.serial = 0

    def registers(self, table: Table, at: datetime) -> dict[int, int]:
        self.serial += 1
        return {a: (self.serial * 977 + a * 31 + self.device_id) & 0xFFFF for a in range(128)}


def faults_for(rng: random.Random, request: ReadRequest) -> Faults:
    roll = rng.random()
    if roll < 0.45:
        return Faults(times=1)
    if roll < 0.60:
        # Noise that looks like the start of a reply as often as not.
        header = bytes((request.unit, request.function, 2 * request.count))
        noise = bytes(rng.choice([header[:rng.randint(1, 3)], rng.randbytes(rng.randint(1, 9))]))
        return Faults(noise=noise, times=1)
    if roll < 0.75:
        return Faults(late_s=rng.uniform(TIMEOUT_S / 2, GUARD_S - 0.02), times=1)
    if roll < 0.82:
        return Faults(truncate_to=rng.randint(1, request.reply_size - 1), times=1)
    if roll < 0.89:
        return Faults(corrupt_crc=True, times=1)
    if roll < 0.95:
        return Faults(silent=True, times=1)
    return Faults(refuse=6, times=1)


def registers_of(request: ReadRequest, reply: bytes | None) -> tuple[int, ...] | None:
    """What the slave sent, if it was a whole and valid reply to ``request``."""
    if reply is None:
        return None
    parser = ReplyParser(request)
    parser.feed(reply)
    event = parser.next_event()
    return getattr(event, "values", None)


async def hostile_run(tmp_path: Path, transactions: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    profile = load_profiles()["eastron_sdm630"]
    slaves = [Stamped(1, profile), Stamped(2, profile)]
    clock = ManualClock(datetime(2026, 1, 15, tzinfo=UTC))
    outcome = {"ok": 0, "failed": 0}
    async with serve_sources(slaves, clock, LINE, link=tmp_path / "tty", record=True) as sim:
        bus = Bus(SerialStream(sim.path, LINE), LINE, late_guard_s=GUARD_S)
        try:
            for index in range(transactions):
                table: Table = rng.choice(["input", "holding"])
                request = ReadRequest(rng.choice([1, 1, 2, 9]), table,
                                      rng.choice([0, 6, 12]), rng.choice([2, 2, 6]))
                if request.unit != 9:
                    sim.set_faults(request.unit, faults_for(rng, request))
                try:
                    values = await bus.read(request, device=f"unit {request.unit}",
                                            timeout_s=TIMEOUT_S)
                except DriverError as exc:
                    outcome["failed"] += 1
                    if isinstance(exc, DeviceError):
                        assert exc.code == 6
                    continue
                outcome["ok"] += 1
                assert sim.log is not None
                heard, built = sim.log[index]
                assert heard == request, "the peer heard every request, in order"
                assert values == registers_of(request, built), \
                    f"transaction {index}: {request} answered with another request's reply"
        finally:
            await bus.close()
    return outcome


async def test_no_stale_reply_under_random_faults(tmp_path: Path) -> None:
    outcome = await hostile_run(tmp_path, transactions=40, seed=4)
    assert outcome["ok"] >= 12 and outcome["failed"] >= 6


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AMI_SOAK"), reason="a soak of minutes: AMI_SOAK=1")
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", range(5))
async def test_no_stale_reply_soak(tmp_path: Path, seed: int) -> None:
    outcome = await hostile_run(tmp_path, transactions=1500, seed=seed)
    assert outcome["ok"] >= 500
