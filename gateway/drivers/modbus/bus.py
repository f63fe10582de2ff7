"""One owner per RTU line: every device on a bus reads through its :class:`Bus`.

RS-485 is half duplex and RTU has no transaction id, so two requests in flight would
be indistinguishable. A bus runs one transaction at a time (a FIFO lock), and each is:

1. wait for the device, without holding the bus: its own pause since its last reply
   (Eastron meters want 100 ms or more between queries), so other devices use the
   line meanwhile; then, holding it, for t3.5 after the last frame;
2. discard input (the kernel's queue and ours): nothing that came before counts;
3. write the request, then read until the :class:`~gateway.drivers.modbus.rtu.ReplyParser`
   has a valid reply to *this* request (unit id, function, byte count, CRC), or until
   the timeout (counted from the end of the request on the wire, plus the reply's own
   wire time).

After a timeout the silent device may still answer. A late reply of another shape is
rejected by the parser; one of the same shape (the same unit, function and count) is
indistinguishable from the answer, so the next request of that shape waits until
``late_guard_s`` after the timeout, and what came meanwhile is flushed with the rest.
Only that unit's requests of that shape wait; the rest of the bus goes on. Replies later than the
timeout plus the guard cannot be told apart on any RTU master; the poller's backoff
before retrying a failed device (seconds) widens the margin in practice.

Port failures (adapter unplugged: EIO/ENXIO; a pty or server gone) close the port;
the next transaction reopens it, no sooner than a backoff that doubles per failed
reopen, so a missing adapter is not hammered by every device on its bus.

Line timing runs on the event loop's monotonic clock: it is physics, not the
(possibly accelerated) wall clock the readings are stamped with.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway.drivers.modbus.rtu import LineSettings, NeedData, ReadRequest, Refusal, ReplyParser
from gateway.drivers.modbus.serial_link import ByteStream, SerialStream, TcpStream
from gateway.errors import ConfigError, ConnectError

__all__ = ["Bus", "BusPool", "BusStats"]


@dataclass
class BusStats:
    transactions: int = 0
    replies: int = 0
    refusals: int = 0
    failures: int = 0
    #: Stray bytes dropped in front of replies (noise, late replies).
    discarded_bytes: int = 0
    opens: int = 0
    port_failures: int = 0


class Bus:
    """Serialises the transactions of every device on one line."""

    def __init__(self, stream: ByteStream, line: LineSettings, *,
                 late_guard_s: float = 0.25, reopen_base_s: float = 0.5,
                 reopen_cap_s: float = 30.0) -> None:
        self.name = stream.name
        self.line = line
        self._stream = stream
        self._silence_s = float(line.silence_s)
        self._late_guard_s = late_guard_s
        self._reopen_base_s, self._reopen_cap_s = reopen_base_s, reopen_cap_s
        self._lock = asyncio.Lock()
        #: Loop time when the line last went quiet, and per unit when it last answered.
        self._quiet_at = float("-inf")
        self._answered_at: dict[int, float] = {}
        #: Loop time when the port last opened (devices that need a pause after it).
        self.opened_at = float("-inf")
        #: (unit, function, count) -> loop time when a request of that shape timed out.
        self._timed_out: dict[tuple[int, int, int], float] = {}
        self._reopen_at = float("-inf")
        self._reopen_failures = 0
        #: Why the port last failed, for the errors raised while it stays down.
        self._port_error = ""
        self._users = 0
        self.stats = BusStats()

    @property
    def is_open(self) -> bool:
        return self._stream.is_open

    def attach(self) -> None:
        """A device starts using the bus (see :meth:`detach`)."""
        self._users += 1

    def detach(self) -> None:
        """A device stops using the bus; the last one out closes the port."""
        self._users = max(self._users - 1, 0)
        if self._users == 0:
            self._stream.close()

    async def ensure_open(self) -> None:
        async with self._lock:
            await self._ensure_open()

    async def read(self, request: ReadRequest, *, device: str, timeout_s: float,
                   pause_s: float = 0.0) -> tuple[int, ...]:
        """The registers ``request`` asks for, or a typed DriverError naming ``device``."""
        await self._device_ready(request, pause_s)
        async with self._lock:
            await self._ensure_open()
            self.stats.transactions += 1
            try:
                return await self._transact(request, device, timeout_s)
            except ConnectError as exc:
                self._port_failed(exc)
                raise ConnectError(str(exc), device=device) from exc
            except Exception:
                self.stats.failures += 1
                raise

    async def close(self) -> None:
        async with self._lock:
            self._stream.close()

    async def _ensure_open(self) -> None:
        if self._stream.is_open:
            return
        loop = asyncio.get_running_loop()
        self._stream.close()  # a failed stream still holds its descriptor until closed
        wait = self._reopen_at - loop.time()
        if wait > 0:
            raise ConnectError(f"port down ({self._port_error}); reopening in {wait:.1f} s",
                               device=self.name)
        try:
            await self._stream.open()
        except ConnectError as exc:
            self._port_error = str(exc).removeprefix(f"{self.name}: ")
            self._reopen_failures += 1
            self._reopen_at = loop.time() + min(
                self._reopen_base_s * 2 ** (self._reopen_failures - 1), self._reopen_cap_s)
            raise
        self._reopen_failures = 0
        self._quiet_at = self.opened_at = loop.time()
        self.stats.opens += 1

    def _port_failed(self, exc: ConnectError) -> None:
        self._port_error = str(exc).removeprefix(f"{self.name}: ")
        self.stats.port_failures += 1
        self._stream.close()
        loop = asyncio.get_running_loop()
        self._reopen_at = loop.time() + self._reopen_base_s

    async def _device_ready(self, request: ReadRequest, pause_s: float) -> None:
        """Wait for what only this device needs, without holding the bus: its pause
        since its last reply, and, if a request of this shape timed out, the guard for
        a late reply to it (which then arrives during other devices' transactions, or
        is flushed before this one)."""
        loop = asyncio.get_running_loop()
        shape = (request.unit, request.function, request.count)
        ready = self._answered_at.get(request.unit, float("-inf")) + pause_s
        timed_out = self._timed_out.get(shape)
        if timed_out is not None:
            ready = max(ready, timed_out + self._late_guard_s)
        if ready > loop.time():
            await asyncio.sleep(ready - loop.time())
        self._timed_out.pop(shape, None)

    async def _transact(self, request: ReadRequest, device: str,
                        timeout_s: float) -> tuple[int, ...]:
        loop = asyncio.get_running_loop()
        stream = self._stream
        shape = (request.unit, request.function, request.count)
        ready = self._quiet_at + self._silence_s
        if ready > loop.time():
            await asyncio.sleep(ready - loop.time())
        stream.discard_input()
        await stream.write(request.frame)
        sent_at = loop.time()
        deadline = sent_at + float(self.line.wire_s(ReadRequest.SIZE + request.reply_size)) \
            + timeout_s
        parser = ReplyParser(request)
        while True:
            data = await stream.receive(deadline)
            if not data:
                self._quiet_at = self._timed_out[shape] = loop.time()
                raise parser.failure(device, timeout_s)
            parser.feed(data)
            event = parser.next_event()
            if isinstance(event, NeedData):
                continue
            self._quiet_at = self._answered_at[request.unit] = loop.time()
            self.stats.discarded_bytes += event.discarded
            if isinstance(event, Refusal):
                self.stats.refusals += 1
                raise event.error(request, device)
            self.stats.replies += 1
            return event.values


class BusPool:
    """The buses of one gateway, one per serial port or device server, shared by every
    device that names it."""

    def __init__(self) -> None:
        self._buses: dict[tuple[str, ...], Bus] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def line_lock(self, path: str) -> asyncio.Lock:
        """The lock of a serial line whose devices each open the port for a whole poll
        (DLMS meters on one RS-485 line): one poll at a time on it."""
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = asyncio.Lock()
        return lock

    def serial(self, path: str, line: LineSettings) -> Bus:
        key = ("serial", path)
        bus = self._buses.get(key)
        if bus is None:
            bus = self._buses[key] = Bus(SerialStream(path, line), line)
        elif bus.line != line:
            # The config check refuses this (settings._bus_problems); a caller building
            # drivers by hand gets the same verdict.
            raise ConfigError(f"serial port {path} is already in use at {bus.line.baud} baud, "
                              f"parity {bus.line.parity}, {bus.line.stop_bits} stop bits",
                              key="port", fix="give every meter on one port the same "
                              "baudrate, parity and stopbits")
        return bus

    def tcp(self, host: str, port: int, line: LineSettings) -> Bus:
        key = ("tcp", host, str(port))
        bus = self._buses.get(key)
        if bus is None:
            bus = self._buses[key] = Bus(TcpStream(host, port), line)
        return bus

    async def close(self) -> None:
        for bus in self._buses.values():
            await bus.close()
