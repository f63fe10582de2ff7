"""A DLMS probe's target from a meter's config: the port, addresses and security as
the running gateway would use them, the secrets read where the config points (the
same ``*_env`` / ``*_file`` keys, the same ConfigError naming the key), and the OBIS
codes of the meter's device profile to look for in the meter's object list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.commission.dlms_catalogue import configured_obis
from gateway.commission.dlms_probe import DlmsTarget, Medium
from gateway.dlms_secrets import resolve_dlms_secrets
from gateway.drivers.dlms.cosem import LOAD_PROFILE_1, DeviationSign
from gateway.drivers.dlms.hdlc import HdlcParameters
from gateway.profiles_dlms import DlmsProfile
from gateway.settings import (
    DlmsMeterConfig,
    DlmsOpticalMeterConfig,
    DlmsSerialMeterConfig,
    DlmsTcpMeterConfig,
    LoadedConfig,
)

__all__ = ["target_for_meter"]


def target_for_meter(config: LoadedConfig, meter: DlmsMeterConfig, *,
                     profile: DlmsProfile | None = None, scan_physical: Sequence[int] = (),
                     where: str | None = None,
                     environ: Mapping[str, str] | None = None) -> DlmsTarget:
    """``where`` names the meter's key path in errors (default ``meters(meter_id=..)``);
    ``scan_physical`` adds physical addresses to try (ALL_STATIONS for the all-station
    address). The HLS invocation counter is the gateway's own file for the meter
    (``<data_dir>/dlms/<meter_id>.ic``), so the probe and later polls keep it rising."""
    key = where or f"meters(meter_id={meter.meter_id})"
    secrets = resolve_dlms_secrets(config, meter, key, environ=environ) \
        if meter.security != "none" else None
    medium: Medium = "tcp"
    address, tcp_port, baud, physical = "", 4059, 9600, None
    if isinstance(meter, DlmsOpticalMeterConfig):
        medium, address, baud = "optical", meter.port, meter.max_baud
        physical = meter.server_physical
    elif isinstance(meter, DlmsSerialMeterConfig):
        medium, address, baud = "serial", meter.port, meter.baudrate
        physical = meter.server_physical
    else:
        address, tcp_port = meter.host, meter.port
    return DlmsTarget(
        medium=medium, address=address, tcp_port=tcp_port,
        framing=meter.framing if isinstance(meter, DlmsTcpMeterConfig) else "wrapper",
        baudrate=baud, server_physical=physical,
        device_address=meter.device_address if isinstance(meter, DlmsOpticalMeterConfig)
        else "",
        client_sap=meter.client_address, server_logical=meter.server_logical,
        scan_physical=tuple(scan_physical), security=meter.security, secrets=secrets,
        counters_path=config.data_dir / "dlms" / f"{meter.meter_id}.ic"
        if meter.security == "hls_gmac" else None,
        timeout_s=meter.timeout_s, retries=meter.retries,
        proposal=HdlcParameters(meter.max_info_length, meter.max_info_length, meter.window,
                                meter.window),
        zone=meter.timezone or config.settings.gateway.timezone,
        sign=DeviationSign.ISO if meter.deviation_sign == "iso" else DeviationSign.BLUE_BOOK,
        configured=configured_obis(profile) if profile is not None else (),
        load_profile=profile.load_profile.obis
        if profile is not None and profile.load_profile is not None else str(LOAD_PROFILE_1))
