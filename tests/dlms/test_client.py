"""The async client and its links against the simulated meter: TCP wrapper, HDLC over a
real pseudo-terminal (negotiated frames and window, lost frames re-polled), the optical
sign-on, LLS and HLS-GMAC (wrong password, wrong key), a silent meter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from gateway.clock import ManualClock
from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.acse import Mechanism
from gateway.drivers.dlms.association import AssociationSettings
from gateway.drivers.dlms.client import DlmsClient
from gateway.drivers.dlms.cosem import CLOCK, SERIAL_NUMBER, AttributeDescriptor, Obis
from gateway.drivers.dlms.counters import MemoryCounters
from gateway.drivers.dlms.dates import CosemDateTime
from gateway.drivers.dlms.hdlc import HdlcAddress, HdlcParameters
from gateway.drivers.dlms.keys import SecretBytes, SuiteKeys
from gateway.drivers.dlms.security import SecurityContext
from gateway.drivers.dlms.transport import HdlcLink, OpticalSignOn, WrapperLink
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.serial_link import SerialStream, TcpStream
from gateway.errors import DeviceError, DeviceTimeout, ProtocolError
from gateway.sim.dlms_link import DlmsServer, serve_dlms
from gateway.sim.dlms_objects import DlmsMeterSpec

NOW = datetime(2026, 6, 1, 12, 7, tzinfo=UTC)
SERIAL = AttributeDescriptor(1, SERIAL_NUMBER, 2)
IMPORT = AttributeDescriptor(3, Obis.parse("1.0.1.8.0.255"), 2)
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
CLIENT_TITLE = bytes.fromhex("414D490000000001")


def suite(ek: bytes = EK) -> SuiteKeys:
    return SuiteKeys(encryption=SecretBytes(ek), authentication=SecretBytes(AK))


@asynccontextmanager
async def tcp_meter(spec: DlmsMeterSpec, clock: ManualClock, framing: str = "wrapper"
                    ) -> AsyncIterator[DlmsServer]:
    async with serve_dlms([spec], clock, medium="tcp", framing=framing) as server:  # type: ignore[arg-type]
        yield server


def wrapper_client(server: DlmsServer, settings: AssociationSettings | None = None,
                   sap: int = 16) -> DlmsClient:
    settings = settings or AssociationSettings()
    link = WrapperLink(TcpStream("127.0.0.1", server.port), sap, 1, timeout_s=1.0)
    return DlmsClient(link, settings)


async def test_public_client_over_the_tcp_wrapper_reads_serial_and_register() -> None:
    clock = ManualClock(NOW)
    async with tcp_meter(DlmsMeterSpec("M1", serial="31415926"), clock) as server:
        client = wrapper_client(server)
        assert await client.get(SERIAL) == axdr.OctetString(b"31415926")
        value = await client.get(IMPORT)
        expected = server.meter("M1").registers_wh(NOW)[0]
        assert value == axdr.DoubleLongUnsigned(expected)
        assert client.association_s is not None and client.association_s < 0.5
        await client.close()
        await client.close()  # idempotent
        assert not client.associated


async def test_lls_password_right_and_wrong() -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("M2", security="lls", password=b"12345678")
    async with tcp_meter(spec, clock) as server:
        right = AssociationSettings(mechanism=Mechanism.LLS,
                                    password=SecretBytes(b"12345678", label="password"))
        client = wrapper_client(server, right, sap=1)
        assert await client.get(SERIAL) == axdr.OctetString(b"12345678")
        await client.close()
        wrong = AssociationSettings(mechanism=Mechanism.LLS,
                                    password=SecretBytes(b"00000000", label="password"))
        client = wrapper_client(server, wrong, sap=1)
        with pytest.raises(DeviceError, match="authentication failure"):
            await client.get(SERIAL)
        assert not client.link.is_open  # a refused association leaves nothing open


def hls(ek: bytes = EK) -> AssociationSettings:
    ctx = SecurityContext(suite(ek), CLIENT_TITLE, MemoryCounters(next_ic=1))
    return AssociationSettings(mechanism=Mechanism.HLS_GMAC, security=ctx)


async def test_hls_gmac_reads_ciphered_and_a_wrong_key_is_refused() -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("M3", security="hls_gmac", keys=suite())
    async with tcp_meter(spec, clock) as server:
        client = wrapper_client(server, hls(), sap=1)
        assert await client.get(SERIAL) == axdr.OctetString(b"12345678")
        await client.close()
        bad = wrapper_client(server, hls(bytes(16)), sap=1)
        # The meter cannot decipher our initiate: it refuses the association.
        with pytest.raises(DeviceError, match=r"authentication failure .*wrong password or key"):
            await bad.get(SERIAL)


async def test_a_replayed_response_is_refused() -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("M4", security="hls_gmac", keys=suite())
    async with tcp_meter(spec, clock) as server:
        client = wrapper_client(server, hls(), sap=1)
        await client.get(SERIAL)
        server.meter("M4").replay_last_response()
        with pytest.raises(ProtocolError, match=r"(?i)replay|counter"):
            await client.get(SERIAL)
        assert not client.associated  # a protection failure ends the association


def pty_client(server: DlmsServer, proposal: HdlcParameters | None = None,
               sign_on: OpticalSignOn | None = None, timeout_s: float = 1.0) -> DlmsClient:
    stream = SerialStream(server.path, LineSettings(9600, "N", 1))
    link = HdlcLink(stream, HdlcAddress.client(16), HdlcAddress.server(1), proposal=proposal,
                    timeout_s=timeout_s, sign_on=sign_on)
    return DlmsClient(link, AssociationSettings())


async def test_hdlc_on_a_pty_negotiates_large_frames_and_window() -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("M5", hdlc_limits=HdlcParameters(1024, 1024, 7, 7))
    async with serve_dlms([spec], clock, medium="pty", baud=115200) as server:
        client = pty_client(server, HdlcParameters(2030, 2030, 7, 7))
        assert await client.get(SERIAL) == axdr.OctetString(b"12345678")
        link = client.link
        assert isinstance(link, HdlcLink)
        assert link.params == HdlcParameters(1024, 1024, 7, 7)
        await client.close()
        assert link.stats.bytes_sent > 0 and link.stats.bytes_received > 0


async def test_lost_frames_are_polled_again_and_the_read_completes() -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("M6")], clock, medium="pty", baud=115200) as server:
        client = pty_client(server, timeout_s=0.3)
        await client.associate()
        server.meter("M6").drop_next_frames(1)
        assert await client.get(SERIAL) == axdr.OctetString(b"12345678")
        assert client.link.stats.repolls >= 1
        await client.close()


async def test_a_silent_meter_times_out_after_the_retries() -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("M7")], clock, medium="pty", baud=115200) as server:
        server.meter("M7").silent(True)
        client = pty_client(server, timeout_s=0.1)
        with pytest.raises(DeviceTimeout, match="4 tries"):
            await client.get(SERIAL)
        assert client.link.stats.repolls == 3
        assert not client.link.is_open


async def test_optical_sign_on_then_hdlc_at_the_agreed_baud() -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("M8")], clock, medium="pty", optical=True) as server:
        client = pty_client(server, sign_on=OpticalSignOn(max_baud=9600), timeout_s=1.5)
        assert await client.get(SERIAL) == axdr.OctetString(b"12345678")
        link = client.link
        assert isinstance(link, HdlcLink) and link.identification is not None
        assert link.identification.baud == 9600
        await client.close()


class _Stepping:
    """Our clock, which reads ``times`` in turn: a request sent at one, answered at the next."""

    def __init__(self, *times: datetime) -> None:
        self._times = list(times)

    def now(self) -> datetime:
        return self._times.pop(0)

    async def sleep_until(self, at: datetime) -> None:
        raise NotImplementedError


async def test_the_clock_stands_against_the_exchange_s_midpoint() -> None:
    clock = ManualClock(NOW)
    async with tcp_meter(DlmsMeterSpec("M9", clock_drift_s=7.0), clock) as server:
        client = wrapper_client(server)
        ours = _Stepping(NOW - timedelta(seconds=10), NOW + timedelta(seconds=10))
        raw, midpoint = await client.read_clock(CLOCK, ours)
        await client.close()
    # Asked 10 s before the meter read its clock, answered 10 s after: the midpoint is
    # the meter's instant, so the drift is the meter's own and nothing of the exchange.
    assert midpoint == NOW
    assert CosemDateTime.from_data(raw).to_datetime() - midpoint == timedelta(seconds=7)
