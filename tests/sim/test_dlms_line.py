"""The simulated DLMS meters on a real pty (HDLC at a baud rate, optical sign-on,
multidrop, lost frames) and HDLC over TCP, driven by the client's sans-IO cores."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.clock import ManualClock
from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.apdu import RangeDescriptor
from gateway.drivers.dlms.cosem import (
    CLOCK,
    LOAD_PROFILE_1,
    SERIAL_NUMBER,
    AttributeDescriptor,
    CaptureObject,
)
from gateway.drivers.dlms.dates import CosemDateTime
from gateway.drivers.dlms.hdlc import HdlcAddress, HdlcParameters, LinkDown
from gateway.drivers.dlms.mode_e import SWITCH_WAIT_S, Identification, SignOnClient
from gateway.sim.dlms_link import serve_dlms
from gateway.sim.dlms_meter import DlmsMeterSpec
from tests.sim.dlms_peer import HdlcPeer, PtyPipe, TcpPipe, associate, get

START = datetime(2026, 3, 10, 12, 7, 30, tzinfo=UTC)
SERIAL = AttributeDescriptor(1, SERIAL_NUMBER, 2)
PROFILE = AttributeDescriptor(7, LOAD_PROFILE_1, 2)
BIG = HdlcParameters(1024, 1024, 7, 7)
BASE = DlmsMeterSpec("m1", serial="SIM00001", seed=3, server_physical=17,
                     epoch=datetime(2026, 3, 1, tzinfo=UTC), hdlc_limits=BIG)


def one_day(hours: int = 24) -> RangeDescriptor:
    def when(at: datetime) -> axdr.OctetString:
        return CosemDateTime.from_datetime(at).to_data()

    return RangeDescriptor(CaptureObject(8, CLOCK, 2), when(START - timedelta(hours=hours)),
                           when(START))


def address(spec: DlmsMeterSpec) -> HdlcAddress:
    return HdlcAddress.server(spec.server_logical, spec.server_physical)


async def test_window_7_and_1024_byte_frames_at_the_line_s_pace() -> None:
    clock = ManualClock(START)
    baud = 57600
    spec = replace(BASE, max_pdu_size=8192)  # the whole day in one APDU, 4 frames
    async with serve_dlms([spec], clock, medium="pty", baud=baud) as server:
        pipe = PtyPipe(server.path)
        peer = HdlcPeer(pipe, address(spec))
        assert await peer.connect(BIG) == BIG
        a = await associate(peer)
        loop = asyncio.get_running_loop()
        before_in, before_out = server.stats.bytes_received, server.stats.bytes_sent
        frames = server.stats.frames_sent
        began = loop.time()
        rows = axdr.as_items(await get(peer, a, PROFILE, one_day()))
        elapsed = loop.time() - began
        await pipe.close()
    assert len(rows) == 96
    wire = (server.stats.bytes_received - before_in) + (server.stats.bytes_sent - before_out)
    floor = wire * 10 / baud
    # Several 1024-byte frames a window, and the time is the line's, both ways.
    assert server.stats.bytes_sent - before_out > 3000
    assert server.stats.frames_sent - frames == 4  # one window of 1024-byte frames
    assert floor <= elapsed < floor + 0.3


async def test_a_request_s_own_line_time_counts_before_the_answer() -> None:
    clock = ManualClock(START)
    async with serve_dlms([BASE], clock, medium="pty", baud=9600) as server:
        pipe = PtyPipe(server.path)
        peer = HdlcPeer(pipe, address(BASE))
        await peer.connect()
        a = await associate(peer)
        loop = asyncio.get_running_loop()
        before = server.stats.bytes_received + server.stats.bytes_sent
        began = loop.time()
        assert await get(peer, a, SERIAL) == axdr.OctetString(b"SIM00001")
        elapsed = loop.time() - began
        await pipe.close()
    wire = server.stats.bytes_received + server.stats.bytes_sent - before
    assert wire > 40
    assert wire * 10 / 9600 <= elapsed < wire * 10 / 9600 + 0.1


async def test_optical_sign_on_at_300_baud_then_hdlc_at_9600() -> None:
    clock = ManualClock(START)
    async with serve_dlms([BASE], clock, medium="pty", optical=True) as server:
        pipe = PtyPipe(server.path)
        loop = asyncio.get_running_loop()
        sign_on = SignOnClient()
        began = loop.time()
        await pipe.send(sign_on.request_bytes)
        ident = None
        while not isinstance(ident, Identification):
            sign_on.receive_data(await pipe.receive(2.0))
            ident = sign_on.next_event()
        heard = loop.time() - began
        # "/?!\r\n" and "/SIm5\2DLMS\r\n" at 300 baud, and the 20 ms reaction between.
        assert heard >= (5 + 13) * 10 / 300 + 0.02
        assert ident == Identification("SIm", "5", ("2",), "DLMS")
        assert sign_on.hdlc_serial.baud == 9600
        await pipe.send(sign_on.data_to_send())
        await asyncio.sleep(float(SWITCH_WAIT_S))
        peer = HdlcPeer(pipe, address(BASE))
        await peer.connect()
        a = await associate(peer)
        assert await get(peer, a, SERIAL) == axdr.OctetString(b"SIM00001")
        assert isinstance(await peer.disconnect(), LinkDown)
        await asyncio.sleep(0.05)
        line = server.line
        assert line is not None and line.signing_on and line.sign_ons == 1
        await pipe.close()


async def test_two_meters_share_one_line_by_hdlc_address() -> None:
    clock = ManualClock(START)
    other = replace(BASE, meter_id="m2", serial="SIM00002", server_physical=18, seed=4)
    async with serve_dlms([BASE, other], clock, medium="pty", baud=115200) as server:
        pipe = PtyPipe(server.path)
        for spec, serial in ((BASE, b"SIM00001"), (other, b"SIM00002")):
            peer = HdlcPeer(pipe, address(spec))
            await peer.connect()
            a = await associate(peer)
            assert await get(peer, a, SERIAL) == axdr.OctetString(serial)
            assert isinstance(await peer.disconnect(), LinkDown)
        await pipe.close()
        assert server.meter("m1").associations == server.meter("m2").associations == 1


async def test_lost_frames_are_recovered_by_the_client_s_retransmission() -> None:
    clock = ManualClock(START)
    small = HdlcParameters(128, 128, 7, 7)
    spec = replace(BASE, hdlc_limits=small)
    async with serve_dlms([spec], clock, medium="pty", baud=115200) as server:
        pipe = PtyPipe(server.path)
        peer = HdlcPeer(pipe, address(spec), timeout_s=0.1)
        await peer.connect(small)
        a = await associate(peer)
        whole = await get(peer, a, PROFILE, one_day(6))
        assert server.line is not None
        station = server.line.stations[0]
        assert station.server.retransmitted == 0
        server.meter("m1").drop_next_frames(2)  # the first two of the next answer
        again = await get(peer, a, PROFILE, one_day(6))
        await pipe.close()
    assert again == whole and len(axdr.as_items(again)) == 24
    assert station.server.retransmitted >= 2


async def test_a_silent_meter_does_not_answer_and_hdlc_over_tcp_works() -> None:
    clock = ManualClock(START)
    async with serve_dlms([BASE], clock, medium="tcp", framing="hdlc") as server:
        pipe = await TcpPipe.open(server.host, server.port)
        peer = HdlcPeer(pipe, address(BASE), timeout_s=0.05)
        server.meter("m1").silent(True)
        with pytest.raises(TimeoutError):
            await peer.connect(BIG)
        server.meter("m1").silent(False)
        peer = HdlcPeer(pipe, address(BASE))
        await peer.connect(BIG)
        a = await associate(peer)
        assert await get(peer, a, SERIAL) == axdr.OctetString(b"SIM00001")
        await pipe.close()
