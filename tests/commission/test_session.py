"""A commissioning run against real simulated meters: configured and found devices read
back through the drivers the gateway runs, and a run stopped midway still reporting."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.clock import ScaledClock, SystemClock
from gateway.commission.model import DeviceIdentity, FoundDevice
from gateway.commission.session import Findings, Progress, read_back_step, run_steps
from gateway.profiles import load_profiles
from gateway.settings import load_config
from gateway.sim import MeterSpec, serve_meters


def quiet(what: str, done: int, total: int) -> None:
    pass


async def test_configured_and_found_meters_are_read_back(tmp_path: Path) -> None:
    profiles = load_profiles()
    # Time at x360: six minutes of consumption in the second the read-back waits.
    clock = ScaledClock(SystemClock().now(), 360)
    specs = [MeterSpec(meter_id="CFG-1", profile=profiles["eastron_sdm630"], serial=4711,
                       start_energy_wh=5_000_000),
             MeterSpec(meter_id="FOUND-1", profile=profiles["eastron_sdm120"], seed=3,
                       start_energy_wh=900_000)]
    async with serve_meters(specs, clock) as [configured, found]:
        config = tmp_path / "gateway.toml"
        config.write_text(f"""[gateway]
data_dir = "data"
[[meters]]
meter_id = "CFG-1"
profile = "eastron_sdm630"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {configured.port}
""")
        loaded = load_config(config)

        async def scanned(findings: Findings, progress: Progress) -> None:
            findings.add_device(FoundDevice(
                protocol="modbus_tcp", address=f"127.0.0.1:{found.port}", unit_id=1,
                line=None, identity=DeviceIdentity(source="signature", model="SDM120"),
                profile="eastron_sdm120"))

        report = await run_steps([scanned, read_back_step(loaded, wait_s=1.0, clock=clock)],
                                 quiet, site="test bench")
    assert not report.interrupted
    by_id = {d.meter_id: d for d in report.devices}
    assert set(by_id) == {"CFG-1", f"NEW-127.0.0.1-{found.port}-1"}
    cfg = by_id["CFG-1"]
    channels = {c.channel: c for c in cfg.checks}
    assert set(channels) == {p.channel for p in profiles["eastron_sdm630"].points}
    assert channels["1.0.32.7.0.255"].verdict == "pass"
    assert channels["1.0.1.8.0.255"].verdict == "pass", channels["1.0.1.8.0.255"]
    assert "moved" in channels["1.0.1.8.0.255"].reason
    assert cfg.verdict in ("pass", "warn")
    new = by_id[f"NEW-127.0.0.1-{found.port}-1"]
    assert {c.channel for c in new.checks} == {p.channel for p in profiles["eastron_sdm120"].points}
    assert all(c.verdict != "fail" for c in new.checks), new.checks
    assert f"port = {found.port}" in report.snippet and 'meter_id = "CFG-1"' in report.snippet


async def test_a_device_that_does_not_answer_fails_every_point(tmp_path: Path) -> None:
    async def scanned(findings: Findings, progress: Progress) -> None:
        findings.add_device(FoundDevice(
            protocol="modbus_tcp", address="127.0.0.1:9", unit_id=1, line=None,
            identity=DeviceIdentity(source="none"), profile="eastron_sdm120"))

    report = await run_steps([scanned, read_back_step(None, wait_s=0.1)], quiet)
    [record] = report.devices
    assert record.checks and all(c.verdict == "fail" for c in record.checks)
    assert record.verdict == "fail"


async def test_a_stopped_run_reports_what_it_found() -> None:
    started = asyncio.Event()

    async def first(findings: Findings, progress: Progress) -> None:
        findings.add_device(FoundDevice(
            protocol="modbus_rtu", address="/dev/ttyUSB0", unit_id=3, line=None,
            identity=DeviceIdentity(source="none"), profile=None))
        started.set()
        await asyncio.sleep(3600)  # a long scan, stopped by the installer

    async def never(findings: Findings, progress: Progress) -> None:
        raise AssertionError("the steps after a stop are skipped")

    task = asyncio.create_task(run_steps([first, never], quiet))
    await started.wait()
    task.cancel()
    report = await task
    assert report.interrupted
    assert [d.device.unit_id for d in report.devices] == [3]
