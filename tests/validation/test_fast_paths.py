"""The hot paths change nothing: each fast path against the general code it short-cuts.

- ``RegisterTracker.feed`` and ``step`` answer a plain rise before the general
  transitions (``_feed``); all three must agree, state included, on any sequence.
- The stage's fused rule checks (``fuse_reading_rules``, ``fuse_interval_rules``) must
  fire what calling each rule's ``check`` in turn fires, and leave the same state.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.validation.rollover import Outcome, Point, RegisterTracker, TrackerConfig
from gateway.validation.rules import (
    DemandHighLimit,
    FrozenRegister,
    FutureTimestamp,
    IntervalRule,
    ReadingRule,
    Spike,
    VeeState,
    ZeroRun,
    fuse_interval_rules,
    fuse_reading_rules,
)

CONFIGS = [
    TrackerConfig(),
    TrackerConfig(max_power_w=Decimal(1000), slack=Decimal(1)),
    TrackerConfig(modulus=Decimal(65536)),
    TrackerConfig(modulus=Decimal(10_000), max_power_w=Decimal(20_000), tolerance=Decimal(0)),
]

# Steps: (seconds after the previous read, may be <= 0; change in Wh, drops included).
steps = st.lists(st.tuples(st.sampled_from([-900, 0, 1, 60, 900, 900, 900, 3600, 86_400]),
                           st.integers(-70_000, 70_000) | st.sampled_from([0, 1, 250, 5000]),
                           st.sampled_from([0, 0, 0, 1, 3])), max_size=40)


@settings(max_examples=300, deadline=None)
@given(config=st.sampled_from(CONFIGS), start=st.integers(0, 70_000), steps=steps)
def test_feed_and_step_agree_with_the_general_path(config: TrackerConfig, start: int,
                                                   steps: list[tuple[int, int, int]]) -> None:
    general, fed, stepped = (RegisterTracker(config) for _ in range(3))
    at, value = 0, start
    for seconds, change, decimals in steps:
        at += seconds * 1000
        value += change
        read = Decimal(value).scaleb(-decimals)  # 0.001 Wh steps too: not only integers
        expected = general._feed(at, read)
        assert fed.feed(at, read) == expected
        got = stepped.step(at, read)
        if not isinstance(got, Outcome):
            got = Outcome((Point(at, got, 0, False),))
        assert got == expected
        assert fed.snapshot() == stepped.snapshot() == general.snapshot()


# Intervals: (gap before it in intervals, 0 = consecutive; value in Wh).
intervals = st.lists(st.tuples(st.sampled_from([0, 0, 0, 0, 1, 3]),
                               st.sampled_from([0, 0, 1, 50, 99, 100, 101, 400, 2500, 9000])),
                     max_size=40)


def _interval_rule(kind: str) -> IntervalRule:
    if kind == "demand":
        return DemandHighLimit(Decimal("8000.5"))
    if kind == "spike":
        return Spike(Decimal("2.5"), window=3, floor=100)
    return ZeroRun(3)


def _interval_rules(kinds: list[str]) -> list[IntervalRule]:
    return [_interval_rule(kind) for kind in kinds]


def _save(rules: list[IntervalRule] | list[ReadingRule]) -> VeeState:
    state = VeeState()
    for rule in rules:
        if isinstance(rule, Spike | ZeroRun | FrozenRegister):
            state = rule.save(state)
    return state


@settings(max_examples=200, deadline=None)
@given(kinds=st.permutations(["demand", "spike", "zero"]).flatmap(
           lambda ks: st.integers(0, 3).map(lambda n: ks[:n])),
       series=intervals, length_s=st.sampled_from([900, 3600]))
def test_fused_interval_rules_fire_what_each_rule_fires(
        kinds: list[str], series: list[tuple[int, int]], length_s: int) -> None:
    one_by_one, fused_rules = _interval_rules(kinds), _interval_rules(kinds)
    fused = fuse_interval_rules(fused_rules)
    start = 0
    for gap, value in series:
        start += gap * length_s * 1000
        expected = 0
        for rule in one_by_one:
            expected |= rule.check(start, length_s, value, expected)
        assert fused(start, length_s, value, 0) == expected
        assert _save(fused_rules) == _save(one_by_one)
        start += length_s * 1000


NOW = 1_000_000_000


@settings(max_examples=200, deadline=None)
@given(kinds=st.permutations(["future", "frozen"]).flatmap(
           lambda ks: st.integers(0, 2).map(lambda n: ks[:n])),
       reads=st.lists(st.tuples(st.sampled_from([-60, 0, 30, 60, 60, 200]),
                                st.sampled_from([None, 0, 0, 60, 120])), max_size=30))
def test_fused_reading_rules_fire_what_each_rule_fires(
        kinds: list[str], reads: list[tuple[int, int | None]]) -> None:
    def make() -> list[ReadingRule]:
        return [FutureTimestamp(120) if kind == "future" else FrozenRegister() for kind in kinds]

    one_by_one, fused_rules = make(), make()
    fused = fuse_reading_rules(fused_rules)
    at, meter_at = NOW - 600_000, NOW - 600_000
    for step_s, meter_step_s in reads:
        at += step_s * 1000
        meter = None
        if meter_step_s is not None:
            meter_at += meter_step_s * 1000
            meter = meter_at
        expected = 0
        for rule in one_by_one:
            expected |= rule.check(at, Decimal(1), NOW, meter)
        assert fused(at, Decimal(1), NOW, meter) == expected
        assert _save(fused_rules) == _save(one_by_one)
