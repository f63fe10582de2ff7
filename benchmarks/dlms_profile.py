"""DLMS load profile read time against the line floor (issue 5).

Reads 1 day and 7 days of a 4-channel 15-minute load profile (clock, status and four
energy registers per row) by range, through the real client (HDLC on pyserial, a pty)
from the simulated meter, whose line releases bytes at the baud rate both ways
(``gateway.sim.dlms_line``). The floor is the bytes that crossed the line, both
directions, x 10 bits (8N1) / baud; the ratio is the measured read time over it. The
issue's goal: at most 1.10 x with large frames or a window offered by the meter; the
figure with the HDLC defaults (128-byte frames, window 1) is reported as well. The
association (SNRM/UA, AARQ/AARE) is timed apart; goal at most 0.5 s.

The meter's turnaround (time from a request's last byte to its answer's first) is not
part of the line floor: it is run at 0 and at 20 ms, a fast real meter's.

    .venv/bin/python benchmarks/dlms_profile.py
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from gateway.clock import ManualClock
from gateway.drivers.dlms.apdu import RangeDescriptor
from gateway.drivers.dlms.association import AssociationSettings
from gateway.drivers.dlms.client import DlmsClient
from gateway.drivers.dlms.cosem import (
    CLOCK,
    LOAD_PROFILE_1,
    AttributeDescriptor,
    CaptureObject,
    CosemDateTime,
)
from gateway.drivers.dlms.data import as_items
from gateway.drivers.dlms.hdlc import HdlcAddress, HdlcParameters
from gateway.drivers.dlms.transport import HdlcLink, LinkStats, line_floor_s
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.serial_link import SerialStream
from gateway.sim.dlms_link import serve_dlms
from gateway.sim.dlms_objects import DlmsMeterSpec

BAUD = 9600
NOW = datetime(2026, 6, 10, 0, 7, tzinfo=UTC)
BUFFER = AttributeDescriptor(7, LOAD_PROFILE_1, 2)


async def measure(days: int, offer: HdlcParameters, turnaround_s: float
                  ) -> tuple[int, float, float, float]:
    """(rows, read seconds, floor seconds, association seconds)."""
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("bench", seed=3, start_energy_wh=12_345_678, hdlc_limits=offer,
                         max_pdu_size=0xFFFF)
    async with serve_dlms([spec], clock, medium="pty", baud=BAUD,
                          turnaround_s=turnaround_s) as server:
        link = HdlcLink(SerialStream(server.path, LineSettings(BAUD, "N", 1)),
                        HdlcAddress.client(16), HdlcAddress.server(1),
                        proposal=HdlcParameters(2030, 2030, 7, 7), timeout_s=5.0)
        client = DlmsClient(link, AssociationSettings())
        try:
            await client.associate()
            association_s = client.association_s or 0.0
            start = NOW - timedelta(days=days, minutes=7)
            end = NOW
            access = RangeDescriptor(CaptureObject(8, CLOCK, 2),
                                     CosemDateTime.from_datetime(start).to_data(),
                                     CosemDateTime.from_datetime(end).to_data())
            before = LinkStats(bytes_sent=link.stats.bytes_sent,
                               bytes_received=link.stats.bytes_received)
            began = time.perf_counter()
            buffer = await client.get(BUFFER, access)
            took = time.perf_counter() - began
            moved = LinkStats(bytes_sent=link.stats.bytes_sent - before.bytes_sent,
                              bytes_received=link.stats.bytes_received - before.bytes_received)
            return len(as_items(buffer)), took, float(line_floor_s(moved, BAUD)), association_s
        finally:
            await client.close()


async def main() -> None:
    offers = [("large frames, window 7 (2030/7)", HdlcParameters(2030, 2030, 7, 7)),
              ("HDLC defaults (128/1)", HdlcParameters())]
    print(f"DLMS load profile read at {BAUD} baud, 4 channels, 15-minute rows")
    print(f"{'meter offers':34} {'turn':>6} {'days':>4} {'rows':>5} {'read s':>8} "
          f"{'floor s':>8} {'ratio':>6} {'assoc s':>8}")
    for name, offer in offers:
        for turnaround in (0.0, 0.020):
            for days in (1, 7):
                rows, took, floor, assoc = await measure(days, offer, turnaround)
                print(f"{name:34} {turnaround * 1000:4.0f}ms {days:>4} {rows:>5} "
                      f"{took:8.2f} {floor:8.2f} {took / floor:6.3f} {assoc:8.3f}")
    print("goal: ratio <= 1.10 with large frames/window; association <= 0.5 s")


if __name__ == "__main__":
    asyncio.run(main())
