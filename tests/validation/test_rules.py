"""The VEE rules and the stage that runs them: annotate with flags, never throw."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.errors import ConfigError
from gateway.model import Flag
from gateway.validation.rules import (
    FutureTimestamp,
    IntervalRule,
    JumpBeyondRating,
    NegativeDelta,
    ReadingRule,
    StepRule,
)
from gateway.validation.stage import ValidationStage

NOW = 1_767_225_600_000  # 2026-01-01T00:00Z


@pytest.mark.parametrize(("at_ms", "fired"), [
    (NOW - 86_400_000, 0),
    (NOW, 0),
    (NOW + 120_000, 0),  # exactly at the tolerance
    (NOW + 120_001, Flag.FUTURE),
    (NOW + 365 * 86_400_000, Flag.FUTURE),
])
def test_future_timestamp(at_ms: int, fired: int) -> None:
    assert FutureTimestamp(tolerance_s=120).check(at_ms, Decimal(1), NOW) == fired


@pytest.mark.parametrize(("delta", "fired"), [
    (Decimal(5), 0), (Decimal(0), 0), (Decimal("-0.001"), Flag.NEGATIVE_DELTA),
])
def test_negative_delta(delta: Decimal, fired: int) -> None:
    assert NegativeDelta().check(900_000, delta) == fired


# 4 kW with 10 % over 15 minutes: 1100 Wh, plus 5 Wh of slack.
@pytest.mark.parametrize(("elapsed_ms", "delta", "fired"), [
    (900_000, Decimal(1105), 0),
    (900_000, Decimal("1105.001"), Flag.OVER_MAX),
    (1_000, Decimal(5), 0),  # one register tick a second apart: the slack
    (1_000, Decimal(7), Flag.OVER_MAX),
    (3_600_000 * 24, Decimal(105_605), 0),
])
def test_jump_beyond_rating(elapsed_ms: int, delta: Decimal, fired: int) -> None:
    rule = JumpBeyondRating(Decimal(4000), tolerance=Decimal("0.1"), slack=Decimal(5))
    assert rule.check(elapsed_ms, delta) == fired
    assert rule.allows(elapsed_ms, delta) == (not fired)


def test_jump_limit_and_memo() -> None:
    rule = JumpBeyondRating(Decimal(4000), tolerance=Decimal("0.1"), slack=Decimal(5))
    assert rule.limit(900_000) == Decimal(1105)
    # The remembered limit follows the elapsed time asked, in any order.
    assert rule.allows(900_000, Decimal(1105))
    assert not rule.allows(450_000, Decimal(1105))
    assert rule.allows(900_000, Decimal(1105))


def test_no_rating_allows_anything() -> None:
    rule = JumpBeyondRating(None)
    assert not rule.rated
    assert rule.limit(1) is None
    assert rule.check(1, Decimal(10**12)) == 0


@pytest.mark.parametrize("bad", [
    lambda: JumpBeyondRating(Decimal(0)),
    lambda: JumpBeyondRating(Decimal(1), tolerance=Decimal(-1)),
    lambda: FutureTimestamp(-1),
])
def test_bad_rule_settings(bad: object) -> None:
    with pytest.raises(ConfigError):
        bad()  # type: ignore[operator]


def test_rules_satisfy_their_protocols() -> None:
    reading: ReadingRule = FutureTimestamp()
    steps: list[StepRule] = [NegativeDelta(), JumpBeyondRating(Decimal(1))]
    assert reading.flag is Flag.FUTURE
    assert [s.flag for s in steps] == [Flag.NEGATIVE_DELTA, Flag.OVER_MAX]


class _Zero:
    """A test interval rule: zero consumption (a later issue ships the real one)."""

    flag = Flag.ESTIMATED  # any bit will do for the stage's bookkeeping

    def check(self, start_ms: int, length_s: int, value: int, flags: int) -> int:
        return int(self.flag) if value == 0 else 0


class _Seen:
    """Records the flags it was shown: later rules see what earlier ones fired."""

    flag = Flag.EDITED

    def __init__(self) -> None:
        self.seen: list[int] = []

    def check(self, start_ms: int, length_s: int, value: int, flags: int) -> int:
        self.seen.append(flags)
        return 0


def test_stage_unions_flags_and_names_rules() -> None:
    seen = _Seen()
    interval_rules: list[IntervalRule] = [_Zero(), seen]
    stage = ValidationStage(reading_rules=[FutureTimestamp(60)], interval_rules=interval_rules)
    assert stage.check_reading(NOW + 61_000, Decimal(1), NOW) == Flag.FUTURE
    assert stage.check_reading(NOW, Decimal(1), NOW) == 0
    assert stage.check_interval(NOW, 900, 0, int(Flag.INTERPOLATED)) == Flag.ESTIMATED
    assert seen.seen == [Flag.INTERPOLATED | Flag.ESTIMATED]
    assert stage.check_interval(NOW, 900, 5, 0) == 0
    assert stage.fired(Flag.FUTURE | Flag.ESTIMATED) == ["FutureTimestamp", "_Zero"]
    assert "FutureTimestamp" in repr(stage)


def test_default_stage() -> None:
    stage = ValidationStage.default(future_tolerance_s=10)
    assert [type(r) for r in stage.reading_rules] == [FutureTimestamp]
    assert stage.interval_rules == ()
    assert stage.check_reading(NOW + 10_001, Decimal(0), NOW) == Flag.FUTURE
