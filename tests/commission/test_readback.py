"""The read-back's judging: one verdict per point, with the reason an installer needs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.commission.readback import Limits, judge
from gateway.model import Kind, Reading, Unit

AT = datetime(2026, 12, 2, 12, tzinfo=UTC)
LIMITS = Limits(max_power_w=10_000)


def r(channel: str, value: str, unit: Unit, kind: Kind = Kind.INSTANT) -> Reading:
    return Reading(meter_id="M", channel=channel, at=AT, value=Decimal(value), unit=unit,
                   kind=kind)


def one(reading: Reading, later: Reading | None = None, *, power: str | None = None,
        dt_s: float = 10) -> tuple[str, str]:
    first = [reading] + ([r("1.0.16.7.0.255", power, Unit.W)] if power else [])
    second = None if later is None else [later] + (
        [r("1.0.16.7.0.255", power, Unit.W)] if power else [])
    [check] = [c for c in judge(first, second, limits=LIMITS, dt_s=dt_s,
                                sources={reading.channel: "input 0x0000 float32"})]
    return check.verdict, check.reason


@pytest.mark.parametrize(("value", "verdict", "words"), [
    ("231.4", "pass", "range"), ("0", "fail", "not connected"), ("400.1", "fail", "line-to-line"),
])
def test_voltage(value: str, verdict: str, words: str) -> None:
    got = one(r("1.0.32.7.0.255", value, Unit.V))
    assert got[0] == verdict and words in got[1]


@pytest.mark.parametrize(("unit", "value", "verdict"), [
    (Unit.HZ, "50.01", "pass"), (Unit.HZ, "5001", "fail"), (Unit.PF, "-0.97", "pass"),
    (Unit.PF, "1.2", "fail"), (Unit.W, "9999", "pass"), (Unit.KW, "12", "fail"),
    (Unit.A, "43.1", "pass"), (Unit.A, "-1", "fail"),
])
def test_instant_values_against_the_rating(unit: Unit, value: str, verdict: str) -> None:
    assert one(r("x", value, unit))[0] == verdict


def test_negative_import_power_is_a_warning_naming_the_reversed_ct() -> None:
    verdict, reason = one(r("1.0.16.7.0.255", "-1200", Unit.W))
    assert verdict == "warn" and "reversed" in reason


def energy(value: str, unit: Unit = Unit.KWH) -> Reading:
    return r("1.0.1.8.0.255", value, unit, Kind.CUMULATIVE)


def test_a_register_that_moves_passes_and_says_how_much() -> None:
    verdict, reason = one(energy("1234.56"), energy("1234.58"), power="3000")
    assert verdict == "pass" and "moved 0.02 kWh" in reason


def test_a_register_going_backwards_fails() -> None:
    assert one(energy("1234.56"), energy("1234.50"), power="3000")[0] == "fail"


def test_a_stuck_register_fails_only_when_the_power_should_have_moved_it() -> None:
    # 3 kW for 60 s is 50 Wh: a 0.01 kWh register must have stepped five times.
    verdict, reason = one(energy("1234.56"), energy("1234.56"), power="3000", dt_s=60)
    assert verdict == "fail" and "did not move" in reason
    # 100 W for 10 s is 0.28 Wh: a 10 Wh step needs 720 s; too soon to tell.
    verdict, reason = one(energy("1234.56"), energy("1234.56"), power="100", dt_s=10)
    assert verdict == "skip" and "720 s" in reason
    # No power at all: nothing to judge by.
    assert one(energy("1234.56"), energy("1234.56"))[0] == "pass"


def test_a_point_not_read_fails_with_the_reason() -> None:
    [check] = judge([], None, limits=LIMITS, dt_s=0, sources={"1.0.1.8.0.255": "input 0x0156"},
                    failed={"1.0.1.8.0.255": "unit 7: no reply within 0.12 s"})
    assert (check.verdict, check.value, check.reason) == (
        "fail", None, "unit 7: no reply within 0.12 s")


def test_only_the_registers_the_flow_feeds_must_move() -> None:
    power = r("1.0.16.7.0.255", "3000", Unit.W)
    first = [power, energy("100.00"), r("1.0.2.8.0.255", "5.00", Unit.KWH, Kind.CUMULATIVE),
             r("1.0.1.8.1.255", "60.00", Unit.KWH, Kind.CUMULATIVE),
             r("1.0.1.8.2.255", "40.00", Unit.KWH, Kind.CUMULATIVE)]
    second = [power, energy("100.06"), r("1.0.2.8.0.255", "5.00", Unit.KWH, Kind.CUMULATIVE),
              r("1.0.1.8.1.255", "60.06", Unit.KWH, Kind.CUMULATIVE),
              r("1.0.1.8.2.255", "40.00", Unit.KWH, Kind.CUMULATIVE)]
    sources = {iv.channel: "x" for iv in first}
    got = {c.channel: c.verdict for c in judge(first, second, limits=LIMITS, sources=sources,
                                              dt_s=72)}
    # Export does not move while importing; the night rate rests while the day rate runs.
    assert got == dict.fromkeys(sources, "pass")
    stuck = [*second[:3], r("1.0.1.8.1.255", "60.00", Unit.KWH, Kind.CUMULATIVE), second[4]]
    got = {c.channel: c.verdict for c in judge(first, stuck, limits=LIMITS, sources=sources,
                                              dt_s=72)}
    assert got["1.0.1.8.1.255"] == got["1.0.1.8.2.255"] == "fail"  # no tariff moved
    assert got["1.0.1.8.0.255"] == "pass"


def test_tariff_registers_all_at_zero_are_a_meter_without_tariffs() -> None:
    power = r("1.0.16.7.0.255", "3000", Unit.W)
    t1, t2 = (r(f"1.0.1.8.{t}.255", "0", Unit.WH, Kind.CUMULATIVE) for t in (1, 2))
    reads = [power, t1, t2]
    checks = judge(reads, reads, limits=LIMITS, dt_s=72,
                   sources={t1.channel: "x", t2.channel: "x"})
    assert [c.verdict for c in checks] == ["pass", "pass"]
