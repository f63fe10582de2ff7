"""What a DLMS probe talks to, and how (:class:`DlmsTarget`). :func:`target_for_meter`
builds it from a meter's config: the port, addresses and security as the running
gateway would use them, the secrets read where the config points (the same ``*_env`` /
``*_file`` keys, the same ConfigError naming the key), and the OBIS codes of the
meter's device profile to look for in the meter's object list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.commission.dlms_catalogue import configured_obis
from gateway.dlms_secrets import DlmsSecrets, resolve_dlms_secrets
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

__all__ = ["DlmsTarget", "Medium", "Security", "target_for_meter"]

Medium = Literal["optical", "serial", "tcp"]
Security = Literal["none", "lls", "hls_gmac"]
#: What SNRM proposes by default: the largest frames and window (the meter's UA decides).
_LARGEST = HdlcParameters(2030, 2030, 7, 7)


@dataclass(frozen=True, kw_only=True)
class DlmsTarget:
    """Where and how to probe; :func:`target_for_meter` builds one from a meter's config."""

    medium: Medium
    #: The port path (optical, serial) or host (tcp).
    address: str
    tcp_port: int = 4059
    #: TCP only: the IEC 62056-47 wrapper, or HDLC frames.
    framing: Literal["wrapper", "hdlc"] = "wrapper"
    #: RS-485 speed (serial); optical: the highest baud accepted of the meter's offer.
    baudrate: int = 9600
    device_address: str = ""
    client_sap: int = 16
    server_logical: int = 1
    #: The configured lower (physical) HDLC address; None: a one-byte address.
    server_physical: int | None = None
    #: More physical addresses to try when discovering (ALL_STATIONS: the all-station one).
    scan_physical: tuple[int, ...] = ()
    security: Security = "none"
    #: When the configured association fails, read what the public client (SAP 16)
    #: may (identity, its object list); the association's verdict stays the failure.
    public_fallback: bool = True
    secrets: DlmsSecrets | None = None
    #: HLS-GMAC: the invocation counter file the gateway keeps for this meter (the
    #: meter refuses a counter that does not rise); None: counters held in memory.
    counters_path: Path | None = None
    timeout_s: float = 3.0
    retries: int = 1
    #: Discovery: the meter's turnaround allowed per SNRM beyond the line time.
    answer_s: float = 0.25
    proposal: HdlcParameters = _LARGEST
    zone: str = "UTC"
    sign: DeviationSign = DeviationSign.BLUE_BOOK
    #: OBIS codes the meter's profile reads (checked against the object list).
    configured: tuple[str, ...] = ()
    #: The load profile whose capture objects are read.
    load_profile: str = str(LOAD_PROFILE_1)

    @property
    def where(self) -> str:
        return f"{self.address}:{self.tcp_port}" if self.medium == "tcp" else self.address



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
