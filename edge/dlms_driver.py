"""Builds the driver of a DLMS meter from its config, its device profile and secrets.

What the poll reads (``DlmsReadPlan``): the load profile's columns for the meter's
cumulative channels that the profile captures, GET for every other point; the clock,
identity and drift threshold. The link: the TCP wrapper, HDLC over TCP, HDLC on an
RS-485 port (meters naming the same port take turns, a whole poll each), or HDLC after
an optical sign-on. With HLS-GMAC our invocation counter lives in
``<data_dir>/dlms/<meter_id>.ic`` and only rises, across restarts and crashes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.clock import Clock
from gateway.dlms_secrets import DlmsSecrets
from gateway.drivers.dlms.acse import Mechanism
from gateway.drivers.dlms.association import AssociationSettings
from gateway.drivers.dlms.client import DlmsClient
from gateway.drivers.dlms.cosem import DeviationSign, Obis
from gateway.drivers.dlms.counters import ReleasableCounters
from gateway.drivers.dlms.driver import DlmsDriver, DlmsReadPlan, LoadProfilePlan, RegisterPoint
from gateway.drivers.dlms.hdlc import HdlcAddress, HdlcParameters
from gateway.drivers.dlms.profile import WantedChannel
from gateway.drivers.dlms.security import SecurityContext
from gateway.drivers.dlms.transport import ApduLink, HdlcLink, OpticalSignOn, WrapperLink
from gateway.drivers.modbus.bus import BusPool
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.serial_link import SerialStream, TcpStream
from gateway.model import Kind
from gateway.profiles_dlms import DlmsProfile
from gateway.settings import (
    DlmsMeterConfig,
    DlmsOpticalMeterConfig,
    DlmsSerialMeterConfig,
    DlmsTcpMeterConfig,
)

__all__ = ["Cursor", "build_dlms_driver", "read_plan"]

#: The time of the last read the gateway holds for a meter's channels.
Cursor = Callable[[str, Sequence[str]], datetime | None]


def read_plan(meter: DlmsMeterConfig, profile: DlmsProfile, stored: Sequence[str],
              timezone: str, catch_up_days: int | None) -> DlmsReadPlan:
    """What one poll reads. ``stored``: the meter's cumulative channels with a series."""
    spec = profile.load_profile
    from_profile: list[WantedChannel] = []
    if spec is not None:
        listed = spec.channels if spec.channels is not None else tuple(
            p.channel for p in profile.points if p.kind is Kind.CUMULATIVE)
        from_profile = [
            WantedChannel(p.channel, Obis.parse(p.obis), p.attribute, p.unit, p.kind)
            for p in (profile.point(c) for c in listed) if p.channel in stored]
    in_profile = {w.channel for w in from_profile}
    registers = tuple(
        RegisterPoint(p.channel, Obis.parse(p.obis), p.class_id, p.unit, p.kind, p.attribute,
                      p.scaler)
        for p in profile.points
        if p.channel not in in_profile and (p.kind is not Kind.CUMULATIVE or p.channel in stored))
    load_profile = None
    if spec is not None and from_profile:
        load_profile = LoadProfilePlan(
            obis=Obis.parse(spec.obis), channels=tuple(from_profile),
            status_obis=Obis.parse(spec.status_obis) if spec.status_obis else None,
            capture_period_s=spec.capture_period_s,
            catch_up=timedelta(days=catch_up_days or spec.catch_up_days),
            max_entries_per_poll=spec.max_entries_per_poll)
    identity = profile.read_identity
    return DlmsReadPlan(
        registers=registers, load_profile=load_profile, zone=ZoneInfo(timezone),
        clock=Obis.parse(profile.clock_obis),
        serial=Obis.parse(profile.serial_obis) if identity else None,
        logical_device_name=Obis.parse(profile.logical_device_name_obis) if identity else None,
        clock_drift_warn_s=meter.clock_drift_warn_s,
        sign=DeviationSign.ISO if meter.deviation_sign == "iso" else DeviationSign.BLUE_BOOK)


def _link(meter: DlmsMeterConfig) -> ApduLink:
    client = HdlcAddress.client(meter.client_address)
    proposal = HdlcParameters(meter.max_info_length, meter.max_info_length, meter.window,
                              meter.window)
    if isinstance(meter, DlmsTcpMeterConfig):
        stream = TcpStream(meter.host, meter.port, connect_timeout_s=meter.timeout_s)
        if meter.framing == "wrapper":
            return WrapperLink(stream, meter.client_address, meter.server_logical,
                               timeout_s=meter.timeout_s)
        return HdlcLink(stream, client, HdlcAddress.server(meter.server_logical),
                        proposal=proposal, timeout_s=meter.timeout_s, retries=meter.retries)
    server = HdlcAddress.server(meter.server_logical, meter.server_physical)
    if isinstance(meter, DlmsSerialMeterConfig):
        stream_ = SerialStream(meter.port, LineSettings(meter.baudrate, "N", 1))
        return HdlcLink(stream_, client, server, proposal=proposal, timeout_s=meter.timeout_s,
                        retries=meter.retries)
    assert isinstance(meter, DlmsOpticalMeterConfig)
    stream_ = SerialStream(meter.port, LineSettings(300, "N", 1))
    return HdlcLink(stream_, client, server, proposal=proposal, timeout_s=meter.timeout_s,
                    retries=meter.retries,
                    sign_on=OpticalSignOn(meter.device_address, meter.max_baud))


def association_settings(meter: DlmsMeterConfig, secrets: DlmsSecrets | None,
                         counters: ReleasableCounters) -> AssociationSettings:
    if meter.security == "lls":
        assert secrets is not None and secrets.password is not None
        return AssociationSettings(mechanism=Mechanism.LLS, password=secrets.password)
    if meter.security == "hls_gmac":
        assert secrets is not None and secrets.keys is not None
        context = SecurityContext(secrets.keys, secrets.system_title, counters)
        return AssociationSettings(mechanism=Mechanism.HLS_GMAC, security=context)
    return AssociationSettings()


def build_dlms_driver(meter: DlmsMeterConfig, profile: DlmsProfile, *, stored: Sequence[str],
                      timezone: str, catch_up_days: int | None, secrets: DlmsSecrets | None,
                      clock: Clock, data_dir: Path | None = None,
                      buses: BusPool | None = None, cursor: Cursor | None = None
                      ) -> DlmsDriver:
    plan = read_plan(meter, profile, stored, timezone, catch_up_days)

    # Opened at the first ciphered frame, let go when the driver closes.
    counters = ReleasableCounters((data_dir or Path(".")) / "dlms" / f"{meter.meter_id}.ic")
    if meter.security == "hls_gmac":
        counters.path.parent.mkdir(parents=True, exist_ok=True)
    client = DlmsClient(_link(meter), association_settings(meter, secrets, counters))
    channels = [w.channel for w in plan.load_profile.channels] if plan.load_profile else []
    lock = None
    if isinstance(meter, DlmsSerialMeterConfig | DlmsOpticalMeterConfig) and buses is not None:
        lock = buses.line_lock(meter.port)
    read_cursor = None
    if cursor is not None and channels:
        def read_cursor() -> datetime | None:
            return cursor(meter.meter_id, channels)
    return DlmsDriver(meter.meter_id, client, plan, clock, cursor=read_cursor, lock=lock,
                      release=counters.release)
