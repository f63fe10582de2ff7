"""The scan's timing from the line rules, to the exact fraction of a second."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gateway.commission.scan_plan import (
    DEFAULT_MARGIN_MS,
    PROBE_REPLY_MAX,
    ScanPlan,
    largest_pause,
    largest_turnaround,
    late_probe_replies,
    line_text,
    model_line,
    parse_format,
    probe_request,
    scan_lines,
)
from gateway.drivers.modbus.rtu import LineSettings
from gateway.profiles import modbus_profiles

MS = Fraction(1, 1000)


def test_probe_reads_one_holding_register_at_address_0() -> None:
    request = probe_request(17)
    assert request.frame == bytes.fromhex("110300000001") + request.frame[-2:]
    assert (request.function, request.start, request.count) == (3, 0, 1)
    assert PROBE_REPLY_MAX == 7  # unit, function, count, 2 bytes, CRC


def test_settings_most_common_first() -> None:
    lines = scan_lines()
    assert [line_text(line) for line in lines[:4]] == [
        "9600 8E1", "9600 8N1", "9600 8N2", "19200 8E1"]
    assert len(lines) == 12 and line_text(lines[-1]) == "115200 8N2"
    assert model_line(lines[2]).text() == "9600 8N2"


def test_largest_turnaround_of_the_bundled_profiles() -> None:
    # The Eastron profiles declare 50 ms; a tie goes to the first by name.
    assert largest_turnaround(modbus_profiles().values()) == (50, "eastron_sdm120")
    assert largest_turnaround([]) == (0, "")


def test_timing_at_9600_8e1() -> None:
    plan = ScanPlan.for_profiles(modbus_profiles().values())
    timing = plan.timing(LineSettings(9600, "E"))
    # Tc = 11/9600 s; t3.5 = 3.5 Tc = 77/19200 s (4.0104 ms); the probe is 8 characters.
    assert timing.request_s == Fraction(88, 9600)
    assert timing.timeout_s == Fraction(77, 19200) + 50 * MS + DEFAULT_MARGIN_MS * MS
    assert timing.timeout_s == Fraction(1421, 19200)  # 74.0104 ms
    assert timing.per_id_s == Fraction(1597, 19200)  # 83.177 ms
    assert timing.floor_s(247) == Fraction(394459, 19200)  # 20.545 s
    assert timing.reply_s == 7 * Fraction(11, 9600) + Fraction(77, 19200)
    assert timing.reason == ("t3.5 4.010 ms at 9600 8E1 + 50 ms largest profile turnaround "
                             "(eastron_sdm120) + 20 ms margin (adapter latency, scheduling)")


def test_timing_above_19200_uses_the_fixed_silence() -> None:
    plan = ScanPlan(lines=(LineSettings(115200, "N", 1),), ids=(1,), turnaround_ms=0,
                    margin_ms=5)
    timing = plan.timing(plan.lines[0])
    assert timing.request_s == Fraction(80, 115200)  # 10-bit characters (8N1)
    assert timing.timeout_s == Fraction(175, 100_000) + 5 * MS


def test_floor_of_a_whole_plan_adds_every_setting() -> None:
    plan = ScanPlan(lines=(LineSettings(9600, "E"), LineSettings(19200, "E")),
                    ids=tuple(range(1, 11)), turnaround_ms=50, margin_ms=20)
    assert plan.floor_s() == 10 * plan.timing(plan.lines[0]).per_id_s \
        + 10 * plan.timing(plan.lines[1]).per_id_s


def test_early_stop_rules() -> None:
    plan = ScanPlan(lines=scan_lines(), ids=tuple(range(1, 8)), turnaround_ms=0)
    assert plan.ids_after({2, 5}) == (1, 3, 4, 6, 7)
    assert not plan.stop_after(True)
    first = ScanPlan(lines=scan_lines(), ids=(1,), turnaround_ms=0, first_line_only=True)
    assert first.stop_after(True) and not first.stop_after(False)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lines": ()}, "line setting"),
    ({"ids": ()}, "unit id"),
    ({"ids": (0, 248)}, "outside 1..247"),
    ({"margin_ms": -1}, "negative"),
])
def test_plan_refuses_nonsense(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"lines": scan_lines(), "ids": (1,), "turnaround_ms": 0}
    with pytest.raises(ValueError, match=message):
        ScanPlan(**(base | kwargs))  # type: ignore[arg-type]


def test_late_probe_replies_are_recognised_in_stray_bytes() -> None:
    reply = probe_request(17).reply([0x1234])
    refusal = probe_request(40).refusal(2)
    broken = probe_request(41).reply([7])[:-1] + b"\x00"
    assert late_probe_replies(b"\x00\xff" + reply + broken + refusal + b"\x11") == (17, 40)
    assert late_probe_replies(broken) == ()
    assert late_probe_replies(b"") == ()


def test_largest_pause_of_the_bundled_profiles() -> None:
    assert largest_pause(modbus_profiles().values()) == 100  # Eastron: 100 ms
    assert largest_pause([]) == 0


def test_formats_as_installers_write_them() -> None:
    assert [parse_format(text) for text in ("8E1", "8n1", " 8N2 ", "8O1")] == [
        ("E", 1), ("N", 1), ("N", 2), ("O", 1)]
    for bad in ("7E1", "8X1", "8E3", "8E"):
        with pytest.raises(ValueError, match="8E1, 8N1"):
            parse_format(bad)
