"""HDLC server address discovery: which addresses on a line answer SNRM with UA.

Each candidate gets one SNRM (no parameters: the defaults, the shortest frame) and the
line is read until the attempt's time is up; a UA addressed to our client from the
candidate is an answer, a DM says a station is there but will not link with us (it is
noted, not counted). The time per attempt is the line's: the SNRM and the longest UA
(its parameters included) on the wire at the baud rate, plus the meter's turnaround
(``answer_s``), so a range of physical addresses costs what the line allows and no more.

The all-station address (lower address 0x7F, 0x3FFF in 4-byte addresses; Green Book
8.4.2.3) may be tried on request: a meter alone on its port (an optical head) may answer
it from its own address, which then names it. 62056-46 does not oblige a meter to, so
silence there proves nothing, and on a shared RS-485 line the answers would collide.

Stations that answered are sent DISC (``disconnect``), so the association that follows
starts from a clean link; an optical port is not (DISC signs it off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.drivers.dlms.hdlc import (
    Control,
    FrameKind,
    FrameParser,
    HdlcAddress,
    HdlcFrame,
    NeedData,
    all_station,
)
from gateway.drivers.modbus.serial_link import ByteStream

__all__ = ["ALL_STATIONS", "ALL_STATIONS_4", "Discovery", "attempt_s", "candidate", "discover"]

#: Stands for the all-station address in a candidate list: 0x7F in a 2-byte server
#: address, and (ALL_STATIONS_4) 0x3FFF in a 4-byte one, for meters whose physical
#: address is above 127 (those that derive it from their serial number, say).
ALL_STATIONS: Final = -1
ALL_STATIONS_4: Final = -2
#: A UA with every parameter at its widest: header, HCS, 23-byte information, FCS, flags.
_LONGEST_UA: Final = 40


@dataclass
class Discovery:
    """What discovery found so far (kept when it is interrupted)."""

    #: Server addresses that answered UA, in the order found.
    answered: list[HdlcAddress] = field(default_factory=list)
    #: Addresses that answered DM (a station that would not link with us).
    refused: list[HdlcAddress] = field(default_factory=list)
    tried: int = 0
    elapsed_s: float = 0.0


def attempt_s(baud: int | None, answer_s: float, logical: int = 1) -> float:
    """The time one SNRM attempt is given: both frames on the wire plus ``answer_s``
    (``baud`` None: a TCP link, no line time)."""
    if baud is None:
        return answer_s
    snrm = len(_snrm(HdlcAddress.client(16), HdlcAddress.server(logical, 0x3FFF)))
    return (snrm + _LONGEST_UA) * 10 / baud + answer_s


def candidate(logical: int, physical: int | None) -> HdlcAddress:
    """The server address of a candidate (``ALL_STATIONS``: the all-station address)."""
    if physical == ALL_STATIONS:
        return HdlcAddress.server(logical, all_station(2), width=2)
    if physical == ALL_STATIONS_4:
        return HdlcAddress.server(logical, all_station(4), width=4)
    return HdlcAddress.server(logical, physical)


async def discover(stream: ByteStream, client: HdlcAddress, logical: int,
                   physical: Sequence[int | None], *, wait_s: float, disconnect: bool,
                   found: Discovery,
                   progress: Callable[[str, int, int], None] | None = None) -> Discovery:
    """Try each of ``physical`` (None: a one-byte server address holding only the
    logical device; ALL_STATIONS: the all-station address) on the open ``stream``."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        for index, lower in enumerate(physical):
            to = candidate(logical, lower)
            if progress is not None:
                progress(f"SNRM to server address {_name(to)}", index, len(physical))
            broadcast = lower in (ALL_STATIONS, ALL_STATIONS_4)
            answers = await _exchange(stream, _snrm(client, to), client, wait_s,
                                      first=not broadcast)
            for kind, source in answers:
                if not _matches(to, source):
                    continue
                into = found.answered if kind is FrameKind.UA else found.refused
                if source not in into:
                    into.append(source)
            found.tried += 1
        if progress is not None:
            progress("server addresses", len(physical), len(physical))
        if disconnect:
            for address in found.answered:
                disc = HdlcFrame(address, client, Control(FrameKind.DISC)).encode()
                await _exchange(stream, disc, client, wait_s, first=True)
    finally:
        found.elapsed_s = loop.time() - began
    return found


def _snrm(client: HdlcAddress, server: HdlcAddress) -> bytes:
    return HdlcFrame(server, client, Control(FrameKind.SNRM)).encode()


def _broadcast(address: HdlcAddress) -> bool:
    return address.lower is not None and address.lower == all_station(address.width)


def _matches(asked: HdlcAddress, source: HdlcAddress) -> bool:
    if _broadcast(asked):
        return source.upper == asked.upper
    return source == asked


def _name(address: HdlcAddress) -> str:
    if _broadcast(address):
        return f"{address.upper}/all stations"
    return str(address)


async def _exchange(stream: ByteStream, frame: bytes, client: HdlcAddress, wait_s: float,
                    *, first: bool = False) -> list[tuple[FrameKind, HdlcAddress]]:
    """Send ``frame``, then collect the UA / DM answers to ``client`` until ``wait_s``
    is up (every station on the line gets its chance to answer), or until the first
    answer (``first``: one address, one station)."""
    stream.discard_input()
    await stream.write(frame)
    deadline = asyncio.get_running_loop().time() + wait_s
    parser = FrameParser()
    answers: list[tuple[FrameKind, HdlcAddress]] = []
    while data := await stream.receive(deadline):
        parser.receive_data(data)
        while not isinstance(got := parser.next_event(), NeedData):
            if isinstance(got, HdlcFrame) and got.destination == client \
                    and got.kind in (FrameKind.UA, FrameKind.DM):
                answers.append((got.kind, got.source))
        if answers and first:
            break
    return answers
