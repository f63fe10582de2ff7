"""Resolves a gateway config against the device profiles into what the agent runs.

Every cross-reference problem (unknown profile, unknown channel, a rollover register
without a maximum rating) is collected, so ``ami-gateway check`` reports them all at
once, each with the file, the key path and the fix.

Polled meters (``meters``) get a poller each; manual meters (``manual``, protocol
"manual") get none: their readings are typed in (``gateway.ingest.selfread``). MQTT
meters (``mqtt``) publish theirs to the [mqtt] broker: each gets its codec here, read
by the one subscriber (``gateway.ingest.mqtt_input``). A DLMS
meter names a DLMS profile and a Modbus meter a Modbus one; a DLMS meter's password or
keys are read here, so a missing one is a config problem, not a failed poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.clock import Clock
from gateway.dlms_secrets import DlmsSecrets, resolve_dlms_secrets
from gateway.drivers import PolledDriver
from gateway.drivers.mqtt.codecs import Codec, build_codec, cumulative_channels
from gateway.errors import ConfigError
from gateway.ingest.series import SeriesConfig
from gateway.model import Kind, Unit
from gateway.profiles import DeviceProfile, load_profiles
from gateway.profiles_dlms import AnyProfile, DlmsProfile
from gateway.settings import (
    DAILY_RULE_KEYS,
    AnyMeter,
    ConfigInvalid,
    DlmsMeterConfig,
    LoadedConfig,
    ManualMeterConfig,
    ManualRegister,
    ModbusMeterConfig,
    MqttMeterConfig,
    PolledMeterConfig,
    RtuMeterConfig,
    RtuTcpMeterConfig,
)
from gateway.settings_mqtt import MqttLink, resolve_link
from gateway.validation import VeeConfig
from gateway.validation.daily import DailyLimits

if TYPE_CHECKING:  # drivers import their protocol libraries: only when a meter needs them
    from edge.dlms_driver import Cursor
    from gateway.drivers.modbus.bus import BusPool


@dataclass(frozen=True)
class MeterPlan:
    meter: PolledMeterConfig
    #: A DeviceProfile for a Modbus meter, a DlmsProfile for a DLMS meter.
    profile: AnyProfile
    timezone: str
    series: tuple[SeriesConfig, ...]
    #: The meter's daily usage limits, judged when the daily view is built.
    daily: DailyLimits = field(default_factory=DailyLimits)
    #: A DLMS meter's password or keys and our system title; None for Modbus meters.
    dlms: DlmsSecrets | None = None
    #: How far back a DLMS meter's load profile is read after an install or a long
    #: outage: the meter's catch_up_days, else its profile's; None without a load profile.
    catch_up_days: int | None = None
    #: Where the meter's durable driver state lives (a DLMS invocation counter).
    data_dir: Path | None = None


@dataclass(frozen=True)
class ManualPlan:
    """A meter nobody polls: its registers (in config order) and their series."""

    meter: ManualMeterConfig
    timezone: str
    series: tuple[SeriesConfig, ...]

    def register(self, channel: str) -> ManualRegister:
        return next(r for r in self.meter.registers if r.channel == channel)


@dataclass(frozen=True)
class MqttPlan:
    """A meter that publishes to the [mqtt] broker: its codec and its stored series."""

    meter: MqttMeterConfig
    timezone: str
    series: tuple[SeriesConfig, ...]
    codec: Codec


@dataclass(frozen=True)
class Assembly:
    config: LoadedConfig
    #: The polled meters, one poller each.
    meters: tuple[MeterPlan, ...]
    manual: tuple[ManualPlan, ...] = ()
    mqtt: tuple[MqttPlan, ...] = ()
    #: The [mqtt] broker with its password read; None without MQTT meters.
    mqtt_link: MqttLink | None = None

    def series(self) -> list[tuple[SeriesConfig, str]]:
        """Every stored series, polled, pushed and manual, with its timezone."""
        return self.polled_series() + self.pushed_series() + [
            (s, m.timezone) for m in self.manual for s in m.series]

    def polled_series(self) -> list[tuple[SeriesConfig, str]]:
        """The series the pollers feed."""
        return [(s, m.timezone) for m in self.meters for s in m.series]

    def pushed_series(self) -> list[tuple[SeriesConfig, str]]:
        """The series MQTT meters feed (through the agent's pipeline, like polled ones)."""
        return [(s, m.timezone) for m in self.mqtt for s in m.series]

    def daily_limits(self) -> dict[str, DailyLimits]:
        """Each meter's daily usage limits, for the portal's daily view (meters with
        none are left out)."""
        return {m.meter.meter_id: m.daily for m in self.meters if m.daily.active}


def assemble(config: LoadedConfig) -> Assembly:
    profiles = load_profiles(config.profiles_dir)
    settings = config.settings
    problems: list[ConfigError] = []
    plans: list[MeterPlan] = []
    manual: list[ManualPlan] = []
    pushed: list[MqttPlan] = []
    for i, meter in enumerate(settings.meters):
        where = f"meters[{i}](meter_id={meter.meter_id})"
        if isinstance(meter, MqttMeterConfig):
            plan, found = _mqtt_plan(config, meter, where)
            problems.extend(found)
            if plan is not None:
                pushed.append(plan)
            continue
        if isinstance(meter, ManualMeterConfig):
            series, found = _manual_series(config, meter, where)
            problems.extend(found)
            manual.append(ManualPlan(meter=meter, timezone=settings.timezone_of(meter),
                                     series=tuple(series)))
            continue
        profile = profiles.get(meter.profile)
        if profile is None:
            known = ", ".join(sorted(profiles)) or "none"
            problems.append(ConfigError(
                f"no device profile {meter.profile!r} in {config.profiles_dir}",
                file=config.file, key=f"{where}.profile",
                fix=f"use one of: {known}; or add {meter.profile}.toml there",
            ))
            continue
        mismatch = _kind_problem(config, meter, profile, profiles, where)
        if mismatch is not None:
            problems.append(mismatch)
            continue
        series, found = _series_of(config, meter, profile, where)
        problems.extend(found)
        secrets, catch_up_days = None, None
        if isinstance(meter, DlmsMeterConfig) and isinstance(profile, DlmsProfile):
            secrets, catch_up_days, found = _dlms_of(config, meter, profile, where)
            problems.extend(found)
        elif not isinstance(meter, DlmsMeterConfig) and isinstance(profile, DeviceProfile):
            problems.extend(_workaround_problems(config, meter, profile, where))
        daily, daily_problem = _daily_of(config, meter, where)
        if daily_problem is not None:
            problems.append(daily_problem)
        if meter.poll_interval_s > settings.validation.max_gap_s:
            problems.append(ConfigError(
                f"polls every {meter.poll_interval_s:g} s, but reads more than "
                f"{settings.validation.max_gap_s} s apart are a gap: every interval would be "
                "an estimate", file=config.file, key=f"{where}.poll_interval_s",
                fix="poll more often, or raise validation.max_gap_s",
            ))
        plans.append(MeterPlan(meter=meter, profile=profile, timezone=settings.timezone_of(meter),
                               series=tuple(series), daily=daily, dlms=secrets,
                               catch_up_days=catch_up_days, data_dir=config.data_dir))
    if settings.sinks:
        from gateway.sinks.build import sink_problems

        problems.extend(sink_problems(config))
    link = None
    if pushed and settings.mqtt is not None:
        try:
            link = resolve_link(settings.mqtt, config.file, config.data_dir)
        except ConfigError as exc:
            problems.append(exc)
    if problems:
        raise ConfigInvalid(problems)
    return Assembly(config=config, meters=tuple(plans), manual=tuple(manual),
                    mqtt=tuple(pushed), mqtt_link=link)


def _mqtt_plan(config: LoadedConfig, meter: MqttMeterConfig,
               where: str) -> tuple[MqttPlan | None, list[ConfigError]]:
    """An MQTT meter's codec and its series: the cumulative channels of its mapping
    (or those it names), each in its configured unit."""
    try:
        codec = build_codec(meter, meter.meter_id)
    except ConfigError as exc:
        return None, [ConfigError(exc.reason, file=config.file, key=f"{where}.{exc.key}",
                                  fix=exc.fix)]
    vee, rule_problem = _vee_of(config, meter, where)
    if rule_problem is not None:
        return None, [rule_problem]
    cumulative = cumulative_channels(meter)
    wanted = meter.channels if meter.channels is not None else list(cumulative)
    problems: list[ConfigError] = []
    series: list[SeriesConfig] = []
    for j, channel in enumerate(wanted):
        if channel not in cumulative:
            problems.append(ConfigError(
                f"the {meter.codec} mapping has no cumulative channel {channel!r}",
                file=config.file, key=f"{where}.channels[{j}]",
                fix=f"use one of: {', '.join(cumulative) or 'none'}; or map it in "
                    "codec_options"))
            continue
        declared = meter.units.get(channel)
        unit = cumulative[channel] or (Unit(declared) if declared else None)
        if unit is None:
            problems.append(ConfigError(
                f"channel {channel} takes its unit from the payload (unit_path), but its "
                "intervals need the register's unit before the first payload",
                file=config.file, key=f"{where}.units",
                fix=f'declare it: units = {{ "{channel}" = "kWh" }} (Wh, kWh, MWh, varh...); '
                    "payloads in another unit of the same kind are still converted"))
            continue
        series.append(_series_config(config, meter.meter_id, channel, unit,
                                     Decimal(meter.max_power_w), vee))
    for channel in sorted(set(meter.units) - set(cumulative)):
        problems.append(ConfigError(
            f"units names {channel!r}, not a cumulative channel of the {meter.codec} mapping",
            file=config.file, key=f"{where}.units", fix=f"remove {channel!r} from units"))
    plan = MqttPlan(meter=meter, timezone=config.settings.timezone_of(meter),
                    series=tuple(series), codec=codec)
    return plan, problems


def _series_config(config: LoadedConfig, meter_id: str, channel: str, unit: Unit,
                   max_power_w: Decimal, vee: VeeConfig) -> SeriesConfig:
    validation = config.settings.validation
    return SeriesConfig(
        meter_id=meter_id, channel=channel, unit=unit,
        interval_s=config.settings.gateway.interval_s,
        snap_tolerance_s=validation.snap_tolerance_s, max_gap_s=validation.max_gap_s,
        future_tolerance_s=validation.future_tolerance_s,
        backfill_window_s=validation.backfill_window_days * 86_400,
        reference_day_after_s=validation.reference_day_after_s,
        reference_day=validation.reference_day,
        reference_candidates=validation.reference_candidates,
        max_power_w=max_power_w, vee=vee,
    )


def _kind_problem(config: LoadedConfig, meter: PolledMeterConfig, profile: AnyProfile,
                  profiles: dict[str, AnyProfile], where: str) -> ConfigError | None:
    """A DLMS meter needs a DLMS profile, a Modbus meter a Modbus one."""
    dlms_meter = isinstance(meter, DlmsMeterConfig)
    if dlms_meter == isinstance(profile, DlmsProfile):
        return None
    wanted, kind = (DlmsProfile, "DLMS") if dlms_meter else (DeviceProfile, "Modbus")
    known = ", ".join(sorted(n for n, p in profiles.items() if isinstance(p, wanted)))
    return ConfigError(
        f"a {meter.protocol} meter is read with a {kind} profile, and {profile.name} is a "
        f"{'Modbus' if dlms_meter else 'DLMS'} profile", file=config.file,
        key=f"{where}.profile",
        fix=f"use one of the {kind} profiles: {known or 'none'}; or add one to "
            f"{config.profiles_dir}")


def _dlms_of(config: LoadedConfig, meter: DlmsMeterConfig, profile: DlmsProfile, where: str,
             ) -> tuple[DlmsSecrets | None, int | None, list[ConfigError]]:
    """The meter's secrets and its effective catch-up depth."""
    problems: list[ConfigError] = []
    secrets = None
    try:
        secrets = resolve_dlms_secrets(config, meter, where)
    except ConfigInvalid as exc:
        problems.extend(exc.problems)
    except ConfigError as exc:
        problems.append(exc)
    catch_up_days = None
    if profile.load_profile is not None:
        catch_up_days = meter.catch_up_days or profile.load_profile.catch_up_days
    elif meter.catch_up_days is not None:
        problems.append(ConfigError(
            f"profile {profile.name} has no load profile to catch up from",
            file=config.file, key=f"{where}.catch_up_days",
            fix="remove catch_up_days, or use a profile with a [load_profile] section"))
    return secrets, catch_up_days, problems


def _series_of(config: LoadedConfig, meter: PolledMeterConfig, profile: AnyProfile,
               where: str) -> tuple[list[SeriesConfig], list[ConfigError]]:
    settings = config.settings
    cumulative = {p.channel: p for p in profile.points if p.kind is Kind.CUMULATIVE}
    problems: list[ConfigError] = []
    wanted = meter.channels if meter.channels is not None else list(cumulative)
    max_power = meter.max_power_w or profile.max_power_w
    vee, rule_problem = _vee_of(config, meter, where)
    if rule_problem is not None:
        return [], [*problems, rule_problem]
    out: list[SeriesConfig] = []
    for j, channel in enumerate(wanted):
        point = cumulative.get(channel)
        if point is None:
            problems.append(ConfigError(
                f"profile {profile.name} has no cumulative channel {channel!r}",
                file=config.file, key=f"{where}.channels[{j}]",
                fix=f"use one of: {', '.join(cumulative) or 'none'}",
            ))
            continue
        modulus = point.rollover_modulus
        if modulus is not None and max_power is None:
            problems.append(ConfigError(
                f"channel {channel} rolls over but neither the meter nor profile "
                f"{profile.name} gives a maximum rating to judge a wrap by",
                file=config.file, key=f"{where}.max_power_w",
                fix="set max_power_w to the meter's maximum rating in W",
            ))
            continue
        out.append(SeriesConfig(
            meter_id=meter.meter_id, channel=channel, unit=point.unit,
            interval_s=settings.gateway.interval_s,
            snap_tolerance_s=settings.validation.snap_tolerance_s,
            max_gap_s=settings.validation.max_gap_s,
            future_tolerance_s=settings.validation.future_tolerance_s,
            backfill_window_s=settings.validation.backfill_window_days * 86_400,
            reference_day_after_s=settings.validation.reference_day_after_s,
            reference_day=settings.validation.reference_day,
            reference_candidates=settings.validation.reference_candidates,
            modulus=modulus * point.unit.factor if modulus is not None else None,
            max_power_w=Decimal(max_power) if max_power is not None else None,
            vee=vee,
        ))
    return out, problems


def _manual_series(config: LoadedConfig, meter: ManualMeterConfig,
                   where: str) -> tuple[list[SeriesConfig], list[ConfigError]]:
    """A manual meter's series, one per declared register.

    They use the gateway's interval grid, like every other series. Reads come weeks
    apart, so every interval between two of them is a linear estimate (GAP_SPANNED,
    ESPI 9) whatever the grid: a coarser one would hold no less information, but it
    would break the one grid that exports, the portal and local days (whole ones in
    half-hour-offset zones too) rely on. The cost is rows: a month between two reads
    is ~2,900 quarter-hours, written once, in one transaction.
    """
    settings = config.settings
    vee, rule_problem = _vee_of(config, meter, where)
    if rule_problem is not None:
        return [], [rule_problem]
    out = []
    for register in meter.registers:
        unit = register.register_unit
        modulus = register.modulus
        out.append(SeriesConfig(
            meter_id=meter.meter_id, channel=register.channel, unit=unit,
            interval_s=settings.gateway.interval_s,
            snap_tolerance_s=settings.validation.snap_tolerance_s,
            max_gap_s=settings.validation.max_gap_s,
            future_tolerance_s=settings.validation.future_tolerance_s,
            backfill_window_s=settings.validation.backfill_window_days * 86_400,
            reference_day_after_s=settings.validation.reference_day_after_s,
            reference_day=settings.validation.reference_day,
            reference_candidates=settings.validation.reference_candidates,
            modulus=modulus * unit.factor if modulus is not None else None,
            max_power_w=Decimal(meter.max_power_w),
            vee=vee,
        ))
    return out, []


def _vee_of(config: LoadedConfig, meter: AnyMeter,
            where: str) -> tuple[VeeConfig, ConfigError | None]:
    """The meter's rules: the gateway's [validation.rules], overridden key by key. A
    problem is blamed on the gateway's section if it is wrong alone, else on the meter's."""
    defaults = config.settings.validation.rules.model_dump(exclude=set(DAILY_RULE_KEYS))
    overrides = meter.rules.model_dump(exclude_unset=True, exclude=set(DAILY_RULE_KEYS)) \
        if meter.rules is not None else {}
    for section, rules in (("validation.rules", defaults),
                           (f"{where}.rules", {**defaults, **overrides})):
        if rules["demand_high_w"] is not None:
            rules["demand_high_w"] = Decimal(rules["demand_high_w"])
        try:
            vee = VeeConfig(**rules)
        except ConfigError as exc:
            return VeeConfig(), ConfigError(exc.reason, file=config.file,
                                            key=f"{section}.{exc.key}", fix=exc.fix)
    return vee, None


def _daily_of(config: LoadedConfig, meter: PolledMeterConfig,
              where: str) -> tuple[DailyLimits, ConfigError | None]:
    """The meter's daily usage limits, merged like its other rules (see _vee_of)."""
    keys = set(DAILY_RULE_KEYS)
    defaults = config.settings.validation.rules.model_dump(include=keys)
    overrides = meter.rules.model_dump(exclude_unset=True, include=keys) \
        if meter.rules is not None else {}
    limits = DailyLimits()
    for section, rules in (("validation.rules", defaults),
                           (f"{where}.rules", {**defaults, **overrides})):
        try:
            limits = DailyLimits(
                high_wh=rules["daily_high_wh"], low_wh=rules["daily_low_wh"],
                history_factor=rules["daily_history_factor"],
                history_days=rules["daily_history_days"])
        except ConfigError as exc:
            return DailyLimits(), ConfigError(exc.reason, file=config.file,
                                              key=f"{section}.{exc.key}", fix=exc.fix)
    return limits, None


def _workaround_problems(config: LoadedConfig, meter: ModbusMeterConfig,
                         profile: DeviceProfile, where: str) -> list[ConfigError]:
    """A request limit the profile's own limit or its widest point rules out."""
    limit = meter.workarounds.max_registers_per_request
    if limit is None:
        return []
    key = f"{where}.workarounds.max_registers_per_request"
    if limit > profile.max_registers_per_request:
        return [ConfigError(
            f"{limit} is above profile {profile.name}'s {profile.max_registers_per_request}: "
            "a workaround can only lower the limit", file=config.file, key=key,
            fix=f"give at most {profile.max_registers_per_request}, or raise the profile's "
            "max_registers_per_request if the device really reads more")]
    widest = max(profile.points, key=lambda p: p.width)
    if widest.width > limit:
        return [ConfigError(
            f"{limit} is less than point {widest.channel} of profile {profile.name}, "
            f"{widest.width} registers wide", file=config.file, key=key,
            fix=f"give at least {widest.width}")]
    return []


def effective_profile(meter: ModbusMeterConfig, profile: DeviceProfile) -> DeviceProfile:
    """``profile`` as this meter's device is read: its timing overrides and workarounds."""
    update: dict[str, int] = {}
    if meter.inter_request_ms is not None:
        update["inter_request_ms"] = meter.inter_request_ms
    if isinstance(meter, RtuMeterConfig | RtuTcpMeterConfig) and meter.turnaround_ms is not None:
        update["turnaround_ms"] = meter.turnaround_ms
    if update:
        profile = profile.model_copy(update=update)
    return meter.workarounds.profile_for(profile)


def build_driver(plan: MeterPlan, clock: Clock, buses: BusPool | None = None, *,
                 cursor: Cursor | None = None) -> PolledDriver:
    """The driver for a meter's protocol. One place knows which class serves which.

    RTU meters read through ``buses``: meters naming the same serial port (or device
    server) get the same :class:`Bus`, so their transactions never overlap. Without a
    pool the meter gets a bus of its own. DLMS meters read their load profile from
    ``cursor`` (the time of the last read the gateway holds for their channels).
    """
    meter = plan.meter
    if isinstance(meter, DlmsMeterConfig):
        return _dlms_driver(plan, clock, buses, cursor)
    if not isinstance(plan.profile, DeviceProfile):
        raise ConfigError(f"{meter.meter_id} is read with Modbus, but profile "
                          f"{plan.profile.name} is a DLMS profile", key="profile",
                          fix="assemble the config first: edge.assembly.assemble checks it")
    profile = effective_profile(meter, plan.profile)
    if isinstance(meter, RtuMeterConfig | RtuTcpMeterConfig):
        from gateway.drivers.modbus.bus import BusPool

        return _rtu_driver(meter, profile, clock, buses or BusPool())
    from gateway.drivers.modbus.driver import BusyRetry, ModbusTcpDriver

    quirks = meter.workarounds
    return ModbusTcpDriver(
        meter_id=meter.meter_id, host=meter.host, port=meter.port,
        device_id=meter.unit_id, profile=profile, clock=clock,
        timeout_s=meter.timeout_s,
        busy=BusyRetry(meter.busy_retries, meter.busy_retry_ms / 1000),
        one_request_per_value=quirks.one_request_per_value,
        close_after_poll=quirks.close_after_poll,
        pause_after_connect_s=quirks.pause_after_connect_ms / 1000,
    )


def _rtu_driver(meter: RtuMeterConfig | RtuTcpMeterConfig, profile: DeviceProfile,
                clock: Clock, buses: BusPool) -> PolledDriver:
    from gateway.drivers.modbus.driver import BusyRetry, ModbusDriver
    from gateway.drivers.modbus.rtu import LineSettings
    from gateway.drivers.modbus.rtu_client import RtuRegisterClient

    line = LineSettings(meter.baudrate, meter.parity, meter.stopbits)
    bus = buses.serial(meter.port, line) if isinstance(meter, RtuMeterConfig) \
        else buses.tcp(meter.host, meter.port, line)
    quirks = meter.workarounds
    client = RtuRegisterClient(bus, meter.unit_id, timeout_s=meter.timeout_s,
                               pause_s=profile.inter_request_ms / 1000,
                               pause_after_connect_s=quirks.pause_after_connect_ms / 1000)
    # The bus keeps the device's pause (across polls too): the driver adds none.
    return ModbusDriver(meter.meter_id, client, profile, clock, link=line.link,
                        busy=BusyRetry(meter.busy_retries, meter.busy_retry_ms / 1000),
                        one_request_per_value=quirks.one_request_per_value)


def _dlms_driver(plan: MeterPlan, clock: Clock, buses: BusPool | None,
                 cursor: Cursor | None) -> PolledDriver:
    from edge.dlms_driver import build_dlms_driver

    meter = plan.meter
    assert isinstance(meter, DlmsMeterConfig) and isinstance(plan.profile, DlmsProfile)
    stored = [s.channel for s in plan.series]
    return build_dlms_driver(meter, plan.profile, stored=stored, timezone=plan.timezone,
                             catch_up_days=plan.catch_up_days, secrets=plan.dlms, clock=clock,
                             data_dir=plan.data_dir,
                             buses=buses, cursor=cursor)
