"""A meter's workarounds table: parsed strictly, every mistake named with its fix, and
turned into the plan the driver reads by."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.assembly import assemble, build_driver, effective_profile
from gateway.clock import ManualClock
from gateway.drivers.modbus.driver import ModbusDriver
from gateway.settings import ConfigInvalid, MeterConfig, RtuMeterConfig, load_config
from gateway.workarounds import TcpWorkarounds, Workarounds

START = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)

TCP = """
[[meters]]
meter_id = "M1"
profile = "eastron_sdm630"
host = "127.0.0.1"
"""
RTU = """
[[meters]]
meter_id = "R1"
profile = "eastron_sdm630"
protocol = "{protocol}"
{where}
"""
WHERE = {"modbus_rtu": 'port = "/dev/ttyUSB0"', "modbus_rtu_tcp": 'host = "192.0.2.20"'}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def rtu(protocol: str) -> str:
    return RTU.format(protocol=protocol, where=WHERE[protocol])


def problems(tmp_path: Path, text: str) -> dict[str, tuple[str, str]]:
    """key -> (reason, fix) of every problem in ``text``, checked for the file name."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigInvalid) as caught:
        assemble(load_config(path))
    for problem in caught.value.problems:
        assert problem.file == str(path)
        assert problem.fix
    return {p.key: (p.reason, p.fix) for p in caught.value.problems}


def test_defaults_are_off_and_busy_retries_on(tmp_path: Path) -> None:
    (meter,) = load_config(write(tmp_path, TCP)).settings.meters
    assert isinstance(meter, MeterConfig)
    assert meter.workarounds == TcpWorkarounds()
    assert not meter.workarounds.one_request_per_value
    assert not meter.workarounds.close_after_poll
    assert (meter.busy_retries, meter.busy_retry_ms) == (2, 100)


def test_every_workaround_parses(tmp_path: Path) -> None:
    text = TCP + """busy_retries = 3
busy_retry_ms = 50
[meters.workarounds]
one_request_per_value = true
no_gap_reads = true
max_registers_per_request = 40
pause_after_connect_ms = 250
close_after_poll = true
""" + rtu("modbus_rtu") + "workarounds = { no_gap_reads = true, pause_after_connect_ms = 2000 }\n"
    tcp, serial = load_config(write(tmp_path, text)).settings.meters
    assert isinstance(tcp, MeterConfig) and isinstance(serial, RtuMeterConfig)
    assert tcp.workarounds == TcpWorkarounds(
        one_request_per_value=True, no_gap_reads=True, max_registers_per_request=40,
        pause_after_connect_ms=250, close_after_poll=True)
    assert (tcp.busy_retries, tcp.busy_retry_ms) == (3, 50)
    assert serial.workarounds == Workarounds(no_gap_reads=True, pause_after_connect_ms=2000)


def test_an_unknown_key_is_named_with_the_keys_there_are(tmp_path: Path) -> None:
    found = problems(tmp_path, TCP + "workarounds = { one_request_per_value = true, "
                     "no_gaps = true }\n")
    reason, fix = found["meters[0](meter_id=M1).workarounds.no_gaps"]
    assert reason == "no workaround 'no_gaps' for modbus_tcp meters"
    assert "spelling" in fix and "no_gap_reads" in fix and "close_after_poll" in fix


@pytest.mark.parametrize(("key", "fix"), [
    ("pause_between_requests_ms = 50", "inter_request_ms on the meter itself"),
    ("one_request_per_field = true", "one_request_per_value = true"),
    ("close_connection_after_gather = true", "close_after_poll = true"),
    ('pause_after_connect = "1s"', "pause_after_connect_ms = <milliseconds>"),
    ("busy_retries = 3", "on the meter itself"),
])
def test_keys_that_live_elsewhere_or_are_spelled_otherwise(tmp_path: Path, key: str,
                                                           fix: str) -> None:
    name = key.split(" ")[0]
    found = problems(tmp_path, TCP + f"[meters.workarounds]\n{key}\n")
    assert fix in found[f"meters[0](meter_id=M1).workarounds.{name}"][1]


@pytest.mark.parametrize("protocol", ["modbus_rtu", "modbus_rtu_tcp"])
def test_close_after_poll_is_for_tcp_meters_only(tmp_path: Path, protocol: str) -> None:
    found = problems(tmp_path, rtu(protocol) + "workarounds = { close_after_poll = true }\n")
    reason, fix = found["meters[0](meter_id=R1).workarounds.close_after_poll"]
    assert reason == f"no workaround 'close_after_poll' for {protocol} meters"
    assert "for modbus_tcp meters" in fix and "the bus keeps open" in fix


@pytest.mark.parametrize(("line", "key", "fix"), [
    ("no_gap_reads = 1", "no_gap_reads", "true or false"),
    ("max_registers_per_request = 200", "max_registers_per_request", "smaller value"),
    ("max_registers_per_request = 0", "max_registers_per_request", "larger value"),
    ("pause_after_connect_ms = -5", "pause_after_connect_ms", "larger value"),
])
def test_values_are_checked_strictly(tmp_path: Path, line: str, key: str, fix: str) -> None:
    found = problems(tmp_path, TCP + f"[meters.workarounds]\n{line}\n")
    assert fix in found[f"meters[0](meter_id=M1).workarounds.{key}"][1]


def test_busy_retry_bounds(tmp_path: Path) -> None:
    found = problems(tmp_path, TCP + "busy_retries = 9\nbusy_retry_ms = 0\n")
    assert set(found) == {"meters[0](meter_id=M1).busy_retries",
                          "meters[0](meter_id=M1).busy_retry_ms"}


def test_a_manual_meter_has_no_workarounds(tmp_path: Path) -> None:
    found = problems(tmp_path, '[[meters]]\nmeter_id = "H1"\nprotocol = "manual"\n'
                     "max_power_w = 24000\nworkarounds = { no_gap_reads = true }\n")
    assert "not polled" in found["meters[0](meter_id=H1).workarounds"][1]


@pytest.mark.parametrize(("limit", "reason", "fix"), [
    (100, "100 is above profile eastron_sdm630's 80", "give at most 80"),
    (1, "1 is less than point", "give at least 2"),
])
def test_a_request_limit_the_profile_rules_out(tmp_path: Path, limit: int, reason: str,
                                               fix: str) -> None:
    found = problems(tmp_path, TCP + f"workarounds = {{ max_registers_per_request = {limit} }}\n")
    got_reason, got_fix = found["meters[0](meter_id=M1).workarounds.max_registers_per_request"]
    assert reason in got_reason and fix in got_fix


async def test_workarounds_make_the_plan_more_cautious(tmp_path: Path) -> None:
    text = TCP + "inter_request_ms = 0\n"
    (plain,) = assemble(load_config(write(tmp_path, text))).meters
    quirky = text + ("[meters.workarounds]\nno_gap_reads = true\n"
                     "max_registers_per_request = 12\n")
    (plan,) = assemble(load_config(write(tmp_path, quirky))).meters
    profile = effective_profile(plan.meter, plan.profile)
    assert (profile.allow_gap_reads, profile.max_registers_per_request) == (False, 12)
    assert profile.inter_request_ms == 0
    assert plan.profile.allow_gap_reads  # the shared profile itself is untouched
    clock = ManualClock(START)
    driver = build_driver(plan, clock)
    before = build_driver(plain, clock)
    assert isinstance(driver, ModbusDriver) and isinstance(before, ModbusDriver)
    for block in driver.blocks:
        assert block.count <= 12
        ends = [p.offset + p.point.width for p in block.points]
        assert [p.offset for p in block.points[1:]] == ends[:-1]  # no gap inside a block
    assert len(driver.blocks) > len(before.blocks)
    one = assemble(load_config(write(tmp_path, text + "workarounds = { "
                                     "one_request_per_value = true }\n"))).meters[0]
    single = build_driver(one, clock)
    assert isinstance(single, ModbusDriver)
    assert [len(b.points) for b in single.blocks] == [1] * len(plan.profile.points)


def test_the_examples_in_the_example_config_parse(tmp_path: Path) -> None:
    """The commented busy retry and workarounds lines, uncommented, are a valid meter."""
    text = Path("config/gateway.example.toml").read_text()
    block = text[text.index("# busy_retries"):text.index('meter_id = "ACME-0002"')]
    lines = [line[2:] for line in block.splitlines()
             if line.startswith("# ") and not line.startswith("#  ")
             and ("=" in line or line.startswith("# [meters"))]
    (meter,) = load_config(write(tmp_path, TCP + "\n".join(lines) + "\n")).settings.meters
    assert isinstance(meter, MeterConfig)
    assert meter.workarounds == TcpWorkarounds(
        one_request_per_value=True, no_gap_reads=True, max_registers_per_request=40,
        pause_after_connect_ms=500, close_after_poll=True)
