"""Measured RTU poll time against the line floor (issue 4, the bus part).

Polls a meter through the real stack (driver, RTU bus, pyserial on a pty) against the
simulated RS-485 line (``gateway.sim.rtu_bus``), which releases bytes at the baud rate
and answers after the profile's turnaround. Polls run back to back, so every request,
the first included, waits out the device's pause after the previous reply: the floor
is ``rtu_requests.floor_s`` for the planner's requests ((13 + 2N) Tc + 2 t3.5 +
turnaround + pause each). The issue's goal: at most 1.10 x the floor.

    .venv/bin/python benchmarks/rtu_poll.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.clock import ManualClock
from gateway.drivers.modbus.bus import Bus
from gateway.drivers.modbus.driver import ModbusDriver
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.rtu_client import RtuRegisterClient
from gateway.drivers.modbus.serial_link import SerialStream
from gateway.profiles import DeviceProfile, modbus_profiles
from gateway.sim import MeterSpec
from gateway.sim.rtu_bus import serve_rtu_bus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rtu_requests import floor_s, planned, scattered

POLLS = 5


async def measure(profile: DeviceProfile, baud: int) -> tuple[int, float, float]:
    """(requests, mean poll time, floor) in seconds."""
    clock = ManualClock(datetime(2026, 3, 2, tzinfo=UTC))
    line = LineSettings(baud)
    spec = MeterSpec("bench", profile, seed=1, device_id=1, start_energy_wh=1_234_567)
    with tempfile.TemporaryDirectory() as tmp:
        async with serve_rtu_bus([spec], clock, line, link=Path(tmp) / "tty",
                                 turnaround_s=profile.turnaround_ms / 1000) as sim:
            bus = Bus(SerialStream(sim.path, line), line)
            client = RtuRegisterClient(bus, 1, timeout_s=2.0,
                                       pause_s=profile.inter_request_ms / 1000)
            driver = ModbusDriver("bench", client, profile, clock, link=line.link)
            try:
                await driver.connect()
                await driver.read()  # opens the port, settles the first pause
                started = time.perf_counter()
                for _ in range(POLLS):
                    await driver.read()
                took = (time.perf_counter() - started) / POLLS
            finally:
                await driver.close()
                await bus.close()
    floor = float(floor_s(planned(driver.blocks), line, profile))
    return len(driver.blocks), took, floor


async def main() -> None:
    profiles = (modbus_profiles()["eastron_sdm630"], scattered("scattered quick", 0, 0),
                scattered("scattered slow", 60, 40))
    worst = 0.0
    print(f"{'map':<16}{'baud':>7}{'requests':>10}{'poll':>12}{'floor':>12}{'ratio':>8}")
    for profile in profiles:
        for baud in (9_600, 19_200):
            requests, took, floor = await measure(profile, baud)
            worst = max(worst, took / floor)
            print(f"{profile.name:<16}{baud:>7}{requests:>10}{took * 1000:>9.1f} ms"
                  f"{floor * 1000:>9.1f} ms{took / floor:>8.3f}")
    print(f"worst ratio to the line floor: {worst:.3f} (goal <= 1.10):",
          "met" if worst <= 1.10 else "NOT met")


if __name__ == "__main__":
    asyncio.run(main())
