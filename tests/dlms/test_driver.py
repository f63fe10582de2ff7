"""The DLMS driver as the gateway builds it (config -> assemble -> build_driver) against
the simulated meters on real sockets and ptys: exact register values, objects the meter
lacks, clock drift, HLS-GMAC and LLS from the config's secrets, two meters on one
RS-485 line, HDLC over TCP, a catch-up spread over polls, a meter silent mid-poll."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edge.assembly import assemble, build_driver
from gateway.clock import ManualClock, ScaledClock
from gateway.drivers.dlms.counters import InvocationCounterStore
from gateway.drivers.dlms.driver import DlmsDriver
from gateway.drivers.dlms.keys import SecretBytes, SuiteKeys
from gateway.drivers.modbus.bus import BusPool
from gateway.errors import DeviceError, DeviceTimeout
from gateway.model import SERIAL_NUMBER, Flag, Kind, Reading, Unit
from gateway.settings import DEFAULT_PROFILES_DIR, load_config
from gateway.sim.dlms_link import DlmsServer, serve_dlms
from gateway.sim.dlms_objects import DlmsMeterSpec

NOW = datetime(2026, 6, 10, 12, 7, tzinfo=UTC)
PERIOD = timedelta(minutes=15)
ENERGY = ("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255")
EK_HEX = "000102030405060708090A0B0C0D0E0F"
AK_HEX = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
KEYS = SuiteKeys(encryption=SecretBytes(bytes.fromhex(EK_HEX)),
                 authentication=SecretBytes(bytes.fromhex(AK_HEX)))

#: A profile read by GET only (no load profile): every energy register, once more in
#: kWh, the maximum demand (class 4), and objects the simulated meter does not have.
GET_ONLY_PROFILE = """
manufacturer = "Test"
model = "GET only"
source = "test"
protocol = "dlms"
max_power_w = 69000
[[points]]
obis = "1.0.1.8.0.255"
unit = "Wh"
kind = "cumulative"
[[points]]
obis = "1.0.2.8.0.255"
unit = "Wh"
kind = "cumulative"
[[points]]
obis = "1.0.1.8.1.255"
unit = "Wh"
kind = "cumulative"
[[points]]
obis = "1.0.1.8.2.255"
unit = "Wh"
kind = "cumulative"
[[points]]
obis = "1.0.1.8.0.255"
channel = "import_kwh"
unit = "kWh"
kind = "cumulative"
[[points]]
obis = "1.0.3.8.0.255"
unit = "Wh"
kind = "cumulative"
[[points]]
obis = "1.0.1.7.0.255"
unit = "W"
kind = "instant"
[[points]]
obis = "1.0.1.6.0.255"
class_id = 4
unit = "W"
kind = "instant"
[[points]]
obis = "1.0.32.7.0.255"
unit = "V"
kind = "instant"
"""


def generic_with(**load_profile: object) -> str:
    """The bundled generic profile with some load_profile keys changed."""
    text = (DEFAULT_PROFILES_DIR / "dlms_generic_electricity.toml").read_text()
    for key, value in load_profile.items():
        lines = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
        at = lines.index("[load_profile]  # IDIS load profile 1") + 1
        lines.insert(at, f"{key} = {value}")
        text = "\n".join(lines) + "\n"
    return text


def write_config(tmp_path: Path, meters: Sequence[Sequence[str]], *,
                 profiles: dict[str, str] | None = None) -> Path:
    """A gateway config with ``meters`` (each a list of TOML lines); ``profiles``: device
    profiles (name -> TOML) in a profiles dir of its own."""
    lines = ["[gateway]", 'data_dir = "data"', 'timezone = "UTC"']
    if profiles is not None:
        folder = tmp_path / "devices"
        folder.mkdir(exist_ok=True)
        for name, text in profiles.items():
            (folder / f"{name}.toml").write_text(text)
        lines.append('profiles_dir = "devices"')
    for meter in meters:
        lines += ["[[meters]]", *meter]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def tcp_meter(server: DlmsServer, meter_id: str, *extra: str,
              profile: str = "dlms_generic_electricity", timeout_s: float = 1) -> list[str]:
    return [f'meter_id = "{meter_id}"', 'protocol = "dlms_tcp"', f'profile = "{profile}"',
            'host = "127.0.0.1"', f"port = {server.ports[meter_id]}", "poll_interval_s = 900",
            f"timeout_s = {timeout_s}",
            *(["catch_up_days = 1"] if profile != "get_only" else []), *extra]


Cursor = Callable[[str, Sequence[str]], datetime | None]


def drivers(cfg: Path, clock: ManualClock, *, buses: BusPool | None = None,
            cursor: Cursor | None = None) -> dict[str, DlmsDriver]:
    assembly = assemble(load_config(cfg))
    out: dict[str, DlmsDriver] = {}
    for plan in assembly.meters:
        driver = build_driver(plan, clock, buses or BusPool(), cursor=cursor)
        assert isinstance(driver, DlmsDriver)
        out[plan.meter.meter_id] = driver
    return out


def driver(cfg: Path, clock: ManualClock, cursor: Cursor | None = None) -> DlmsDriver:
    [only] = drivers(cfg, clock, cursor=cursor).values()
    return only


class Held:
    """The cursor the pipeline would give: the last profile row taken in per channel."""

    def __init__(self) -> None:
        self.last: dict[str, datetime] = {}

    def __call__(self, meter_id: str, channels: Sequence[str]) -> datetime | None:
        got = [self.last.get(c) for c in channels]
        return None if any(g is None for g in got) else min(g for g in got if g is not None)

    def take(self, readings: list[Reading]) -> None:
        for r in readings:
            if r.kind is Kind.CUMULATIVE:
                self.last[r.channel] = max(r.at, self.last.get(r.channel, r.at))


def by_channel(readings: list[Reading]) -> dict[str, list[Reading]]:
    out: dict[str, list[Reading]] = {}
    for r in readings:
        out.setdefault(r.channel, []).append(r)
    return out


def profile_rows(readings: list[Reading], channel: str = ENERGY[0]) -> list[Reading]:
    return [r for r in readings if r.channel == channel]


# -- 1. register values ---------------------------------------------------------------------


async def test_registers_read_by_get_are_the_meters_exact_values(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("D1", start_energy_wh=12_345_678)], clock,
                          medium="tcp") as server:
        meter = server.meter("D1")
        cfg = write_config(tmp_path, [tcp_meter(server, "D1", profile="get_only")],
                           profiles={"get_only": GET_ONLY_PROFILE})
        drv = driver(cfg, clock)
        with capture_logs() as logs:
            got = by_channel(await drv.read())
            clock.set(NOW + PERIOD)
            again = by_channel(await drv.read())
        assert drv.plan.load_profile is None
        for readings, at in ((got, NOW), (again, NOW + PERIOD)):
            imp, exp, t1, t2 = meter.registers_wh(at)
            expected: dict[str, tuple[Decimal, Unit]] = {
                "1.0.1.8.0.255": (Decimal(imp), Unit.WH),
                "1.0.2.8.0.255": (Decimal(exp), Unit.WH),
                "1.0.1.8.1.255": (Decimal(t1), Unit.WH),
                "1.0.1.8.2.255": (Decimal(t2), Unit.WH),
                "import_kwh": (Decimal(imp) / 1000, Unit.KWH),
                "1.0.1.7.0.255": (Decimal(meter.model.instant(at).power_w), Unit.W),
                "1.0.1.6.0.255": (Decimal(meter.max_demand(at)[0]), Unit.W),
            }
            assert set(readings) == {*expected, SERIAL_NUMBER}
            for channel, (value, unit) in expected.items():
                [r] = readings[channel]
                assert (r.value, r.unit, r.at) == (value, unit, at), channel
                assert r.meter_at == at and r.flags == 0
            assert imp > 12_345_678
        # What the meter lacks is skipped, logged once over both polls; a missing
        # cumulative register at error level, a missing instant one as a warning.
        missing = [e for e in logs if e["event"] == "meter has no such object: point not read"]
        assert {(e["channel"], e["log_level"]) for e in missing} == {
            ("1.0.3.8.0.255", "error"), ("1.0.32.7.0.255", "warning")}
        assert len(missing) == 2


async def test_generic_profile_reads_profile_rows_and_instants_exactly(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("D2", serial="40001234")], clock,
                          medium="tcp") as server:
        meter = server.meter("D2")
        drv = driver(write_config(tmp_path, [tcp_meter(server, "D2")]), clock)
        with capture_logs() as logs:
            got = by_channel(await drv.read())
        # The generic profile lists 1.0.2.7.0 and 1.0.32.7.0: the meter has neither.
        assert set(got) == {*ENERGY, "1.0.1.7.0.255", SERIAL_NUMBER}
        [power] = got["1.0.1.7.0.255"]
        assert (power.value, power.unit, power.at, power.kind) == (
            Decimal(meter.model.instant(NOW).power_w), Unit.W, NOW, Kind.INSTANT)
        [identity] = got[SERIAL_NUMBER]
        assert identity.value == 40001234 and identity.kind is Kind.IDENTITY
        # A day back (catch_up_days = 1), every row the meter's register at its capture.
        for index, channel in enumerate(ENERGY):
            rows = got[channel]
            assert [r.at for r in rows] == [
                datetime(2026, 6, 9, 12, 15, tzinfo=UTC) + PERIOD * i for i in range(96)]
            assert all(r.value == meter.registers_wh(r.at)[index] and r.unit is Unit.WH
                       for r in rows), channel
        missing = {(e["channel"], e["log_level"]) for e in logs
                   if e["event"] == "meter has no such object: point not read"}
        assert missing == {("1.0.2.7.0.255", "warning"), ("1.0.32.7.0.255", "warning")}


# -- 2. clock drift ---------------------------------------------------------------------------


async def test_clock_drift_is_measured_and_flags_the_poll(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("D3")], clock, medium="tcp") as server:
        meter = server.meter("D3")
        held = Held()
        drv = driver(write_config(tmp_path, [tcp_meter(server, "D3")]), clock, held)

        async def poll(drift_s: float) -> list[Reading]:
            meter.set_clock_drift(drift_s)
            clock.set(clock.now() + PERIOD)
            readings = await drv.read()
            held.take(readings)
            return readings

        await poll(0)
        assert drv.stats.clock_drift_s is not None and abs(drv.stats.clock_drift_s) < 1
        drifting = await poll(90)
        assert drv.stats.clock_drift_s == pytest.approx(90, abs=1)
        values = [r for r in drifting if r.kind is not Kind.IDENTITY]
        assert values and all(r.flags & Flag.CLOCK_UNTRUSTED for r in values)
        assert profile_rows(drifting), "a row was due in that poll"
        back = await poll(0)
        assert drv.stats.clock_drift_s == pytest.approx(0, abs=1)
        assert not any(r.flags & Flag.CLOCK_UNTRUSTED for r in back)
        small = await poll(20)  # below clock_drift_warn_s (30)
        assert drv.stats.clock_drift_s == pytest.approx(20, abs=1)
        assert not any(r.flags & Flag.CLOCK_UNTRUSTED for r in small)


async def test_a_clock_reply_that_needed_a_re_poll_is_read_again(tmp_path: Path) -> None:
    """HDLC sends a lost reply again as it was: the meter's time in it is as old as the
    request, so the drift would be off by the re-poll wait. It is read once more."""
    clock = ScaledClock(NOW, speed=3600)  # the 0.5 s re-poll wait is 30 minutes
    async with serve_dlms([DlmsMeterSpec("D4")], clock, medium="tcp",
                          framing="hdlc") as server:
        drv = driver(write_config(tmp_path, [tcp_meter(
            server, "D4", 'framing = "hdlc"', timeout_s=0.5)]), clock)
        await drv.connect()  # associated: the next frame the meter sends answers the clock
        server.meter("D4").drop_next_frames(1)
        await drv.read()
        assert drv.stats.link.repolls >= 1  # more if the loaded machine was slow to answer
        assert drv.stats.clock_drift_s is not None and abs(drv.stats.clock_drift_s) < 60


# -- 4. HLS-GMAC and 5. LLS from the config's secrets --------------------------------------


def hls_lines() -> list[str]:
    return ['security = "hls_gmac"', 'encryption_key_env = "TEST_DLMS_EK"',
            'authentication_key_env = "TEST_DLMS_AK"']


def next_counter(path: Path) -> int:
    """The first invocation counter a gateway started now would send."""
    with InvocationCounterStore(path) as store:
        return store.next_ic


async def test_hls_gmac_keys_from_env_and_the_counter_only_rises_across_restarts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_DLMS_EK", EK_HEX)
    monkeypatch.setenv("TEST_DLMS_AK", AK_HEX.lower())
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("H1", security="hls_gmac", keys=KEYS, serial="77001122")
    async with serve_dlms([spec], clock, medium="tcp") as server:
        cfg = write_config(tmp_path, [tcp_meter(server, "H1", *hls_lines())])
        counter = tmp_path / "data" / "dlms" / "H1.ic"
        seen = [0]
        for _ in range(2):  # two gateway runs, one after the other, in one process
            drv = driver(cfg, clock)
            for _ in range(2):
                readings = await drv.read()
                assert drv.stats.serial == "77001122"
                assert any(r.channel == ENERGY[0] for r in readings)
                clock.set(clock.now() + PERIOD)
            await drv.close()  # lets go of the counter file: the next run takes it
            assert counter.exists()
            seen.append(next_counter(counter))
            assert seen[-1] > seen[-2]
        assert server.meter("H1").associations == 4


async def test_hls_gmac_wrong_key_fails_without_showing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "0F0E0D0C0B0A09080706050403020100"
    monkeypatch.setenv("TEST_DLMS_EK", wrong)
    monkeypatch.setenv("TEST_DLMS_AK", AK_HEX)
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("H2", security="hls_gmac", keys=KEYS)
    async with serve_dlms([spec], clock, medium="tcp") as server:
        cfg = write_config(tmp_path, [tcp_meter(server, "H2", *hls_lines())])
        drv = driver(cfg, clock)
        with capture_logs() as logs, pytest.raises(DeviceError) as failed:
            await drv.read()
        await drv.close()
    assert "authentication failure" in str(failed.value)
    shown = str(failed.value) + repr(failed.value) + repr(logs)
    for secret in (wrong, AK_HEX, EK_HEX):
        assert secret.lower() not in shown.lower()


def lls_meter(server: DlmsServer, meter_id: str) -> list[str]:
    return tcp_meter(server, meter_id, 'security = "lls"', 'password_file = "meter.pw"')


async def test_lls_password_from_a_file_and_a_wrong_one(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("L1", security="lls", password=b"s3cret-LLS")
    async with serve_dlms([spec], clock, medium="tcp") as server:
        cfg = write_config(tmp_path, [lls_meter(server, "L1")])
        (tmp_path / "meter.pw").write_text("s3cret-LLS\n")
        drv = driver(cfg, clock)
        assert any(r.channel == ENERGY[0] for r in await drv.read())
        await drv.close()

        (tmp_path / "meter.pw").write_text("not-the-one\n")
        drv = driver(cfg, clock)
        with capture_logs() as logs, pytest.raises(DeviceError, match="authentication failure"
                                                   ) as failed:
            await drv.read()
        assert "wrong password" in str(failed.value)
        assert "not-the-one" not in str(failed.value) + repr(logs)
        await drv.close()


# -- 6. two meters on one RS-485 line, 7. HDLC over TCP ------------------------------------


async def test_two_meters_on_one_line_take_turns(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    specs = [DlmsMeterSpec("S1", serial="11111111", server_physical=17),
             DlmsMeterSpec("S2", serial="22222222", server_physical=18)]
    async with serve_dlms(specs, clock, medium="pty", baud=115200) as server:
        meters = [[f'meter_id = "{s.meter_id}"', 'protocol = "dlms_serial"',
                   'profile = "dlms_generic_electricity"', f'port = "{server.path}"',
                   "baudrate = 115200", f"server_physical = {s.server_physical}",
                   "poll_interval_s = 900", "timeout_s = 1", "catch_up_days = 1"]
                  for s in specs]
        held = Held()  # two hours behind: 8 rows each
        held.last = dict.fromkeys(ENERGY, NOW - timedelta(hours=2, minutes=7))
        both = drivers(write_config(tmp_path, meters), clock, buses=BusPool(), cursor=held)
        # Which meter each exchange on the line was for, in order.
        line: list[str] = []
        for meter_id, drv in both.items():
            link = drv._client.link
            exchange = link.exchange

            async def logged(apdu: bytes, meter_id: str = meter_id,
                             exchange: Any = exchange) -> bytes:
                line.append(meter_id)
                got: bytes = await exchange(apdu)
                line.append(meter_id)
                return got
            link.exchange = logged  # type: ignore[method-assign]
        got = await asyncio.gather(*(d.read() for d in both.values()))
        for drv in both.values():
            await drv.close()
    for readings, spec in zip(got, specs, strict=True):
        meter = server.meter(spec.meter_id)
        [identity] = [r for r in readings if r.kind is Kind.IDENTITY]
        assert identity.value == int(spec.serial)
        rows = profile_rows(readings)
        assert [r.at for r in rows] == [NOW - timedelta(minutes=7) - PERIOD * i
                                        for i in range(7, -1, -1)]
        assert all(r.value == meter.registers_wh(r.at)[0] for r in rows)
    # A whole poll each: the line's exchanges are one meter's, then the other's.
    switches = sum(a != b for a, b in itertools.pairwise(line))
    assert switches == 1 and set(line) == {"S1", "S2"}, line


async def test_hdlc_framing_over_tcp(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("T1", serial="31415926")], clock, medium="tcp",
                          framing="hdlc") as server:
        drv = driver(write_config(tmp_path, [tcp_meter(server, "T1", 'framing = "hdlc"')]),
                     clock)
        readings = await drv.read()
        await drv.close()
        meter = server.meter("T1")
    assert drv.stats.serial == "31415926"
    rows = profile_rows(readings)
    assert len(rows) == 96 and all(r.value == meter.registers_wh(r.at)[0] for r in rows)
    assert server.stats.frames_received > 0  # HDLC frames, not wrapper APDUs
    assert drv.stats.link.bytes_sent > 0


# -- 8. a catch-up spread over polls, 9. a meter silent mid-poll ---------------------------


async def test_catch_up_reads_at_most_max_entries_per_poll(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("C1")], clock, medium="tcp") as server:
        meter = server.meter("C1")
        cfg = write_config(tmp_path, [tcp_meter(server, "C1", profile="small_steps")],
                           profiles={"small_steps": generic_with(max_entries_per_poll=10)})
        held = Held()
        drv = driver(cfg, clock, held)
        assert drv.plan.load_profile is not None
        assert drv.plan.load_profile.max_entries_per_poll == 10
        taken: list[Reading] = []
        polls = 0
        while True:
            polls += 1
            readings = await drv.read()
            rows = profile_rows(readings)
            assert len(rows) <= 10
            taken += rows
            held.take(readings)
            if not drv.stats.catching_up:
                break
            assert len(rows) == 10
            assert polls < 20
        await drv.close()
    assert polls == 10  # 96 rows, 10 a poll
    starts = [r.at for r in taken]
    assert starts == [datetime(2026, 6, 9, 12, 15, tzinfo=UTC) + PERIOD * i for i in range(96)]
    assert all(r.value == meter.registers_wh(r.at)[0] for r in taken)


async def test_a_meter_silent_mid_poll_times_out_and_the_next_poll_loses_nothing(
        tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("Q1")], clock, medium="tcp") as server:
        meter = server.meter("Q1")
        held = Held()
        # A timeout long enough for a loaded machine's slowest answer: only the silence
        # may run into it.
        drv = driver(write_config(tmp_path, [tcp_meter(server, "Q1", timeout_s=1.0)]),
                     clock, held)
        held.take(await drv.read())  # caught up to 12:00
        client = drv._client
        get = client.get

        async def silenced_at_power(attribute: Any, access: Any = None) -> Any:
            # The meter stops answering after the profile was read, at the first register.
            if str(attribute.obis) == "1.0.1.7.0.255":
                meter.silent(True)
            return await get(attribute, access)
        client.get = silenced_at_power  # type: ignore[method-assign]

        clock.set(NOW + 2 * PERIOD)  # rows 12:15 and 12:30 are due
        with pytest.raises(DeviceTimeout):
            await drv.read()
        assert not client.associated
        client.get = get  # type: ignore[method-assign]
        meter.silent(False)
        clock.set(NOW + 3 * PERIOD)
        readings = await drv.read()
        await drv.close()
    rows = profile_rows(readings)
    # The rows of the failed poll are read again, once, with the one due since.
    assert [r.at for r in rows] == [datetime(2026, 6, 10, 12, 15, tzinfo=UTC) + PERIOD * i
                                    for i in range(3)]
    assert all(r.value == meter.registers_wh(r.at)[0] for r in rows)


async def test_a_meter_signing_its_deviation_the_iso_way_reads_right_when_configured(
        tmp_path: Path) -> None:
    """A Berlin meter that writes +60 for CET (ISO) instead of -60 (Blue Book): with
    deviation_sign = "iso" its clock, the range asked for and every row's time are
    right; read the Blue Book way every time would be two hours off."""
    from gateway.drivers.dlms.cosem import DeviationSign

    clock = ManualClock(datetime(2026, 1, 14, 12, 7, tzinfo=UTC))
    spec = DlmsMeterSpec("ISO1", time_zone="Europe/Berlin", deviation_sign=DeviationSign.ISO)
    async with serve_dlms([spec], clock, medium="tcp") as server:
        meter = server.meter("ISO1")
        right = driver(write_config(tmp_path, [tcp_meter(
            server, "ISO1", 'deviation_sign = "iso"', 'timezone = "Europe/Berlin"')]), clock)
        readings = await right.read()
        await right.close()
        assert right.stats.clock_drift_s is not None and abs(right.stats.clock_drift_s) < 1
        rows = profile_rows(readings)
        assert len(rows) == 96 and rows[-1].at == datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
        assert all(r.value == meter.registers_wh(r.at)[0] for r in rows)
        (tmp_path / "w").mkdir()
        wrong = driver(write_config(tmp_path / "w", [tcp_meter(
            server, "ISO1", 'timezone = "Europe/Berlin"')]), clock)
        await wrong.read()
        await wrong.close()
        assert wrong.stats.clock_drift_s == pytest.approx(7200, abs=1)
