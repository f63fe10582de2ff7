"""Manual meters in the config: problems named with file, key and fix; their series; an
agent that polls none of them yet takes their self-reads over HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from edge.agent import Agent
from edge.assembly import assemble
from gateway.clock import ManualClock
from gateway.model import Unit
from gateway.settings import ConfigInvalid, ManualMeterConfig, load_config

MANUAL = """
[gateway]
data_dir = "data"
timezone = "America/Chicago"
interval_s = 900
[store]
synchronous = "NORMAL"
[[meters]]
meter_id = "H1"
protocol = "manual"
max_power_w = 15000
timezone = "America/Denver"
registers = [
  { channel = "1.0.1.8.1.255", unit = "kWh", digits = 6, decimals = 1 },
  { channel = "1.0.1.8.2.255", unit = "MWh" },
]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> dict[str, tuple[str, str]]:
    with pytest.raises(ConfigInvalid) as err:
        load_config(write(tmp_path, text))
    return {p.key: (p.reason, p.fix) for p in err.value.problems}


def test_a_manual_meter_declares_its_registers(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MANUAL))
    [meter] = cfg.settings.meters
    assert isinstance(meter, ManualMeterConfig)
    assembly = assemble(cfg)
    assert assembly.meters == () and [p.meter.meter_id for p in assembly.manual] == ["H1"]
    [plan] = assembly.manual
    day, night = plan.series
    assert plan.timezone == "America/Denver"
    assert (day.channel, day.unit, day.modulus, day.max_power_w, day.interval_s) == (
        "1.0.1.8.1.255", Unit.KWH, Decimal(100_000_000), Decimal(15_000), 900)
    assert (night.unit, night.modulus) == (Unit.MWH, None)
    assert assembly.polled_series() == [] and len(assembly.series()) == 2


def test_a_manual_meter_defaults_to_one_kwh_register(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[[meters]]\nmeter_id = "H2"\nprotocol = "manual"\n'
                                      "max_power_w = 9000\n"))
    [plan] = assemble(cfg).manual
    [series] = plan.series
    assert (series.channel, series.unit, series.modulus) == ("1.0.1.8.0.255", Unit.KWH, None)


def test_manual_meter_problems_name_the_file_key_and_fix(tmp_path: Path) -> None:
    found = problems(tmp_path, """
[self_reads]
windows = [{ last_days = 7, from_day = 1, to_day = 2 }, { from_day = 3 }, { last_days = 40 }]
[[meters]]
meter_id = "H1"
protocol = "manual"
host = "192.0.2.1"
registers = [{ digits = 5, decimals = 5 }, { unit = "W" }, { digits = 5 }]
[[meters]]
meter_id = "X1"
protocol = "dlms"
""")
    assert set(found) == {
        "self_reads.windows[0]", "self_reads.windows[1]", "self_reads.windows[2].last_days",
        "meters[0](meter_id=H1).max_power_w", "meters[0](meter_id=H1).host",
        "meters[0](meter_id=H1).registers[0]",
        "meters[0](meter_id=H1).registers[1].unit", "meters[1](meter_id=X1).protocol",
    }
    h1 = "meters[0](meter_id=H1)"
    assert "self-reads are judged by it" in found[f"{h1}.max_power_w"][1]
    assert found[f"{h1}.host"][1].startswith("a manual meter is not polled")
    assert found[f"{h1}.registers[0]"][0] == "decimals must be fewer than digits"
    assert found["meters[1](meter_id=X1).protocol"] == (
        "no meter protocol dlms", "use one of: modbus_tcp, modbus_rtu, modbus_rtu_tcp, "
        "dlms_tcp, dlms_serial, dlms_optical, manual, mqtt")
    assert found["self_reads.windows[1]"][1] == (
        "e.g. { last_days = 7 } or { from_day = 1, to_day = 5 }")


def test_a_register_appears_once(tmp_path: Path) -> None:
    found = problems(tmp_path, '[[meters]]\nmeter_id = "H1"\nprotocol = "manual"\n'
                               "max_power_w = 1000\nregisters = [{ digits = 5 }, {}]\n")
    assert found == {"meters[0](meter_id=H1).registers": (
        "channel '1.0.1.8.0.255' appears twice", "give each register its own channel")}


def test_a_polled_meter_keeps_its_key_paths(tmp_path: Path) -> None:
    found = problems(tmp_path, '[[meters]]\nmeter_id = "M1"\nprofile = "eastron_sdm630"\n'
                               'host = "127.0.0.1"\nunit_id = 300\n')
    assert list(found) == ["meters[0](meter_id=M1).unit_id"]


async def test_the_agent_polls_no_manual_meter_and_takes_its_self_reads(
        tmp_path: Path) -> None:
    token = "t0ken-for-the-portal-backend-0123456789"
    text = MANUAL + f'[api]\nport = 0\noperator_token_env = "AMI_TEST_TOKEN_{id(tmp_path)}"\n'
    import os

    os.environ[f"AMI_TEST_TOKEN_{id(tmp_path)}"] = token
    clock = ManualClock(datetime(2026, 11, 28, 18, tzinfo=UTC))
    agent = Agent(assemble(load_config(write(tmp_path, text))), clock)
    ready = asyncio.Event()

    async def started(_: Agent) -> None:
        ready.set()

    task = asyncio.create_task(agent.run(started=started))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert agent.pollers == []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as http:
            [meter] = (await http.get("/api/v1/meters")).json()["meters"]
            assert (meter["meter_id"], meter["protocol"]) == ("H1", "manual")
            r = await http.post("/api/v1/meters/H1/readings", json={"value": "12.5"},
                                headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201, r.text
            assert r.json()["channel"] == "1.0.1.8.1.255"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        del os.environ[f"AMI_TEST_TOKEN_{id(tmp_path)}"]
