"""A simulated RS-485 multi-drop bus on a pseudo-terminal: a real RTU peer.

The gateway opens the pty's slave end like any serial port (its path, or a symlink
standing in for ``/dev/ttyUSB0``); this simulator holds the master end and answers as
the slaves on the bus would:

- each :class:`~gateway.sim.modbus_meter.SimulatedMeter` answers its own unit id
  with its profile's registers at the clock's time; **unknown unit ids get no answer**,
  as on a real bus (pymodbus' server answers them with exception 4, which no slave on
  a real line would do);
- bytes go out at the line's pace (a link emulator): a request is taken as arrived
  once its 8 bytes would have crossed the line, the reply starts after the device's
  turnaround, and each chunk of it is released when its last byte would be complete;
- faults per unit (:class:`Faults`): noise before a reply, truncation, a broken CRC,
  a late reply (after the master's timeout), silence (a dead device), an exception;
- :meth:`RtuBus.unplug` and :meth:`RtuBus.replug`: the adapter vanishes (the pty
  closes, the symlink goes) and comes back at the same path, as udev would do;
- Read Device Identification (function 43/14, basic objects) for profiles whose
  ``[identify]`` names product codes, exception 1 (illegal function) for the others;
- with ``match_line``, devices at other line settings on the same pty (``others``):
  a pty carries bytes, not a baud rate, so on each request the bus reads the speed
  and stop bits the master set on its end (``tcgetattr``) and only the units whose
  line matches answer; the rest stay silent, or with ``garbage_on_mismatch`` send
  what a UART at the wrong speed makes of their reply (never a valid frame). Parity
  cannot be told: Linux clears PARENB on a pty, so 8E1 and 8N1 look alike there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gateway.clock import Clock
from gateway.drivers.modbus.device_id import DeviceIdRequest
from gateway.drivers.modbus.rtu import LineSettings, ReadRequest, crc16
from gateway.profiles import DeviceProfile, Table
from gateway.sim.modbus_meter import MeterSpec, SimulatedMeter

__all__ = ["Faults", "RegisterSource", "RtuBus", "rtu_meters", "serve_rtu_bus", "serve_sources"]


@dataclass
class Faults:
    """What one unit does wrong; ``times`` limits it to the next N requests."""

    #: Never answer (a dead or unpowered device).
    silent: bool = False
    #: Answer with this Modbus exception code (6: busy).
    refuse: int | None = None
    #: Bytes sent on the line just before the reply (noise, a reflection).
    noise: bytes = b""
    #: Send only the first N bytes of the reply.
    truncate_to: int | None = None
    #: Flip a bit of the reply's CRC.
    corrupt_crc: bool = False
    #: Extra delay before answering (past the master's timeout: a late reply).
    late_s: float = 0.0
    #: Requests the fault applies to; None: all, until replaced.
    times: int | None = None


class RegisterSource(Protocol):
    """What the bus needs of a slave: a unit id, a profile, and its registers at an
    instant (a :class:`SimulatedMeter`, or any stand-in a test writes)."""

    @property
    def device_id(self) -> int: ...

    @property
    def profile(self) -> DeviceProfile: ...

    def registers(self, table: Table, at: datetime) -> dict[int, int]: ...


Request = ReadRequest | DeviceIdRequest

#: termios speed constants -> baud.
_SPEEDS = {getattr(termios, f"B{b}"): b for b in (
    300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)}


@dataclass
class _Unit:
    meter: RegisterSource
    line: LineSettings
    faults: Faults = field(default_factory=Faults)
    requests: int = 0


class RtuBus:
    """Several simulated meters on one simulated RS-485 line."""

    def __init__(self, meters: Sequence[RegisterSource], clock: Clock, line: LineSettings,
                 *, link: Path | None = None, turnaround_s: float = 0.0,
                 record: bool = False,
                 others: Sequence[tuple[LineSettings, Sequence[RegisterSource]]] = (),
                 match_line: bool = False, garbage_on_mismatch: bool = False) -> None:
        self.line = line
        self.turnaround_s = turnaround_s
        self._clock = clock
        self._link = link
        groups = [(line, meters), *others]
        self._units = {m.device_id: _Unit(m, at) for at, group in groups for m in group}
        if len(self._units) != sum(len(group) for _, group in groups):
            raise ValueError("two meters on one bus share a unit id")
        self._match_line = match_line or bool(others)
        self._garbage = garbage_on_mismatch
        #: Requests heard at a speed or format no unit of theirs is set to.
        self.mismatched = 0
        self._master = self._slave = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slave_path = ""
        self._inbox = bytearray()
        self._queue: asyncio.Queue[tuple[float, Request, tuple[int, int] | None]] = \
            asyncio.Queue()
        self._server: asyncio.Task[None] | None = None
        #: Requests seen for unit ids nobody on the bus has.
        self.unanswered = 0
        #: With ``record``: every request heard, in order, with the bytes sent back
        #: (None: no answer), for tests that check which reply answered which request.
        self.log: list[tuple[Request, bytes | None]] | None = [] if record else None

    @property
    def path(self) -> str:
        """What the gateway opens: the symlink if one was asked for, else the pty."""
        return str(self._link) if self._link is not None else self._slave_path

    def meter(self, unit: int) -> RegisterSource:
        return self._units[unit].meter

    def requests(self, unit: int) -> int:
        return self._units[unit].requests

    def set_faults(self, unit: int, faults: Faults) -> None:
        self._units[unit].faults = faults

    async def start(self) -> None:
        self._plug()
        self._server = asyncio.create_task(self._serve(), name=f"rtu bus {self.path}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server
            self._server = None
        self.unplug()

    def unplug(self) -> None:
        """The adapter vanishes: its pty closes and its path goes away."""
        if self._master < 0:
            return
        # The loop it was plugged on: a shutdown may close this outside a running loop.
        if self._loop is not None:
            self._loop.remove_reader(self._master)
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1
        self._inbox.clear()
        if self._link is not None:
            self._link.unlink(missing_ok=True)

    def replug(self) -> None:
        """The adapter comes back: a new pty at the same path."""
        self.unplug()
        self._plug()

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_path = os.ttyname(slave)
        if self._link is not None:
            self._link.unlink(missing_ok=True)
            self._link.symlink_to(self._slave_path)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # nobody holds the slave end: nothing to hear until someone does
            return
        now = asyncio.get_running_loop().time()
        self._inbox += data
        heard = self._master_line() if self._match_line else None
        while (request := self._next_request()) is not None:
            self._queue.put_nowait((now, request, heard))

    def _next_request(self) -> Request | None:
        """The next whole request in the inbox: reads (8 bytes) and device
        identification (7), CRC-valid; anything else is dropped a byte at a time, as a
        slave's receiver resynchronises."""
        inbox = self._inbox
        while len(inbox) >= DeviceIdRequest.SIZE:
            function = inbox[1]
            if function == 0x2B:
                frame = bytes(inbox[:DeviceIdRequest.SIZE])
                if crc16(frame) == 0 and frame[2] == 0x0E and frame[3] in (1, 2, 3, 4) \
                        and 1 <= frame[0] <= 247:
                    del inbox[:DeviceIdRequest.SIZE]
                    return DeviceIdRequest(frame[0], frame[3], frame[4])
            elif function in (3, 4):
                if len(inbox) < ReadRequest.SIZE:
                    return None
                frame = bytes(inbox[:ReadRequest.SIZE])
                if crc16(frame) == 0:  # CRC over frame + CRC is 0
                    try:
                        table: Table = "input" if function == 4 else "holding"
                        request = ReadRequest(frame[0], table,
                                              int.from_bytes(frame[2:4], "big"),
                                              int.from_bytes(frame[4:6], "big"))
                    except ValueError:
                        pass  # a frame no master sends (unit 0, count 0): noise
                    else:
                        del inbox[:ReadRequest.SIZE]
                        return request
            del inbox[0]
        return None

    def _master_line(self) -> tuple[int, int] | None:
        """(baud, stop bits) the master set on its end of the pty."""
        try:
            attrs = termios.tcgetattr(self._slave)
        except termios.error:
            return None
        cflag, speed = attrs[2], attrs[4]
        return _SPEEDS.get(speed, -1), 2 if cflag & termios.CSTOPB else 1

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            arrived, request, heard = await self._queue.get()
            unit = self._units.get(request.unit)
            if unit is None:
                self.unanswered += 1
                self._record(request, None)
                continue
            if heard is not None and heard != (unit.line.baud, unit.line.stop_bits):
                self.mismatched += 1
                self._record(request, None)
                if self._garbage:
                    await self._send(_garbled(self._reply(unit, request, Faults())))
                continue
            unit.requests += 1
            faults = unit.faults
            if faults.times is not None:
                faults.times -= 1
                if faults.times < 0:
                    faults = unit.faults = Faults()
            if faults.silent:
                self._record(request, None)
                continue
            reply = faults.noise + self._reply(unit, request, faults)
            self._record(request, reply)
            start = arrived + float(unit.line.wire_s(len(request.frame))) \
                + self.turnaround_s + faults.late_s
            if start > loop.time():
                await asyncio.sleep(start - loop.time())
            await self._send(reply, unit.line)

    def _record(self, request: Request, reply: bytes | None) -> None:
        if self.log is not None:
            self.log.append((request, reply))

    def _reply(self, unit: _Unit, request: Request, faults: Faults) -> bytes:
        if isinstance(request, DeviceIdRequest):
            frame = _identification(unit.meter, request, faults.refuse)
        elif (code := faults.refuse if faults.refuse is not None
              else self._check(unit, request)) is not None:
            frame = request.refusal(code)
        else:
            words = unit.meter.registers(request.table, self._clock.now())
            frame = request.reply([words.get(a, 0)
                                   for a in range(request.start, request.start + request.count)])
        if faults.corrupt_crc:
            frame = frame[:-1] + bytes([frame[-1] ^ 0x01])
        if faults.truncate_to is not None:
            frame = frame[:faults.truncate_to]
        return frame

    @staticmethod
    def _check(unit: _Unit, request: ReadRequest) -> int | None:
        """Exception 2 for registers a gap-intolerant device does not have."""
        profile = unit.meter.profile
        if profile.allow_gap_reads:
            return None
        mapped = {p.address + i for p in profile.points if p.table == request.table
                  for i in range(p.width)}
        wanted = range(request.start, request.start + request.count)
        return None if all(a in mapped for a in wanted) else 2

    async def _send(self, frame: bytes, line: LineSettings | None = None) -> None:
        """Release the frame at the line's pace: each chunk once its last byte is due."""
        loop = asyncio.get_running_loop()
        char_s = float((line or self.line).char_s)
        chunk = max(1, int(0.002 / char_s))  # about 2 ms of line per write
        start = loop.time()
        for offset in range(0, len(frame), chunk):
            piece = frame[offset:offset + chunk]
            due = start + (offset + len(piece)) * char_s
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if self._master < 0:
                return  # unplugged mid-reply
            with contextlib.suppress(BlockingIOError):  # nobody reading: the line drops it
                os.write(self._master, piece)


def _identification(meter: RegisterSource, request: DeviceIdRequest,
                    refuse: int | None) -> bytes:
    """The basic objects of a profile that declares product codes; exception 1 (illegal
    function) from the others, as a device without the function answers."""
    identify = meter.profile.identify
    if refuse is not None or identify is None or not identify.product_codes:
        return request.refusal(1 if refuse is None else refuse)
    vendor = identify.vendor_name or meter.profile.manufacturer
    return request.reply(((0, vendor.encode()), (1, identify.product_codes[0].encode()),
                          (2, b"1.0.0")))


def _garbled(frame: bytes) -> bytes:
    """What a UART at another speed makes of a frame: as many bytes, none of them the
    frame's (so never a valid reply to anyone)."""
    return bytes(b ^ 0x5A for b in frame) or b"\xff"


def rtu_meters(specs: Sequence[MeterSpec], clock: Clock) -> list[SimulatedMeter]:
    """Simulated meters for a bus (their register models, without TCP servers)."""
    return [SimulatedMeter(spec, clock, host="rtu") for spec in specs]


@asynccontextmanager
async def serve_rtu_bus(specs: Sequence[MeterSpec], clock: Clock, line: LineSettings, *,
                        link: Path | None = None, turnaround_s: float = 0.0,
                        others: Sequence[tuple[LineSettings, Sequence[MeterSpec]]] = (),
                        match_line: bool = False,
                        garbage_on_mismatch: bool = False) -> AsyncIterator[RtuBus]:
    """A running bus of simulated meters, one per spec (by ``device_id``); ``others``:
    groups of meters at other line settings on the same pty (see :class:`RtuBus`)."""
    bus = RtuBus(rtu_meters(specs, clock), clock, line, link=link,
                 turnaround_s=turnaround_s, match_line=match_line,
                 garbage_on_mismatch=garbage_on_mismatch,
                 others=[(at, rtu_meters(group, clock)) for at, group in others])
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@asynccontextmanager
async def serve_sources(sources: Sequence[RegisterSource], clock: Clock, line: LineSettings,
                        *, link: Path | None = None, turnaround_s: float = 0.0,
                        record: bool = False) -> AsyncIterator[RtuBus]:
    """A running bus of any register sources (see :class:`RegisterSource`)."""
    bus = RtuBus(sources, clock, line, link=link, turnaround_s=turnaround_s, record=record)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()
