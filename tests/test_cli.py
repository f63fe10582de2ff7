"""The command line as a user runs it: real processes, real files, exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[gateway]
data_dir = "data"
timezone = "America/Chicago"
[store]
synchronous = "NORMAL"
[[meters]]
meter_id = "M1"
profile = "eastron_sdm120"
host = "127.0.0.1"
"""


def cli(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_check_accepts_the_example_config() -> None:
    done = cli("check", "--config", "config/gateway.example.toml")
    assert done.returncode == 0, done.stderr
    assert "valid: 3 meter(s) (1 manual)" in done.stdout
    assert "manual meter ACME-0101: not polled, takes self-reads" in done.stdout


def test_check_reports_every_problem_with_file_key_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace('profile = "eastron_sdm120"', 'profile = "sdm999"')
                   + '\n[[meters]]\nmeter_id = "M2"\nprofile = "eastron_sdm120"\n'
                   'host = "127.0.0.1"\nchannels = ["9.9.9.9.9.9"]\n')
    done = cli("check", "--config", bad)
    assert done.returncode == 2
    err = " ".join(done.stderr.split())
    assert f"{bad}: meters[0](meter_id=M1).profile: no device profile 'sdm999'" in err
    # Every bundled profile is offered (the library grows: list it, do not hard-code it).
    known = ", ".join(sorted(path.stem for path in (ROOT / "config" / "devices").glob("*.toml")))
    assert f"fix: use one of: {known}" in err
    assert "meters[1](meter_id=M2).channels[0]: profile eastron_sdm120 has no cumulative" in err
    assert "2 problem(s)" in err


def test_check_names_a_schema_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nunit_id = 0'))
    done = cli("check", "--config", bad)
    assert done.returncode == 2
    assert "meters[0](meter_id=M1).unit_id" in " ".join(done.stderr.split())


def test_import_keeps_good_rows_and_reports_bad_ones_then_export(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(CONFIG)
    rows = ["meter_id,channel,at,value"]
    # A day of 15-minute reads of a 0.25 kWh-per-quarter-hour load, in local time.
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    start = datetime(2026, 3, 8, tzinfo=ZoneInfo("America/Chicago"))
    at = start
    value = 1000
    while at <= datetime(2026, 3, 9, tzinfo=ZoneInfo("America/Chicago")):
        rows.append(f"M1,1.0.1.8.0.255,{at.isoformat()},{value / 4:.2f}")
        at = (at.astimezone(ZoneInfo("UTC")) + timedelta(minutes=15)).astimezone(at.tzinfo)
        value += 1
    rows.insert(10, "M1,1.0.1.8.0.255,not-a-time,5")
    rows.insert(20, "M7,1.0.1.8.0.255,2026-03-08T10:00:00Z,5")
    readings = tmp_path / "reads.csv"
    readings.write_text("\n".join(rows) + "\n")

    done = cli("import", "--config", cfg, readings)
    assert done.returncode == 1  # some rows were bad
    assert f"{readings}:11: 'at' 'not-a-time' is not an ISO 8601 time" in done.stderr
    assert f"{readings}:21: no configured meter 'M7'" in done.stderr
    assert "93 reading(s) imported into 92 interval(s) (92 new" in done.stdout

    again = cli("import", "--config", cfg, readings)
    assert "(0 new, 0 unchanged, 0 updated)" in again.stdout

    daily = cli("export", "--config", cfg, "--meter", "M1", "--from", "2026-03-08",
                "--to", "2026-03-08", "--daily", "--format", "json")
    assert daily.returncode == 0, daily.stderr
    [day] = json.loads(daily.stdout)
    assert (day["date"], day["value"], day["expected"], day["present"]) == (
        "2026-03-08", 92 * 250, 92, 92)

    out = tmp_path / "intervals.csv"
    intervals = cli("export", "--config", cfg, "--meter", "M1", "--from", "2026-03-08",
                    "--to", "2026-03-08", "-o", out)
    assert intervals.returncode == 0, intervals.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("meter_id,channel,start,end,value,unit,quality")
    assert len(lines) == 93
    assert lines[1].split(",")[2:5] == ["2026-03-08T06:00:00+00:00",
                                        "2026-03-08T06:15:00+00:00", "250"]

    missing = cli("export", "--config", cfg, "--meter", "NOPE", "--from", "2026-03-08",
                  "--to", "2026-03-08")
    assert missing.returncode == 1 and "no meter 'NOPE'" in missing.stderr

    fixed = cli("edit", "--config", cfg, "--meter", "M1", "--start",
                "2026-03-08T00:15:00-06:00", "--value", "300", "--reason",
                "customer photo of the register", "--operator", "dana")
    assert fixed.returncode == 0, fixed.stderr
    assert "300 Wh (was 250 as first derived), quality 7 edited by dana" in fixed.stdout
    trail = cli("audit", "--config", cfg, "--meter", "M1").stdout.splitlines()
    assert trail[0] == "meter_id,channel,start,old_value,new_value,operator,reason,at"
    assert trail[1].startswith("M1,1.0.1.8.0.255,2026-03-08T06:15:00+00:00,250,300,dana,"
                               "customer photo of the register,")
    daily_after = json.loads(cli("export", "--config", cfg, "--meter", "M1", "--from",
                                 "2026-03-08", "--to", "2026-03-08", "--daily", "--format",
                                 "json").stdout)
    assert (daily_after[0]["value"], daily_after[0]["edited"]) == (92 * 250 + 50, 1)
    naive = cli("edit", "--config", cfg, "--meter", "M1", "--start", "2026-03-08T00:15:00",
                "--value", "1", "--reason", "x")
    assert naive.returncode == 2 and "no UTC offset" in naive.stderr

    # A meter exchange typed in from the installer's sheet: old serial, then the new one.
    swap = tmp_path / "swap.csv"
    swap.write_text("meter_id,channel,at,value\n"
                    "M1,0.0.96.1.0.255,2026-03-09T00:00:00-05:00,4410001\n"
                    "M1,0.0.96.1.0.255,2026-03-09T08:00:00-05:00,4410002\n"
                    "M1,1.0.1.8.0.255,2026-03-09T08:00:00-05:00,0.50\n"
                    "M1,1.0.1.8.0.255,2026-03-09T08:15:00-05:00,0.75\n")
    done = cli("import", "--config", cfg, swap)
    assert done.returncode == 0, done.stderr
    events = cli("audit", "--config", cfg, "--meter", "M1", "--events").stdout.splitlines()
    assert events[0] == "at,kind,meter_id,channel,reason,read"
    assert events[1].startswith("2026-03-09T13:00:00+00:00,exchange,M1,1.0.1.8.0.255,"
                                '"meter exchange: serial 4410001 -> 4410002')


def stop(proc: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """SIGINT, then wait; a process that does not stop in time dumps its threads' stacks
    (SIGUSR1, registered by the CLI) into the failure, and is killed."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        import time

        proc.send_signal(signal.SIGUSR2)  # the asyncio tasks and what each awaits
        time.sleep(1)
        proc.send_signal(signal.SIGUSR1)  # every thread's stack
        time.sleep(1)
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"did not stop within {timeout_s} s after SIGINT:\n{err}") from None
    return err


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout_s: float = 60,
             proc: subprocess.Popen[str] | None = None,
             headers: dict[str, str] | None = None, status: int = 200) -> dict[str, object]:
    """GET ``url`` until it answers ``status``; a process that exits first fails with its
    output."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} before {url} answered:\n{err}")
        try:
            got = httpx.get(url, timeout=2, headers=headers)
            if got.status_code == status:
                body: dict[str, object] = got.json()
                return body
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer in {timeout_s} s")
        time.sleep(0.2)


def test_demo_serves_the_portal_and_writes_its_config(tmp_path: Path) -> None:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(port), "--speed", "7200",
         "--days", "2", "--data-dir", str(tmp_path / "demo")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        demo = tmp_path / "demo"
        # The demo's portal asks for a sign-in; its operator token and login are in files.
        wait_for(f"{url}/meters", proc=proc, status=401)
        operator = {"Authorization": f"Bearer {(demo / 'keys/operator-token').read_text().strip()}"}
        body = wait_for(f"{url}/meters", proc=proc, headers=operator)
        meters = body["meters"]
        assert isinstance(meters, list)
        assert {m["meter_id"] for m in meters} == {"DEMO-1001", "DEMO-1002", "DEMO-1003",
                                                   "DEMO-2001", "DEMO-3001", "DEMO-4001",
                                                   "DEMO-4002", "DEMO-5001", "DEMO-5002"}
        two_rate = next(m for m in meters if m["meter_id"] == "DEMO-3001")
        assert {c["channel"] for c in two_rate["channels"]} == {
            "1.0.1.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255"}
        # The DLMS meters (HLS-GMAC over TCP, HDLC on a serial line) answer too.
        status: dict[str, object] = {}
        for _ in range(150):
            meters = wait_for(f"{url}/meters", proc=proc, headers=operator)["meters"]
            assert isinstance(meters, list)
            status = {m["meter_id"]: m["status"] for m in meters}
            if status["DEMO-5001"] == status["DEMO-5002"] == "ok":
                break
            time.sleep(0.2)
        assert status["DEMO-5001"] == status["DEMO-5002"] == "ok", status
        checked = cli("check", "--config", tmp_path / "demo" / "gateway.toml")
        assert checked.returncode == 0, checked.stderr
        login = dict(line.split(" ", 1) for line in
                     (demo / "demo-login.txt").read_text().splitlines()[:2])
        signed = httpx.post(f"{url}/sessions", json={"email": login["e-mail"],
                                                     "password": login["password"]})
        assert signed.status_code == 201, signed.text
        mine = httpx.get(f"{url}/meters", headers={
            "Authorization": f"Bearer {signed.json()['token']}"}).json()["meters"]
        assert [m["meter_id"] for m in mine] == ["DEMO-1001", "DEMO-3001", "DEMO-5001"]
        keys = [(demo / "keys" / name).read_text().strip() for name in
                ("DEMO-5001.ek", "DEMO-5001.ak", "operator-token")] + [login["password"]]
        logged = (demo / "gateway.log").read_text() + (demo / "gateway.toml").read_text()
        assert not any(key in logged or key.upper() in logged for key in keys)
    finally:
        err = stop(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err


async def test_run_polls_a_meter_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    import asyncio
    import signal

    from gateway.clock import SystemClock
    from gateway.profiles import load_profiles
    from gateway.sim import MeterSpec, serve_meters

    port = free_port()
    spec = MeterSpec(meter_id="RUN-1", profile=load_profiles()["eastron_sdm120"],
                     start_energy_wh=12_345_000)
    async with serve_meters([spec], SystemClock()) as [meter]:
        cfg = tmp_path / "site.toml"
        cfg.write_text(f"""
[gateway]
data_dir = "data"
log_format = "json"
[store]
synchronous = "NORMAL"
[api]
port = {port}
[[meters]]
meter_id = "RUN-1"
profile = "eastron_sdm120"
host = "{meter.host}"
port = {meter.port}
poll_interval_s = 0.5
inter_request_ms = 0
""")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "--config", str(cfg), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            for _ in range(100):
                await asyncio.sleep(0.2)
                body = await asyncio.to_thread(wait_for, f"http://127.0.0.1:{port}/api/v1/meters")
                [status] = body["meters"]  # type: ignore[misc]
                if status["status"] == "ok":
                    break
            assert status["status"] == "ok" and status["last_read_at"]
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130, err.decode()
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(e["event"] == "gateway running" for e in logs)
