"""Review findings on the DLMS path, each shown against real peers (sockets, ptys)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from gateway.drivers.dlms.hdlc import HdlcAddress
from gateway.drivers.dlms.transport import HdlcLink
from gateway.drivers.modbus.serial_link import TcpStream
from gateway.errors import DriverError


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
