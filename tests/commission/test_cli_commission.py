"""``ami-gateway commission`` end to end, as an installer runs it: a real process scanning
a simulated RS-485 line on a pty, reading the devices back, writing the report, the page
and the config; stopped with Ctrl-C midway; and ``commission verify``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.clock import ScaledClock, SystemClock
from gateway.drivers.modbus.rtu import LineSettings
from gateway.profiles import modbus_profiles
from gateway.settings import load_config
from gateway.sim import MeterSpec
from gateway.sim.rtu_bus import RtuBus, serve_rtu_bus

ROOT = Path(__file__).resolve().parents[2]
PROFILES = modbus_profiles()


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[RtuBus]:
    # Meter time at x360, so registers visibly move in the read-back's wait.
    clock = ScaledClock(SystemClock().now(), 360)
    specs = [MeterSpec("a", PROFILES["eastron_sdm630"], seed=1, device_id=2, serial=555001,
                       start_energy_wh=7_000_000),
             MeterSpec("b", PROFILES["carlo_gavazzi_em340"], seed=2, device_id=6,
                       start_energy_wh=3_000_000)]
    async with serve_rtu_bus(specs, clock, LineSettings(9600, "E"),
                             link=tmp_path / "ttyRS485") as bus:
        yield bus


async def commission(*args: str, stop_after_s: float | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "commission", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    if stop_after_s is not None:
        await asyncio.sleep(stop_after_s)
        proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_scan_read_back_report_and_write(line: RtuBus, tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\ndata_dir = "data"\n')
    code, out, err = await commission(
        "run", "--port", line.path, "--ids", "1-8", "--bauds", "9600", "--formats", "8E1",
        "--wait-s", "1", "--out", str(tmp_path / "reports"), "--site", "Pump house",
        "--config", str(config), "--write", "--json")
    assert code == 0, err
    report = json.loads(out)
    [json_file] = (tmp_path / "reports").glob("commission-*.json")
    assert json_file.read_text() == out
    body = report["report"]
    assert body["site"] == "Pump house" and body["interrupted"] is False
    devices = {d["device"]["unit_id"]: d for d in body["devices"]}
    assert set(devices) == {2, 6}
    sdm = devices[2]
    assert sdm["meter_id"] == "M-555001" and sdm["device"]["profile"] == "eastron_sdm630"
    assert sdm["device"]["line"] == {"baudrate": 9600, "parity": "E", "stopbits": 1}
    checks = {c["channel"]: c for c in sdm["checks"]}
    assert {p.channel for p in PROFILES["eastron_sdm630"].points} == set(checks)
    assert checks["1.0.1.8.0.255"]["verdict"] == "pass", checks["1.0.1.8.0.255"]
    assert all(c["verdict"] != "fail" for d in body["devices"] for c in d["checks"])
    [scan] = body["scans"]
    assert (scan["address"], scan["ids_tried"], scan["settings_tried"]) == (
        line.path, 8, ["9600 8E1"])
    assert scan["elapsed_s"] >= scan["floor_s"] > 0
    # The page and the config.
    [page] = (tmp_path / "reports").glob("commission-*.html")
    assert "Pump house" in page.read_text() and report["checksum"] in page.read_text()
    meters = load_config(config).settings.meters
    assert sorted(m.meter_id for m in meters) == ["M-555001", devices[6]["meter_id"]]
    assert "added 2 meter(s)" in err
    # verify: unchanged passes; one changed verdict is caught.
    code, out, _ = await commission("verify", str(json_file))
    assert code == 0 and out.startswith("ok")
    tampered = json.loads(json_file.read_text())
    tampered["report"]["devices"][0]["checks"][0]["verdict"] = "pass"
    tampered["report"]["devices"][0]["checks"][0]["value"] = "230.0"
    json_file.write_text(json.dumps(tampered))
    code, _, err = await commission("verify", str(json_file))
    assert code == 1 and "CHANGED" in err


async def test_ctrl_c_stops_the_scan_and_still_reports(line: RtuBus, tmp_path: Path) -> None:
    # Ids 1-247 at two speeds: tens of seconds; stopped after the first ids were probed.
    code, out, err = await commission(
        "run", "--port", line.path, "--bauds", "9600,19200", "--formats", "8E1",
        "--out", str(tmp_path), "--json", stop_after_s=5.0)
    assert code == 130, err
    body = json.loads(out)["report"]
    assert body["interrupted"] is True and body["scans"][0]["interrupted"] is True
    assert body["scans"][0]["ids_tried"] < 247
    found = {d["device"]["unit_id"] for d in body["devices"]}
    assert 2 in found and found <= {2, 6}  # what was found before the stop is kept
    assert body["devices"][0]["checks"] == []  # the read-back after the scan was skipped
    assert "stopping" in err
    # The port was released: the next run has the line to itself and finds the devices.
    code, out, err = await commission(
        "run", "--port", line.path, "--ids", "2", "--bauds", "9600", "--formats", "8E1",
        "--no-readback", "--out", str(tmp_path), "--json")
    assert code == 0, err
    assert [d["device"]["unit_id"] for d in json.loads(out)["report"]["devices"]] == [2]


async def test_bad_arguments_name_the_option(tmp_path: Path) -> None:
    code, _, err = await commission("run", "--port", "/dev/null", "--ids", "0-300")
    assert code == 2 and "--ids" in err and "1-247" in err
    code, _, err = await commission("run")
    assert code == 2 and "nothing to do" in err
    code, _, err = await commission("run", "--tcp", "127.0.0.1:1", "--write")
    assert code == 2 and "--write needs --config" in err


async def test_a_port_that_does_not_open_is_named_and_the_other_steps_run(
        line: RtuBus, tmp_path: Path) -> None:
    code, out, err = await commission(
        "run", "--port", str(tmp_path / "no-such-tty"), "--port", line.path, "--ids", "2",
        "--bauds", "9600", "--formats", "8E1", "--no-readback", "--out", str(tmp_path),
        "--json")
    assert code == 1, err
    body = json.loads(out)["report"]
    [problem] = body["problems"]
    assert "no-such-tty" in problem and "Traceback" not in err and "not done" in err
    assert [d["device"]["unit_id"] for d in body["devices"]] == [2]  # the next port scanned
