"""The steps of a commissioning run, from the installer's options: a Modbus RTU scan per
serial port, a Modbus TCP scan per host, a DLMS probe per optical port, RS-485 line or
host. Each step records what it found in the run's findings as it goes (a stopped scan's
devices and figures are kept), and its own ``finally`` releases its port.

A DLMS meter the site's config already holds (same port, or same host and port) is
probed with its configured address and security, keys from where the config says;
otherwise with the public client, trying the all-station address on a line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.commission.dlms_addresses import ALL_STATIONS
from gateway.commission.dlms_probe import DlmsProbeOutcome, probe_dlms
from gateway.commission.dlms_target import DlmsTarget, target_for_meter
from gateway.commission.modbus_scan import ScanState, scan_serial, scan_tcp
from gateway.commission.report import DeviceRecord
from gateway.commission.scan_plan import ScanPlan, parse_format, scan_lines
from gateway.commission.session import Findings, Progress, Step, proposed_id
from gateway.profiles import DeviceProfile, load_profiles
from gateway.profiles_dlms import DlmsProfile
from gateway.settings import (
    DlmsOpticalMeterConfig,
    DlmsSerialMeterConfig,
    DlmsTcpMeterConfig,
    LoadedConfig,
)

__all__ = ["ScanOptions", "parse_ids", "scan_steps"]

#: Modbus TCP: how long a unit id may take to answer through a gateway.
TCP_TIMEOUT_S = 1.0


def parse_ids(text: str) -> tuple[int, ...]:
    """"1-247", "1-10,42": unit ids in the order given, each once."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"--ids: {part!r} is not an id or a range such as 1-247") from None
        if not 1 <= lo <= hi <= 247:
            raise ValueError(f"--ids: {part!r} is outside 1-247 (or runs backwards)")
        out += [i for i in range(lo, hi + 1) if i not in out]
    if not out:
        raise ValueError("--ids: no unit id given")
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class ScanOptions:
    ids: tuple[int, ...]
    bauds: tuple[int, ...]
    formats: tuple[tuple[str, int], ...]
    #: The slowest device's turnaround to wait for; None: the largest of the profiles.
    turnaround_ms: int | None

    @classmethod
    def parse(cls, *, ids: str, bauds: str, formats: str,
              turnaround_ms: float | None) -> ScanOptions:
        try:
            baud_list = tuple(int(b) for b in bauds.replace(" ", "").split(",") if b)
        except ValueError:
            raise ValueError(f"--bauds: {bauds!r} is not a list such as 9600,19200") from None
        if not baud_list or any(b <= 0 for b in baud_list):
            raise ValueError(f"--bauds: {bauds!r} is not a list such as 9600,19200")
        fmts = tuple(parse_format(f) for f in formats.split(",") if f.strip())
        if not fmts:
            raise ValueError("--formats: give at least one, such as 8E1")
        if turnaround_ms is not None and not 0 <= turnaround_ms <= 10_000:
            raise ValueError("--turnaround-ms: between 0 and 10000")
        return cls(ids=parse_ids(ids), bauds=baud_list, formats=fmts,
                   turnaround_ms=None if turnaround_ms is None else round(turnaround_ms))

    def plan(self, profiles: Sequence[DeviceProfile]) -> ScanPlan:
        lines = scan_lines(self.bauds, self.formats)  # type: ignore[arg-type]
        plan = ScanPlan.for_profiles(profiles, lines=lines, ids=self.ids)
        if self.turnaround_ms is None:
            return plan
        return ScanPlan(lines=plan.lines, ids=plan.ids, turnaround_ms=self.turnaround_ms,
                        turnaround_from="--turnaround-ms", margin_ms=plan.margin_ms)


def _host_port(text: str, default: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"{text!r}: give HOST or HOST:PORT") from None


def _scan_step(scan: Callable[[ScanState, Progress], Awaitable[object]]) -> Step:
    """A scan as a step: its summary and devices recorded whether it ends or is stopped."""
    async def step(findings: Findings, progress: Progress) -> None:
        state = ScanState()
        stopped = False
        try:
            await scan(state, progress)
        except asyncio.CancelledError:
            stopped = True
            raise
        finally:
            findings.scans.append(state.summary(interrupted=stopped))
            for device in state.found:
                findings.add_device(device)

    return step


def _modbus_rtu(port: str, plan: ScanPlan, profiles: dict[str, DeviceProfile]) -> Step:
    return _scan_step(lambda state, progress: scan_serial(
        port, plan, profiles, state=state, progress=progress))


def _modbus_tcp(where: str, ids: Sequence[int], timeout_s: float,
                profiles: dict[str, DeviceProfile]) -> Step:
    host, port = _host_port(where, 502)
    return _scan_step(lambda state, progress: scan_tcp(
        host, port, ids, profiles, timeout_s=timeout_s, state=state, progress=progress))


def _dlms(target: DlmsTarget, meter_id: str | None) -> Step:
    async def step(findings: Findings, progress: Progress) -> None:
        outcome = DlmsProbeOutcome.start(target)
        try:
            await probe_dlms(target, progress=progress, outcome=outcome)
        finally:
            findings.devices.append(DeviceRecord(
                device=outcome.device, meter_id=meter_id or proposed_id(outcome.device),
                dlms=outcome.findings))

    return step


def _dlms_target(kind: str, where: str,
                 config: LoadedConfig | None) -> tuple[DlmsTarget, str | None]:
    """The configured meter's target when the config holds one there, else a public one."""
    if config is not None:
        profiles = load_profiles(config.profiles_dir)
        for meter in config.settings.meters:
            if not isinstance(meter, DlmsOpticalMeterConfig | DlmsSerialMeterConfig
                              | DlmsTcpMeterConfig):
                continue
            there = f"{meter.host}:{meter.port}" if isinstance(meter, DlmsTcpMeterConfig) \
                else meter.port
            medium = "optical" if isinstance(meter, DlmsOpticalMeterConfig) else \
                "serial" if isinstance(meter, DlmsSerialMeterConfig) else "tcp"
            if (medium, there) == (kind, where):
                profile = profiles.get(meter.profile)
                target = target_for_meter(
                    config, meter,
                    profile=profile if isinstance(profile, DlmsProfile) else None,
                    scan_physical=(ALL_STATIONS,) if kind == "serial" else ())
                return target, meter.meter_id
    if kind == "tcp":
        host, port = _host_port(where, 4059)
        return DlmsTarget(medium="tcp", address=host, tcp_port=port), None
    return DlmsTarget(medium=kind, address=where,  # type: ignore[arg-type]
                      scan_physical=(ALL_STATIONS,) if kind == "serial" else ()), None


def scan_steps(options: ScanOptions, *, ports: Sequence[str], tcp: Sequence[str],
               optical: Sequence[str], dlms_serial: Sequence[str], dlms_tcp: Sequence[str],
               config: LoadedConfig | None) -> list[Step]:
    """The steps the options ask for, in the order given by kind: Modbus lines, Modbus
    hosts, then DLMS meters."""
    steps: list[Step] = []
    if ports or tcp:
        directory = config.profiles_dir if config is not None else None
        everything = load_profiles(directory) if directory is not None else load_profiles()
        profiles = {n: p for n, p in everything.items() if isinstance(p, DeviceProfile)}
        plan = options.plan(list(profiles.values()))
        timeout_s = TCP_TIMEOUT_S if options.turnaround_ms is None \
            else max(options.turnaround_ms / 1000, 0.05)
        steps += [_modbus_rtu(port, plan, profiles) for port in ports]
        steps += [_modbus_tcp(where, options.ids, timeout_s, profiles) for where in tcp]
    for kind, wheres in (("optical", optical), ("serial", dlms_serial), ("tcp", dlms_tcp)):
        for where in wheres:
            steps.append(_dlms(*_dlms_target(kind, where, config)))
    return steps
