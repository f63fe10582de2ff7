"""The links of the simulated DLMS meters: TCP (wrapper or HDLC) and a serial line on a
pseudo-terminal (HDLC, optionally behind an optical probe's mode E sign-on).

``serve_dlms`` starts them::

    async with serve_dlms([spec], clock, medium="tcp") as server:      # wrapper, port
        ... connect to server.host, server.port
    async with serve_dlms(specs, clock, medium="pty", baud=9600) as server:
        ... open server.path; meters share the line by HDLC address

On TCP each meter has its own listener (``server.ports[meter_id]``) and each
connection its own association; with HDLC framing also its own link. On the pty all
meters hear every frame and answer only their own address (RS-485 multidrop). The pty
is a link emulator (see :mod:`gateway.sim.rtu_bus`): a request counts as arrived when
its last byte would have crossed the line at the baud rate, and the answer leaves at
that pace too, so a profile read takes its line time both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from gateway.clock import Clock
from gateway.drivers.dlms.wrapper import WrapperError, WrapperFrame, WrapperParser
from gateway.sim.dlms_line import SerialLine
from gateway.sim.dlms_meter import DlmsMeter, DlmsMeterSpec, DlmsSession
from gateway.sim.dlms_station import HdlcStation, LinkStats, lost, split_frames

__all__ = ["DlmsServer", "Framing", "LinkStats", "Medium", "serve_dlms"]

Medium = Literal["tcp", "pty"]
Framing = Literal["wrapper", "hdlc"]


class DlmsServer:
    """Running simulated meters and their link(s)."""

    def __init__(self, specs: Sequence[DlmsMeterSpec], clock: Clock, *, medium: Medium,
                 framing: Framing, host: str) -> None:
        self.meters = {s.meter_id: DlmsMeter(s, clock) for s in specs}
        if len(self.meters) != len(specs):
            raise ValueError("two meters share a meter_id")
        self.medium = medium
        self.framing = framing
        self.host = host
        #: meter_id -> TCP port (TCP only).
        self.ports: dict[str, int] = {}
        self.stats = LinkStats()
        #: The serial line (pty only).
        self.line: SerialLine | None = None
        self._servers: list[asyncio.Server] = []
        self._path = ""

    @property
    def port(self) -> int:
        """The TCP port of the first meter."""
        return next(iter(self.ports.values()))

    @property
    def path(self) -> str:
        """The pty slave a client opens (pty only)."""
        return self._path

    def meter(self, meter_id: str) -> DlmsMeter:
        return self.meters[meter_id]

    async def start_tcp(self) -> None:
        for meter in self.meters.values():
            def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        meter: DlmsMeter = meter) -> asyncio.Future[None]:
                return asyncio.ensure_future(self._connection(meter, reader, writer))
            server = await asyncio.start_server(handler, self.host, 0)
            self._servers.append(server)
            self.ports[meter.meter_id] = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()

    async def _connection(self, meter: DlmsMeter, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        """One TCP connection: one association (and with HDLC, one link)."""
        try:
            if self.framing == "hdlc":
                await self._hdlc_connection(HdlcStation(meter), reader, writer)
            else:
                await self._wrapper_connection(meter, reader, writer)
        except (ConnectionError, WrapperError):
            pass  # the client went away, or its stream broke: the association ends
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _hdlc_connection(self, station: HdlcStation, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            self.stats.bytes_received += len(data)
            self.stats.frames_received += len(split_frames(data))
            for frame in station.feed(data):
                self.stats.bytes_sent += len(frame)
                self.stats.frames_sent += 1
                writer.write(frame)
            await writer.drain()

    async def _wrapper_connection(self, meter: DlmsMeter, reader: asyncio.StreamReader,
                                  writer: asyncio.StreamWriter) -> None:
        parser = WrapperParser()
        session: DlmsSession | None = None
        while data := await reader.read(65536):
            self.stats.bytes_received += len(data)
            if meter.is_silent:
                continue
            parser.receive_data(data)
            while isinstance(frame := parser.next_event(), WrapperFrame):
                self.stats.frames_received += 1
                if frame.destination != meter.spec.server_logical:
                    continue  # no such logical device behind this address
                if session is None or session.client_sap != frame.source:
                    session = DlmsSession(meter, frame.source)
                answer = session.handle(frame.apdu)
                if answer is None or lost(meter):
                    continue
                out = WrapperFrame(frame.destination, frame.source, answer).encode()
                self.stats.bytes_sent += len(out)
                self.stats.frames_sent += 1
                writer.write(out)
            await writer.drain()


@asynccontextmanager
async def serve_dlms(specs: Sequence[DlmsMeterSpec], clock: Clock, *, medium: Medium,
                     framing: Framing | None = None, baud: int = 9600,
                     optical: bool = False, turnaround_s: float = 0.0,
                     inactivity_s: float = 120.0, link: Path | None = None,
                     host: str = "127.0.0.1") -> AsyncIterator[DlmsServer]:
    """Serve simulated DLMS meters. TCP: one listener per meter, wrapper framing by
    default (or ``framing="hdlc"``). PTY: one line, HDLC at ``baud``; with ``optical``
    it starts in mode E at 300 baud and switches to the agreed baud after sign-on,
    and signs off on DISC or after ``inactivity_s`` of silence. ``link``: a symlink
    to the pty (a stand-in for /dev/ttyUSB0)."""
    if not specs:
        raise ValueError("serve_dlms needs at least one meter")
    chosen: Framing = framing or ("wrapper" if medium == "tcp" else "hdlc")
    if medium == "pty" and chosen != "hdlc":
        raise ValueError("a serial line speaks HDLC, not the TCP wrapper")
    if optical and medium != "pty":
        raise ValueError("an optical probe is a serial line (medium='pty')")
    server = DlmsServer(specs, clock, medium=medium, framing=chosen, host=host)
    if medium == "tcp":
        await server.start_tcp()
        try:
            yield server
        finally:
            await server.stop()
        return
    line = SerialLine(list(server.meters.values()), server.stats, baud=baud,
                      optical=optical, turnaround_s=turnaround_s,
                      inactivity_s=inactivity_s, link=link)
    await line.start()
    server.line = line
    server._path = line.path
    try:
        yield server
    finally:
        await line.stop()
