"""The Modbus driver: a profile's read plan, a register client and the decoder.

The same driver polls Modbus TCP meters (``TcpRegisterClient``, pymodbus) and RTU
meters on a shared serial bus or behind a serial device server
(``RtuRegisterClient``); only the client and the link the plan optimises for differ.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.clock import Clock
from gateway.drivers.modbus.client import TcpRegisterClient
from gateway.drivers.modbus.decode import BlockDecoder
from gateway.drivers.modbus.plan import Link, TcpLink, plan_reads
from gateway.model import Reading
from gateway.profiles import DeviceProfile, Table

__all__ = ["ClientFactory", "ModbusDriver", "ModbusTcpDriver", "RegisterClient"]


class RegisterClient(Protocol):
    """What the driver needs from a Modbus connection (see ``TcpRegisterClient``)."""

    device: str

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def read_registers(self, table: Table, start: int, count: int) -> list[int]: ...

    async def close(self) -> None: ...


class ClientFactory(Protocol):
    def __call__(self, host: str, port: int, device_id: int, *,
                 timeout_s: float) -> RegisterClient: ...


class ModbusDriver:
    """Polls one Modbus unit according to its device profile, through ``client``.

    ``link`` is what the plan optimises for: :class:`TcpLink` for a native Modbus TCP
    meter, ``SerialLink(baud)`` for an RTU meter (on a serial port, or behind a TCP
    gateway). ``pause_s`` is kept between the requests of one poll, for clients that do
    not keep the device's pause themselves (an RTU bus does, across polls too).
    """

    def __init__(self, meter_id: str, client: RegisterClient, profile: DeviceProfile,
                 clock: Clock, *, link: Link | None = None, pause_s: float = 0.0) -> None:
        self.meter_id = meter_id
        self.profile = profile
        self._clock = clock
        self._client = client
        self.device = client.device
        self.blocks = plan_reads(profile, link or TcpLink())
        self._decoders = [BlockDecoder(block) for block in self.blocks]
        self._pause_s = pause_s

    async def connect(self) -> None:
        await self._client.connect()

    async def read(self) -> list[Reading]:
        """One poll of every point; reconnects first if the last poll dropped the link."""
        if not self._client.connected:
            await self._client.connect()
        readings: list[Reading] = []
        for index, (block, decode) in enumerate(zip(self.blocks, self._decoders, strict=True)):
            if index and self._pause_s:
                await asyncio.sleep(self._pause_s)
            registers = await self._client.read_registers(block.table, block.start,
                                                          block.count)
            at = self._clock.now()
            for planned, value in zip(block.points, decode(registers), strict=True):
                point = planned.point
                readings.append(Reading(meter_id=self.meter_id, channel=point.channel,
                                        at=at, value=value, unit=point.unit,
                                        kind=point.kind))
        return readings

    async def close(self) -> None:
        await self._client.close()


class ModbusTcpDriver(ModbusDriver):
    """A Modbus TCP unit (or an RTU one behind a Modbus TCP gateway, with ``link``).

    The profile's ``inter_request_ms`` is kept between the requests of one poll.
    """

    def __init__(self, meter_id: str, host: str, port: int, device_id: int,
                 profile: DeviceProfile, clock: Clock, *, timeout_s: float = 3.0,
                 link: Link | None = None,
                 client_factory: ClientFactory = TcpRegisterClient) -> None:
        super().__init__(meter_id, client_factory(host, port, device_id, timeout_s=timeout_s),
                         profile, clock, link=link, pause_s=profile.inter_request_ms / 1000)
