"""The serial line of the simulated DLMS meters: a pseudo-terminal at a baud rate.

The client opens the pty's slave end like a serial port (raw mode); this side holds
the master and acts as the line and the meters on it:

- receive pacing: bytes written by the client at once are taken as arriving one
  character time (10 bits: 8N1, or 7E1 during sign-on) after another, so a request
  is complete only when its last byte would have crossed the line;
- send pacing: the answer starts after that (plus ``turnaround_s``) and each chunk is
  released when its last byte is due, as in :mod:`gateway.sim.rtu_bus`;
- multidrop: every meter's HDLC station hears every frame; only the addressed one
  answers;
- optical (mode E, IEC 62056-21): the port starts at 300 baud and answers the request
  message with the first meter's identification after its reaction time, then takes
  the acknowledgement and switches to the agreed baud and HDLC. A DISC, or
  ``inactivity_s`` without a byte, returns it to sign-on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path
from typing import Final

from gateway.drivers.dlms.mode_e import AckReceived, ModeEError, RequestReceived, SignOnServer
from gateway.sim.dlms_meter import DlmsMeter
from gateway.sim.dlms_station import HdlcStation, LinkStats, split_frames

__all__ = ["SIGN_ON_BAUD", "SerialLine"]

SIGN_ON_BAUD: Final = 300
_BITS_PER_CHAR: Final = 10  # start + 8 data + stop, or start + 7 data + parity + stop
_WRITE_RETRY_S: Final = 0.002


class SerialLine:
    """Meters on one simulated serial line (see the module docs)."""

    def __init__(self, meters: list[DlmsMeter], stats: LinkStats, *, baud: int,
                 optical: bool = False, turnaround_s: float = 0.0,
                 inactivity_s: float = 120.0, link: Path | None = None) -> None:
        self.meters = meters
        self.stats = stats
        self.hdlc_baud = baud
        self.optical = optical
        self.turnaround_s = turnaround_s
        self.inactivity_s = inactivity_s
        self._link = link
        self._master = self._slave = -1
        self._path = ""
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._rx_done = 0.0
        self._last_rx = 0.0
        self.baud = baud
        self.signing_on = False
        self._sign_on: SignOnServer | None = None
        self.stations: list[HdlcStation] = []
        #: Sign-ons answered (optical).
        self.sign_ons = 0
        self._reset()

    @property
    def path(self) -> str:
        return str(self._link) if self._link is not None else self._path

    @property
    def char_s(self) -> float:
        return _BITS_PER_CHAR / self.baud

    def _reset(self) -> None:
        """Fresh links for every meter; an optical port back in sign-on at 300 baud."""
        self.stations = [HdlcStation(m) for m in self.meters]
        if self.optical:
            self.signing_on, self.baud = True, SIGN_ON_BAUD
            self._sign_on = SignOnServer(self.meters[0].spec.identification)

    async def start(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._path = os.ttyname(slave)
        if self._link is not None:
            self._link.unlink(missing_ok=True)
            self._link.symlink_to(self._path)
        asyncio.get_running_loop().add_reader(master, self._on_readable)
        self._task = asyncio.create_task(self._serve(), name=f"dlms line {self.path}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
        if self._link is not None:
            self._link.unlink(missing_ok=True)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except (BlockingIOError, OSError):
            return
        if data:
            self._queue.put_nowait((asyncio.get_running_loop().time(), data))

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            read_at, data = await self._queue.get()
            if self.optical and not self.signing_on \
                    and read_at - self._last_rx > self.inactivity_s:
                self._reset()  # the probe was taken away long ago: sign on again
            self._last_rx = read_at
            # The chunk was written at once; on the line it takes its own time.
            start = max(read_at, self._rx_done)
            self._rx_done = start + len(data) * self.char_s
            self.stats.bytes_received += len(data)
            delay, answer = self._hear(data)
            if not answer:
                continue
            due = self._rx_done + self.turnaround_s + delay
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await self._send(answer)
            if self.optical and any(s.went_down for s in self.stations):
                self._reset()  # DISC answered: the port signs off

    def _hear(self, data: bytes) -> tuple[float, bytes]:
        """(extra delay, bytes to send) for what was heard."""
        if self.signing_on:
            return self._hear_sign_on(data)
        self.stats.frames_received += len(split_frames(data)) if data[:1] == b"\x7e" else 0
        out = bytearray()
        for station in self.stations:
            for frame in station.feed(data):
                self.stats.frames_sent += 1
                out += frame
        return 0.0, bytes(out)

    def _hear_sign_on(self, data: bytes) -> tuple[float, bytes]:
        sign_on = self._sign_on
        assert sign_on is not None
        # 7E1 on a real port: the parity bit may arrive as the top bit.
        sign_on.receive_data(bytes(b & 0x7F for b in data))
        try:
            while True:
                event = sign_on.next_event()
                if isinstance(event, RequestReceived):
                    answer = sign_on.data_to_send()
                    if answer:
                        self.sign_ons += 1
                        reaction = float(sign_on.identification.min_reaction_s)
                        return reaction, answer
                elif isinstance(event, AckReceived):
                    # The ACK's own line time is already counted at 300 baud; from
                    # here on the line runs at the agreed speed and speaks HDLC.
                    self.signing_on, self.baud = False, event.baud
                    self.stations = [HdlcStation(m) for m in self.meters]
                    return 0.0, b""
                else:
                    return 0.0, b""
        except ModeEError:
            self._reset()  # garbage during sign-on: start over, as a meter times out
            return 0.0, b""

    async def _send(self, data: bytes) -> None:
        """Release ``data`` at the line's pace: each chunk once its last byte is due."""
        loop = asyncio.get_running_loop()
        char_s = self.char_s
        chunk = max(1, int(0.002 / char_s))  # about 2 ms of line per write
        start = loop.time()
        for offset in range(0, len(data), chunk):
            piece = data[offset:offset + chunk]
            due = start + (offset + len(piece)) * char_s
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await self._write(piece)
        self.stats.bytes_sent += len(data)

    async def _write(self, piece: bytes) -> None:
        """Write all of ``piece``; a full pty buffer (a slow reader) is waited out for
        up to a second, after that the bytes are lost as on a line nobody listens to."""
        for _ in range(int(1 / _WRITE_RETRY_S)):
            if self._master < 0:
                return
            try:
                written = os.write(self._master, piece)
            except BlockingIOError:
                written = 0
            piece = piece[written:]
            if not piece:
                return
            await asyncio.sleep(_WRITE_RETRY_S)
