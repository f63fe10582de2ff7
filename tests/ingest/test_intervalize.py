"""The grid: boundary derivation, exact quantization, flags, breaks, state; plus an oracle."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.ingest.intervalize import (
    Interval,
    Intervalizer,
    IntervalizerState,
    round_half_even,
)
from gateway.model import Flag, Quality, quality_of

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, on every grid
MIN = 60_000
INTERP = int(Flag.INTERPOLATED)
GAP = int(Flag.GAP_SPANNED)
ROLL = int(Flag.ROLLOVER)
RESET = int(Flag.RESET)


def feed_all(grid: Intervalizer, reads: Sequence[tuple[int, str | int]],
             flags: int = 0) -> list[Interval]:
    """Feed (minutes after T0, cumulative) reads; the first one is a break."""
    out: list[Interval] = []
    for i, (minutes, value) in enumerate(reads):
        out += grid.feed(T0 + minutes * MIN, Decimal(value), flags, i == 0)
    return out


def simple(out: list[Interval]) -> list[tuple[int, int, int]]:
    """(start in minutes after T0, value, flags)."""
    return [((iv.start_ms - T0) // MIN, iv.value, iv.flags) for iv in out]


@pytest.mark.parametrize(("num", "den", "rounded"), [
    (5, 2, 2), (7, 2, 4), (-5, 2, -2), (-7, 2, -4), (1, 3, 0), (2, 3, 1), (10, 1, 10),
    (10**30 + 1, 2, 10**30 // 2), (3, 2, 2),
])
def test_round_half_even(num: int, den: int, rounded: int) -> None:
    assert round_half_even(num, den) == rounded == round(Fraction(num, den))


def test_reads_on_boundaries_give_valid_intervals() -> None:
    out = feed_all(Intervalizer(900), [(0, 1000), (15, 1100), (30, 1250), (45, 1250)])
    assert simple(out) == [(0, 100, 0), (15, 150, 0), (30, 0, 0)]
    assert {quality_of(iv.flags) for iv in out} == {Quality.VALID}


def test_reads_off_the_grid_are_derived() -> None:
    # Three seconds late each time: every boundary is interpolated.
    grid = Intervalizer(900)
    out: list[Interval] = []
    for i, value in enumerate([1000, 1100, 1250, 1400]):
        out += grid.feed(T0 + i * 900_000 + 3000, Decimal(value), 0, i == 0)
    # Boundary 15 min: 1000 + 100·897/900 = 1099.67 -> 1100; 30 min: 1249.5 -> 1250 (even).
    assert simple(out) == [(15, 150, INTERP), (30, 150, INTERP)]
    assert {quality_of(iv.flags) for iv in out} == {Quality.DERIVED}


def test_snap_tolerance_measures_nearby_reads_either_side() -> None:
    grid = Intervalizer(900, snap_tolerance_s=5)
    out: list[Interval] = []
    for offset_s, value in [(3, 1000), (900 - 4, 1100), (1800 + 5, 1250), (2700 + 6, 1400)]:
        out += grid.feed(T0 + offset_s * 1000, Decimal(value), 0, offset_s == 3)
    # 0 and 15 min are measured by reads 3 s after and 4 s before; 30 min by 5 s after;
    # 45 min is 6 s before a read, beyond the tolerance: interpolated (1399.001).
    assert simple(out) == [(0, 100, 0), (15, 150, 0), (30, 149, INTERP)]
    assert simple(grid.feed(T0 + 3600_000 + 1000, Decimal(1500), 0, False)) == [
        (45, 101, INTERP)]


def test_first_read_off_the_grid_waits_for_two_boundaries() -> None:
    out = feed_all(Intervalizer(900), [(2, 100), (17, 250), (32, 400)])
    assert simple(out) == [(15, 150, INTERP)]


def test_a_gap_is_spanned_and_sums_exactly() -> None:
    # Reads at 00:00 and 00:15, then nothing until 02:15: 1001 Wh over eight intervals.
    out = feed_all(Intervalizer(900, max_gap_s=3600), [(0, 5000), (15, 5100), (135, 6101)])
    assert [start for start, _, _ in simple(out)] == [0] + [15 * k for k in range(1, 9)]
    assert out[0].flags == 0
    gap = out[1:]
    assert {iv.flags for iv in gap} == {GAP}
    assert {quality_of(iv.flags) for iv in gap} == {Quality.ESTIMATED_LINEAR}
    assert sum(iv.value for iv in gap) == 1001
    assert sorted({iv.value for iv in gap}) == [125, 126]


def test_ties_round_to_even() -> None:
    # Half a Wh at the quarter-hour boundaries: 0.5 -> 0, then 1.5 -> 2.
    out = feed_all(Intervalizer(900), [(0, 0), (30, 1), (60, 2)])
    assert simple(out) == [(0, 0, INTERP), (15, 1, INTERP), (30, 1, INTERP), (45, 0, INTERP)]


def test_tiny_steps_never_drift() -> None:
    # 0.07 Wh a minute for a day: each interval rounds, the sum telescopes exactly.
    grid = Intervalizer(900)
    reads = [(m, str(Decimal("12.34") + Decimal("0.07") * m)) for m in range(0, 1441)]
    out = feed_all(grid, reads)
    assert len(out) == 96
    assert sum(iv.value for iv in out) == round(Decimal("12.34") + Decimal("100.80")) - 12
    assert {iv.value for iv in out} <= {1, 2}
    assert all(iv.flags == 0 for iv in out)  # a read on every boundary


def test_no_interval_across_a_break_and_reset_flag_on_the_first_after() -> None:
    grid = Intervalizer(900)
    out = feed_all(grid, [(0, 1000), (15, 1100), (20, 1150)])
    assert simple(out) == [(0, 100, 0)]
    # Reset to 10 at 25 min (a new baseline), then reads on and off the grid.
    out = grid.feed(T0 + 25 * MIN, Decimal(10), RESET, True)
    assert out == []
    out = grid.feed(T0 + 30 * MIN, Decimal(20), 0, False)
    assert out == []  # 30 min is the first boundary known after the reset
    out = grid.feed(T0 + 45 * MIN, Decimal(50), 0, False)
    out += grid.feed(T0 + 60 * MIN, Decimal(60), 0, False)
    assert simple(out) == [(30, 30, RESET), (45, 10, 0)]


def test_a_break_read_on_a_boundary_measures_it() -> None:
    grid = Intervalizer(900)
    assert grid.feed(T0 + 15 * MIN, Decimal(10), RESET, True) == []
    assert simple(grid.feed(T0 + 30 * MIN, Decimal(40), 0, False)) == [(15, 30, RESET)]


def test_step_flags_go_to_the_intervals_the_step_overlaps() -> None:
    grid = Intervalizer(900)
    out = feed_all(grid, [(0, 0), (10, 100)])
    out += grid.feed(T0 + 20 * MIN, Decimal(200), ROLL, False)  # step 10 -> 20 min
    out += grid.feed(T0 + 30 * MIN, Decimal(300), 0, False)
    out += grid.feed(T0 + 45 * MIN, Decimal(450), ROLL, False)  # step ends on a boundary
    out += grid.feed(T0 + 60 * MIN, Decimal(600), 0, False)
    assert simple(out) == [
        (0, 150, INTERP | ROLL),  # 10 -> 20 crosses 15
        (15, 150, INTERP | ROLL),  # and lies in this one too
        (30, 150, ROLL),  # 30 -> 45 belongs wholly here
        (45, 150, 0),
    ]


def test_gap_flags_only_where_the_gap_is() -> None:
    out = feed_all(Intervalizer(900, max_gap_s=1800), [(0, 0), (14, 14), (50, 50), (61, 61)])
    assert simple(out) == [(0, 15, GAP), (15, 15, GAP), (30, 15, GAP), (45, 15, GAP | INTERP)]


def test_snapshot_restore_mid_interval() -> None:
    reads = [(0, 1000), (7, 1070), (16, 1160), (22, 1220), (38, 1380), (52, 1520), (61, 1610)]
    uninterrupted = Intervalizer(900, snap_tolerance_s=30)
    whole = feed_all(uninterrupted, reads, ROLL)
    first = Intervalizer(900, snap_tolerance_s=30)
    part = feed_all(first, reads[:4], ROLL)
    state = first.snapshot()
    assert state.boundary_ms == T0 + 15 * MIN and state.carry_flags == ROLL
    second = Intervalizer(900, snap_tolerance_s=30, state=state)
    for minutes, value in reads[4:]:
        part += second.feed(T0 + minutes * MIN, Decimal(value), ROLL, False)
    assert part == whole
    assert second.snapshot() == uninterrupted.snapshot()


def test_fractional_cumulative_is_exact() -> None:
    out = feed_all(Intervalizer(900), [(0, "0.5"), (15, "1.5"), (30, "2.5"), (45, "3.499")])
    assert simple(out) == [(0, 2, 0), (15, 0, 0), (30, 1, 0)]  # 0, 2, 2, 3


@pytest.mark.parametrize("kwargs", [
    {"length_s": 0}, {"snap_tolerance_s": 450}, {"snap_tolerance_s": -1}, {"max_gap_s": -1},
    {"state": IntervalizerState(boundary_ms=T0 + 60_000)},
])
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Intervalizer(**kwargs)  # type: ignore[arg-type]


def test_points_must_rise_in_time() -> None:
    grid = Intervalizer(900)
    grid.feed(T0, Decimal(1), 0, True)
    with pytest.raises(ValueError):
        grid.feed(T0, Decimal(2), 0, False)


# -- the oracle -------------------------------------------------------------------------

LENGTH_MS = 900_000


@st.composite
def rising_reads(draw: st.DrawFn) -> list[tuple[int, Fraction]]:
    """(ms, cumulative) rising, at any spacing, with whole or fractional base units."""
    at = T0 + draw(st.integers(-LENGTH_MS, LENGTH_MS))
    value = Fraction(draw(st.integers(0, 10**9)), draw(st.sampled_from([1, 10, 1000])))
    reads = [(at, value)]
    for _ in range(draw(st.integers(1, 40))):
        at += draw(st.one_of(st.integers(1, 2 * LENGTH_MS), st.integers(1, 12 * LENGTH_MS),
                             st.sampled_from([LENGTH_MS, LENGTH_MS - 1, 1000])))
        value += Fraction(draw(st.integers(0, 10**6)), draw(st.sampled_from([1, 10, 1000])))
        reads.append((at, value))
    return reads


def _oracle(reads: list[tuple[int, Fraction]], b: int, snap: int) -> tuple[Fraction, bool]:
    """The cumulative at boundary ``b`` and whether it is measured."""
    for i, (at, value) in enumerate(reads):
        if at >= b - snap:
            if at <= b + snap:
                return value, True
            at0, value0 = reads[i - 1]
            return value0 + (value - value0) * Fraction(b - at0, at - at0), False
    raise AssertionError("boundary past the last read")


@given(rising_reads(), st.sampled_from([0, 1, 5, 60]), st.sampled_from([900, 1800, 3600]))
def test_intervals_match_the_oracle(reads: list[tuple[int, Fraction]], snap_s: int,
                                    gap_s: int) -> None:
    grid = Intervalizer(900, snap_tolerance_s=snap_s, max_gap_s=gap_s)
    out: list[Interval] = []
    for i, (at, value) in enumerate(reads):
        dec = Decimal(value.numerator) / Decimal(value.denominator)  # exact: den is 10^k
        out += grid.feed(at, dec, 0, i == 0)
    snap = snap_s * 1000
    first_b = -((-(reads[0][0] - snap)) // LENGTH_MS) * LENGTH_MS
    last_b = (reads[-1][0] + snap) // LENGTH_MS * LENGTH_MS
    assert [iv.start_ms for iv in out] == list(range(first_b, last_b, LENGTH_MS))
    for iv in out:
        assert iv.value >= 0
        start, start_measured = _oracle(reads, iv.start_ms, snap)
        end, end_measured = _oracle(reads, iv.start_ms + LENGTH_MS, snap)
        assert iv.value == round(end) - round(start)
        assert bool(iv.flags & (INTERP | GAP)) == (not (start_measured and end_measured))
    if out:
        total = sum(iv.value for iv in out)
        start, _ = _oracle(reads, first_b, snap)
        end, _ = _oracle(reads, last_b, snap)
        assert total == round(end) - round(start)
        assert abs(total - (end - start)) <= 1
