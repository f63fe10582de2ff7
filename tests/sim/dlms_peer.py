"""A minimal async DLMS client for the simulator's tests, built from the sans-IO cores
(HdlcClient or the wrapper, and Association) over a real TCP socket or a real pty."""

from __future__ import annotations

import asyncio
import os
import termios
import tty
from typing import Protocol

from gateway.drivers.dlms.apdu import Access
from gateway.drivers.dlms.association import Association, AssociationSettings, Next, Value
from gateway.drivers.dlms.cosem import AttributeDescriptor
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.hdlc import (
    NEED_DATA,
    ApduReceived,
    Event,
    FrameDiscarded,
    HdlcAddress,
    HdlcClient,
    HdlcParameters,
    LinkUp,
    NeedData,
)
from gateway.drivers.dlms.wrapper import WrapperEndpoint


class Pipe(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def receive(self, timeout_s: float) -> bytes: ...

    async def close(self) -> None: ...


class TcpPipe:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> TcpPipe:
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self, timeout_s: float) -> bytes:
        data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
        if not data:
            raise ConnectionError("closed")
        return data

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class PtyPipe:
    """The slave end of the simulator's pty, raw, read through the event loop."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        if data:
            self.queue.put_nowait(data)

    async def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def receive(self, timeout_s: float) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout_s)

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


class Peer(Protocol):
    async def request(self, apdu: bytes) -> bytes: ...


class WrapperPeer:
    def __init__(self, pipe: Pipe, client_sap: int = 16, logical: int = 1) -> None:
        self.pipe = pipe
        self.endpoint = WrapperEndpoint(client_sap, logical)

    async def request(self, apdu: bytes, timeout_s: float = 1.0) -> bytes:
        await self.pipe.send(self.endpoint.wrap(apdu))
        while True:
            got = self.endpoint.next_apdu()
            if got is not NEED_DATA:
                assert isinstance(got, bytes)
                return got
            self.endpoint.receive_data(await self.pipe.receive(timeout_s))


class HdlcPeer:
    """HdlcClient over a pipe; a silence of ``timeout_s`` is answered with poll_again."""

    def __init__(self, pipe: Pipe, server: HdlcAddress, client_sap: int = 16,
                 timeout_s: float = 0.5) -> None:
        self.pipe = pipe
        self.client = HdlcClient(HdlcAddress.client(client_sap), server)
        self.timeout_s = timeout_s

    async def connect(self, proposal: HdlcParameters | None = None) -> HdlcParameters:
        self.client.connect(proposal)
        event = await self._event()
        assert isinstance(event, LinkUp), event
        return event.params

    async def request(self, apdu: bytes) -> bytes:
        self.client.send_apdu(apdu)
        event = await self._event()
        assert isinstance(event, ApduReceived), event
        return event.apdu

    async def disconnect(self) -> Event:
        self.client.disconnect()
        return await self._event()

    async def _event(self) -> Event:
        client = self.client
        while True:
            out = client.data_to_send()
            if out:
                await self.pipe.send(out)
            event = client.next_event()
            if isinstance(event, FrameDiscarded):
                continue
            if not isinstance(event, NeedData):
                return event
            out = client.data_to_send()  # what the frames just parsed call for (RR)
            if out:
                await self.pipe.send(out)
            try:
                data = await self.pipe.receive(self.timeout_s)
            except TimeoutError:
                if client.polls >= 3:
                    raise
                await self.pipe.send(client.poll_again())
                continue
            client.receive_data(data)


async def associate(peer: Peer, settings: AssociationSettings | None = None,
                    device: str = "sim") -> Association:
    a = Association(settings or AssociationSettings(), device=device)
    pass3 = a.on_aare(await peer.request(a.request()))
    if pass3 is not None:
        a.on_hls_response(await peer.request(pass3))
    return a


async def get(peer: Peer, a: Association, attribute: AttributeDescriptor,
              access: Access | None = None) -> Data:
    step: Value | Next = a.on_get_response(await peer.request(a.get(attribute, access)))
    while isinstance(step, Next):
        step = a.on_get_response(await peer.request(step.request))
    return step.data
