"""`ami-gateway status` and `GET /api/v1/status`: the outbox per sink as the store and
the running gateway know it, and exit codes a monitoring check can use."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.model import IntervalReading, Unit
from gateway.settings import load_config
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from tests.agent_run import running_agent
from tests.test_cli import cli

CH = "1.0.1.8.0.255"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def write_config(tmp_path: Path, *extra: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join([
        "[gateway]", 'data_dir = "data"',
        "[api]", 'host = "127.0.0.1"', "port = 0", *extra,
        "[outbox]", "alarm_depth = 10", "pause_depth = 20",
        "[[sinks]]", 'kind = "influxdb"', 'name = "tsdb"',
        f'url = "http://127.0.0.1:{closed_port()}"', 'database = "ami"', "timeout_s = 0.2",
        "retries = 0",
    ]) + "\n")
    return path


async def queue(cfg_path: Path, n: int) -> None:
    cfg = load_config(cfg_path)
    store = SqliteStore(cfg.store_path, synchronous="NORMAL")
    await store.open()
    await store.register_series(SeriesInfo(meter_id="S-1", channel=CH, unit=Unit.WH,
                                           interval_s=900, timezone="UTC"))
    await store.use_sinks(["tsdb"])
    t0 = datetime(2026, 4, 1, tzinfo=UTC)
    await store.write_intervals([
        IntervalReading(meter_id="S-1", channel=CH, start=t0 + timedelta(minutes=15 * i),
                        length_s=900, value=10, unit=Unit.WH) for i in range(n)])
    await store.close()


async def test_the_command_reports_depth_and_exits_1_past_the_alarm(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    await queue(cfg, 5)
    quiet = await asyncio.to_thread(cli, "status", "--config", cfg, "--json")
    assert quiet.returncode == 0, quiet.stderr
    view = json.loads(quiet.stdout)
    [sink] = view["sinks"]
    assert (view["status"], sink["name"], sink["depth"]) == ("ok", "tsdb", 5)
    assert sink["oldest_undelivered"] and not sink["failing"]
    await queue(cfg, 12)  # the same five again and seven more: 17 queued, alarm at 10
    deep = await asyncio.to_thread(cli, "status", "--config", cfg)
    assert deep.returncode == 1
    assert "status alarm" in deep.stdout and "tsdb" in deep.stdout and "17" in deep.stdout


async def test_the_running_gateway_serves_its_status_behind_the_operator_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPERATOR_TOKEN", "s3cret-operator-token")
    cfg = write_config(tmp_path, 'operator_token_env = "TEST_OPERATOR_TOKEN"')
    await queue(cfg, 3)
    async with running_agent(cfg) as agent:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as http:
            assert (await http.get("/api/v1/status")).status_code == 401
            auth = {"Authorization": "Bearer s3cret-operator-token"}
            for _ in range(100):  # until the delivery has tried and failed once
                body = (await http.get("/api/v1/status", headers=auth)).json()
                if body["sinks"][0]["failing"]:
                    break
                await asyncio.sleep(0.05)
        [sink] = body["sinks"]
        assert body["status"] == "degraded" and sink["depth"] == 3
        assert sink["failing"] and "127.0.0.1" in sink["last_error"]
        assert body["outbox"] == {"depth": 3, "alarm_depth": 10, "pause_depth": 20,
                                  "alarm": False, "paused": False}
