"""Modbus TCP register reads over pymodbus: the only module that imports pymodbus.

pymodbus' own retries and reconnects are switched off: the ingest framework owns
retries and backoff, and a library that silently reconnects hides outages from it.
Every pymodbus outcome is translated into :mod:`gateway.errors` here.

Timeouts are ours (``asyncio.timeout``); pymodbus gets a longer one as a backstop, so a
silent device is always a :class:`DeviceTimeout`, never a pymodbus I/O message to
parse. After a timeout the connection is dropped: a late reply must not be taken for
the answer to the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.pdu import ModbusPDU

from gateway.drivers.modbus.codes import EXCEPTION_NAMES, RETRYABLE_CODES
from gateway.drivers.modbus.device_id import DeviceIdReply
from gateway.errors import ConnectError, DeviceError, DeviceTimeout, ProtocolError
from gateway.profiles import Table

__all__ = [
    "EXCEPTION_NAMES",
    "RETRYABLE_CODES",
    "PymodbusFactory",
    "TcpRegisterClient",
    "default_factory",
]


class _PymodbusClient(Protocol):
    """The part of ``pymodbus.client.AsyncModbusTcpClient`` this adapter uses."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> bool: ...

    def close(self) -> None: ...

    def read_input_registers(self, address: int, *, count: int = 1,
                             device_id: int = 1) -> Awaitable[ModbusPDU]: ...

    def read_holding_registers(self, address: int, *, count: int = 1,
                               device_id: int = 1) -> Awaitable[ModbusPDU]: ...

    def read_device_information(self, *, read_code: int | None = None, object_id: int = 0,
                                device_id: int = 1) -> Awaitable[ModbusPDU]: ...


#: Builds the pymodbus client for (host, port, backstop timeout in seconds).
PymodbusFactory = Callable[[str, int, float], _PymodbusClient]


def default_factory(host: str, port: int, timeout_s: float) -> _PymodbusClient:
    """A plain pymodbus TCP client without its own retries or reconnects."""
    client: _PymodbusClient = AsyncModbusTcpClient(
        host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0,
        name=f"{host}:{port}",
    )
    return client


class TcpRegisterClient:
    """Reads registers of one unit (``device_id``) behind one Modbus TCP endpoint."""

    def __init__(self, host: str, port: int, device_id: int, *, timeout_s: float = 3.0,
                 pause_after_connect_s: float = 0.0,
                 factory: PymodbusFactory = default_factory) -> None:
        if not 0 <= device_id <= 255:
            raise ValueError(f"device_id {device_id} is outside 0..255")
        self.device = f"{host}:{port}/unit {device_id}"
        self._device_id = device_id
        self._timeout_s = timeout_s
        #: Some TCP gateways drop a request that comes right after the connect.
        self._pause_after_connect_s = pause_after_connect_s
        self._client = factory(host, port, 2 * timeout_s + 1)

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def connect(self) -> None:
        """Open the TCP connection; ConnectError if refused, unreachable or too slow.
        Returns once the device is ready for a request (``pause_after_connect_s``)."""
        if self._client.connected:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                ok = await self._client.connect()
        except TimeoutError:
            ok = False
        except (OSError, ModbusException) as exc:
            raise ConnectError(f"cannot connect: {exc}", device=self.device) from exc
        if not ok:
            self._client.close()
            raise ConnectError(f"cannot connect within {self._timeout_s:g} s "
                               "(refused, unreachable or no answer)", device=self.device)
        if self._pause_after_connect_s:
            await asyncio.sleep(self._pause_after_connect_s)

    async def read_registers(self, table: Table, start: int, count: int) -> list[int]:
        """``count`` registers of ``table`` from ``start``, or a typed DriverError."""
        read = (self._client.read_input_registers if table == "input"
                else self._client.read_holding_registers)
        what = f"{table} registers {start}..{start + count - 1}"
        reply = await self._ask(f"reading {what}",
                                read(start, count=count, device_id=self._device_id))
        registers = list(reply.registers)
        if len(registers) != count:
            raise ProtocolError(f"asked for {count} {table} registers from {start}, "
                                f"got {len(registers)}", device=self.device)
        return registers

    async def read_device_identification(self, object_id: int = 0) -> DeviceIdReply:
        """Read Device Identification (function 43/14), basic objects from ``object_id``;
        DeviceError (code 1: illegal function) from a device without it."""
        reply = await self._ask("device identification (function 43/14)",
                                self._client.read_device_information(
                                    read_code=1, object_id=object_id,
                                    device_id=self._device_id))
        information: dict[int, bytes | list[bytes]] = getattr(reply, "information", {})
        objects = tuple((key, item) for key, value in sorted(information.items())
                        for item in (value if isinstance(value, list) else [value]))
        return DeviceIdReply(conformity=int(getattr(reply, "conformity", 0)),
                             more_follows=bool(getattr(reply, "more_follows", 0)),
                             next_object=int(getattr(reply, "next_object_id", 0)),
                             objects=objects)

    async def _ask(self, what: str, pending: Awaitable[ModbusPDU]) -> ModbusPDU:
        """The reply to one request, every failure translated (see the module doc)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await pending
        except TimeoutError as exc:
            self._client.close()
            raise DeviceTimeout(f"no reply to {what} within {self._timeout_s:g} s",
                                device=self.device) from exc
        except ConnectionException as exc:
            raise ConnectError(f"not connected: {exc}", device=self.device) from exc
        except ModbusException as exc:
            # Mismatched unit id or transaction id, an undecodable frame: drop the
            # connection so the next request starts clean.
            self._client.close()
            raise ProtocolError(f"bad reply to {what}: {exc}",
                                device=self.device) from exc
        if reply.isError():
            code = int(getattr(reply, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise DeviceError(f"device refused {what}: {name}", code=code,
                              device=self.device, retryable=code in RETRYABLE_CODES)
        return reply

    async def close(self) -> None:
        self._client.close()
