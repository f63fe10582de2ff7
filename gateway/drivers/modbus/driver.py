"""The Modbus driver: a profile's read plan, a register client and the decoder.

The same driver polls Modbus TCP meters (``TcpRegisterClient``, pymodbus) and RTU
meters on a shared serial bus or behind a serial device server
(``RtuRegisterClient``); only the client and the link the plan optimises for differ.

A read the device refuses as busy is retried within the poll, a few times, a short wait
apart (:class:`BusyRetry`); every other failure ends the poll, and the poller's backoff
decides when to try again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from gateway.clock import Clock
from gateway.drivers.modbus.client import TcpRegisterClient
from gateway.drivers.modbus.codes import BUSY_CODES
from gateway.drivers.modbus.decode import BlockDecoder
from gateway.drivers.modbus.plan import Link, ReadBlock, TcpLink, plan_reads
from gateway.errors import DeviceError
from gateway.model import Reading
from gateway.profiles import DeviceProfile, Table

__all__ = ["BusyRetry", "ClientFactory", "ModbusDriver", "ModbusTcpDriver", "RegisterClient"]


@dataclass(frozen=True, slots=True)
class BusyRetry:
    """Quick retries, within one poll, of a read refused as busy (6) or still working (5).

    Such a device is alive and answering: a short wait usually gets the values, where
    failing the poll would cost them and a backoff of seconds. Nothing else is retried
    here: an illegal address, function or value stays so; a timeout retried at once on
    an RTU bus would cost the other devices another full timeout (the poller's backoff
    handles a silent device); gateway target failed (11) is a timeout already waited
    out by the gateway (see ``codes.BUSY_CODES``).
    """

    retries: int = 2
    wait_s: float = 0.1

    def __post_init__(self) -> None:
        if self.retries < 0 or self.wait_s < 0:
            raise ValueError("busy retries and their wait cannot be negative")


class RegisterClient(Protocol):
    """What the driver needs from a Modbus connection (see ``TcpRegisterClient``)."""

    device: str

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def read_registers(self, table: Table, start: int, count: int) -> list[int]: ...

    async def close(self) -> None: ...


class ClientFactory(Protocol):
    def __call__(self, host: str, port: int, device_id: int, *, timeout_s: float,
                 pause_after_connect_s: float = 0.0) -> RegisterClient: ...


class ModbusDriver:
    """Polls one Modbus unit according to its device profile, through ``client``.

    ``link`` is what the plan optimises for: :class:`TcpLink` for a native Modbus TCP
    meter, ``SerialLink(baud)`` for an RTU meter (on a serial port, or behind a TCP
    gateway). ``pause_s`` is kept between the requests of one poll, for clients that do
    not keep the device's pause themselves (an RTU bus does, across polls too).
    Workarounds for devices that need them: ``one_request_per_value`` (never merge two
    points into one request) and ``close_after_poll`` (drop the connection after every
    poll, successful or not; the next one connects again).
    """

    def __init__(self, meter_id: str, client: RegisterClient, profile: DeviceProfile,
                 clock: Clock, *, link: Link | None = None, pause_s: float = 0.0,
                 busy: BusyRetry = BusyRetry(), one_request_per_value: bool = False,
                 close_after_poll: bool = False) -> None:
        self.meter_id = meter_id
        self.profile = profile
        self._clock = clock
        self._client = client
        self.device = client.device
        self.blocks = plan_reads(profile, link or TcpLink(),
                                 one_per_point=one_request_per_value)
        self._decoders = [BlockDecoder(block) for block in self.blocks]
        self._pause_s = pause_s
        self._busy = busy
        self._close_after_poll = close_after_poll
        #: Reads retried because the device was busy, since the driver was built.
        self.busy_retries = 0

    async def connect(self) -> None:
        await self._client.connect()

    async def read(self) -> list[Reading]:
        """One poll of every point; reconnects first if the last poll dropped the link."""
        try:
            if not self._client.connected:
                await self._client.connect()
            return await self._read_blocks()
        finally:
            if self._close_after_poll:
                await self._client.close()

    async def _read_blocks(self) -> list[Reading]:
        readings: list[Reading] = []
        for index, (block, decode) in enumerate(zip(self.blocks, self._decoders, strict=True)):
            if index and self._pause_s:
                await asyncio.sleep(self._pause_s)
            registers = await self._read_block(block)
            at = self._clock.now()
            for planned, value in zip(block.points, decode(registers), strict=True):
                point = planned.point
                readings.append(Reading(meter_id=self.meter_id, channel=point.channel,
                                        at=at, value=value, unit=point.unit,
                                        kind=point.kind))
        return readings

    async def _read_block(self, block: ReadBlock) -> list[int]:
        """The block's registers, retrying while the device says it is busy (see
        :class:`BusyRetry`). The wait holds nothing: an RTU bus is taken per request,
        so the other devices on it are read meanwhile."""
        retried = 0
        while True:
            try:
                return await self._client.read_registers(block.table, block.start,
                                                          block.count)
            except DeviceError as exc:
                if exc.code not in BUSY_CODES or not self._busy.retries:
                    raise
                if retried >= self._busy.retries:
                    raise _still_busy(exc, retried, self._busy.wait_s) from exc
            retried += 1
            self.busy_retries += 1
            # The device's own pause between queries counts for a retry too.
            await asyncio.sleep(max(self._busy.wait_s, self._pause_s))

    async def close(self) -> None:
        await self._client.close()


class ModbusTcpDriver(ModbusDriver):
    """A Modbus TCP unit (or an RTU one behind a Modbus TCP gateway, with ``link``).

    The profile's ``inter_request_ms`` is kept between the requests of one poll.
    ``pause_after_connect_s`` is waited after every connect, before the first request.
    """

    def __init__(self, meter_id: str, host: str, port: int, device_id: int,
                 profile: DeviceProfile, clock: Clock, *, timeout_s: float = 3.0,
                 link: Link | None = None, busy: BusyRetry = BusyRetry(),
                 one_request_per_value: bool = False, close_after_poll: bool = False,
                 pause_after_connect_s: float = 0.0,
                 client_factory: ClientFactory = TcpRegisterClient) -> None:
        client = client_factory(host, port, device_id, timeout_s=timeout_s,
                                pause_after_connect_s=pause_after_connect_s)
        super().__init__(meter_id, client, profile, clock, link=link,
                         pause_s=profile.inter_request_ms / 1000, busy=busy,
                         one_request_per_value=one_request_per_value,
                         close_after_poll=close_after_poll)


def _still_busy(exc: DeviceError, retried: int, wait_s: float) -> DeviceError:
    """``exc`` saying how often it was retried (the log then tells why the poll failed
    after a while, and that more retries may help)."""
    reason = str(exc).removeprefix(f"{exc.device}: ").removesuffix(f" (code {exc.code})")
    return DeviceError(f"{reason}, still after {retried} retries {wait_s * 1000:g} ms apart",
                       code=exc.code, device=exc.device, retryable=exc.retryable)
