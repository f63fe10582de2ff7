"""Modbus RTU scan time against the floor the line rules set (issue 9, the scan part).

Scans unit ids 1-247 at 9600 baud 8E1 on a simulated RS-485 line (``gateway.sim.rtu_bus``
on a pty, bytes released at the baud rate) with three meters on it, through the real
stack (pyserial, our RTU framing, the scanner). The floor is, per id, the probe's time
on the wire plus the response timeout chosen (``scan_plan``): what a silent id costs at
best, since silence can only be known by waiting out the timeout. The meters answer
after their profile's turnaround (50 ms for the Eastron profiles), so an id with a
device costs about as much as a silent one.

The scan is timed without identification (the probes only); identifying the three
devices found (43/14, signature reads, 100 ms pause between requests) is timed
separately and printed beside it.

    .venv/bin/python benchmarks/commission_scan.py [--margin-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.clock import ManualClock
from gateway.commission.modbus_scan import scan_serial
from gateway.commission.scan_plan import DEFAULT_MARGIN_MS, ScanPlan
from gateway.drivers.modbus.rtu import LineSettings
from gateway.profiles import modbus_profiles
from gateway.sim import MeterSpec
from gateway.sim.rtu_bus import serve_rtu_bus

LINE = LineSettings(9600, "E")
DEVICES = (("eastron_sdm630", 17), ("carlo_gavazzi_em340", 101), ("schneider_iem3155", 230))


async def main(margin_ms: int) -> None:
    profiles = modbus_profiles()
    clock = ManualClock(datetime(2026, 3, 2, 12, tzinfo=UTC))
    specs = [MeterSpec(name, profiles[name], seed=unit, device_id=unit, serial=1000 + unit)
             for name, unit in DEVICES]
    turnaround_s = max(profiles[name].turnaround_ms for name, _ in DEVICES) / 1000
    plan = ScanPlan.for_profiles(profiles.values(), lines=(LINE,), ids=range(1, 248),
                                 margin_ms=margin_ms)
    with tempfile.TemporaryDirectory() as tmp:
        async with serve_rtu_bus(specs, clock, LINE, link=Path(tmp) / "tty",
                                 turnaround_s=turnaround_s) as sim:
            started = time.perf_counter()
            scan = await scan_serial(sim.path, plan, profiles, identify_found=False)
            took = time.perf_counter() - started
            started = time.perf_counter()
            named = await scan_serial(sim.path, plan.__class__(
                lines=plan.lines, ids=tuple(unit for _, unit in DEVICES),
                turnaround_ms=plan.turnaround_ms, turnaround_from=plan.turnaround_from,
                margin_ms=margin_ms), profiles)
            identify_s = time.perf_counter() - started - (named.probing_s or 0.0)
    timing = plan.timing(LINE)
    floor = float(timing.floor_s(len(plan.ids)))
    print(f"scan of unit ids 1-247 at {LINE.baud} 8{LINE.parity}1, "
          f"{len(DEVICES)} devices (turnaround {turnaround_s * 1000:.0f} ms)")
    print(f"  per id: request {float(timing.request_s) * 1000:.3f} ms on the wire + timeout "
          f"{float(timing.timeout_s) * 1000:.3f} ms = {float(timing.per_id_s) * 1000:.3f} ms")
    print(f"  timeout: {timing.reason}")
    print(f"  found: {sorted(d.unit_id or 0 for d in scan.found)} "
          f"(expected {sorted(unit for _, unit in DEVICES)})")
    print(f"  scan {took:.3f} s (probes {scan.probing_s or 0:.3f} s), floor {floor:.3f} s, "
          f"ratio {took / floor:.3f}")
    print(f"  identifying the {len(named.found)} devices: {identify_s:.3f} s "
          f"({', '.join(f'{d.unit_id}: {d.profile}' for d in named.found)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margin-ms", type=int, default=DEFAULT_MARGIN_MS,
                        help="margin over t3.5 + turnaround in the response timeout")
    asyncio.run(main(parser.parse_args().margin_ms))
