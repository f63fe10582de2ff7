"""Scripted Modbus TCP peers for the failures a well-behaved server never shows.

Real sockets on loopback, speaking just enough of the MBAP framing (Modbus Messaging
on TCP/IP Implementation Guide V1.0b) to answer a read badly on purpose.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Script:
    #: "silent" (never answer), "short" (one register too few), "registers" (answer with
    #: ``registers``), "other_unit" (answer from another unit id).
    mode: str
    registers: list[int] = field(default_factory=list)
    requests: int = 0
    #: Connections accepted, and (loop time accepted, loop time of each request on it).
    connections: int = 0
    timeline: list[tuple[float, list[float]]] = field(default_factory=list)


async def _serve(script: Script, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    script.connections += 1
    requests: list[float] = []
    script.timeline.append((loop.time(), requests))
    try:
        while True:
            header = await reader.readexactly(7)
            requests.append(loop.time())
            tid, _, length, unit = struct.unpack(">HHHB", header)
            pdu = await reader.readexactly(length - 1)
            script.requests += 1
            function, _address, count = struct.unpack(">BHH", pdu[:5])
            if script.mode == "silent":
                continue
            if script.mode == "short":
                count -= 1
            words = (script.registers * count)[:count] if script.registers else [0] * count
            if script.mode == "other_unit":
                unit = (unit + 1) % 256
            body = struct.pack(f">BB{len(words)}H", function, 2 * len(words), *words)
            writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def scripted_peer(script: Script) -> AsyncIterator[int]:
    """A Modbus TCP peer following ``script``; yields its port."""
    handlers: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.add(writer)
        await _serve(script, reader, writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()  # the handlers then end on their own
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
