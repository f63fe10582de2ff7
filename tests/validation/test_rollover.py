"""The register tracker: every transition as a table row, plus properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.model import Flag
from gateway.validation.rollover import (
    Outcome,
    RegisterTracker,
    TrackerConfig,
    TrackerState,
    Verdict,
)

B = Verdict.BASELINE
R = Verdict.ROLLOVER
A = Verdict.AMBIGUOUS
H = Verdict.HELD
G = Verdict.GLITCH
X = Verdict.RESET
S = Verdict.SUPERSEDED
ST = Verdict.STALE
C = Verdict.CONFLICT
OR = Verdict.OUT_OF_RANGE

NONE = int(Flag.NONE)
ROLL = int(Flag.ROLLOVER)
RESET = int(Flag.RESET)
OVER = int(Flag.OVER_MAX)
AMB = int(Flag.AMBIGUOUS_WRAPS)

#: 4-digit kWh register in Wh, a 20 kW meter.
DIAL4 = TrackerConfig(modulus=Decimal(10_000_000), max_power_w=Decimal(20_000))
#: 16-bit Wh counter, no rating known: wraps judged by the half-modulus rule.
BITS16 = TrackerConfig(modulus=Decimal(65536))
PLAIN = TrackerConfig()
SMALL = TrackerConfig(max_power_w=Decimal(1000))  # 1 kW: 275 Wh per 15 min with 10 %

# Each row: config, reads as (seconds, value), and per read the verdicts noticed and
# the points given as (seconds, cumulative, flags, break).
CASES = {
    "first read is a baseline with a break": (
        PLAIN, [(0, 100)],
        [((B,), [(0, 100, NONE, True)])]),
    "a rise continues": (
        PLAIN, [(0, 100), (900, 150)],
        [((B,), [(0, 100, NONE, True)]), ((), [(900, 150, NONE, False)])]),
    "no change continues": (
        SMALL, [(0, 100), (900, 100)],
        [((B,), [(0, 100, NONE, True)]), ((), [(900, 100, NONE, False)])]),
    "a rise beyond the rating is held, and a glitch when the next read ignores it": (
        SMALL, [(0, 100), (900, 375), (1800, 999_999), (2700, 500)],
        [((B,), [(0, 100, NONE, True)]), ((), [(900, 375, NONE, False)]), ((H,), []),
         ((G,), [(2700, 500, NONE, False)])]),
    "a rise beyond the rating confirmed by the next read: new baseline, nothing invented": (
        SMALL, [(0, 100), (900, 375), (1800, 9_999), (2700, 10_100)],
        [((B,), [(0, 100, NONE, True)]), ((), [(900, 375, NONE, False)]), ((H,), []),
         ((X,), [(1800, 9_999, RESET | OVER, True), (2700, 10_100, NONE, False)])]),
    "a held spike followed by another: superseded, held in its place": (
        SMALL, [(0, 100), (1800, 9_999), (2700, 5_000), (3600, 5_100)],
        [((B,), [(0, 100, NONE, True)]), ((H,), []), ((S, H), []),
         ((X,), [(2700, 5_000, RESET | OVER, True), (3600, 5_100, NONE, False)])]),
    "a 16-bit counter read after an outage longer than a turn at the rating": (
        TrackerConfig(modulus=Decimal(65536), max_power_w=Decimal(11000)),
        [(0, 1000), (900, 3000), (900 + 6 * 3600, 40_000)],
        [((B,), [(0, 1000, NONE, True)]), ((), [(900, 3000, NONE, False)]),
         ((A,), [(900 + 6 * 3600, 40_000, AMB, False)])]),
    "4 digits: 9993 -> 0007 is +14 kWh": (
        DIAL4, [(0, 9_993_000), (3600, 7_000)],
        [((B,), [(0, 9_993_000, NONE, True)]), ((R,), [(3600, 10_007_000, ROLL, False)])]),
    "16 bits without a rating: a wrap below half the modulus": (
        BITS16, [(0, 65000), (900, 100), (1800, 33000), (2700, 100)],
        [((B,), [(0, 65000, NONE, True)]), ((R,), [(900, 65636, ROLL, False)]),
         ((), [(1800, 98536, NONE, False)]), ((R,), [(2700, 131172, ROLL, False)])]),
    "16 bits without a rating: half the modulus or more is held": (
        BITS16, [(0, 40000), (900, 7232)],
        [((B,), [(0, 40000, NONE, True)]), ((H,), [])]),
    "an implausible wrap is held, then a glitch": (
        DIAL4, [(0, 9_000_000), (900, 100_000), (1800, 9_001_000)],
        [((B,), [(0, 9_000_000, NONE, True)]), ((H,), []),
         ((G,), [(1800, 9_001_000, NONE, False)])]),
    "an implausible wrap is held, then a reset": (
        DIAL4, [(0, 9_000_000), (900, 100_000), (1800, 101_000)],
        [((B,), [(0, 9_000_000, NONE, True)]), ((H,), []),
         ((X,), [(900, 100_000, RESET, True), (1800, 101_000, NONE, False)])]),
    "held, then a plausible wrap from the last good read: glitch and rollover": (
        DIAL4, [(0, 9_999_000), (900, 5_000_000), (1800, 2_000)],
        [((B,), [(0, 9_999_000, NONE, True)]), ((H,), []),
         ((G, R), [(1800, 10_002_000, ROLL, False)])]),
    "a glitch then recovery loses nothing": (
        PLAIN, [(0, 1000), (900, 1100), (1800, 0), (2700, 1300), (3600, 1400)],
        [((B,), [(0, 1000, NONE, True)]), ((), [(900, 1100, NONE, False)]), ((H,), []),
         ((G,), [(2700, 1300, NONE, False)]), ((), [(3600, 1400, NONE, False)])]),
    "a drop without a modulus: held, then a reset": (
        PLAIN, [(0, 1000), (900, 900), (1800, 950)],
        [((B,), [(0, 1000, NONE, True)]), ((H,), []),
         ((X,), [(900, 900, RESET, True), (1800, 950, NONE, False)])]),
    "lower again: the held read is superseded": (
        PLAIN, [(0, 1000), (900, 500), (1800, 300), (2700, 350)],
        [((B,), [(0, 1000, NONE, True)]), ((H,), []), ((S, H), []),
         ((X,), [(1800, 300, RESET, True), (2700, 350, NONE, False)])]),
    "a reset whose next step is beyond the rating: the step is held in turn": (
        SMALL, [(0, 1000), (900, 10), (1800, 900)],
        [((B,), [(0, 1000, NONE, True)]), ((H,), []),
         ((X, H), [(900, 10, RESET, True)])]),
    "a duplicate is ignored": (
        PLAIN, [(0, 100), (0, 100), (900, 120), (900, 120)],
        [((B,), [(0, 100, NONE, True)]), ((), []), ((), [(900, 120, NONE, False)]),
         ((), [])]),
    "same instant, other value: a conflict": (
        PLAIN, [(0, 100), (0, 101), (900, 120)],
        [((B,), [(0, 100, NONE, True)]), ((C,), []), ((), [(900, 120, NONE, False)])]),
    "an older read is stale": (
        PLAIN, [(0, 100), (900, 200), (450, 150), (1800, 300)],
        [((B,), [(0, 100, NONE, True)]), ((), [(900, 200, NONE, False)]), ((ST,), []),
         ((), [(1800, 300, NONE, False)])]),
    "while held: duplicate ignored, conflict and stale refused": (
        PLAIN, [(0, 100), (900, 50), (900, 50), (900, 51), (450, 80), (1800, 120)],
        [((B,), [(0, 100, NONE, True)]), ((H,), []), ((), []), ((C,), []), ((ST,), []),
         ((G,), [(1800, 120, NONE, False)])]),
    "outside the register's range": (
        BITS16, [(0, 65536), (0, -1), (0, 5), (900, 70000)],
        [((OR,), []), ((OR,), []), ((B,), [(0, 5, NONE, True)]), ((OR,), [])]),
}


def _run(config: TrackerConfig, reads: list[tuple[int, int]]) -> list[Outcome]:
    tracker = RegisterTracker(config)
    return [tracker.feed(s * 1000, Decimal(v)) for s, v in reads]


@pytest.mark.parametrize("name", list(CASES))
def test_transition(name: str) -> None:
    config, reads, expected = CASES[name]
    outcomes = _run(config, reads)
    got = [
        (tuple(n.verdict for n in o.notices),
         [(p.at_ms // 1000, int(p.cumulative), p.flags, p.brk) for p in o.points])
        for o in outcomes
    ]
    assert got == expected
    for outcome in outcomes:
        for notice in outcome.notices:
            assert notice.reason  # every notice says why


def test_notices_carry_the_flag_of_their_rule() -> None:
    outcomes = _run(DIAL4, [(0, 9_000_000), (900, 100_000), (1800, 9_001_000), (2700, 5)])
    held = outcomes[1].notices[0]
    assert held.flags == Flag.NEGATIVE_DELTA and held.at_ms == 900_000
    glitch = outcomes[2].notices[0]
    assert glitch.flags == Flag.NEGATIVE_DELTA and glitch.value == 100_000
    assert "glitch" in glitch.reason


def test_sixteen_bit_counter_wraps_twice_in_a_day() -> None:
    # 1.3 kWh per quarter hour for a day from 60 000 Wh: the counter passes 65 536 and
    # 131 072. A 6 kW meter makes both wraps plausible.
    tracker = RegisterTracker(TrackerConfig(modulus=Decimal(65536), max_power_w=Decimal(6000)))
    true = 60_000
    wraps = 0
    last = None
    for i in range(97):
        outcome = tracker.feed(i * 900_000, Decimal(true % 65536))
        (point,) = outcome.points
        assert point.cumulative == true
        wraps += bool(point.flags & Flag.ROLLOVER)
        last = point
        true += 1300
    assert wraps == 2
    assert last is not None and last.cumulative - 60_000 == 96 * 1300


def test_snapshot_restore_continues_identically() -> None:
    reads = [(0, 9_000_000), (900, 100_000), (1800, 101_000), (2700, 102_000)]
    whole = _run(DIAL4, reads)
    first = RegisterTracker(DIAL4)
    for s, v in reads[:2]:
        first.feed(s * 1000, Decimal(v))
    state = first.snapshot()
    assert state.held_at_ms == 900_000
    second = RegisterTracker(DIAL4, state)
    rest = [second.feed(s * 1000, Decimal(v)) for s, v in reads[2:]]
    assert rest == whole[2:]
    assert second.snapshot() == TrackerState(last_at_ms=2_700_000, last_value=Decimal(102_000))


@pytest.mark.parametrize("kwargs", [
    {"modulus": Decimal(0)}, {"max_power_w": Decimal(-1)}, {"tolerance": Decimal(-1)},
])
def test_bad_config_is_refused(kwargs: dict[str, Decimal]) -> None:
    with pytest.raises(ConfigError):
        TrackerConfig(**kwargs)


def test_inconsistent_state_is_refused() -> None:
    with pytest.raises(ValueError):
        RegisterTracker(PLAIN, TrackerState(held_at_ms=5, held_value=Decimal(1)))


# -- properties -----------------------------------------------------------------------

MODULUS = 65536
RATING_W = 10_000


@st.composite
def plausible_reads(draw: st.DrawFn) -> list[tuple[int, int]]:
    """(ms, true cumulative) rising at most at the rating, possibly wrapping many times."""
    at = draw(st.integers(0, 10**12))
    true = draw(st.integers(0, 10**7))
    reads = [(at, true)]
    for _ in range(draw(st.integers(1, 60))):
        step_ms = draw(st.integers(1, 3_600_000))
        limit = RATING_W * step_ms // 3_600_000  # Wh at exactly the rating
        at += step_ms
        true += draw(st.integers(0, min(limit, MODULUS // 2)))
        reads.append((at, true))
    return reads


@given(plausible_reads())
def test_plausible_wraps_unwrap_exactly(reads: list[tuple[int, int]]) -> None:
    tracker = RegisterTracker(TrackerConfig(modulus=Decimal(MODULUS),
                                            max_power_w=Decimal(RATING_W)))
    first_at, first_true = reads[0]
    for at, true in reads:
        outcome = tracker.feed(at, Decimal(true % MODULUS))
        (point,) = outcome.points
        assert point.cumulative - first_true % MODULUS == true - first_true
        assert not point.flags & (Flag.OVER_MAX | Flag.NEGATIVE_DELTA | Flag.RESET)
        assert point.brk == (at == first_at)


@given(plausible_reads())
def test_feeding_again_changes_nothing(reads: list[tuple[int, int]]) -> None:
    tracker = RegisterTracker(TrackerConfig(modulus=Decimal(MODULUS),
                                            max_power_w=Decimal(RATING_W)))
    for at, true in reads:
        tracker.feed(at, Decimal(true % MODULUS))
    state = tracker.snapshot()
    for at, true in reads:
        outcome = tracker.feed(at, Decimal(true % MODULUS))
        assert outcome.points == ()
        assert all(n.verdict is Verdict.STALE for n in outcome.notices)
    assert tracker.snapshot() == state
