"""``ami-gateway demo``: simulated meters, the edge agent, the SQLite store and the portal.

Everything is real but the meters: they are Modbus TCP servers on loopback whose energy
registers follow a seeded load curve on an accelerated clock shared with the gateway.
One meter is a 16-bit pulse counter that wraps every 65.5 kWh (de-rollover at work)
and is swapped for a new meter halfway through (a meter exchange: the day shows as
incomplete, `ami-gateway audit --events` tells what happened); one drops off the bus
for a few hours every sixth day (the gap shows as estimated intervals on the graph);
one is a two-rate meter whose day register counts from 07:00 to 23:00 local time and
its night register the rest (the page stacks the two rates under their total).
Two more hang on a simulated RS-485 bus (Modbus RTU at 19,200 baud on a pseudo-terminal,
reached through the ``ttyRS485`` link in the data folder), read through one bus owner.
Two are DLMS/COSEM meters read from their load profiles: one over TCP (the IEC 62056-47
wrapper) with HLS-GMAC security, its keys in files of the data folder's ``keys/``
(never in the config), one on its own RS-485 line (HDLC on the ``ttyDLMS`` link). The
serial one goes silent at the same hours as DEMO-1002: when it answers again the
gateway reads the missed quarter-hours from the meter's memory, so its day stays
measured where DEMO-1002's shows estimates.
The config the demo runs with is written to the data folder, so every other command can
be tried on the demo's store.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from edge.agent import Agent
from edge.assembly import assemble
from gateway import log
from gateway.clock import ScaledClock
from gateway.demo_customers import DemoLogin, seed_customers
from gateway.demo_customers import api_config as customers_api_config
from gateway.drivers.dlms.keys import SecretBytes, SuiteKeys
from gateway.drivers.modbus.rtu import LineSettings
from gateway.errors import ConfigError
from gateway.profiles import load_profile, modbus_profiles
from gateway.settings import DEFAULT_PROFILES_DIR, load_config
from gateway.sim import (
    LoadShape,
    MeterSpec,
    RtuBus,
    SimulatedMeter,
    TariffSchedule,
    serve_meters,
    serve_rtu_bus,
)
from gateway.sim.dlms_link import DlmsServer, serve_dlms
from gateway.sim.dlms_objects import DlmsMeterSpec

TIMEZONE = "America/Chicago"
POLL_S = 300
#: Meter DEMO-1002 is unreachable on every sixth local day from 10:00 to 13:00.
OUTAGE_EVERY_DAYS, OUTAGE_HOURS = 6, (10, 13)
#: Meter DEMO-2001 is swapped for a new one at 10:00 on the middle day of the demo.
SERIAL_BEFORE, SERIAL_AFTER = 20_260_001, 20_260_777

_PULSE16 = """\
# Demo-only: a 16-bit Wh pulse counter in one holding register, like the S0 pulse
# inputs of many Modbus I/O modules. It wraps at 65,536 Wh, several times a week. Its
# serial number sits in holding registers 8-9: the gateway watches it for exchanges.
manufacturer = "Demo"
model = "S0 pulse counter, 16-bit"
source = "demo device: uint16 holding register 0 counts Wh and wraps at 2^16; serial at 8"
max_power_w = 11000
table = "holding"

[[points]]
channel = "1.0.1.8.0.255"
address = 0
type = "uint16"
unit = "Wh"
kind = "cumulative"
rollover = { bits = 16 }

[[points]]
channel = "1.0.16.7.0.255"
address = 1
type = "int16"
unit = "W"
kind = "instant"

[[points]]
channel = "0.0.96.1.0.255"
address = 8
type = "uint32"
unit = "count"
kind = "identity"
"""


_TWO_RATE = """\
# Demo-only: a made-up two-rate (day/night) meter, not a real device's register map (the
# bundled profiles in config/devices are real devices, each citing its register table).
# Its total active import and its two tariff registers are 32-bit Wh counters in
# holding registers; the meter switches tariffs by its own clock: tariff 1 (day rate)
# from 07:00 to 23:00 local time, tariff 2 (night rate) otherwise. Each register is
# its own channel (series); the total register is the sum of the two.
manufacturer = "Demo"
model = "Two-rate meter (day/night), 32-bit Wh registers"
source = "demo device: uint32 Wh holding registers: total 0, day 2, night 4; power 6; serial 8"
max_power_w = 15000
table = "holding"

[[points]]
channel = "1.0.1.8.0.255"
address = 0
type = "uint32"
unit = "Wh"
kind = "cumulative"
rollover = { bits = 32 }

[[points]]
channel = "1.0.1.8.1.255"
address = 2
type = "uint32"
unit = "Wh"
kind = "cumulative"
rollover = { bits = 32 }

[[points]]
channel = "1.0.1.8.2.255"
address = 4
type = "uint32"
unit = "Wh"
kind = "cumulative"
rollover = { bits = 32 }

[[points]]
channel = "1.0.16.7.0.255"
address = 6
type = "int32"
unit = "W"
kind = "instant"

[[points]]
channel = "0.0.96.1.0.255"
address = 8
type = "uint32"
unit = "count"
kind = "identity"
"""

#: DEMO-3001's tariff switch: day rate 07:00-23:00 local time, night rate otherwise.
TWO_RATE = TariffSchedule(tz=TIMEZONE, day_from_hour=7, day_to_hour=23)
#: DEMO-3001's daily usage checks (see [meters.rules] in the config the demo writes).
#: It uses about 70 kWh a day (an electric car charging in the evening): a few days in a
#: month go above this limit.
TWO_RATE_DAILY_HIGH_WH = 71_000


def _specs(profiles_dir: Path) -> list[MeterSpec]:
    profiles = modbus_profiles(profiles_dir)
    return [
        MeterSpec(meter_id="DEMO-1001", profile=profiles["eastron_sdm630"], seed=11,
                  start_energy_wh=48_215_300, serial=21_000_101,
                  shape=LoadShape(base_w=400, peak_w=5200, tz=TIMEZONE)),
        MeterSpec(meter_id="DEMO-1002", profile=profiles["eastron_sdm120"], seed=12,
                  start_energy_wh=7_902_410, serial=12_000_102,
                  shape=LoadShape(base_w=150, peak_w=2600, tz=TIMEZONE)),
        MeterSpec(meter_id="DEMO-1003", profile=profiles["eastron_sdm630"], seed=13,
                  start_energy_wh=152_004_000, serial=21_000_103,
                  shape=LoadShape(base_w=1800, peak_w=9000, tz=TIMEZONE)),
        MeterSpec(meter_id="DEMO-2001", profile=profiles["demo_pulse16"], seed=21,
                  start_energy_wh=61_000, serial=SERIAL_BEFORE,
                  shape=LoadShape(base_w=600, peak_w=6500, tz=TIMEZONE)),
        MeterSpec(meter_id="DEMO-3001", profile=profiles["demo_two_rate"], seed=31,
                  start_energy_wh=3_456_789, start_night_wh=1_234_567, serial=30_000_301,
                  tariffs=TWO_RATE,
                  shape=LoadShape(base_w=500, peak_w=7000, spike_permille=40, spike_w=3500,
                                  tz=TIMEZONE)),
    ]


#: The simulated RS-485 line of the RTU meters.
RTU_LINE = LineSettings(19200)


def _rtu_specs(profiles_dir: Path) -> list[MeterSpec]:
    """Meters on the simulated RS-485 bus, by unit id."""
    profiles = modbus_profiles(profiles_dir)
    return [
        MeterSpec(meter_id="DEMO-4001", profile=profiles["eastron_sdm630"], seed=41,
                  device_id=1, start_energy_wh=23_456_000, serial=21_000_401,
                  shape=LoadShape(base_w=700, peak_w=6000, tz=TIMEZONE)),
        MeterSpec(meter_id="DEMO-4002", profile=profiles["eastron_sdm120"], seed=42,
                  device_id=2, start_energy_wh=3_210_000, serial=12_000_402,
                  shape=LoadShape(base_w=120, peak_w=2200, tz=TIMEZONE)),
    ]


#: The DLMS meters' own RS-485 line (HDLC, 8N1).
DLMS_BAUD = 38400
#: DEMO-5001's security suite 0 keys, written to files under keys/ at each start.
_KEY_FILES = ("DEMO-5001.ek", "DEMO-5001.ak")


def _dlms_specs(keys: SuiteKeys) -> tuple[list[DlmsMeterSpec], list[DlmsMeterSpec]]:
    """(the TCP meter, the RS-485 meter): each keeps a 15-minute load profile."""
    tcp = DlmsMeterSpec("DEMO-5001", serial="50000501", seed=51, start_energy_wh=9_876_000,
                        time_zone=TIMEZONE, security="hls_gmac", keys=keys,
                        shape=LoadShape(base_w=300, peak_w=4800, tz=TIMEZONE),
                        tariffs=TWO_RATE)
    serial = DlmsMeterSpec("DEMO-5002", serial="50000502", seed=52,
                           start_energy_wh=4_321_000, time_zone=TIMEZONE,
                           shape=LoadShape(base_w=200, peak_w=3600, tz=TIMEZONE),
                           tariffs=TWO_RATE)
    return [tcp], [serial]


def _dlms_config(tcp: DlmsServer, line: DlmsServer) -> list[str]:
    common = [f"poll_interval_s = {POLL_S}",
              "catch_up_days = 1  # the demo's history starts with the demo",
              "# The demo's clock runs fast: a few ms of line time are minutes of it.",
              "clock_drift_warn_s = 900"]
    return [
        "", "[[meters]]", 'meter_id = "DEMO-5001"', 'profile = "dlms_generic_electricity"',
        'protocol = "dlms_tcp"', f'host = "{tcp.host}"', f"port = {tcp.ports['DEMO-5001']}",
        'security = "hls_gmac"  # keys in files, never in this config',
        f'encryption_key_file = "keys/{_KEY_FILES[0]}"',
        f'authentication_key_file = "keys/{_KEY_FILES[1]}"', *common,
        "", "[[meters]]", 'meter_id = "DEMO-5002"', 'profile = "dlms_generic_electricity"',
        'protocol = "dlms_serial"',
        f'port = "{line.path}"  # a link to the simulated line\'s pseudo-terminal',
        f"baudrate = {DLMS_BAUD}", *common,
    ]


def _write_keys(data_dir: Path) -> SuiteKeys:
    """Fresh random keys for DEMO-5001, readable by the owner only."""
    folder = data_dir / "keys"
    folder.mkdir(mode=0o700, exist_ok=True)
    values = []
    for name in _KEY_FILES:
        value = os.urandom(16)
        path = folder / name
        path.write_text(value.hex() + "\n")
        path.chmod(0o600)
        values.append(value)
    return SuiteKeys(encryption=SecretBytes(values[0]), authentication=SecretBytes(values[1]))


def _rtu_config(bus: RtuBus) -> list[str]:
    lines: list[str] = []
    for unit in (1, 2):
        meter = bus.meter(unit)
        assert isinstance(meter, SimulatedMeter)
        lines += [
            "", "[[meters]]", f'meter_id = "{meter.meter_id}"',
            f'profile = "{meter.profile.name}"', 'protocol = "modbus_rtu"',
            f'port = "{bus.path}"  # a link to the simulated bus\'s pseudo-terminal',
            f"baudrate = {RTU_LINE.baud}", f'parity = "{RTU_LINE.parity}"',
            f"unit_id = {unit}", f"poll_interval_s = {POLL_S}", "timeout_s = 1.0",
            "inter_request_ms = 0  # simulated meters need no pause between requests",
        ]
    return lines


def _config_text(meters: list[SimulatedMeter], port: int, bus: RtuBus,
                 dlms: tuple[DlmsServer, DlmsServer]) -> str:
    lines = [
        "# Written by `ami-gateway demo`: the config the demo runs with.",
        "[gateway]",
        'data_dir = "."',
        f'timezone = "{TIMEZONE}"',
        "interval_s = 900",
        'profiles_dir = "devices"',
        "",
        "[store]",
        'path = "store.db"',
        'synchronous = "NORMAL"  # a demo: survive a crash of the process, not power loss',
        "",
        "[api]",
        'host = "127.0.0.1"',
        f"port = {port}",
        *customers_api_config(),
        "",
        "[validation]",
        "# Simulated seconds: at x1440 a read lands within ~20 ms of real time of its tick.",
        "snap_tolerance_s = 30",
        "# DEMO-1002's 3-hour outages take the shape of the same weekday a week before",
        "# (ESPI 8) once there is one; the first stays an even spread (ESPI 9).",
        "reference_day_after_s = 7200",
    ]
    for m in meters:
        lines += [
            "", "[[meters]]", f'meter_id = "{m.meter_id}"', f'profile = "{m.profile.name}"',
            'protocol = "modbus_tcp"', f'host = "{m.host}"', f"port = {m.port}",
            f"unit_id = {m.device_id}", f"poll_interval_s = {POLL_S}", "timeout_s = 1.0",
            "inter_request_ms = 0  # simulated meters need no pause between requests",
        ]
        if m.spec.tariffs is not None:
            lines += ["[meters.rules]  # judged on complete local days in the daily view",
                      f"daily_high_wh = {TWO_RATE_DAILY_HIGH_WH}"]
    lines += _rtu_config(bus)
    lines += _dlms_config(*dlms)
    return "\n".join(lines) + "\n"


#: Marks a folder as the demo's own, so a later run may replace what it left there.
MARKER = ".ami-gateway-demo"


def _prepare(data_dir: Path) -> tuple[Path, Path]:
    """A fresh demo folder: the demo's own files from an earlier run are replaced.

    Only an empty folder or one an earlier demo marked is touched: ``--data-dir`` must
    never become a way to delete someone's store or device profiles.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()) and not (data_dir / MARKER).exists():
        raise ConfigError(
            f"{data_dir} is not empty and was not made by the demo", key="--data-dir",
            fix="give an empty or new folder (the default is demo-data/)",
        )
    (data_dir / MARKER).write_text("made by ami-gateway demo: replaced at each start\n")
    for name in ("store.db", "store.db-wal", "store.db-shm", "gateway.toml", "ttyRS485",
                 "ttyDLMS", "demo-login.txt"):
        (data_dir / name).unlink(missing_ok=True)
    shutil.rmtree(data_dir / "keys", ignore_errors=True)
    shutil.rmtree(data_dir / "dlms", ignore_errors=True)  # invocation counters
    devices = data_dir / "devices"
    shutil.rmtree(devices, ignore_errors=True)
    shutil.copytree(DEFAULT_PROFILES_DIR, devices)
    (devices / "demo_pulse16.toml").write_text(_PULSE16)
    (devices / "demo_two_rate.toml").write_text(_TWO_RATE)
    # Fail early if a demo profile is wrong.
    load_profile(devices / "demo_pulse16.toml")
    load_profile(devices / "demo_two_rate.toml")
    return data_dir, devices


async def _exchange(meters: list[SimulatedMeter], clock: ScaledClock, at: datetime) -> None:
    """An installer swaps DEMO-2001: a new serial number, its register starting near zero."""
    await clock.sleep_until(at)
    meter = next(m for m in meters if m.meter_id == "DEMO-2001")
    meter.exchange(serial=SERIAL_AFTER, start_energy_wh=12, at=clock.now())


async def _outages(meters: list[SimulatedMeter], clock: ScaledClock, start: date,
                   dlms: DlmsServer) -> None:
    """Takes DEMO-1002 and DEMO-5002 off their lines for three hours on every sixth
    local day."""
    target = next(m for m in meters if m.meter_id == "DEMO-1002")
    dlms_meter = dlms.meter("DEMO-5002")
    tz = ZoneInfo(TIMEZONE)
    while True:
        local = clock.now().astimezone(tz)
        day_n = (local.date() - start).days
        silent = day_n % OUTAGE_EVERY_DAYS == OUTAGE_EVERY_DAYS - 1 and \
            OUTAGE_HOURS[0] <= local.hour < OUTAGE_HOURS[1]
        target.set_silent(silent)
        dlms_meter.silent(silent)
        await asyncio.sleep(0.05)


def _view(agent: Agent, clock: ScaledClock, url: str, data_dir: Path,
          login: DemoLogin) -> Group:
    tz = ZoneInfo(TIMEZONE)
    now = clock.now().astimezone(tz)
    head = Text.assemble(
        ("ami-gateway demo", "bold"), f"  simulated time {now:%Y-%m-%d %H:%M %Z} "
        f"(x{clock.speed:g})   portal ", (url, "bold cyan"), "   Ctrl-C stops",
    )
    sign_in = Text.assemble(
        "sign in as ", (login.email, "bold"), " with password ", (login.password, "bold"),
        f"   (account {login.unlinked_account}, last payment {login.unlinked_payment}, "
        "is left to link from the page)")
    table = Table(expand=False)
    for col in ("meter", "device", "status", "last read (local)", "energy register",
                "reads", "intervals", "failed polls"):
        table.add_column(col, justify="right" if col in {"reads", "intervals",
                                                           "failed polls"} else "left")
    for p in agent.pollers:
        s = p.stats
        status = Text("failing", "red") if s.failing else Text("ok", "green") if s.readings \
            else Text("waiting", "yellow")
        last = s.last_read_at.astimezone(tz).strftime("%m-%d %H:%M") if s.last_read_at else "-"
        energy = s.last_values.get("1.0.1.8.0.255", "-")
        table.add_row(s.meter_id, s.device, status, last, energy, f"{s.readings:,}",
                      f"{s.intervals:,}", f"{s.failed_polls:,}")
    foot = Text(f"store {data_dir / 'store.db'}   config {data_dir / 'gateway.toml'}   "
                f"logs {data_dir / 'gateway.log'}", style="dim")
    return Group(head, sign_in, table, foot)


async def run_demo(*, port: int, speed: float, data_dir: Path, days: int) -> None:
    data_dir, devices = await asyncio.to_thread(_prepare, data_dir)
    log_file = await asyncio.to_thread((data_dir / "gateway.log").open, "a")
    with log_file:
        log.configure("json", "info", stream=log_file)
        tz = ZoneInfo(TIMEZONE)
        first_day = datetime.now(tz).date() - timedelta(days=days)
        start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=tz)
        clock = ScaledClock(start.astimezone(UTC), speed)
        keys = await asyncio.to_thread(_write_keys, data_dir)
        dlms_tcp, dlms_line = _dlms_specs(keys)
        async with serve_meters(_specs(devices), clock) as meters, \
                serve_rtu_bus(_rtu_specs(devices), clock, RTU_LINE,
                              link=data_dir / "ttyRS485") as bus, \
                serve_dlms(dlms_tcp, clock, medium="tcp") as dlms_server, \
                serve_dlms(dlms_line, clock, medium="pty", baud=DLMS_BAUD,
                           link=data_dir / "ttyDLMS") as dlms_bus:
            config = data_dir / "gateway.toml"
            await asyncio.to_thread(config.write_text,
                                    _config_text(meters, port, bus, (dlms_server, dlms_bus)))
            login = await seed_customers(data_dir, data_dir / "store.db", first_day)
            agent = Agent(assemble(load_config(config)), clock)
            url = f"http://127.0.0.1:{port}/"
            console = Console()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(agent.run(), name="agent")
                tg.create_task(_outages(meters, clock, first_day, dlms_bus), name="outages")
                middle = first_day + timedelta(days=max(days // 2, 1))
                swap_at = datetime(middle.year, middle.month, middle.day, 10, tzinfo=tz)
                tg.create_task(_exchange(meters, clock, swap_at.astimezone(UTC)),
                               name="exchange")
                with Live(_view(agent, clock, url, data_dir, login), console=console,
                          refresh_per_second=4, transient=False) as live:
                    while True:
                        await asyncio.sleep(0.25)
                        live.update(_view(agent, clock, url, data_dir, login))
