"""The before/after comparison around a usage marker (gateway.markers_compare)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.errors import DataError
from gateway.markers import Marker
from gateway.markers_compare import Comparison, compare, plan
from gateway.model import DailyUsage, Unit

AT = datetime(2026, 1, 1, tzinfo=UTC)
D = date(2026, 3, 1)
YESTERDAY = date(2026, 12, 1)


def point(day: date = D) -> Marker:
    return Marker(id=7, meter_id="M", kind="point", start=day, end=None, label="heat pump",
                  category="heating_cooling", note="", created_at=AT, updated_at=AT)


def span(first: date, last: date) -> Marker:
    return Marker(id=8, meter_id="M", kind="range", start=first, end=last, label="away",
                  category="occupancy", note="", created_at=AT, updated_at=AT)


def usage(day: date, value: int, *, expected: int = 96, present: int | None = None,
          estimated: int = 0) -> DailyUsage:
    return DailyUsage(meter_id="M", channel="c", day=day, value=value, unit=Unit.WH,
                      expected=expected, present=expected if present is None else present,
                      estimated=estimated)


def days(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


def flat(first: date, n: int, value: int) -> list[DailyUsage]:
    return [usage(d, value) for d in days(first, n)]


def run(marker: Marker, rows: Iterable[DailyUsage], *, n: int = 30,
        yesterday: date = YESTERDAY, span_of: tuple[date, date] | None = None) -> Comparison:
    rows = list(rows)
    if span_of is None and rows:
        span_of = (min(r.day for r in rows), max(r.day for r in rows))
    return compare(marker, rows, span=span_of, yesterday=yesterday, window_days=n)


def test_a_point_marker_compares_n_days_either_side_leaving_its_day_out() -> None:
    rows = [*flat(D - timedelta(days=40), 40, 10_000), usage(D, 99_999),
            *flat(D + timedelta(days=1), 40, 8_000)]
    c = run(point(), rows)
    assert c.before is not None and c.after is not None
    assert (c.before.first, c.before.last, c.before.days) == (date(2026, 1, 30), date(2026, 2, 28),
                                                              30)
    assert (c.after.first, c.after.last) == (date(2026, 3, 2), date(2026, 3, 31))
    assert (c.before.average, c.after.average, c.change, c.change_percent) == (
        10_000, 8_000, -2_000, Decimal("-20.0"))
    assert (c.days, c.wanted_days, c.verdict, c.quality) == (30, 30, "ok", [])


def test_n_is_configurable_within_7_to_90() -> None:
    rows = flat(D - timedelta(days=100), 200, 5_000)
    assert run(point(), rows, n=7).days == 7
    assert run(point(), rows, n=90).days == 90
    for bad in (6, 91):
        with pytest.raises(DataError, match="7 to 90"):
            run(point(), rows, n=bad)


def test_a_range_is_compared_with_the_equal_window_just_before_it() -> None:
    trip = span(date(2026, 3, 10), date(2026, 3, 19))  # 10 days
    rows = flat(date(2026, 2, 1), 37, 12_000) + flat(date(2026, 3, 10), 10, 3_000)
    c = run(trip, rows, n=30)  # n does not apply to a range
    assert c.before is not None and c.after is not None
    assert (c.before.first, c.before.last) == (date(2026, 2, 28), date(2026, 3, 9))
    assert (c.after.first, c.after.last) == (date(2026, 3, 10), date(2026, 3, 19))
    assert (c.days, c.before.average, c.after.average, c.change_percent) == (
        10, 12_000, 3_000, Decimal("-75.0"))


def test_a_one_day_range_is_its_own_day_against_the_day_before() -> None:
    c = run(span(D, D), [usage(D - timedelta(days=1), 100), usage(D, 150)])
    assert (c.days, c.change, c.change_percent) == (1, 50, Decimal("50.0"))


def test_windows_are_clipped_to_the_data_so_both_have_the_same_length() -> None:
    # Data from 12 days before the marker: both windows become 12 days.
    rows = flat(D - timedelta(days=12), 12, 1_000) + flat(D + timedelta(days=1), 30, 2_000)
    c = run(point(), rows)
    assert c.before is not None and c.after is not None
    assert (c.days, c.before.days, c.after.days, c.after.last) == (
        12, 12, 12, date(2026, 3, 13))
    assert c.quality == ["window shortened to 12 days (data starts 2026-02-17)"]
    assert (c.before.missing_days, c.after.missing_days, c.verdict) == (0, 0, "ok")
    # Data ending 5 days after the marker.
    rows = flat(D - timedelta(days=30), 30, 1_000) + flat(D + timedelta(days=1), 5, 2_000)
    c = run(point(), rows)
    assert c.days == 5 and c.quality == ["window shortened to 5 days (data ends 2026-03-06)"]


def test_the_after_window_never_reaches_today() -> None:
    rows = flat(D - timedelta(days=30), 60, 1_000)  # data up to and including "today"
    c = run(point(), rows, yesterday=D + timedelta(days=3))
    assert c.after is not None and c.after.last == date(2026, 3, 4) and c.days == 3
    assert c.quality == ["window shortened to 3 days (yesterday is 2026-03-04)"]
    # A range still running: its days so far against as many before it.
    c = run(span(D, D + timedelta(days=20)), rows, yesterday=D + timedelta(days=3))
    assert (c.days, c.wanted_days) == (4, 21)


@pytest.mark.parametrize(("marker", "rows", "yesterday", "why"), [
    (point(), flat(D - timedelta(days=30), 30, 1), YESTERDAY, "data ends 2026-02-28"),
    (point(), flat(D + timedelta(days=1), 30, 1), YESTERDAY, "data starts 2026-03-02"),
    (point(), flat(D - timedelta(days=30), 30, 1), D, "the after window has not begun"),
    (span(D, D + timedelta(days=3)), flat(D - timedelta(days=9), 9, 1), D - timedelta(days=1),
     "has not begun"),
    (point(), [], YESTERDAY, "no data"),
])
def test_no_comparison_says_why(marker: Marker, rows: list[DailyUsage], yesterday: date,
                                why: str) -> None:
    c = run(marker, rows, yesterday=yesterday)
    assert (c.days, c.before, c.after, c.change, c.verdict) == (0, None, None, None,
                                                                "unavailable")
    assert len(c.quality) == 1 and c.quality[0].startswith("no comparison: ")
    assert why in c.quality[0]


def test_a_dst_day_counts_as_one_day() -> None:
    # 2026-03-08 has 23 hours (92 quarter-hours), 2026-11-01 has 25 (100).
    spring = point(date(2026, 3, 9))
    rows = [usage(date(2026, 3, 7), 2_400), usage(date(2026, 3, 8), 2_300, expected=92),
            usage(date(2026, 3, 10), 2_400), usage(date(2026, 3, 11), 2_400)]
    c = run(spring, rows, n=7, span_of=(date(2026, 3, 7), date(2026, 3, 11)))
    assert c.before is not None and c.after is not None
    assert (c.days, c.before.days_with_data, c.before.total, c.before.average) == (
        2, 2, 4_700, 2_350)
    assert (c.before.incomplete_days, c.change) == (0, 50)
    autumn = span(date(2026, 11, 1), date(2026, 11, 1))
    c = run(autumn, [usage(date(2026, 10, 31), 2_400), usage(date(2026, 11, 1), 2_500,
                                                                 expected=100)])
    assert c.after is not None and (c.after.days, c.after.average, c.change) == (1, 2_500, 100)


def test_averages_are_exact_then_rounded_half_up() -> None:
    rows = [usage(D - timedelta(days=2), 1), usage(D - timedelta(days=1), 2),
            usage(D + timedelta(days=1), 2), usage(D + timedelta(days=2), 2)]
    c = run(point(), rows, n=7)
    assert c.before is not None and c.after is not None
    assert (c.before.average_exact, c.before.average) == (Decimal("1.5"), 2)
    # The change is taken from the exact averages: 0.5, not 2 - 2.
    assert (c.change, c.change_percent) == (1, Decimal("33.3"))


def test_estimated_days_make_a_poor_verdict() -> None:
    before = flat(D - timedelta(days=10), 10, 1_000)
    after = [usage(d, 900, estimated=4 if i < 3 else 0)
             for i, d in enumerate(days(D + timedelta(days=1), 10))]
    c = run(point(), before + after, n=10)
    assert c.after is not None and c.before is not None
    assert (c.after.estimated_days, c.after.poor, c.before.poor, c.verdict) == (3, True, False,
                                                                                 "poor")
    assert c.quality == ["after: 3 estimated days",
                         "after: poor data, 30 % of the days estimated or missing"]
    # Exactly 20 % is not poor: "more than".
    after = [usage(d, 900, estimated=1 if i < 2 else 0)
             for i, d in enumerate(days(D + timedelta(days=1), 10))]
    c = run(point(), before + after, n=10)
    assert c.verdict == "ok" and c.quality == ["after: 2 estimated days"]


def test_gaps_are_missing_days_and_partial_days_incomplete() -> None:
    first = D - timedelta(days=10)
    # Three days without rows, and a rollup row without intervals: four missing days.
    before = [usage(d, 1_000) for d in days(first, 10)[1:] if d.day not in (20, 21, 22)]
    before.append(usage(first, 0, present=0))
    after = [*flat(D + timedelta(days=1), 9, 1_000),
             usage(D + timedelta(days=10), 500, present=48)]
    c = run(point(), before + after, n=10)
    assert c.before is not None and c.after is not None
    assert (c.before.days_with_data, c.before.missing_days, c.before.average) == (6, 4, 1_000)
    assert (c.after.incomplete_days, c.after.missing_days, c.after.poor) == (1, 0, False)
    assert c.quality == ["before: 4 missing days",
                         "before: poor data, 40 % of the days estimated or missing",
                         "after: 1 incomplete day"]
    assert c.verdict == "poor"


def test_a_window_with_no_data_gives_no_average_and_says_so() -> None:
    # The meter has data well before and after, but the 7 days after the marker are a gap.
    rows = flat(D - timedelta(days=20), 20, 1_000) + flat(D + timedelta(days=8), 10, 1_000)
    c = run(point(), rows, n=7)
    assert c.after is not None and c.before is not None
    assert (c.days, c.after.average, c.after.average_exact, c.after.missing_days) == (
        7, None, None, 7)
    assert (c.before.average, c.change, c.change_percent, c.verdict) == (1_000, None, None,
                                                                          "poor")
    assert "after: no data in the window, so no average" in c.quality


def test_no_percent_from_a_zero_before() -> None:
    rows = flat(D - timedelta(days=7), 7, 0) + flat(D + timedelta(days=1), 7, 300)
    c = run(point(), rows, n=7)
    assert (c.change, c.change_percent) == (300, None)


def test_rows_outside_the_windows_are_ignored() -> None:
    rows = [r for r in flat(D - timedelta(days=60), 130, 1_000) if r.day != D]
    rows.append(usage(D, 50_000))
    c = run(point(), rows, n=7)
    assert c.before is not None and c.before.total == 7_000 and c.change == 0


def test_plan_names_the_windows() -> None:
    p = plan(point(), span=(date(2025, 1, 1), YESTERDAY), yesterday=YESTERDAY, window_days=7)
    assert (p.before_first, p.before_last, p.after_first, p.after_last, p.shortened_by) == (
        date(2026, 2, 22), date(2026, 2, 28), date(2026, 3, 2), date(2026, 3, 8), "")
