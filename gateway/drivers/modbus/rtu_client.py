"""Register reads of one RTU unit through the bus it shares with its neighbours.

The driver's :class:`~gateway.drivers.modbus.driver.RegisterClient` over a
:class:`~gateway.drivers.modbus.bus.Bus`. "Connecting" attaches the device to the bus
and makes sure the port is open; "closing" detaches it, and only the last device to
leave closes the port, so one device's failure (after which the poller closes its
driver to start clean) never takes the line away from the others. Starting clean
needs no reconnect here: the bus discards input before every request anyway.
"""

from __future__ import annotations

import asyncio

from gateway.drivers.modbus.bus import Bus
from gateway.drivers.modbus.rtu import ReadRequest
from gateway.profiles import Table

__all__ = ["RtuRegisterClient"]


class RtuRegisterClient:
    """Reads registers of unit ``unit_id`` on ``bus``."""

    def __init__(self, bus: Bus, unit_id: int, *, timeout_s: float = 2.0,
                 pause_s: float = 0.0, pause_after_connect_s: float = 0.0) -> None:
        if not 1 <= unit_id <= 247:
            raise ValueError(f"unit id {unit_id} is outside 1..247")
        self.device = f"{bus.name}/unit {unit_id}"
        self._bus = bus
        self._unit = unit_id
        self._timeout_s = timeout_s
        #: The device's own pause between the end of its reply and its next request.
        self._pause_s = pause_s
        #: No request to this device sooner than this after its port (or device server
        #: connection) opened: a slave that resets when the port opens, a server that
        #: drops what comes right after the connect.
        self._pause_after_connect_s = pause_after_connect_s
        self._attached = False

    @property
    def connected(self) -> bool:
        return self._attached and self._bus.is_open

    async def connect(self) -> None:
        """Join the bus and open its port if needed (ConnectError if it cannot)."""
        if not self._attached:
            self._bus.attach()
            self._attached = True
        await self._bus.ensure_open()

    async def read_registers(self, table: Table, start: int, count: int) -> list[int]:
        if self._pause_after_connect_s:
            await self._settled()
        request = ReadRequest(self._unit, table, start, count)
        return list(await self._bus.read(request, device=self.device,
                                         timeout_s=self._timeout_s, pause_s=self._pause_s))

    async def _settled(self) -> None:
        """Wait out the pause after the port opened (opening it now if it is closed),
        without holding the bus: the other devices on it need no such pause."""
        await self._bus.ensure_open()
        loop = asyncio.get_running_loop()
        wait = self._bus.opened_at + self._pause_after_connect_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def close(self) -> None:
        if self._attached:
            self._attached = False
            self._bus.detach()
