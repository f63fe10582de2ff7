"""The simulated DLMS meter over real TCP (wrapper framing), driven by the client
association core: objects and exact values, associations, block transfer, selective
access, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.acse import Mechanism, Rlre
from gateway.drivers.dlms.apdu import (
    EntryDescriptor,
    ExceptionResponse,
    GetRequest,
    RangeDescriptor,
    decode_apdu,
)
from gateway.drivers.dlms.association import Association, AssociationSettings, State
from gateway.drivers.dlms.cosem import (
    CLOCK,
    LOAD_PROFILE_1,
    LOGICAL_DEVICE_NAME,
    SERIAL_NUMBER,
    AttributeDescriptor,
    CaptureObject,
    DlmsUnit,
    Obis,
    ScalerUnit,
)
from gateway.drivers.dlms.counters import MemoryCounters
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.dates import CosemDateTime
from gateway.drivers.dlms.keys import SecretBytes, SuiteKeys
from gateway.drivers.dlms.security import SecurityContext, SecurityError
from gateway.errors import DeviceError
from gateway.sim.dlms_link import DlmsServer, serve_dlms
from gateway.sim.dlms_meter import DlmsMeterSpec
from gateway.sim.dlms_profile import AMR_POWER_DOWN
from gateway.sim.load import Load, LoadShape, MeterModel, TariffSchedule
from tests.sim.dlms_peer import TcpPipe, WrapperPeer, associate, get

START = datetime(2026, 3, 10, 12, 7, 30, tzinfo=UTC)
EPOCH = datetime(2026, 2, 1, tzinfo=UTC)
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")
SHAPE = LoadShape(base_w=400, peak_w=5000)


def keys(ak: bytes = AK) -> SuiteKeys:
    return SuiteKeys(encryption=SecretBytes(EK), authentication=SecretBytes(ak))


BASE = DlmsMeterSpec("m1", serial="SIM00042", seed=7, shape=SHAPE, epoch=EPOCH,
                     start_energy_wh=1_000_000)


def spec(**fields: Any) -> DlmsMeterSpec:
    return replace(BASE, **fields)


def model() -> MeterModel:
    """The household as the test knows it, built independently of the simulator."""
    return MeterModel(Load(SHAPE, 7), EPOCH, start_energy_wh=1_000_000,
                      tariffs=TariffSchedule(), start_tariff_wh=(1_000_000, 0))


def attr(class_id: int, obis: str, attribute: int) -> AttributeDescriptor:
    return AttributeDescriptor(class_id, Obis.parse(obis), attribute)


def when(at: datetime) -> axdr.OctetString:
    return CosemDateTime.from_datetime(at).to_data()


@asynccontextmanager
async def public(meter: DlmsMeterSpec, clock: ManualClock, *, client_sap: int = 16,
                 settings: AssociationSettings | None = None
                 ) -> AsyncIterator[tuple[DlmsServer, WrapperPeer, Association]]:
    async with serve_dlms([meter], clock, medium="tcp") as server:
        pipe = await TcpPipe.open(server.host, server.port)
        peer = WrapperPeer(pipe, client_sap)
        try:
            yield server, peer, await associate(peer, settings)
        finally:
            await pipe.close()


async def test_public_client_reads_every_object_with_exact_values() -> None:
    clock = ManualClock(START)
    async with public(spec(clock_drift_s=42.0), clock) as (server, peer, a):
        async def read(class_id: int, obis: str, attribute: int) -> Data:
            return await get(peer, a, attr(class_id, obis, attribute))

        day, night = model().tariff_energy_wh(START)
        assert await read(1, "0.0.96.1.0.255", 2) == axdr.OctetString(b"SIM00042")
        assert await read(1, "0.0.42.0.0.255", 2) == axdr.OctetString(b"SIM0000012345678")
        assert await read(3, "1.0.1.8.0.255", 2) == axdr.DoubleLongUnsigned(day + night)
        assert await read(3, "1.0.1.8.1.255", 2) == axdr.DoubleLongUnsigned(day)
        assert await read(3, "1.0.1.8.2.255", 2) == axdr.DoubleLongUnsigned(night)
        assert day > 1_000_000 and night > 0
        export = (START - EPOCH) // timedelta(hours=1)
        assert await read(3, "1.0.2.8.0.255", 2) == axdr.DoubleLongUnsigned(export)
        for obis in ("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255"):
            su = ScalerUnit.from_data(await read(3, obis, 3))
            assert su == ScalerUnit(0, DlmsUnit.WATT_HOUR)
        power = model().instant(START).power_w
        assert await read(3, "1.0.1.7.0.255", 2) == axdr.DoubleLong(power)
        assert ScalerUnit.from_data(await read(3, "1.0.1.7.0.255", 3)).unit is DlmsUnit.WATT
        # The clock runs 42 s ahead of true time, in UTC with deviation 0.
        time = CosemDateTime.from_data(await read(8, "0.0.1.0.0.255", 2))
        assert time.to_datetime() == START + timedelta(seconds=42) and time.deviation == 0
        assert await read(8, "0.0.1.0.0.255", 3) == axdr.Long(0)
        assert await read(1, "0.0.96.10.1.255", 2) == axdr.Unsigned(0)
        # Max demand: the best quarter hour of the meter's clock since its midnight
        # (metered at the true instants 42 s earlier), and the meter time it ended.
        m, lag = model(), timedelta(seconds=42)
        best, best_end = 0, START
        end = datetime(2026, 3, 10, 0, 15, tzinfo=UTC)
        while end <= START + lag:
            w = (m.energy_j(end - lag) - m.energy_j(end - lag - timedelta(minutes=15))) // 900
            best, best_end = (w, end) if w > best else (best, best_end)
            end += timedelta(minutes=15)
        assert await read(4, "1.0.1.6.0.255", 2) == axdr.DoubleLongUnsigned(best)
        capture = CosemDateTime.from_data(await read(4, "1.0.1.6.0.255", 5)).to_datetime()
        assert capture == best_end
        # The profile's description.
        columns = axdr.as_items(await read(7, "1.0.99.1.0.255", 3))
        assert [CaptureObject.from_data(c).obis for c in columns] == [
            CLOCK, Obis.parse("0.0.96.10.1.255"), Obis.parse("1.0.1.8.0.255"),
            Obis.parse("1.0.2.8.0.255"), Obis.parse("1.0.1.8.1.255"),
            Obis.parse("1.0.1.8.2.255")]
        assert await read(7, "1.0.99.1.0.255", 4) == axdr.DoubleLongUnsigned(900)
        assert await read(7, "1.0.99.1.0.255", 8) == axdr.DoubleLongUnsigned(40 * 96)
        # In use: 37.5 days of quarter hours since the install (Feb 1, 00:00); the slot
        # at 00:00 on the meter's clock was taken 42 s before the meter was there.
        assert await read(7, "1.0.99.1.0.255", 7) == axdr.DoubleLongUnsigned(3600)
        # What a real meter says to what it does not have.
        with pytest.raises(DeviceError, match="object undefined"):
            await read(3, "1.0.32.7.0.255", 2)
        with pytest.raises(DeviceError, match="read write denied"):
            await read(3, "1.0.1.8.0.255", 9)
        meter = server.meter("m1")  # the AARQ and 23 GETs
        assert meter.requests == 24 and meter.associations == 1


async def test_lls_password_good_and_bad() -> None:
    clock = ManualClock(START)
    meter = spec(security="lls", password=b"12345678")
    good = AssociationSettings(mechanism=Mechanism.LLS, password=SecretBytes(b"12345678"))
    async with public(meter, clock, client_sap=1, settings=good) as (_, peer, a):
        serial = await get(peer, a, AttributeDescriptor(1, SERIAL_NUMBER, 2))
        assert serial == axdr.OctetString(b"SIM00042")
    bad = AssociationSettings(mechanism=Mechanism.LLS, password=SecretBytes(b"wrong"))
    with pytest.raises(DeviceError, match="authentication failure"):
        async with public(meter, clock, client_sap=1, settings=bad):
            pass
    with pytest.raises(DeviceError, match="mechanism name required"):
        async with public(meter, clock, client_sap=1):
            pass


def hls(ak: bytes = AK) -> AssociationSettings:
    ctx = SecurityContext(keys(ak), CLIENT_TITLE, MemoryCounters(next_ic=1))
    return AssociationSettings(mechanism=Mechanism.HLS_GMAC, security=ctx)


async def test_hls_gmac_good_key_ciphered_gets_and_a_replayed_answer() -> None:
    clock = ManualClock(START)
    meter = spec(security="hls_gmac", keys=keys())
    async with public(meter, clock, client_sap=1, settings=hls()) as (server, peer, a):
        assert a.state is State.ASSOCIATED
        ldn = await get(peer, a, AttributeDescriptor(1, LOGICAL_DEVICE_NAME, 2))
        assert ldn == axdr.OctetString(b"SIM0000012345678")
        server.meter("m1").replay_last_response()
        with pytest.raises(SecurityError, match="replayed"):
            await get(peer, a, AttributeDescriptor(1, SERIAL_NUMBER, 2))
        serial = await get(peer, a, AttributeDescriptor(1, SERIAL_NUMBER, 2))
        assert serial == axdr.OctetString(b"SIM00042")


async def test_hls_with_a_wrong_key_and_ciphering_without_keys_are_refused() -> None:
    clock = ManualClock(START)
    with pytest.raises(DeviceError, match="authentication failure"):
        async with public(spec(security="hls_gmac", keys=keys()), clock, client_sap=1,
                          settings=hls(bytes(16))):
            pass
    with pytest.raises(DeviceError, match="application context name not supported"):
        async with public(spec(), clock, client_sap=1, settings=hls()):
            pass


async def test_two_day_profile_by_blocks_with_a_small_pdu() -> None:
    clock = ManualClock(START)
    async with public(spec(max_pdu_size=256, profile_depth_days=2), clock) as (_, peer, a):
        buffer = await get(peer, a, AttributeDescriptor(7, LOAD_PROFILE_1, 2))
    rows = axdr.as_items(buffer)
    assert len(rows) == 2 * 96
    last = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    m = model()
    for k, row in enumerate(rows):
        at = last - timedelta(minutes=15) * (len(rows) - 1 - k)
        day, night = m.tariff_energy_wh(at)
        export = (at - EPOCH) // timedelta(hours=1)
        assert row == axdr.Structure((when(at), axdr.Unsigned(0),
                                      axdr.DoubleLongUnsigned(day + night),
                                      axdr.DoubleLongUnsigned(export),
                                      axdr.DoubleLongUnsigned(day),
                                      axdr.DoubleLongUnsigned(night)))


async def test_range_and_entry_access_return_exactly_what_was_asked() -> None:
    clock = ManualClock(START)
    clock_column = CaptureObject(8, CLOCK, 2)
    import_column = CaptureObject(3, Obis.parse("1.0.1.8.0.255"), 2)
    async with public(spec(), clock) as (_, peer, a):
        low, high = datetime(2026, 3, 9, 23, 0, tzinfo=UTC), datetime(2026, 3, 10, 1, 0,
                                                                      tzinfo=UTC)
        by_range = RangeDescriptor(clock_column, when(low), when(high))
        rows = axdr.as_items(await get(peer, a, AttributeDescriptor(7, LOAD_PROFILE_1, 2),
                                       by_range))
        times = [CosemDateTime.from_data(axdr.as_items(r)[0]).to_datetime() for r in rows]
        assert times == [low + timedelta(minutes=15) * i for i in range(9)]
        two = RangeDescriptor(clock_column, when(low), when(low + timedelta(minutes=20)),
                              (clock_column, import_column))
        rows = axdr.as_items(await get(peer, a, AttributeDescriptor(7, LOAD_PROFILE_1, 2),
                                       two))
        total = sum(model().tariff_energy_wh(low + timedelta(minutes=15)))
        assert rows[1] == axdr.Structure((when(low + timedelta(minutes=15)),
                                          axdr.DoubleLongUnsigned(total)))
        assert len(rows) == 2
        # 3601 entries since the install (Feb 1 00:00 to Mar 10 12:00): the last two
        # (3600 to the end), columns 3 to 3 (the total import).
        entries = EntryDescriptor(3600, 0, 3, 3)
        rows = axdr.as_items(await get(peer, a, AttributeDescriptor(7, LOAD_PROFILE_1, 2),
                                       entries))
        last = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        assert rows == (axdr.Structure((axdr.DoubleLongUnsigned(
            sum(model().tariff_energy_wh(last - timedelta(minutes=15)))),)),
                        axdr.Structure((axdr.DoubleLongUnsigned(
                            sum(model().tariff_energy_wh(last))),)))


async def test_an_outage_leaves_a_gap_and_flags_the_first_entry_after_it() -> None:
    clock = ManualClock(START)
    down = datetime(2026, 3, 10, 3, 5, tzinfo=UTC)
    up = datetime(2026, 3, 10, 4, 10, tzinfo=UTC)
    async with public(spec(outages=((down, up),)), clock) as (server, peer, a):
        server.meter("m1").add_outage(datetime(2026, 3, 10, 8, 1, tzinfo=UTC),
                                      datetime(2026, 3, 10, 8, 2, tzinfo=UTC))
        by_range = RangeDescriptor(CaptureObject(8, CLOCK, 2),
                                   when(datetime(2026, 3, 10, 2, 45, tzinfo=UTC)),
                                   when(datetime(2026, 3, 10, 8, 30, tzinfo=UTC)),
                                   (CaptureObject(8, CLOCK, 2),
                                    CaptureObject(1, Obis.parse("0.0.96.10.1.255"), 2)))
        rows = axdr.as_items(await get(peer, a, AttributeDescriptor(7, LOAD_PROFILE_1, 2),
                                       by_range))
    got = {CosemDateTime.from_data(axdr.as_items(r)[0]).to_datetime():
           axdr.as_int(axdr.as_items(r)[1]) for r in rows}
    hhmm = {(t.hour, t.minute): s for t, s in got.items()}
    assert (3, 0) in hhmm and (3, 15) not in hhmm and (4, 0) not in hhmm
    assert hhmm[(4, 15)] == AMR_POWER_DOWN and hhmm[(3, 0)] == 0 and hhmm[(4, 30)] == 0
    assert hhmm[(8, 15)] == AMR_POWER_DOWN and hhmm[(8, 0)] == 0  # a short one between
    assert len(got) == 24 - 4 + 0  # 02:45..08:30 is 24 slots; 03:15..04:00 missing


async def test_exchange_and_a_new_connection_needs_a_new_association() -> None:
    clock = ManualClock(START)
    swap = START - timedelta(minutes=20)
    async with public(spec(), clock) as (server, peer, a):
        server.meter("m1").exchange(serial="NEW00001", start_energy_wh=5, at=swap)
        serial = await get(peer, a, AttributeDescriptor(1, SERIAL_NUMBER, 2))
        assert serial == axdr.OctetString(b"NEW00001")
        rows = axdr.as_items(await get(peer, a, AttributeDescriptor(7, LOAD_PROFILE_1, 2)))
        new = MeterModel(Load(SHAPE, 7), swap, start_energy_wh=5, tariffs=TariffSchedule(),
                         start_tariff_wh=(5, 0))
        noon = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        assert len(rows) == 1  # the new meter's profile starts empty at the swap
        assert axdr.as_items(rows[0])[2] == axdr.DoubleLongUnsigned(
            sum(new.tariff_energy_wh(noon)))
        # Another connection is another association: nothing before its AARQ.
        pipe = await TcpPipe.open(server.host, server.port)
        answer = decode_apdu(await WrapperPeer(pipe).request(
            GetRequest(AttributeDescriptor(1, SERIAL_NUMBER, 2)).to_bytes()))
        assert isinstance(answer, ExceptionResponse)
        await pipe.close()
        assert await peer.request(a.release()) == Rlre().to_bytes()
