"""Modbus scans: which unit ids answer on a serial port (at which line settings), or
behind a Modbus TCP endpoint, and who they are.

The serial scan owns the port for its duration (nothing else may use the line) and
talks RTU through our own framing (:mod:`gateway.drivers.modbus.rtu`,
:mod:`~gateway.drivers.modbus.device_id`) over :class:`SerialStream`. Per setting it
opens the port at that setting (on a pty only the speed and stop bits exist), sends
one probe per unit id and waits exactly as long as :mod:`.scan_plan` says the line
rules allow: silence ends the wait at the timeout, a first byte extends it to the
longest reply. Only a CRC-valid reply from the id asked (data or a Modbus exception)
counts as a device; other bytes are noted, as they hint at a device at another speed
or a wiring fault, and never counted. Devices found are identified
(:mod:`.modbus_identify`) at the setting they answered at.

Progress goes to a plain ``(what, done, total)`` callback. Cancelling the coroutine
(Ctrl-C) closes the port (``finally``) and keeps what was found so far in the
caller's :class:`ScanState`, whose :meth:`ScanState.summary` still reports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from gateway.commission.modbus_identify import Block, Identification, identify
from gateway.commission.model import DeviceIdentity, FoundDevice, ScanSummary
from gateway.commission.scan_plan import (
    ScanPlan,
    ScanTiming,
    largest_pause,
    late_probe_replies,
    line_text,
    model_line,
    probe_request,
)
from gateway.drivers.modbus.client import TcpRegisterClient, default_factory
from gateway.drivers.modbus.device_id import DeviceIdParser, DeviceIdReply, DeviceIdRequest
from gateway.drivers.modbus.rtu import (
    LineSettings,
    NeedData,
    ReadRequest,
    Refusal,
    Registers,
    ReplyParser,
)
from gateway.drivers.modbus.serial_link import ByteStream, SerialStream
from gateway.errors import DeviceError, DeviceTimeout, DriverError
from gateway.profiles import DeviceProfile

__all__ = ["Progress", "ScanState", "scan_serial", "scan_tcp"]

#: (what is being done, done so far, total): a plain callback, no UI import here.
Progress = Callable[[str, int, int], None]
#: Opens a stream on a port at a line setting (tests may hand in their own).
StreamFactory = Callable[[str, LineSettings], ByteStream]

#: Largest RTU frame (Modbus over Serial Line V1.02, 2.5.1): the longest reply to wait for.
_MAX_ADU = 256
#: Modbus TCP gateways say "no device at this unit id" with these exception codes.
_NO_TARGET = frozenset({10, 11})


def _no_progress(what: str, done: int, total: int) -> None:
    pass


@dataclass
class ScanState:
    """What a scan has done so far; the caller keeps it, so a cancelled scan's devices
    and figures survive (:meth:`summary` with ``interrupted=True``)."""

    address: str = ""
    found: list[FoundDevice] = field(default_factory=list)
    settings_tried: list[str] = field(default_factory=list)
    ids_tried: int = 0
    floor_s: Fraction = Fraction(0)
    timeout_s: float = 0.0
    timeout_reason: str = ""
    elapsed_s: float = 0.0
    #: Of ``elapsed_s``, the time spent on probes (without identifying what answered):
    #: what the floor compares with.
    probing_s: float = 0.0
    #: Bytes heard that were no reply, by setting (a device at another speed?).
    noise: dict[str, int] = field(default_factory=dict)
    #: (unit id, setting) of replies that came after the timeout, while the next id
    #: was probed: a device slower than the timeout allows.
    late: list[tuple[int, str]] = field(default_factory=list)

    @property
    def notes(self) -> tuple[str, ...]:
        noise = tuple(f"noise at {setting}: {size} bytes that were no valid reply (another "
                      "device at another speed, a late reply, or a wiring fault?)"
                      for setting, size in self.noise.items())
        late = tuple(f"unit {unit} answered at {setting} after the timeout: it is there but "
                     "slower than the profiles' turnaround; scan it again with a larger "
                     "margin" for unit, setting in self.late)
        return noise + late

    def summary(self, *, interrupted: bool = False) -> ScanSummary:
        return ScanSummary(address=self.address, settings_tried=tuple(self.settings_tried),
                           ids_tried=self.ids_tried, elapsed_s=self.elapsed_s,
                           floor_s=float(self.floor_s), timeout_s=self.timeout_s,
                           timeout_reason=self.timeout_reason, interrupted=interrupted,
                           found=tuple(self.found), notes=self.notes,
                           probing_s=self.probing_s)


@dataclass(frozen=True, slots=True)
class _Noise:
    """Bytes that came and were no valid reply to the request."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


class _RtuLink:
    """One open port at one setting: a transaction at a time, timed by the plan."""

    def __init__(self, stream: ByteStream, timing: ScanTiming) -> None:
        self.name = stream.name
        self._stream = stream
        self._timing = timing
        self._quiet_at = float("-inf")

    async def transact(self, request: ReadRequest | DeviceIdRequest, reply_max: int,
                       ) -> Registers | Refusal | DeviceIdReply | _Noise | None:
        """The reply, the noise that came instead, or None (silence)."""
        loop = asyncio.get_running_loop()
        line = self._timing.line
        ready = self._quiet_at + float(line.silence_s)
        if ready > loop.time():
            await asyncio.sleep(ready - loop.time())
        parser: ReplyParser | DeviceIdParser = (
            ReplyParser(request) if isinstance(request, ReadRequest)
            else DeviceIdParser(request))
        self._stream.discard_input()
        await self._stream.write(request.frame)
        sent_at = loop.time()
        deadline = sent_at + float(self._timing.request_s + self._timing.timeout_s)
        # The line was last busy with our request, or with the last byte heard: t3.5
        # after that the next request may go (a timeout has long covered it).
        last_frame_at = sent_at + float(self._timing.request_s)
        heard, extended = bytearray(), False
        try:
            while True:
                data = await self._stream.receive(deadline)
                if not data:
                    return _Noise(bytes(heard)) if heard else None
                heard += data
                last_frame_at = max(last_frame_at, loop.time())
                if not extended:  # a first byte: wait for the rest at the line's pace
                    deadline = max(deadline, loop.time() + float(
                        line.wire_s(reply_max) + line.silence_s))
                    extended = True
                parser.feed(data)
                event = parser.next_event()
                if not isinstance(event, NeedData):
                    return event
        finally:
            self._quiet_at = last_frame_at

    async def identification(self, unit: int, object_id: int) -> DeviceIdReply | Refusal:
        reply = await self.transact(DeviceIdRequest(unit, 1, object_id), _MAX_ADU)
        if isinstance(reply, DeviceIdReply | Refusal):
            return reply
        raise _no_reply(reply, self.name, unit)

    async def read(self, unit: int, block: Block) -> tuple[int, ...] | Refusal:
        table, start, count = block
        request = ReadRequest(unit, table, start, count)
        reply = await self.transact(request, request.reply_size)
        if isinstance(reply, Registers):
            return reply.values
        if isinstance(reply, Refusal):
            return reply
        raise _no_reply(reply, self.name, unit)


def _no_reply(reply: object, name: str, unit: int) -> DriverError:
    device = f"{name}/unit {unit}"
    if isinstance(reply, _Noise):
        return DeviceTimeout(f"{reply.size} bytes that were no valid reply", device=device)
    return DeviceTimeout("no reply", device=device)


def _found(protocol: str, address: str, unit: int, line: LineSettings | None,
           ident: Identification, notes: Sequence[str]) -> FoundDevice:
    return FoundDevice(protocol="modbus_rtu" if protocol == "rtu" else "modbus_tcp",
                       address=address, unit_id=unit,
                       line=model_line(line) if line is not None else None,
                       identity=ident.identity, profile=ident.profile,
                       candidates=ident.candidates, notes=(*notes, *ident.notes))


async def scan_serial(port: str, plan: ScanPlan, profiles: Mapping[str, DeviceProfile], *,
                      state: ScanState | None = None, progress: Progress = _no_progress,
                      identify_found: bool = True, pause_s: float | None = None,
                      stream_factory: StreamFactory = SerialStream) -> ScanSummary:
    """Scan ``port`` by ``plan``; devices found are identified against ``profiles``
    (``pause_s`` before each identification request; default: the largest
    ``inter_request_ms`` of the profiles). Found devices are appended to
    ``state.found`` as they are identified; a late reply (a device slower than the
    timeout) is in the summary's notes, not among the devices."""
    if pause_s is None:
        pause_s = largest_pause(profiles.values()) / 1000
    state = state if state is not None else ScanState()
    state.address = port
    loop = asyncio.get_running_loop()
    started = loop.time()
    found_ids: set[int] = set()
    done, remaining = 0, len(plan.lines)
    timings = [plan.timing(line) for line in plan.lines]
    slowest = max(timings, key=lambda t: t.timeout_s)
    state.timeout_s, state.timeout_reason = float(slowest.timeout_s), slowest.reason
    try:
        for timing in timings:
            ids = plan.ids_after(found_ids)
            total = done + remaining * len(ids)
            remaining -= 1
            if not ids:
                break
            setting = line_text(timing.line)
            state.settings_tried.append(setting)
            stream = stream_factory(port, timing.line)
            await stream.open()
            try:
                link = _RtuLink(stream, timing)
                for unit in ids:
                    progress(f"{port} {setting} unit {unit}", done, total)
                    request = probe_request(unit)
                    probe_at = loop.time()
                    reply = await link.transact(request, request.reply_size)
                    state.probing_s += loop.time() - probe_at
                    done += 1
                    state.ids_tried += 1
                    state.floor_s += timing.per_id_s
                    if isinstance(reply, _Noise):
                        late = [u for u in late_probe_replies(reply.data)
                                if u != unit and u not in found_ids]
                        state.late.extend((u, setting) for u in late)
                        if not late:
                            state.noise[setting] = state.noise.get(setting, 0) + reply.size
                    elif reply is not None:
                        # Identified at once, so a scan stopped later keeps it whole.
                        found_ids.add(unit)
                        progress(f"{port} {setting} unit {unit}: identifying", done, total)
                        notes = [f"answered the probe with exception {reply.code} "
                                 f"({reply.name})"] if isinstance(reply, Refusal) else []
                        ident = (await identify(link, unit, profiles, pause_s=pause_s)
                                 if identify_found else Identification(
                                     identity=_unknown(), profile=None))
                        state.found.append(_found("rtu", port, unit, timing.line, ident,
                                                  notes))
                    state.elapsed_s = loop.time() - started
            finally:
                stream.close()
            if plan.stop_after(bool(found_ids)):
                break
        progress(f"{port}: done", done, done)
    finally:
        state.elapsed_s = loop.time() - started
    return state.summary()


def _unknown() -> DeviceIdentity:
    return DeviceIdentity(source="none")


class _TcpLink:
    """Unit ids behind one Modbus TCP endpoint, over one connection."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.name = f"{host}:{port}"
        self._shared = default_factory(host, port, 2 * timeout_s + 1)
        self._timeout_s = timeout_s
        self._host, self._port = host, port
        self._clients: dict[int, TcpRegisterClient] = {}

    def _client(self, unit: int) -> TcpRegisterClient:
        client = self._clients.get(unit)
        if client is None:
            client = self._clients[unit] = TcpRegisterClient(
                self._host, self._port, unit, timeout_s=self._timeout_s,
                factory=lambda host, port, timeout: self._shared)
        return client

    async def identification(self, unit: int, object_id: int) -> DeviceIdReply | Refusal:
        client = self._client(unit)
        await client.connect()
        try:
            return await client.read_device_identification(object_id)
        except DeviceError as exc:
            return Refusal(code=exc.code or 0)

    async def read(self, unit: int, block: Block) -> tuple[int, ...] | Refusal:
        client = self._client(unit)
        await client.connect()
        table, start, count = block
        try:
            return tuple(await client.read_registers(table, start, count))
        except DeviceError as exc:
            return Refusal(code=exc.code or 0)

    def close(self) -> None:
        self._shared.close()


async def scan_tcp(host: str, port: int, ids: Sequence[int],
                   profiles: Mapping[str, DeviceProfile], *, timeout_s: float = 1.0,
                   state: ScanState | None = None, progress: Progress = _no_progress,
                   identify_found: bool = True) -> ScanSummary:
    """Scan the unit ids behind ``host:port`` with the same probe as on a serial line.
    Exceptions 10 and 11 (a TCP gateway's "no such target") and silence mean no device;
    any other reply is one. ConnectError if the endpoint cannot be reached."""
    state = state if state is not None else ScanState()
    state.address = f"{host}:{port}"
    state.settings_tried.append("modbus tcp")
    state.timeout_s = timeout_s
    state.timeout_reason = f"{timeout_s:g} s per unit id over TCP (given)"
    loop = asyncio.get_running_loop()
    started = loop.time()
    link = _TcpLink(host, port, timeout_s)
    try:
        for done, unit in enumerate(ids):
            progress(f"{state.address} unit {unit}", done, len(ids))
            request = probe_request(unit)
            try:
                reply = await link.read(unit, (request.table, request.start, request.count))
            except DeviceTimeout:
                reply = None
            state.ids_tried += 1
            state.elapsed_s = loop.time() - started
            if reply is None or (isinstance(reply, Refusal) and reply.code in _NO_TARGET):
                continue
            notes = [f"answered the probe with exception {reply.code} ({reply.name})"] \
                if isinstance(reply, Refusal) else []
            ident = (await identify(link, unit, profiles, pause_s=0.0) if identify_found
                     else Identification(identity=_unknown(), profile=None))
            state.found.append(_found("tcp", state.address, unit, None, ident, notes))
        progress(f"{state.address}: done", len(ids), len(ids))
    finally:
        link.close()
        state.elapsed_s = loop.time() - started
    return state.summary()
