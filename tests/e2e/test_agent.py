"""The agent as `ami-gateway run` starts it: pollers and the portal API on a real loop."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from edge.agent import Agent
from edge.assembly import assemble
from gateway.clock import ScaledClock
from gateway.errors import ConfigError
from gateway.model import IntervalReading, Unit
from gateway.profiles import load_profiles
from gateway.settings import DEFAULT_PROFILES_DIR, load_config
from gateway.sim import MeterSpec, SimulatedMeter, serve_meters
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
PROFILES = load_profiles(DEFAULT_PROFILES_DIR)


def config(tmp_path: Path, meters: list[SimulatedMeter], api_port: int,
           rules: str = "") -> Path:
    lines = ["[gateway]", 'data_dir = "data"', 'timezone = "Europe/Kyiv"',
             "[store]", 'synchronous = "NORMAL"',
             "[api]", 'host = "127.0.0.1"', f"port = {api_port}"]
    for m in meters:
        lines += ["[[meters]]", f'meter_id = "{m.meter_id}"', f'profile = "{m.profile.name}"',
                  f'host = "{m.host}"', f"port = {m.port}", "poll_interval_s = 300",
                  "inter_request_ms = 0"]
        if rules:
            lines.append(f"rules = {{ {rules} }}")
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_agent_polls_and_serves_the_portal(tmp_path: Path) -> None:
    clock = ScaledClock(datetime(2026, 10, 25, tzinfo=UTC), speed=3600)  # an hour a second
    spec = MeterSpec(meter_id="KYIV-1", profile=PROFILES["eastron_sdm630"],
                     start_energy_wh=5_000_000)
    # A complete local day already stored, below the meter's daily low limit.
    quiet = datetime(2026, 10, 20, tzinfo=ZoneInfo("Europe/Kyiv")).astimezone(UTC)
    store = SqliteStore(tmp_path / "data" / "store.db")
    await store.open()
    await store.register_series(SeriesInfo(meter_id="KYIV-1", channel=CH, unit=Unit.WH,
                                           interval_s=900, timezone="Europe/Kyiv"))
    await store.write_intervals([
        IntervalReading(meter_id="KYIV-1", channel=CH, start=quiet + timedelta(minutes=15 * i),
                        length_s=900, value=10, unit=Unit.WH) for i in range(96)])
    await store.close()
    async with serve_meters([spec], clock) as meters:
        cfg = config(tmp_path, meters, 0, rules="daily_low_wh = 2000")
        agent = Agent(assemble(load_config(cfg)), clock)
        ready = asyncio.Event()

        async def started(_: Agent) -> None:
            ready.set()

        task = asyncio.create_task(agent.run(started=started))
        await asyncio.wait_for(ready.wait(), 10)
        assert agent.api_port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as http:
            assert (await http.get("/healthz")).json()["status"] == "ok"
            for _ in range(100):  # until a few 15-minute intervals are stored
                await asyncio.sleep(0.1)
                got = await http.get("/api/v1/meters/KYIV-1/intervals", params={
                    "from": "2026-10-24T00:00:00Z", "to": "2026-10-27T00:00:00Z"})
                if len(got.json()["intervals"]) >= 4:
                    break
            assert len(got.json()["intervals"]) >= 4
            [meter] = (await http.get("/api/v1/meters")).json()["meters"]
            assert meter["status"] == "ok" and meter["last_read_at"]
            daily = await http.get("/api/v1/meters/KYIV-1/daily", params={
                "from": "2026-10-20", "to": "2026-10-20"})
            [day] = daily.json()["days"]
            assert day["checks"] == ["daily_low"]  # the meter's rules reach the portal
            page = await http.get("/")
            assert page.status_code == 200
            assert 'id="chart"' in page.text
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_busy_api_port_is_a_clear_config_error(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    clock = ScaledClock(datetime(2026, 10, 25, tzinfo=UTC), speed=1)
    spec = MeterSpec(meter_id="KYIV-2", profile=PROFILES["eastron_sdm120"])
    async with serve_meters([spec], clock) as meters:
        agent = Agent(assemble(load_config(config(tmp_path, meters, port))), clock)
        with pytest.raises(ConfigError) as err:
            await asyncio.wait_for(agent.run(), 10)
    exc = err.value
    assert exc.key == "api.port" and str(port) in str(exc) and exc.fix
    holder.close()
