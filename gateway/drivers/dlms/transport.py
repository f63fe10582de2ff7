"""The async shells that carry DLMS APDUs: HDLC over a serial port or TCP, the TCP
wrapper, and the optical probe's sign-on before HDLC.

Each shell drives a sans-IO core (``hdlc.HdlcClient``, ``wrapper.WrapperEndpoint``,
``mode_e.SignOnClient``) over a byte stream (``SerialStream``: a local port, RS-485 or an
optical probe; ``TcpStream``: a socket) and owns every clock: the reply timeout, the
HDLC re-polls after a silence (the core says what to send, the shell decides when) and
the waits of the optical sign-on. A link is used by one task at a time: one APDU out,
its response in.

:class:`LinkStats` counts what crossed the line, so the profile benchmark can put the
time a read took against the line floor (bytes x bits per character / baud).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from gateway.drivers.dlms.hdlc import (
    ApduReceived,
    FrameDiscarded,
    HdlcAddress,
    HdlcClient,
    HdlcParameters,
    LinkDown,
    LinkState,
    LinkUp,
    NeedData,
    Refused,
)
from gateway.drivers.dlms.mode_e import (
    SIGN_ON_SERIAL,
    SWITCH_WAIT_S,
    Identification,
    SerialSettings,
    SignOnClient,
)
from gateway.drivers.dlms.wrapper import WrapperEndpoint
from gateway.drivers.modbus.serial_link import ByteStream, SerialStream
from gateway.errors import ConnectError, DeviceError, DeviceTimeout, DriverError, ProtocolError

__all__ = ["ApduLink", "HdlcLink", "LinkStats", "OpticalSignOn", "WrapperLink", "sign_on"]

#: How long the meter may take to answer the sign-on request: its reaction time (at most
#: 1.5 s, IEC 62056-21) plus the identification's own line time at 300 baud (up to ~2.4 s
#: for the longest one), with margin.
_SIGN_ON_TIMEOUT_S = 5.0
#: Flags, format, addresses (up to 4 + 1 bytes), control, HCS, LLC header and FCS of an
#: HDLC frame around its information field, with margin for idle flags.
_FRAME_OVERHEAD = 32


@dataclass
class LinkStats:
    """What crossed one link since it was built."""

    bytes_sent: int = 0
    bytes_received: int = 0
    apdus: int = 0
    #: HDLC polls sent again after a silence, and frames the parser threw away.
    repolls: int = 0
    discarded: int = 0
    connects: int = 0


class ApduLink(Protocol):
    """One APDU out, its response back, on a link to one meter."""

    device: str
    stats: LinkStats

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None:
        """Open the stream and set up the link (sign-on, SNRM/UA) if needed."""
        ...

    async def exchange(self, apdu: bytes) -> bytes:
        """Send ``apdu`` and return the meter's response APDU (reassembled)."""
        ...

    async def close(self) -> None:
        """Take the link down politely (DISC) if it is up, and close the stream."""
        ...


class _Counted:
    """A stream whose bytes are counted in :class:`LinkStats`."""

    def __init__(self, stream: ByteStream, stats: LinkStats) -> None:
        self.stream = stream
        self.stats = stats

    async def write(self, data: bytes) -> None:
        if data:
            self.stats.bytes_sent += len(data)
            await self.stream.write(data)

    async def receive(self, deadline: float) -> bytes:
        data = await self.stream.receive(deadline)
        self.stats.bytes_received += len(data)
        return data


@dataclass(frozen=True, slots=True)
class OpticalSignOn:
    """The IEC 62056-21 mode E sign-on of an optical probe before HDLC."""

    #: The device address of the request ("/?address!"), empty for any meter.
    address: str = ""
    #: The highest baud we accept of what the meter offers.
    max_baud: int = 9600

    async def run(self, stream: SerialStream, io: _Counted) -> Identification:
        client = SignOnClient(self.address, self.max_baud)
        _set(stream, SIGN_ON_SERIAL)
        stream.discard_input()
        await io.write(client.request_bytes)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SIGN_ON_TIMEOUT_S
        while True:
            event = client.next_event()
            if isinstance(event, Identification):
                break
            data = await io.receive(deadline)
            if not data:
                raise DeviceTimeout("no identification from the meter after the optical "
                                    "sign-on request (probe on the port, meter awake?)",
                                    device=stream.name)
            client.receive_data(data)
        ack = client.data_to_send()
        await io.write(ack)
        # Switch once the acknowledgement has left the UART at 300 baud, then give the
        # meter time to switch too before the first HDLC frame (see mode_e).
        await asyncio.sleep(float(SIGN_ON_SERIAL.wire_s(len(ack))))
        _set(stream, client.hdlc_serial)
        await asyncio.sleep(float(SWITCH_WAIT_S))
        stream.discard_input()
        return event


async def sign_on(stream: SerialStream, how: OpticalSignOn, stats: LinkStats) -> Identification:
    """Sign on at an optical port already open, counting the bytes in ``stats``; the
    port is left at the agreed baud for HDLC (an :class:`HdlcLink` without a sign-on
    of its own goes on from there)."""
    return await how.run(stream, _Counted(stream, stats))


def _set(stream: SerialStream, line: SerialSettings) -> None:
    stream.set_line(line.baud, bytesize=line.bytesize, parity=line.parity,
                    stopbits=line.stopbits)


class HdlcLink:
    """HDLC (IEC 62056-46) to one server address, over a serial port or TCP.

    ``proposal`` is what SNRM proposes (the meter's UA decides; :attr:`params` holds
    the result). A silence of ``timeout_s`` after we gave the poll is answered by a
    re-poll, ``retries`` times, then :class:`DeviceTimeout`.
    """

    def __init__(self, stream: ByteStream, client: HdlcAddress, server: HdlcAddress, *,
                 proposal: HdlcParameters | None = None, timeout_s: float = 3.0,
                 retries: int = 3, sign_on: OpticalSignOn | None = None,
                 device: str | None = None) -> None:
        if sign_on is not None and not isinstance(stream, SerialStream):
            raise ValueError("the optical sign-on needs a serial port")
        self.stream = stream
        self.device = device or stream.name
        self.stats = LinkStats()
        self._io = _Counted(stream, self.stats)
        self._client_address, self._server_address = client, server
        self._proposal = proposal
        self._timeout_s = timeout_s
        self._retries = retries
        self._sign_on = sign_on
        self._hdlc = HdlcClient(client, server)
        self.identification: Identification | None = None

    @property
    def is_open(self) -> bool:
        return self.stream.is_open and self._hdlc.state is LinkState.CONNECTED

    @property
    def params(self) -> HdlcParameters:
        """The link's effective parameters (our view) once connected."""
        return self._hdlc.params

    async def open(self) -> None:
        if self.is_open:
            return
        if not self.stream.is_open:
            await self.stream.open()
        if self._sign_on is not None:
            assert isinstance(self.stream, SerialStream)
            self.identification = await self._sign_on.run(self.stream, self._io)
        self.stream.discard_input()
        self._hdlc = HdlcClient(self._client_address, self._server_address)
        self._hdlc.connect(self._proposal)
        event = await self._next_event()
        if not isinstance(event, LinkUp):
            raise ProtocolError(f"expected UA to our SNRM, got {type(event).__name__}",
                                device=self.device)
        self.stats.connects += 1

    async def exchange(self, apdu: bytes) -> bytes:
        if not self.is_open:
            raise ConnectError("the HDLC link is not connected", device=self.device)
        self._hdlc.send_apdu(apdu)
        event = await self._next_event()
        if not isinstance(event, ApduReceived):
            raise ProtocolError(f"expected the response APDU, got {type(event).__name__}",
                                device=self.device)
        self.stats.apdus += 1
        return event.apdu

    async def close(self) -> None:
        """DISC (best effort, one try), then the stream closes."""
        try:
            if self.stream.is_open and self._hdlc.state is LinkState.CONNECTED:
                self._hdlc.disconnect()
                await self._next_event(retries=0)
        except DriverError:
            pass  # the meter drops the link by itself after its inactivity timeout
        finally:
            self._hdlc = HdlcClient(self._client_address, self._server_address)
            self.stream.close()

    async def _next_event(self, retries: int | None = None
                          ) -> LinkUp | ApduReceived | LinkDown:
        """Write what the link has to send and wait for its next event, re-polling
        after each silence; FrameDiscarded events are counted, never returned."""
        limit = self._retries if retries is None else retries
        loop = asyncio.get_running_loop()
        hdlc = self._hdlc
        await self._io.write(hdlc.data_to_send())
        deadline = loop.time() + self._timeout_s
        # Bytes keep the wait going only while they may still make a frame: at most a
        # largest frame's worth since the last whole one. Noise on the line (a babbling
        # meter, a wrong baud rate) is silence, answered by re-polls and then a timeout.
        frames, budget = hdlc.parser.frames, self._frame_budget()
        while True:
            event = hdlc.next_event()
            if hdlc.parser.frames != frames:
                frames, budget = hdlc.parser.frames, self._frame_budget()
                deadline = loop.time() + self._timeout_s
            out = hdlc.data_to_send()  # an RR asking for the next segments, say
            if out:
                await self._io.write(out)
                deadline = loop.time() + self._timeout_s
                budget = self._frame_budget()
            if isinstance(event, NeedData):
                data = await self._io.receive(deadline)
                if data:
                    hdlc.receive_data(data)
                    budget -= len(data)
                    if budget >= 0:
                        deadline = loop.time() + self._timeout_s
                    continue
                if hdlc.polls >= limit:
                    raise DeviceTimeout(f"no answer within {self._timeout_s:g} s "
                                        f"({hdlc.polls + 1} tries)", device=self.device)
                self.stats.repolls += 1
                await self._io.write(hdlc.poll_again())
                deadline = loop.time() + self._timeout_s
                budget = self._frame_budget()
            elif isinstance(event, FrameDiscarded):
                self.stats.discarded += 1
            elif isinstance(event, Refused):
                # DM: the meter has no link with us (wrong address, or it dropped it);
                # FRMR: it rejected a frame of ours.
                raise DeviceError(f"the meter refused the link: {event.reason} "
                                  "(check the client SAP and server address)",
                                  code=0, device=self.device)
            else:
                return event  # LinkDown comes only as the answer to our DISC


    def _frame_budget(self) -> int:
        """The bytes of the largest frame the meter may send us, with its framing."""
        return self._hdlc.params.max_info_rx + _FRAME_OVERHEAD


class WrapperLink:
    """The DLMS TCP wrapper (IEC 62056-47, port 4059): no link layer of its own, so no
    re-polls; a silence of ``timeout_s`` is a :class:`DeviceTimeout`."""

    def __init__(self, stream: ByteStream, client_sap: int, server_logical: int = 1, *,
                 timeout_s: float = 3.0, device: str | None = None) -> None:
        self.stream = stream
        self.device = device or stream.name
        self.stats = LinkStats()
        self._io = _Counted(stream, self.stats)
        self._sap, self._logical = client_sap, server_logical
        self._timeout_s = timeout_s
        self._endpoint = WrapperEndpoint(client_sap, server_logical)

    @property
    def is_open(self) -> bool:
        return self.stream.is_open

    async def open(self) -> None:
        if self.stream.is_open:
            return
        await self.stream.open()
        self._endpoint = WrapperEndpoint(self._sap, self._logical)
        self.stats.connects += 1

    async def exchange(self, apdu: bytes) -> bytes:
        if not self.stream.is_open:
            raise ConnectError("not connected", device=self.device)
        await self._io.write(self._endpoint.wrap(apdu))
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        while True:
            got = self._endpoint.next_apdu()
            if isinstance(got, bytes):
                self.stats.apdus += 1
                return got
            data = await self._io.receive(deadline)
            if not data:
                raise DeviceTimeout(f"no answer within {self._timeout_s:g} s",
                                    device=self.device)
            self._endpoint.receive_data(data)
            deadline = asyncio.get_running_loop().time() + self._timeout_s

    async def close(self) -> None:
        self.stream.close()


def line_floor_s(stats: LinkStats, baud: int, bits_per_char: int = 10) -> Fraction:
    """The least time the bytes of ``stats`` take on a serial line (both directions)."""
    return Fraction((stats.bytes_sent + stats.bytes_received) * bits_per_char, baud)
