"""One commissioning run: its steps in order, what each found kept as it is found, and
the report built from whatever was found, also when the installer stops it (Ctrl-C).

A step is a coroutine given the run (:class:`Findings`, to add to) and a progress
callback. Cancelling the run (the CLI does on Ctrl-C) stops the step in hand, whose own
``finally`` releases its port; the steps after it are skipped and the report says the
run was interrupted. Read-back builds the meter's driver exactly as the gateway would
(``edge.assembly``): for a configured meter from the config, for a device a scan found
from the config snippet the report proposes, so what passes here is what will run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.clock import Clock, SystemClock
from gateway.commission.model import DeviceIdentity, FoundDevice, Line, ScanSummary
from gateway.commission.readback import Limits, read_back
from gateway.commission.report import DeviceRecord, Report, config_snippet
from gateway.errors import ConfigError, DriverError
from gateway.profiles import DeviceProfile
from gateway.profiles_dlms import DlmsProfile
from gateway.settings import (
    DlmsOpticalMeterConfig,
    DlmsSerialMeterConfig,
    DlmsTcpMeterConfig,
    LoadedConfig,
    RtuMeterConfig,
    load_config,
)

if TYPE_CHECKING:
    from edge.assembly import MeterPlan

__all__ = ["Findings", "Progress", "Step", "configured_devices", "read_back_step", "run_steps"]

#: (what is being done, how far, out of how much)
Progress = Callable[[str, int, int], None]


@dataclass
class Findings:
    """What the run has found so far; steps add to it as they go."""

    scans: list[ScanSummary] = field(default_factory=list)
    devices: list[DeviceRecord] = field(default_factory=list)
    interrupted: bool = False
    #: Steps that could not run (a port that does not open, a host that refuses).
    problems: list[str] = field(default_factory=list)

    def add_device(self, device: FoundDevice, meter_id: str | None = None) -> DeviceRecord:
        record = DeviceRecord(device=device, meter_id=meter_id or proposed_id(device))
        self.devices.append(record)
        return record

    def replace(self, old: DeviceRecord, new: DeviceRecord) -> None:
        self.devices[self.devices.index(old)] = new


Step = Callable[[Findings, Progress], Awaitable[None]]


def proposed_id(device: FoundDevice) -> str:
    """A placeholder meter id the installer replaces with the utility's: the serial number
    when the device told it, else where it was found."""
    if device.identity.serial:
        return f"M-{device.identity.serial}"
    where = device.address.rsplit("/", 1)[-1].replace(":", "-")
    return f"NEW-{where}-{device.unit_id if device.unit_id is not None else 0}"


async def run_steps(steps: Sequence[Step], progress: Progress, *, site: str | None = None,
                    installer: str | None = None, clock: Clock | None = None) -> Report:
    """Run ``steps`` in order and report; a cancelled run reports what it found."""
    findings = Findings()
    now = (clock or SystemClock()).now
    started = now()
    for step in steps:
        try:
            await step(findings, progress)
        except DriverError as exc:  # this step's port or host: the others still run
            findings.problems.append(str(exc))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the report is still to be written
            findings.interrupted = True
            break
    records = tuple(findings.devices)
    return Report(gateway_version=__version__,
                  created_at=started.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                  host=socket.gethostname(), site=site, installer=installer,
                  scans=tuple(findings.scans), devices=records,
                  interrupted=findings.interrupted, snippet=config_snippet(records),
                  problems=tuple(findings.problems))


# ---------------------------------------------------------------- read-back

def _sources(profile: DeviceProfile | DlmsProfile) -> dict[str, str]:
    if isinstance(profile, DeviceProfile):
        return {p.channel: f"{p.table} 0x{p.address:04X} {p.type}" for p in profile.points}
    return {p.channel: f"OBIS {p.obis} attribute {p.attribute}" for p in profile.points}


def _device_of(meter: object, profile_name: str) -> FoundDevice:
    """A configured meter as the report lists it."""
    line = None
    if isinstance(meter, RtuMeterConfig):
        protocol, address = "modbus_rtu", meter.port
        line = Line(baudrate=meter.baudrate, parity=meter.parity,
                    stopbits=meter.stopbits or (2 if meter.parity == "N" else 1))
        unit: int | None = meter.unit_id
    elif isinstance(meter, DlmsSerialMeterConfig | DlmsOpticalMeterConfig):
        protocol = "dlms_serial" if isinstance(meter, DlmsSerialMeterConfig) else "dlms_optical"
        address, unit = meter.port, meter.server_physical
    elif isinstance(meter, DlmsTcpMeterConfig):
        protocol, address, unit = "dlms_tcp", f"{meter.host}:{meter.port}", None
    else:  # Modbus TCP, or RTU behind a device server
        protocol = "modbus_tcp"
        address = f"{getattr(meter, 'host', '?')}:{getattr(meter, 'port', '?')}"
        unit = getattr(meter, "unit_id", None)
    return FoundDevice(protocol=protocol, address=address, unit_id=unit, line=line,  # type: ignore[arg-type]
                       identity=DeviceIdentity(source="none"), profile=profile_name,
                       notes=("configured",))


def configured_devices(config: LoadedConfig) -> list[tuple[str, FoundDevice]]:
    """The config's polled meters, as (meter id, device)."""
    return [(m.meter_id, _device_of(m, m.profile)) for m in config.settings.meters
            if hasattr(m, "profile")]


def read_back_step(config: LoadedConfig | None, *, wait_s: float,
                   clock: Clock | None = None) -> Step:
    """Read back every configured meter, and every found device with a proposed profile
    that the config does not hold (through the snippet the report would propose)."""

    async def step(findings: Findings, progress: Progress) -> None:
        from edge.assembly import assemble, build_driver  # drivers load their libraries

        plans: list[MeterPlan] = []
        if config is not None:
            known = {d.meter_id for d in findings.devices}
            for meter_id, device in configured_devices(config):
                if meter_id not in known:
                    findings.add_device(device, meter_id)
            plans += list(assemble(config).meters)
        new = tuple(d for d in findings.devices if "configured" not in d.device.notes
                    and d.device.profile is not None)
        if new:
            plans += list(_plans_of(new, config))
        by_id = {d.meter_id: d for d in findings.devices}
        for i, plan in enumerate(plans):
            record = by_id.get(plan.meter.meter_id)
            if record is None:
                continue
            progress(f"read-back {plan.meter.meter_id}", i, len(plans))
            driver = build_driver(plan, clock or SystemClock())
            try:
                checks = await read_back(driver, limits=Limits(
                    max_power_w=plan.profile.max_power_w), sources=_sources(plan.profile),
                    wait_s=wait_s)
            finally:
                with contextlib.suppress(DriverError):
                    await driver.close()
            findings.replace(record, replace(record, checks=tuple(checks)))
        progress("read-back done", len(plans), len(plans))

    return step


def _plans_of(records: tuple[DeviceRecord, ...],
              config: LoadedConfig | None) -> list[MeterPlan]:
    """The gateway's own plans for found devices, from the snippet in a scratch config
    (their DLMS counters in a scratch folder: commissioning must not move the site's)."""
    from edge.assembly import assemble

    scratch = Path(tempfile.mkdtemp(prefix="ami-commission-"))
    profiles = f"profiles_dir = {json.dumps(str(config.profiles_dir))}\n" if config else ""
    text = f"[gateway]\ndata_dir = {json.dumps(str(scratch))}\n{profiles}\n" \
        + config_snippet(records)
    path = scratch / "commission.toml"
    path.write_text(text)
    try:
        return list(assemble(load_config(path)).meters)
    except ConfigError as exc:
        raise ConfigError(f"the proposed config does not load: {exc}", key="profile",
                          fix="report this with the scan's output") from exc
