"""Gateway configuration: TOML validated into frozen pydantic models.

Every problem is reported at once, each naming the file, the key path and the fix.
Relative paths in a config file are relative to that file. Secrets never live in the
file: protocols that need credentials take a key ending in ``_env`` (an environment
variable) or ``_file`` (a file to read).
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config_checks import Fixable, read_secret, repeated
from gateway.drivers.mqtt.config import MqttInput
from gateway.errors import ConfigError
from gateway.model import Unit
from gateway.profiles import PROFILES_DIR
from gateway.settings_ingest import IngestSection
from gateway.settings_mqtt import MqttSection
from gateway.settings_notify import NotifySection
from gateway.settings_sinks import OutboxSection, SinkConfig
from gateway.workarounds import TcpWorkarounds, Workarounds, workaround_fix

DEFAULT_PROFILES_DIR = PROFILES_DIR


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name such as 'America/Chicago'"
        ) from exc
    return name


class GatewaySection(_Model):
    #: Where the gateway keeps its store and state (relative to the config file).
    data_dir: Path = Path("data")
    #: The utility's timezone: daily usage is summed over its local day.
    timezone: Annotated[str, Field(min_length=1)] = "UTC"
    #: Length of stored intervals; must divide a day.
    interval_s: Literal[300, 600, 900, 1800, 3600] = 900
    #: Folder of device profiles (``*.toml``); the bundled ones by default.
    profiles_dir: Path | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    _tz = field_validator("timezone")(_timezone)


class StoreSection(_Model):
    kind: Literal["sqlite"] = "sqlite"
    #: SQLite file, relative to data_dir.
    path: Path = Path("store.db")
    #: FULL survives power loss (billing data); NORMAL survives a crash of the process.
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"


class ApiSection(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    #: The operator token (corrections, audit trail) comes from this environment
    #: variable or this file; with neither, the operator routes are off.
    operator_token_env: str | None = None
    operator_token_file: Path | None = None
    #: Where the portal reads intervals and daily usage: the local store ("sqlite"), or
    #: the name of an InfluxDB sink (the production store the outbox delivers to).
    backend: Annotated[str, Field(min_length=1)] = "sqlite"
    #: Customer logins and accounts (gateway.api.access): every meter route then takes
    #: the operator token or a customer session, and a customer sees only the meters and
    #: days of their linked billing accounts. Off, the feed routes stay open (behind a
    #: proxy) as before.
    customers: bool = False


class RulesSection(_Model):
    """Optional VEE rules (all off by default). Under [validation.rules] they apply to
    every meter; under a meter's [meters.rules] they override those keys for it."""

    #: An interval above this demand (W x its length) is a SPIKE.
    demand_high_w: Annotated[int, Field(gt=0)] | None = None
    #: An interval above this factor x the mean of the previous spike_window intervals
    #: (and above spike_floor_wh) is a SPIKE.
    spike_factor: Annotated[Decimal, Field(ge=1)] | None = None
    spike_window: Annotated[int, Field(ge=1)] = 4
    spike_floor_wh: Annotated[int, Field(ge=0)] = 100
    #: The Nth consecutive zero interval and every further one are a ZERO_RUN.
    zero_run_intervals: Annotated[int, Field(ge=1)] | None = None
    #: A read repeating the meter's previous timestamp is FROZEN (meters that stamp reads).
    frozen_register: bool = False
    #: Daily usage checks, judged on complete local days of the meter's active import
    #: (total and tariff registers) when the daily view is built: a day above
    #: daily_high_wh is "daily_high", below daily_low_wh "daily_low"; a day above
    #: daily_history_factor x the mean of the previous daily_history_days complete days
    #: is "daily_history_high", below the mean / factor "daily_history_low".
    daily_high_wh: Annotated[int, Field(gt=0)] | None = None
    daily_low_wh: Annotated[int, Field(gt=0)] | None = None
    daily_history_factor: Annotated[Decimal, Field(gt=1)] | None = None
    daily_history_days: Annotated[int, Field(ge=1, le=60)] = 7


#: The keys of RulesSection judged on daily rollups (gateway.validation.daily), not by
#: the interval rules of a series' ValidationStage.
DAILY_RULE_KEYS = frozenset(
    {"daily_high_wh", "daily_low_wh", "daily_history_factor", "daily_history_days"})


class ValidationSection(_Model):
    #: A read this close to an interval boundary counts as a read at the boundary.
    snap_tolerance_s: Annotated[float, Field(ge=0, le=60)] = 5.0
    #: Reads further apart than this are a gap: intervals between them are estimates.
    max_gap_s: Annotated[int, Field(gt=0)] = 1800
    #: A timestamp this far past the gateway clock is flagged as in the future.
    future_tolerance_s: Annotated[int, Field(ge=0)] = 120
    #: Gaps at least this long (s) take the shape of a reference day instead of an even
    #: spread (ESPI code 8 instead of 9); unset: every gap is spread evenly.
    reference_day_after_s: Annotated[int, Field(gt=0)] | None = None
    #: The reference: the same weekday a week before (then two...), or the day before.
    reference_day: Literal["same_weekday", "previous_day"] = "same_weekday"
    #: How many earlier days to try, nearest first, for one that is fully measured.
    reference_candidates: Annotated[int, Field(ge=1, le=8)] = 4
    #: How long a gap stays open to late reads (a catch-up) that replace its estimates.
    backfill_window_days: Annotated[int, Field(ge=0, le=400)] = 35
    rules: RulesSection = RulesSection()


class _PolledMeter(_Model):
    """What every polled meter has, whatever protocol carries its requests."""

    meter_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    #: A device profile name: the file stem in the profiles folder (e.g. ``eastron_sdm630``).
    profile: Annotated[str, Field(min_length=1)]
    poll_interval_s: Annotated[float, Field(gt=0, le=86400)] = 60.0
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    #: False for a meter whose data is not billed (a sub-meter for analysis): its
    #: polling pauses when the outbox passes [outbox] pause_depth.
    billing: bool = True
    #: Overrides the gateway timezone for this meter's local day.
    timezone: str | None = None
    #: Channels to store intervals for; by default every cumulative channel.
    channels: list[str] | None = None
    #: Overrides the profile's maximum rating (rollover plausibility, over-max rule).
    max_power_w: Annotated[int, Field(gt=0)] | None = None
    #: Overrides of [validation.rules] for this meter (only the keys given).
    rules: RulesSection | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _timezone(v)


class _ModbusMeter(_PolledMeter):
    """A meter read with Modbus requests, whatever link carries them."""

    unit_id: Annotated[int, Field(ge=1, le=247)] = 1
    #: Overrides the profile's pause between two requests to this device (ms).
    inter_request_ms: Annotated[int, Field(ge=0, le=10_000)] | None = None
    #: A read the device refuses as busy (exception 6, or 5: still working) is tried
    #: again up to busy_retries times in the same poll, busy_retry_ms apart, before the
    #: poll fails; 0 fails it at once. No other failure is retried within a poll.
    busy_retries: Annotated[int, Field(ge=0, le=5)] = 2
    busy_retry_ms: Annotated[int, Field(ge=1, le=5_000)] = 100


class MeterConfig(_ModbusMeter):
    """A Modbus TCP meter (or a Modbus TCP gateway's unit)."""

    protocol: Literal["modbus_tcp"] = "modbus_tcp"
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    #: Device quirks (see gateway.workarounds); all off by default.
    workarounds: TcpWorkarounds = TcpWorkarounds()


class _SerialLine(_ModbusMeter):
    """An RTU meter: its line's character format, and its own timing."""

    #: The line's speed; every meter on one port must agree.
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    #: N, E or O; even by default, as the Modbus serial line spec asks.
    parity: Literal["N", "E", "O"] = "E"
    #: 1 or 2; unset: 1 with parity, 2 without (the spec's 11-bit character).
    stopbits: Literal[1, 2] | None = None
    #: Overrides the profile's turnaround (ms): the planner weighs it against gap reads.
    turnaround_ms: Annotated[int, Field(ge=0, le=60_000)] | None = None
    #: Device quirks (see gateway.workarounds); all off by default.
    workarounds: Workarounds = Workarounds()

    def line_key(self) -> tuple[int, str, int | None]:
        return (self.baudrate, self.parity, self.stopbits)


class RtuMeterConfig(_SerialLine):
    """A Modbus RTU meter on a local serial port (RS-485 adapter); meters naming the same
    port share one bus."""

    protocol: Literal["modbus_rtu"]
    #: The serial port: ``/dev/ttyUSB0``, or better a stable ``/dev/serial/by-id/...`` name.
    port: Annotated[str, Field(min_length=1)]


class RtuTcpMeterConfig(_SerialLine):
    """A Modbus RTU meter behind a serial device server (RTU frames over TCP); meters
    naming the same host and port share one bus. ``baudrate`` is the serial side's."""

    protocol: Literal["modbus_rtu_tcp"]
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 4001


#: Every meter read with Modbus requests.
ModbusMeterConfig = MeterConfig | RtuMeterConfig | RtuTcpMeterConfig


_Fixable = Fixable


#: Keys that would hold a DLMS secret itself; each has an ``_env`` and a ``_file`` form.
DLMS_SECRET_KEYS = ("password", "encryption_key", "authentication_key")
_SECURITY_KEYS: dict[str, tuple[str, ...]] = {
    "lls": ("password",), "hls_gmac": ("encryption_key", "authentication_key")}
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _DlmsMeter(_PolledMeter):
    """A DLMS/COSEM meter: its association (client, server, security) and HDLC link.

    Secrets never live in the file: each comes from an environment variable (``_env``)
    or a file (``_file``, relative to the config file); see ``gateway.dlms_secrets``.
    """

    #: Per exchange: an HDLC frame's reply, a wrapper APDU's reply.
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    #: The client SAP; None: 16 (the public client) with security "none", else 1 (the
    #: management client).
    client_sap: Annotated[int, Field(ge=1, le=127)] | None = None
    #: The server's logical device (1: the management logical device).
    server_logical: Annotated[int, Field(ge=0, le=0x3FFF)] = 1
    #: none: the public client; lls: a password; hls_gmac: security suite 0 (AES-GCM-128).
    security: Literal["none", "lls", "hls_gmac"] = "none"
    password_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    password_file: Path | None = None
    encryption_key_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    encryption_key_file: Path | None = None
    authentication_key_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    authentication_key_file: Path | None = None
    #: Our own 8-byte system title as 16 hex digits; unset: derived from meter_id.
    system_title: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{16}$")] | None = None
    #: What we propose in SNRM (the meter's UA decides what holds).
    max_info_length: Annotated[int, Field(ge=32, le=2030)] = 2030
    window: Annotated[int, Field(ge=1, le=7)] = 7
    #: HDLC polls of one frame before the exchange is a timeout.
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    #: Overrides the profile's load_profile.catch_up_days.
    catch_up_days: Annotated[int, Field(ge=1, le=400)] | None = None
    #: The meter's clock further than this from ours is logged as a warning.
    clock_drift_warn_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    #: How the meter signs the date-time deviation: "blue_book" (UTC - local, in
    #: minutes: CET is -60) as the standard says, or "iso" (local - UTC: CET +60), as
    #: some meters do (Gurux calls it UseUtc2NormalTime). Wrong, every time is off by
    #: twice the offset.
    deviation_sign: Literal["blue_book", "iso"] = "blue_book"

    @model_validator(mode="after")
    def _secrets_match_the_security(self) -> _DlmsMeter:
        needed = _SECURITY_KEYS.get(self.security, ())
        for name in DLMS_SECRET_KEYS:
            env, file = getattr(self, f"{name}_env"), getattr(self, f"{name}_file")
            if name not in needed:
                if env is not None or file is not None:
                    key = f"{name}_env" if env is not None else f"{name}_file"
                    wanted = "lls" if name == "password" else "hls_gmac"
                    raise _Fixable(f"security {self.security!r} uses no {name}",
                                   f'remove it, or set security = "{wanted}"', key)
                continue
            if env is None and file is None:
                raise _Fixable(f"security {self.security!r} needs the {name.replace('_', ' ')}",
                               f"give {name}_env (an environment variable) or {name}_file "
                               "(a file holding it)", f"{name}_env")
            if env is not None and file is not None:
                raise _Fixable(f"both {name}_env and {name}_file are given",
                               "keep one of them", f"{name}_file")
        return self

    @property
    def client_address(self) -> int:
        """The client SAP in use (``client_sap``, else by the security)."""
        if self.client_sap is not None:
            return self.client_sap
        return 16 if self.security == "none" else 1


class DlmsTcpMeterConfig(_DlmsMeter):
    """A DLMS meter over TCP: the IEC 62056-47 wrapper, or HDLC frames (a serial device
    server or a meter's own HDLC-over-TCP port)."""

    protocol: Literal["dlms_tcp"]
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 4059
    framing: Literal["wrapper", "hdlc"] = "wrapper"


class DlmsSerialMeterConfig(_DlmsMeter):
    """A DLMS meter on RS-485 (HDLC). Meters naming the same port share it (multidrop),
    each with its own server_physical, all at one baudrate."""

    protocol: Literal["dlms_serial"]
    port: Annotated[str, Field(min_length=1)]
    baudrate: Literal[300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    #: The HDLC lower (physical) address; None: a one-byte server address.
    server_physical: Annotated[int, Field(ge=0, le=0x3FFD)] | None = None


class DlmsOpticalMeterConfig(_DlmsMeter):
    """A DLMS meter through an optical probe: IEC 62056-21 mode E sign-on, then HDLC."""

    protocol: Literal["dlms_optical"]
    port: Annotated[str, Field(min_length=1)]
    #: The highest baud the meter's proposal is accepted at (mode E: 300-19200).
    max_baud: Literal[300, 600, 1200, 2400, 4800, 9600, 19200] = 9600
    #: The device address of the sign-on request (/?address!); empty: any meter.
    device_address: Annotated[str, Field(max_length=32, pattern=r"^[0-9A-Za-z ]*$")] = ""
    #: The HDLC lower (physical) address; None: a one-byte server address.
    server_physical: Annotated[int, Field(ge=0, le=0x3FFD)] | None = None


#: Every DLMS meter.
DlmsMeterConfig = DlmsTcpMeterConfig | DlmsSerialMeterConfig | DlmsOpticalMeterConfig
#: Every meter the gateway polls.
PolledMeterConfig = ModbusMeterConfig | DlmsMeterConfig


#: Units a typed-in register counts in (the energy registers a customer can read).
RegisterUnit = Literal["Wh", "kWh", "MWh", "varh", "kvarh", "VAh", "kVAh"]


class ManualRegister(_Model):
    """One register of a manual meter, as its dials show it."""

    #: OBIS code of the register (1.0.1.8.0.255: total active import; .1/.2 day/night).
    channel: Annotated[str, Field(min_length=1)] = "1.0.1.8.0.255"
    unit: RegisterUnit = "kWh"
    #: Number of dials (digits shown): the register wraps at 10^(digits - decimals)
    #: units (5 dials: 99999 -> 00000). None: it never wraps.
    digits: Annotated[int, Field(ge=1, le=15)] | None = None
    #: How many of the dials are after the decimal point (99999.9: digits 6, decimals 1).
    decimals: Annotated[int, Field(ge=0, le=6)] = 0

    @model_validator(mode="after")
    def _coherent(self) -> ManualRegister:
        if self.digits is not None and self.decimals >= self.digits:
            raise _Fixable("decimals must be fewer than digits",
                           "count the decimal dials among the register's digits")
        if self.digits is None and self.decimals:
            raise _Fixable("decimals goes with digits", "give digits (the number of dials)")
        return self

    @property
    def register_unit(self) -> Unit:
        return Unit(self.unit)

    @property
    def modulus(self) -> Decimal | None:
        """Where the register wraps, in its unit; None when it never does."""
        if self.digits is None:
            return None
        return Decimal(10) ** (self.digits - self.decimals)


class ManualMeterConfig(_Model):
    """A meter nobody polls: its register readings are typed in (customer self-reads).

    It declares its registers itself instead of naming a device profile. Its series
    use the gateway's interval grid like every other series; see ``edge.assembly``.
    """

    meter_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    protocol: Literal["manual"]
    #: The meter's maximum rating in W: what a reading may plausibly rise by (and wrap by)
    #: since the previous one. Required: typed-in digits need a bound.
    max_power_w: Annotated[int, Field(gt=0)]
    registers: Annotated[list[ManualRegister], Field(min_length=1)] = [ManualRegister()]
    #: Overrides the gateway timezone for this meter's local day and submission windows.
    timezone: str | None = None
    #: Overrides of [validation.rules] for this meter (only the keys given).
    rules: RulesSection | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _timezone(v)

    @field_validator("registers")
    @classmethod
    def _distinct(cls, registers: list[ManualRegister]) -> list[ManualRegister]:
        twice = repeated(r.channel for r in registers)
        if twice:
            raise _Fixable(f"channel {twice[0]!r} appears twice",
                           "give each register its own channel")
        return registers


class MqttMeterConfig(MqttInput):
    """A meter that publishes its readings to the [mqtt] broker: ``topic``, ``codec``,
    ``codec_options`` and ``qos`` say where and how (``gateway.drivers.mqtt.config``)."""

    meter_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    protocol: Literal["mqtt"]
    #: The meter's maximum rating in W: what a reading may plausibly rise by since the
    #: previous one. Required: nothing polls the device to learn it.
    max_power_w: Annotated[int, Field(gt=0)]
    #: Cumulative channels to store intervals for; by default every cumulative channel
    #: of the codec's mapping.
    channels: list[str] | None = None
    #: The register unit of a stored channel whose unit the payload gives (unit_path).
    units: dict[str, RegisterUnit] = Field(default_factory=dict)
    billing: bool = True
    timezone: str | None = None
    #: Overrides of [validation.rules] for this meter (only the keys given).
    rules: RulesSection | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _timezone(v)


class SelfReadWindow(_Model):
    """Local days of each month on which self-reads are taken: the last ``last_days``
    days of the month, or days ``from_day`` to ``to_day`` (over the month end when
    from_day > to_day; a day past the month's end means its last day)."""

    last_days: Annotated[int, Field(ge=1, le=28)] | None = None
    from_day: Annotated[int, Field(ge=1, le=31)] | None = None
    to_day: Annotated[int, Field(ge=1, le=31)] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> SelfReadWindow:
        ranged = self.from_day is not None or self.to_day is not None
        if (self.last_days is None) == (not ranged) or (
                ranged and (self.from_day is None or self.to_day is None)):
            raise _Fixable("give either last_days, or from_day and to_day",
                           "e.g. { last_days = 7 } or { from_day = 1, to_day = 5 }")
        return self


class SelfReadsSection(_Model):
    """Customer self-reads (manual meters). Windows are judged on the local date of the
    submission, in the meter's timezone (else the gateway's)."""

    #: When self-reads are taken; empty: any day.
    windows: list[SelfReadWindow] = []
    #: A self-read is a current reading: one stamped longer ago than this is refused.
    max_age_days: Annotated[int, Field(ge=1, le=3660)] = 35


def _protocol(meter: Any) -> str:
    """Which meter model a [[meters]] entry is: by its protocol, modbus_tcp if none."""
    protocol = meter.get("protocol", "modbus_tcp") if isinstance(meter, dict) else getattr(
        meter, "protocol", "modbus_tcp")
    return protocol if isinstance(protocol, str) else repr(protocol)


#: The protocols a meter may name, each with its model (the tag pydantic reports).
METER_PROTOCOLS = ("modbus_tcp", "modbus_rtu", "modbus_rtu_tcp", "dlms_tcp", "dlms_serial",
                   "dlms_optical", "manual", "mqtt")
AnyMeter = PolledMeterConfig | ManualMeterConfig | MqttMeterConfig
_MeterEntry = Annotated[
    Annotated[MeterConfig, Tag("modbus_tcp")] | Annotated[RtuMeterConfig, Tag("modbus_rtu")]
    | Annotated[RtuTcpMeterConfig, Tag("modbus_rtu_tcp")]
    | Annotated[DlmsTcpMeterConfig, Tag("dlms_tcp")]
    | Annotated[DlmsSerialMeterConfig, Tag("dlms_serial")]
    | Annotated[DlmsOpticalMeterConfig, Tag("dlms_optical")]
    | Annotated[ManualMeterConfig, Tag("manual")]
    | Annotated[MqttMeterConfig, Tag("mqtt")],
    Discriminator(_protocol),
]


def _bus_problems(meters: list[AnyMeter]) -> None:
    """Meters on one serial line must agree on its format and have distinct unit ids."""
    first: dict[tuple[str, str], tuple[int, _SerialLine]] = {}
    units: dict[tuple[str, str, int], int] = {}
    for i, meter in enumerate(meters):
        if isinstance(meter, RtuMeterConfig):
            bus = ("port", meter.port)
        elif isinstance(meter, RtuTcpMeterConfig):
            bus = ("device server", f"{meter.host}:{meter.port}")
        else:
            continue
        where = f"meters[{i}](meter_id={meter.meter_id})"
        seen = first.setdefault(bus, (i, meter))
        j, other = seen
        if other.line_key() != meter.line_key():
            raise _Fixable(
                f"{where} is on {bus[0]} {bus[1]} at baudrate {meter.baudrate}, parity "
                f"{meter.parity}, stopbits {meter.stopbits or 'default'}, but "
                f"meters[{j}](meter_id={other.meter_id}) on the same line says "
                f"{other.baudrate}, {other.parity}, {other.stopbits or 'default'}",
                "one line has one format: give every meter on it the same baudrate, parity "
                "and stopbits (the meters' own settings must match too)")
        clash = units.setdefault((*bus, meter.unit_id), i)
        if clash != i:
            raise _Fixable(
                f"{where} has unit_id {meter.unit_id}, like meters[{clash}] on the same "
                f"{bus[0]} {bus[1]}", "give each meter on one bus its own unit_id (set on "
                "the meter's display or by its installer)")


def _port_problems(meters: list[AnyMeter]) -> None:
    """A serial port carries one protocol. DLMS meters sharing an RS-485 port (multidrop)
    agree on its baudrate and each has its own server_physical; an optical probe faces
    one meter."""
    first: dict[str, tuple[int, AnyMeter]] = {}
    addresses: dict[tuple[str, int], int] = {}
    for i, meter in enumerate(meters):
        if not isinstance(meter, RtuMeterConfig | DlmsSerialMeterConfig | DlmsOpticalMeterConfig):
            continue
        where = f"meters[{i}](meter_id={meter.meter_id})"
        j, other = first.setdefault(meter.port, (i, meter))
        if j == i:
            continue
        there = f"meters[{j}](meter_id={other.meter_id})"
        if isinstance(meter, DlmsOpticalMeterConfig) or isinstance(other, DlmsOpticalMeterConfig):
            raise _Fixable(f"{where} names port {meter.port}, the optical probe of {there}",
                           "an optical probe reads the one meter it is held to: give each "
                           "meter its own port")
        if meter.protocol != other.protocol:
            raise _Fixable(f"{where} ({meter.protocol}) names port {meter.port}, which "
                           f"{there} reads with {other.protocol}",
                           "one RS-485 line carries one protocol: put the Modbus and the "
                           "DLMS meters on separate ports")
        if not isinstance(meter, DlmsSerialMeterConfig) or \
                not isinstance(other, DlmsSerialMeterConfig):
            continue  # Modbus RTU lines: _bus_problems
        if meter.baudrate != other.baudrate:
            raise _Fixable(f"{where} is on port {meter.port} at {meter.baudrate} baud, but "
                           f"{there} on the same line says {other.baudrate}",
                           "one line has one speed: give every meter on it the same baudrate "
                           "(the meters' own settings must match too)")
        for k, m in ((j, other), (i, meter)):
            if m.server_physical is None:
                raise _Fixable(f"meters[{k}](meter_id={m.meter_id}) shares port {m.port} "
                               "with other DLMS meters but has no server_physical",
                               "set server_physical (the meter's HDLC physical address, "
                               "often derived from its serial number) on every meter of "
                               "the line")
            clash = addresses.setdefault((m.port, m.server_physical), k)
            if clash != k:
                raise _Fixable(f"meters[{k}](meter_id={m.meter_id}) has server_physical "
                               f"{m.server_physical}, like meters[{clash}] on port {m.port}",
                               "give each meter on one line its own server_physical")


class Settings(_Model):
    gateway: GatewaySection = GatewaySection()
    store: StoreSection = StoreSection()
    api: ApiSection = ApiSection()
    validation: ValidationSection = ValidationSection()
    self_reads: SelfReadsSection = SelfReadsSection()
    meters: list[_MeterEntry] = []
    #: Where stored intervals are delivered besides the local store (the outbox).
    sinks: list[SinkConfig] = []
    outbox: OutboxSection = OutboxSection()
    #: The central ingest (``ami-gateway ingest``): broker, share group, batching, target.
    ingest: IngestSection = IngestSection()
    #: The broker MQTT meters publish to; required when there are MQTT meters.
    mqtt: MqttSection | None = None
    #: The SMTP server usage notifications go out through; none are sent without it.
    notify: NotifySection | None = None

    @model_validator(mode="after")
    def _portal_backend(self) -> Settings:
        names = [s.name for s in self.sinks if s.kind == "influxdb"]
        if self.api.backend != "sqlite" and self.api.backend not in names:
            raise _Fixable(f"api.backend {self.api.backend!r} is neither \"sqlite\" nor an "
                           "InfluxDB sink", "use \"sqlite\" or the name of a [[sinks]] entry "
                           "of kind \"influxdb\": "
                           + (", ".join(names) or "none is configured"), "api.backend")
        return self

    @model_validator(mode="after")
    def _mqtt_broker(self) -> Settings:
        if self.mqtt is None and any(isinstance(m, MqttMeterConfig) for m in self.meters):
            raise _Fixable("MQTT meters are configured but no broker to subscribe to",
                           'add an [mqtt] section: host = "..." (and port, tls, username, '
                           "password_env as the broker needs)", "mqtt")
        return self

    @field_validator("sinks")
    @classmethod
    def _sink_names(cls, sinks: list[SinkConfig]) -> list[SinkConfig]:
        twice = repeated(s.name for s in sinks)
        if twice:
            raise _Fixable(f"sink name {twice[0]!r} appears twice",
                           "give each sink its own name = \"...\"")
        return sinks

    @field_validator("meters")
    @classmethod
    def _unique(cls, meters: list[AnyMeter]) -> list[AnyMeter]:
        seen: set[str] = set()
        for m in meters:
            if m.meter_id in seen:
                raise ValueError(f"meter_id {m.meter_id!r} appears twice; meter ids are unique")
            seen.add(m.meter_id)
        _bus_problems(meters)
        _port_problems(meters)
        return meters

    def timezone_of(self, meter: AnyMeter) -> str:
        return meter.timezone or self.gateway.timezone


class LoadedConfig(_Model):
    """Settings plus where they came from, with relative paths resolved."""

    file: Path
    settings: Settings
    data_dir: Path
    store_path: Path
    profiles_dir: Path

    def operator_token(self) -> str | None:
        """The operator token, read from where the config points; None if none is set."""
        api = self.settings.api
        return read_secret(config_file=self.file, key="api.operator_token",
                           env=api.operator_token_env or None,
                           file=api.operator_token_file, what="a long random token")


class ConfigInvalid(ConfigError):
    """Several problems in one file; ``problems`` holds each as its own ConfigError."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


_FIXES = {
    "extra_forbidden": "remove it or correct its spelling",
    "missing": "add this key",
    "literal_error": "use one of the values listed",
    "int_parsing": "give a whole number",
    "int_type": "give a whole number",
    "float_parsing": "give a number",
    "bool_parsing": "give true or false",
    "bool_type": "give true or false",
    "string_type": "give a quoted string",
    "string_pattern_mismatch": "use letters, digits and . _ : - only",
    "greater_than": "give a larger value",
    "greater_than_equal": "give a larger value",
    "less_than_equal": "give a smaller value",
    "list_type": "give a list, e.g. [\"a\", \"b\"]",
}


def key_path(loc: tuple[int | str, ...], data: Any = None) -> str:
    """``("meters", 2, "port")`` -> ``meters[2].port``, naming the meter when known."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and "meter_id" in node:
                out += f"(meter_id={node['meter_id']})"
        else:
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, dict) else None
    return out


#: The tags pydantic puts after ``meters[i]`` / ``sinks[i]`` (the union's discriminator).
_TAGS = {"meters": METER_PROTOCOLS, "sinks": ("influxdb", "mqtt_uplink")}


def _untagged(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The key path without the meter model's tag pydantic puts after ``meters[i]``."""
    return tuple(part for i, part in enumerate(loc)
                 if not (i >= 2 and isinstance(loc[i - 1], int)
                         and part in _TAGS.get(str(loc[i - 2]), ())))


def _manual_fix(kind: str, key: str, fix: str) -> str:
    polled = {*MeterConfig.model_fields, *RtuMeterConfig.model_fields,
              *RtuTcpMeterConfig.model_fields, *DlmsTcpMeterConfig.model_fields,
              *DlmsSerialMeterConfig.model_fields, *DlmsOpticalMeterConfig.model_fields}
    if kind == "extra_forbidden" and key in polled:
        return ("a manual meter is not polled and has no device profile: remove it, or set "
                'protocol = "modbus_tcp"')
    if kind == "missing" and key == "max_power_w":
        return ("set max_power_w to the meter's maximum rating in W: self-reads are judged "
                "by it (e.g. 24000 for a 100 A, 240 V service)")
    return fix


def _mqtt_fix(kind: str, key: str, fix: str) -> str:
    if kind == "extra_forbidden" and key in ("profile", "host", "port", "poll_interval_s"):
        return ("an MQTT meter is not polled: it names its topic and codec; the broker is "
                "the [mqtt] section")
    if kind == "missing" and key == "max_power_w":
        return ("set max_power_w to the meter's maximum rating in W: readings are judged by "
                "it (e.g. 24000 for a 100 A, 240 V service)")
    return fix


def problems_of(exc: ValidationError, file: Path, data: Any) -> list[ConfigError]:
    problems = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        fix = _FIXES.get(err["type"], "see the configuration reference in the README")
        loc = _untagged(err["loc"])
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, _Fixable):
            fix = cause.fix
            if cause.key:
                loc = (*loc, cause.key)
        if err["type"] == "union_tag_invalid" and loc[:1] == ("sinks",):
            loc = (*loc, "kind")
            msg = f"no sink kind {err['ctx']['tag']}"
            fix = f"use one of: {', '.join(_TAGS['sinks'])}"
        elif err["type"] == "union_tag_invalid":  # an unknown [[meters]] protocol
            loc = (*loc, "protocol")
            msg = f"no meter protocol {err['ctx']['tag']}"
            fix = f"use one of: {', '.join(METER_PROTOCOLS)}"
        elif "manual" in err["loc"][2:3]:
            fix = _manual_fix(err["type"], str(loc[-1]), fix)
        elif "mqtt" in err["loc"][2:3]:
            fix = _mqtt_fix(err["type"], str(loc[-1]), fix)
        elif err["type"] == "extra_forbidden" and loc[-1] in (*DLMS_SECRET_KEYS, "token"):
            msg = "a secret is never written into the config file"
            fix = (f"remove it: give {loc[-1]}_env (an environment variable holding it) or "
                   f"{loc[-1]}_file (a file holding it, mode 0600)")
        elif err["type"] == "extra_forbidden" and loc[2:3] == ("workarounds",):
            protocol = str(err["loc"][2])
            msg = f"no workaround {loc[-1]!r} for {protocol} meters"
            fix = workaround_fix(str(loc[-1]), protocol)
        problems.append(ConfigError(msg, file=file, key=key_path(loc, data), fix=fix))
    return problems


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError("file not found", file=path, fix="give the path of a config file "
                          "(config/gateway.example.toml is one)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=path,
                          fix="correct the TOML syntax at that line") from exc


def _duplicate_meters(data: dict[str, Any], file: Path) -> list[ConfigError]:
    meters = data.get("meters")
    if not isinstance(meters, list):
        return []
    twice = repeated(m.get("meter_id") for m in meters if isinstance(m, dict))
    return [
        ConfigError(f"meter_id {i!r} appears twice; meter ids are unique", file=file,
                    key="meters", fix="give each meter its own meter_id")
        for i in twice
    ]


def load_config(path: Path | str) -> LoadedConfig:
    """Read and validate a gateway config, or raise ``ConfigError`` / ``ConfigInvalid``."""
    file = Path(path).resolve()
    data = read_toml(file)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = problems_of(exc, file, data)
        if not any(p.key == "meters" for p in problems):
            problems.extend(_duplicate_meters(data, file))  # pydantic skips it when an item fails
        raise ConfigInvalid(problems) from exc
    base = file.parent
    data_dir = base / settings.gateway.data_dir
    profiles = settings.gateway.profiles_dir
    return LoadedConfig(
        file=file, settings=settings, data_dir=data_dir,
        store_path=data_dir / settings.store.path,
        profiles_dir=base / profiles if profiles is not None else DEFAULT_PROFILES_DIR,
    )
