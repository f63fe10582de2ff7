"""Review findings on the DLMS path, each shown against real peers (sockets, ptys)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.drivers.dlms.hdlc import HdlcAddress
from gateway.drivers.dlms.transport import HdlcLink
from gateway.drivers.modbus.bus import BusPool
from gateway.drivers.modbus.serial_link import TcpStream
from gateway.errors import DriverError
from gateway.sim.dlms_link import serve_dlms
from gateway.sim.dlms_objects import DlmsMeterSpec
from tests.dlms.test_driver import ENERGY, NOW, Held, drivers, profile_rows, write_config


@contextlib.asynccontextmanager
async def babbler(every_s: float) -> AsyncIterator[int]:
    """A TCP peer that sends line noise (16 bytes every ``every_s``), never a frame."""
    tasks: list[asyncio.Task[None]] = []

    async def noise(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"\x55" * 16)
                await writer.drain()
                await asyncio.sleep(every_s)

    def handler(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.append(asyncio.ensure_future(noise(writer)))

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for task in tasks:
            task.cancel()
        server.close()


async def test_a_line_that_only_babbles_times_out() -> None:
    """Noise that never makes a frame is silence to HDLC: the link gives up after its
    re-polls instead of waiting as long as the noise goes on."""
    async with babbler(0.01) as port:
        link = HdlcLink(TcpStream("127.0.0.1", port), HdlcAddress.client(16),
                        HdlcAddress.server(1), timeout_s=0.2, retries=1)
        started = time.monotonic()
        with pytest.raises(DriverError):
            async with asyncio.timeout(3):
                await link.open()
        await link.close()
    assert time.monotonic() - started < 1.5


async def test_a_meter_connected_on_a_shared_line_does_not_hold_the_port(
        tmp_path: Path) -> None:
    """The first poll of each meter connects, then reads. A meter that connected must not
    keep the RS-485 port open once it lets go of the line: the port is opened
    exclusively, so the next meter's poll failed with "cannot open serial port"."""
    clock = ManualClock(NOW)
    specs = [DlmsMeterSpec("S1", serial="11111111", server_physical=17),
             DlmsMeterSpec("S2", serial="22222222", server_physical=18)]
    async with serve_dlms(specs, clock, medium="pty", baud=115200) as server:
        meters = [[f'meter_id = "{s.meter_id}"', 'protocol = "dlms_serial"',
                   'profile = "dlms_generic_electricity"', f'port = "{server.path}"',
                   "baudrate = 115200", f"server_physical = {s.server_physical}",
                   "poll_interval_s = 900", "timeout_s = 0.3", "catch_up_days = 1"]
                  for s in specs]
        held = Held()
        held.last = dict.fromkeys(ENERGY, NOW - timedelta(hours=2, minutes=7))
        both = drivers(write_config(tmp_path, meters), clock, buses=BusPool(), cursor=held)
        s1, s2 = both["S1"], both["S2"]
        await s1.connect()
        await s2.connect()
        first = await s1.read()
        second = await s2.read()
        for drv in both.values():
            await drv.close()
    assert len(profile_rows(first)) == 8 and len(profile_rows(second)) == 8
    assert s1.stats.link.repolls == 0 and s1.stats.link.discarded == 0
