"""Byte streams under an RTU bus: a serial port, or TCP to a serial device server.

The only module that imports pyserial. pyserial opens and configures the port (baud,
parity, stop bits, exclusive lock) and hands over its file descriptor, which is
already non-blocking; reads then run on the event loop (``loop.add_reader``), with no
thread per port and none per read. Every failure leaves as a
:class:`~gateway.errors.ConnectError`, and :meth:`close` always releases the
descriptors, so an adapter unplugged a thousand times leaks none.

Both streams buffer what arrives in an :class:`Inbox` from the moment they open; the
bus discards it before each request (together with the kernel's input queue), so bytes
from before a request never count as its reply.
"""

from __future__ import annotations

import asyncio
import errno
import os
import termios
from typing import Protocol

import serial

from gateway.drivers.modbus.rtu import LineSettings
from gateway.errors import ConnectError

__all__ = ["ByteStream", "Inbox", "SerialStream", "TcpStream"]

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_STOPBITS = {1: serial.STOPBITS_ONE, 2: serial.STOPBITS_TWO}


def _is_pty(path: str) -> bool:
    """A pseudo-terminal (a simulator, socat): it has a speed but no character format."""
    return os.path.realpath(path).startswith("/dev/pts/")


class ByteStream(Protocol):
    """What the bus needs from a line: open, discard input, write, receive, close."""

    #: For errors and logs: the port path, or host:port.
    name: str

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None: ...

    def discard_input(self) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def receive(self, deadline: float) -> bytes:
        """Bytes that have arrived, waiting for some until ``deadline`` (event loop
        time); ``b""`` when none came by then. ConnectError if the line failed."""
        ...

    def close(self) -> None: ...


class Inbox:
    """Bytes received and not yet taken, or the error that ended the stream."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._arrived = asyncio.Event()
        self.error: ConnectError | None = None

    def put(self, data: bytes) -> None:
        self._data += data
        self._arrived.set()

    def fail(self, error: ConnectError) -> None:
        if self.error is None:
            self.error = error
        self._arrived.set()

    def clear(self) -> None:
        self._data.clear()
        if self.error is None:
            self._arrived.clear()

    async def take(self, deadline: float) -> bytes:
        if not self._data and self.error is None:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._arrived.wait()
            except TimeoutError:
                return b""
        if self._data:
            data = bytes(self._data)
            self._data.clear()
            self._arrived.clear()
            return data
        assert self.error is not None
        raise self.error


class SerialStream:
    """A local serial port (``/dev/ttyUSB0``, ``/dev/ttyAMA0``, a pty)."""

    def __init__(self, path: str, line: LineSettings) -> None:
        self.name = path
        self.line = line
        self._port: serial.Serial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._inbox = Inbox()

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._inbox.error is None

    async def open(self) -> None:
        if self._port is not None:
            self.close()
        parity = self.line.parity
        if _is_pty(self.name):
            # A pseudo-terminal keeps no parity: Linux clears PARENB, and refuses (EINVAL)
            # a change that would change nothing else, so a second open at 8E1 failed.
            parity = "N"
        port = serial.Serial(baudrate=self.line.baud, bytesize=serial.EIGHTBITS,
                             parity=_PARITY[parity],
                             stopbits=_STOPBITS[self.line.stop_bits],
                             timeout=0, write_timeout=0, exclusive=True)
        port.port = self.name
        try:
            port.open()
        except (OSError, ValueError, termios.error) as exc:  # SerialException: an OSError
            port.close()
            raise ConnectError(f"cannot open serial port: {exc}", device=self.name) from exc
        self._port, self._fd, self._inbox = port, port.fileno(), Inbox()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    def set_line(self, baud: int, *, bytesize: int = 8, parity: str = "N",
                 stopbits: int = 1) -> None:
        """Change the open port's speed and character format (an optical probe signs on
        at 300 baud 7E1, then reads at the agreed baud 8N1). ConnectError if refused.

        A pseudo-terminal (a simulator, a serial-over-network bridge such as socat) has
        a speed but no character format, and Linux refuses parity and 7 data bits on
        it: there only the speed is set, and bytes pass unchanged."""
        port = self._port
        if port is None:
            raise ConnectError("serial port is not open", device=self.name)
        settings: dict[str, object] = {"baudrate": baud}
        if not _is_pty(self.name):
            settings |= {"bytesize": {7: serial.SEVENBITS, 8: serial.EIGHTBITS}.get(bytesize),
                         "parity": _PARITY.get(parity), "stopbits": _STOPBITS.get(stopbits)}
        try:
            port.apply_settings(settings)
        except (OSError, ValueError, termios.error) as exc:
            raise ConnectError(f"cannot set the line to {baud} baud {bytesize}{parity}"
                               f"{stopbits}: {exc}", device=self.name) from exc

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO / ENXIO: the adapter was unplugged or the port vanished.
            self._stop_reading()
            self._inbox.fail(ConnectError(f"serial port failed: {exc.strerror or exc}",
                                          device=self.name))
            return
        if not data:
            self._stop_reading()
            self._inbox.fail(ConnectError("serial port closed (end of file)",
                                          device=self.name))
            return
        self._inbox.put(data)

    def _stop_reading(self) -> None:
        # The loop it was opened on: a shutdown may close the port outside a running loop.
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)

    def discard_input(self) -> None:
        """Drop the kernel's input queue and everything buffered here."""
        self._inbox.clear()
        if self._port is None or self._inbox.error is not None:
            return
        try:
            termios.tcflush(self._fd, termios.TCIFLUSH)
        except (termios.error, OSError) as exc:
            self._stop_reading()
            self._inbox.fail(ConnectError(f"serial port failed: {exc}", device=self.name))

    async def write(self, data: bytes) -> None:
        if self._port is None:
            raise ConnectError("serial port is not open", device=self.name)
        if self._inbox.error is not None:
            raise self._inbox.error
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self._fd, view)
            except BlockingIOError:
                await self._writable()
                continue
            except OSError as exc:
                raise ConnectError(f"cannot write to serial port: {exc.strerror or exc}",
                                   device=self.name) from exc
            view = view[sent:]

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_writer(self._fd, ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_writer(self._fd)

    async def receive(self, deadline: float) -> bytes:
        if self._port is None:
            raise ConnectError("serial port is not open", device=self.name)
        return await self._inbox.take(deadline)

    def close(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        if self._inbox.error is None:
            self._stop_reading()
        self._fd = -1
        try:
            port.close()
        except OSError as exc:
            # The descriptor is gone either way; a vanished device may refuse the close.
            if exc.errno not in (errno.EIO, errno.ENXIO, errno.EBADF):
                raise ConnectError(f"cannot close serial port: {exc}",
                                   device=self.name) from exc


class _Receiver(asyncio.Protocol):
    def __init__(self, inbox: Inbox, name: str) -> None:
        self.inbox = inbox
        self.name = name

    def data_received(self, data: bytes) -> None:
        self.inbox.put(data)

    def eof_received(self) -> bool | None:
        self.inbox.fail(ConnectError("the serial device server closed the connection",
                                     device=self.name))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbox.fail(ConnectError(f"connection lost: {exc or 'closed'}", device=self.name))


class TcpStream:
    """RTU frames over TCP: a serial device server (Moxa NPort, USR-TCP232) passing the
    serial line's bytes through unchanged. No MBAP header, so the RTU checks apply."""

    def __init__(self, host: str, port: int, *, connect_timeout_s: float = 3.0) -> None:
        self.name = f"{host}:{port}"
        self._host, self._port = host, port
        self._connect_timeout_s = connect_timeout_s
        self._transport: asyncio.Transport | None = None
        self._inbox = Inbox()

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self._inbox.error is None

    async def open(self) -> None:
        self.close()
        inbox = Inbox()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                transport, _ = await loop.create_connection(
                    lambda: _Receiver(inbox, self.name), self._host, self._port)
        except (OSError, TimeoutError) as exc:
            raise ConnectError(f"cannot connect: {exc or 'no answer'}",
                               device=self.name) from exc
        self._transport, self._inbox = transport, inbox

    def discard_input(self) -> None:
        self._inbox.clear()

    async def write(self, data: bytes) -> None:
        if self._transport is None:
            raise ConnectError("not connected", device=self.name)
        if self._inbox.error is not None:
            raise self._inbox.error
        self._transport.write(data)

    async def receive(self, deadline: float) -> bytes:
        if self._transport is None:
            raise ConnectError("not connected", device=self.name)
        return await self._inbox.take(deadline)

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()
