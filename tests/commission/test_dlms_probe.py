"""The DLMS probe against the simulated meter: an optical port on a real pty (sign-on
at 300 baud, HDLC at 9600 after it), address discovery, HLS-GMAC with keys from the
files the meter's config names, the clock's drift, the object list (block transfer),
configured OBIS present and absent, the proposed profile; a wrong key, the TCP
wrapper, a silent address, and a cancelled probe that leaves the port free."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.commission.dlms_addresses import ALL_STATIONS, ALL_STATIONS_4, attempt_s
from gateway.commission.dlms_probe import DlmsProbeOutcome, DlmsTarget, probe_dlms
from gateway.commission.dlms_target import target_for_meter
from gateway.commission.model import DeviceIdentity, Line
from gateway.drivers.dlms.hdlc import HdlcParameters
from gateway.drivers.dlms.keys import SecretBytes, SuiteKeys
from gateway.drivers.dlms.mode_e import Identification
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.serial_link import SerialStream
from gateway.errors import ConnectError
from gateway.profiles import PROFILES_DIR, load_profile
from gateway.profiles_dlms import DlmsProfile
from gateway.settings import (
    DlmsOpticalMeterConfig,
    DlmsSerialMeterConfig,
    LoadedConfig,
    load_config,
)
from gateway.sim.dlms_link import serve_dlms
from gateway.sim.dlms_objects import DlmsMeterSpec

NOW = datetime(2026, 6, 1, 12, 7, 30, tzinfo=UTC)
EK = "000102030405060708090a0b0c0d0e0f"
AK = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
KEYS = SuiteKeys(encryption=SecretBytes(bytes.fromhex(EK)),
                 authentication=SecretBytes(bytes.fromhex(AK)))
#: What the simulated meter lists in its current association, in its order.
SIM_OBJECTS = (
    (8, "0.0.1.0.0.255"), (1, "0.0.96.1.0.255"), (1, "0.0.42.0.0.255"),
    (1, "0.0.96.10.1.255"), (3, "1.0.1.8.0.255"), (3, "1.0.2.8.0.255"),
    (3, "1.0.1.8.1.255"), (3, "1.0.1.8.2.255"), (3, "1.0.1.7.0.255"),
    (4, "1.0.1.6.0.255"), (7, "1.0.99.1.0.255"), (15, "0.0.40.0.0.255"))
#: dlms_generic_electricity: its points, then its load profile and status object.
CONFIGURED = (
    ("1.0.1.8.0.255", True), ("1.0.2.8.0.255", True), ("1.0.1.8.1.255", True),
    ("1.0.1.8.2.255", True), ("1.0.1.7.0.255", True), ("1.0.2.7.0.255", False),
    ("1.0.32.7.0.255", False), ("1.0.99.1.0.255", True), ("0.0.96.10.1.255", True))


GENERIC = load_profile(PROFILES_DIR / "dlms_generic_electricity.toml")
assert isinstance(GENERIC, DlmsProfile)


def hls_meter(**changes: object) -> DlmsMeterSpec:
    spec = DlmsMeterSpec("D1", serial="47110815", logical_device_name="ISK0000047110815",
                         security="hls_gmac", keys=KEYS, server_physical=17,
                         identification=Identification("ISk", "5", ("2",), "MT382-1000"),
                         hdlc_limits=HdlcParameters(512, 512, 1, 1), max_pdu_size=256)
    return replace(spec, **changes)  # type: ignore[arg-type]


def meter_config(tmp_path: Path, port: str, *, ek: str = EK) -> LoadedConfig:
    """The meter as an installer configures it: keys in files next to the config."""
    (tmp_path / "ek").write_text(ek + "\n")
    (tmp_path / "ak").write_text(AK + "\n")
    (tmp_path / "site.toml").write_text(f"""
[[meters]]
meter_id = "D1"
profile = "dlms_generic_electricity"
protocol = "dlms_optical"
port = "{port}"
server_physical = 17
security = "hls_gmac"
encryption_key_file = "ek"
authentication_key_file = "ak"
timeout_s = 1.0
""")
    return load_config(tmp_path / "site.toml")


def optical_target(tmp_path: Path, port: str, *, ek: str = EK, **changes: object) -> DlmsTarget:
    config = meter_config(tmp_path, port, ek=ek)
    meter = config.settings.meters[0]
    assert isinstance(meter, DlmsOpticalMeterConfig)
    target = target_for_meter(config, meter, profile=GENERIC)
    return replace(target, **changes)  # type: ignore[arg-type]


async def reopens(path: str) -> bool:
    stream = SerialStream(path, LineSettings(9600, "N", 1))
    try:
        await stream.open()
    except ConnectError:
        return False
    stream.close()
    return True


async def test_optical_probe_reports_every_field(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    steps: list[tuple[str, int, int]] = []
    async with serve_dlms([hls_meter(clock_drift_s=42.5)], clock, medium="pty",
                          optical=True) as server:
        target = optical_target(tmp_path, server.path)
        got = await probe_dlms(target, clock=clock,
                               progress=lambda what, done, total: steps.append((what, done, total)))
        meter = server.meter("D1")
        assert server.line is not None and server.line.signing_on  # DISC: signed off
        assert await reopens(server.path)
    f, device = got.findings, got.device
    assert f.identification == "/ISk5\\2MT382-1000"
    assert f.server_addresses == (17,)
    assert f.association == "ok (hls_gmac)"
    assert f.logical_device_name == "ISK0000047110815"
    assert f.clock == "2026-06-01T12:08:12.500000+00:00"  # NOW + the drift
    assert f.clock_drift_s == 42.5
    assert f.objects == SIM_OBJECTS
    assert f.configured_present == CONFIGURED
    assert f.capture_objects == (
        (8, "0.0.1.0.0.255", 2), (1, "0.0.96.10.1.255", 2), (3, "1.0.1.8.0.255", 2),
        (3, "1.0.2.8.0.255", 2), (3, "1.0.1.8.1.255", 2), (3, "1.0.1.8.2.255", 2))
    assert not f.interrupted
    assert device.protocol == "dlms_optical" and device.address == server.path
    assert device.unit_id == 17
    assert device.line == Line(baudrate=9600, parity="N", stopbits=1)
    assert device.identity == DeviceIdentity(
        source="dlms", vendor="Iskraemeco", model="MT382-1000", serial="47110815",
        raw=(("identification", "/ISk5\\2MT382-1000"),
             ("logical_device_name", "ISK0000047110815")))
    assert device.profile == "dlms_generic_electricity" and device.candidates == ()
    assert any("lacks 1.0.2.7.0.255, 1.0.32.7.0.255" in n for n in device.notes)
    # What the meter's UA and InitiateResponse granted (the spec's 512 / 1 and 256).
    assert "HDLC: frames of 512 bytes in, 512 out, window 1/1; APDUs up to 256 bytes" \
        in device.notes
    # The object list (580 bytes) came in 3 blocks of a 256-byte PDU: AARQ, HLS pass 3,
    # serial, name, clock, 3 blocks, capture objects, RLRQ.
    assert meter.requests == 10
    main = [s for s in steps if s[2] == 9]
    names = ["sign-on", "server address", "association", "serial number",
             "logical device name", "clock", "object list", "load profile", "profile"]
    assert main == [(name, done, 9) for done, name in enumerate([*names, "release"])]
    assert list(got.timings) == [*names, "release"]
    # 62056-21 at 300 baud: the request (5 characters), the meter's reaction (20 ms for
    # a lower-case third letter), its 19-character identification, the 6-character
    # acknowledgement, then the switch wait of 300 ms.
    assert 0.02 + (5 + 19 + 6) * 10 / 300 + 0.3 <= got.timings["sign-on"] < 1.6
    # The counter file the gateway will poll with has risen: the next poll is no replay.
    assert (tmp_path / "data" / "dlms" / "D1.ic").exists()


async def test_a_wrong_key_is_reported_as_such_and_no_secret_is_shown(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = ManualClock(NOW)
    wrong = "ffeeddccbbaa99887766554433221100"
    async with serve_dlms([hls_meter()], clock, medium="pty", optical=True) as server:
        got = await probe_dlms(optical_target(tmp_path, server.path, ek=wrong), clock=clock)
        assert await reopens(server.path)
    f = got.findings
    assert f.association.startswith("failed: wrong key (association refused: "
                                    "authentication failure")
    # The association's verdict stays the failure; the public client (signed on again)
    # still read who the meter is and its own object list.
    assert f.identification == "/ISk5\\2MT382-1000" and f.server_addresses == (17,)
    assert (f.logical_device_name, got.device.identity.serial) == ("ISK0000047110815",
                                                                   "47110815")
    assert f.objects == SIM_OBJECTS
    assert "read as the public client (SAP 16, no security): the configured client may " \
        "see other objects" in got.device.notes
    assert server.line is not None and server.line.sign_ons == 2
    shown = repr(got) + caplog.text
    for secret in (wrong, EK, AK):
        assert secret not in shown.lower()
        assert bytes.fromhex(secret).hex(" ") not in shown.lower()
        assert repr(bytes.fromhex(secret)) not in shown


async def test_without_the_public_fallback_nothing_is_read_after_a_wrong_key(
        tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    wrong = "ffeeddccbbaa99887766554433221100"
    async with serve_dlms([hls_meter()], clock, medium="pty", optical=True) as server:
        target = optical_target(tmp_path, server.path, ek=wrong, public_fallback=False)
        got = await probe_dlms(target, clock=clock)
        assert await reopens(server.path)
    f = got.findings
    assert f.association.startswith("failed: wrong key")
    assert (f.logical_device_name, f.clock, f.objects, got.device.identity.serial) == (
        None, None, (), None)


async def test_discovery_finds_the_physical_address_among_silent_ones(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([hls_meter()], clock, medium="pty", optical=True) as server:
        target = optical_target(tmp_path, server.path, server_physical=None,
                                scan_physical=(16, 17, 18))
        got = await probe_dlms(target, clock=clock)
    f = got.findings
    assert f.server_addresses == (17,) and got.device.unit_id == 17
    assert f.association == "ok (hls_gmac)" and f.objects == SIM_OBJECTS
    assert any("answers at server_physical = 17, not the configured None" in n
               for n in got.device.notes)
    # Each silent address costs its attempt: SNRM and UA at 9600 baud + the turnaround;
    # the one that answers, only its answer's time.
    wait = attempt_s(9600, target.answer_s)
    assert 0.29 < wait < 0.31
    assert 3 * wait <= got.timings["server address"] < 3 * wait + 0.3


async def test_the_all_station_address_finds_a_meter_that_answers_it(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    spec = hls_meter(answers_all_station=True, server_physical=35)
    async with serve_dlms([spec], clock, medium="pty", optical=True) as server:
        target = optical_target(tmp_path, server.path, scan_physical=(ALL_STATIONS,))
        got = await probe_dlms(target, clock=clock)
    assert got.findings.server_addresses == (35,)  # the configured 17 stayed silent
    assert got.findings.association == "ok (hls_gmac)"
    assert got.device.identity.serial == "47110815"


async def test_a_silent_address_is_reported_and_nothing_is_associated(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    spec = hls_meter(server_physical=35)  # not the configured 17, no all-station answer
    async with serve_dlms([spec], clock, medium="pty", optical=True) as server:
        target = optical_target(tmp_path, server.path, scan_physical=(ALL_STATIONS,))
        got = await probe_dlms(target, clock=clock)
        assert await reopens(server.path)
    f = got.findings
    assert f.identification == "/ISk5\\2MT382-1000"
    assert f.server_addresses == ()
    assert f.association == "not tried: no server address answered SNRM"
    assert any("2 of 2 address(es) tried" in n for n in got.device.notes)


async def test_a_meter_without_hdlc_on_its_optical_port_is_a_finding(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    mode_c = hls_meter(identification=Identification("ISk", "5", (), "MT174"))
    async with serve_dlms([mode_c], clock, medium="pty", optical=True) as server:
        got = await probe_dlms(optical_target(tmp_path, server.path), clock=clock)
        assert await reopens(server.path)
    assert got.findings.association == ("not tried: ISk 'MT174' does not offer HDLC (no "
                                        "\\2 in its identification)")
    assert got.findings.identification == "/ISk5MT174"
    assert (got.device.identity.vendor, got.device.identity.model) == ("Iskraemeco", "MT174")
    assert got.findings.server_addresses == () and got.device.line is None


async def test_a_port_that_cannot_be_opened_raises(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="cannot open serial port"):
        await probe_dlms(optical_target(tmp_path, str(tmp_path / "ttyUSB9")),
                         clock=ManualClock(NOW))


async def test_multidrop_line_every_meter_found_and_the_configured_one_read(
        tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    meters = [DlmsMeterSpec("A", serial="1001", server_physical=17),
              DlmsMeterSpec("B", serial="1002", server_physical=18)]
    async with serve_dlms(meters, clock, medium="pty", baud=9600) as server:
        target = DlmsTarget(medium="serial", address=server.path, server_physical=18,
                            scan_physical=tuple(range(16, 20)), timeout_s=1.0,
                            configured=("1.0.1.8.0.255", "1.0.32.7.0.255"))
        got = await probe_dlms(target, clock=clock)
        assert await reopens(server.path)
    assert got.findings.server_addresses == (18, 17)  # the configured one is tried first
    assert got.device.unit_id == 18 and got.device.identity.serial == "1002"
    assert got.findings.association == "ok (none)"
    assert got.findings.configured_present == (("1.0.1.8.0.255", True),
                                               ("1.0.32.7.0.255", False))


async def test_tcp_wrapper_public_client() -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("T1", serial="777", logical_device_name="LGZ0000000000777",
                         clock_drift_s=-3.0)
    async with serve_dlms([spec], clock, medium="tcp") as server:
        target = DlmsTarget(medium="tcp", address="127.0.0.1", tcp_port=server.port,
                            timeout_s=1.0)
        got = await probe_dlms(target, clock=clock)
    f, device = got.findings, got.device
    assert device.protocol == "dlms_tcp" and device.address == f"127.0.0.1:{server.port}"
    assert device.line is None and f.identification is None and f.server_addresses == ()
    assert f.association == "ok (none)"
    assert device.identity.serial == "777" and device.identity.vendor == "Landis+Gyr"
    assert f.clock_drift_s == -3.0 and f.objects == SIM_OBJECTS
    assert device.profile == "dlms_generic_electricity"


async def test_hdlc_over_tcp_discovers_and_reads() -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("H1", serial="4242", server_physical=20)
    async with serve_dlms([spec], clock, medium="tcp", framing="hdlc") as server:
        target = DlmsTarget(medium="tcp", framing="hdlc", address="127.0.0.1",
                            tcp_port=server.port, scan_physical=(19, 20), timeout_s=1.0,
                            answer_s=0.1)
        got = await probe_dlms(target, clock=clock)
    assert got.findings.server_addresses == (20,) and got.device.unit_id == 20
    assert got.findings.association == "ok (none)" and got.device.identity.serial == "4242"
    # No line time on TCP: the one-byte address and 19 each waited out their 0.1 s.
    assert 0.2 <= got.timings["server address"] < 0.5


async def test_a_four_byte_address_answers_its_own_all_station_address() -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("W1", serial="5150", server_physical=1234, answers_all_station=True)
    async with serve_dlms([spec], clock, medium="tcp", framing="hdlc") as server:
        found = []
        for broadcast in (ALL_STATIONS, ALL_STATIONS_4):
            target = DlmsTarget(medium="tcp", framing="hdlc", address="127.0.0.1",
                                tcp_port=server.port, server_physical=17, timeout_s=1.0,
                                scan_physical=(broadcast,), answer_s=0.1)
            found.append(await probe_dlms(target, clock=clock))
    # 17 and the 2-byte all-station address (0x7F) are not its; 0x3FFF is.
    narrow, wide = found
    assert narrow.findings.server_addresses == ()
    assert wide.findings.server_addresses == (1234,) and wide.device.unit_id == 1234
    assert wide.device.identity.serial == "5150"


async def test_tcp_wrapper_silent_meter_times_out() -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([DlmsMeterSpec("T2")], clock, medium="tcp") as server:
        server.meter("T2").silent(True)
        target = DlmsTarget(medium="tcp", address="127.0.0.1", tcp_port=server.port,
                            timeout_s=0.3)
        got = await probe_dlms(target, clock=clock)
    assert got.findings.association == "failed: timeout (no answer within 0.3 s)"


async def test_cancelled_probe_releases_the_port_and_keeps_what_it_found(
        tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([hls_meter()], clock, medium="pty", optical=True) as server:
        target = optical_target(tmp_path, server.path)
        outcome = DlmsProbeOutcome.start(target)
        reached = asyncio.Event()

        def progress(what: str, done: int, total: int) -> None:
            if what == "object list":
                reached.set()

        task = asyncio.create_task(probe_dlms(target, clock=clock, progress=progress,
                                              outcome=outcome))
        await reached.wait()
        await asyncio.sleep(0.05)  # the object list's first block is on the line
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert server.line is not None and server.line.signing_on  # DISC reached it
        assert await reopens(server.path)
    f = outcome.findings
    assert f.interrupted
    assert f.identification == "/ISk5\\2MT382-1000" and f.server_addresses == (17,)
    assert f.association == "ok (hls_gmac)" and f.clock_drift_s == 0.0
    assert outcome.device.identity.serial == "47110815"
    assert f.objects == ()  # not read yet


async def test_a_meter_that_falls_silent_mid_probe_keeps_what_was_read(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    async with serve_dlms([hls_meter()], clock, medium="pty", optical=True) as server:
        def progress(what: str, done: int, total: int) -> None:
            if what == "clock":
                server.meter("D1").silent(True)

        target = optical_target(tmp_path, server.path, timeout_s=0.2)
        got = await probe_dlms(target, clock=clock, progress=progress)
        assert await reopens(server.path)
    f = got.findings
    assert f.association == "ok (hls_gmac)" and f.logical_device_name == "ISK0000047110815"
    assert (f.clock, f.objects) == (None, ())
    # The meter config's retries (3): four polls of the clock's frame, then it stops.
    assert "reads stopped at the clock: no answer within 0.2 s (4 tries)" in got.device.notes


async def test_lls_password_from_the_environment_right_and_wrong(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("L1", security="lls", password=b"s3cret-Pw", server_physical=17)
    async with serve_dlms([spec], clock, medium="pty", baud=19200) as server:
        (tmp_path / "site.toml").write_text(f"""
[[meters]]
meter_id = "L1"
profile = "dlms_generic_electricity"
protocol = "dlms_serial"
port = "{server.path}"
baudrate = 19200
server_physical = 17
security = "lls"
password_env = "L1_PASSWORD"
timeout_s = 0.5
""")
        config = load_config(tmp_path / "site.toml")
        meter = config.settings.meters[0]
        assert isinstance(meter, DlmsSerialMeterConfig)
        results = []
        for password in ("s3cret-Pw", "guess-Pw"):
            target = target_for_meter(config, meter, environ={"L1_PASSWORD": password})
            assert target.client_sap == 1  # the management client, as the gateway polls
            results.append(await probe_dlms(target, clock=clock))
    right, wrong = results
    assert right.findings.association == "ok (lls)"
    assert right.device.identity.serial == "12345678"
    assert wrong.findings.association.startswith("failed: wrong password (association "
                                                 "refused: authentication failure")
    assert "guess-Pw" not in repr(wrong) and "s3cret-Pw" not in repr(right)


async def test_an_association_the_meter_refuses_says_why() -> None:
    clock = ManualClock(NOW)
    spec = DlmsMeterSpec("R1", security="lls", password=b"12345678")
    async with serve_dlms([spec], clock, medium="tcp") as server:
        # The management client without the password the meter wants.
        target = DlmsTarget(medium="tcp", address="127.0.0.1", tcp_port=server.port,
                            client_sap=1, timeout_s=1.0)
        got = await probe_dlms(target, clock=clock)
    assert got.findings.association == ("failed: refused (association refused: "
                                        "authentication mechanism name required (code 12))")
    assert got.device.identity.serial == "12345678"  # as the public client
