"""The high/low daily usage check: tables of days in, the checks that fire out."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from gateway.errors import ConfigError
from gateway.validation.daily import DailyLimits, DayUsage, judge_days, lookback_days

D0 = date(2026, 3, 1)


def days(*values: int | None, first: date = D0) -> list[DayUsage]:
    """One day per value, consecutive; None is an incomplete day (value 1)."""
    return [DayUsage(day=first + timedelta(days=i), value=1 if v is None else v,
                     complete=v is not None) for i, v in enumerate(values)]


def fired(values: list[DayUsage], limits: DailyLimits,
          before: date | None = None) -> dict[int, tuple[str, ...]]:
    """The checks by day number (0 = D0)."""
    return {(d - D0).days: c for d, c in judge_days(values, limits, before=before).items()}


@pytest.mark.parametrize(("limits", "values", "expected"), [
    # Off: nothing fires, however odd the day.
    (DailyLimits(), days(1, 10**9, 0), {}),
    # Absolute limits: strictly above the high, strictly below the low.
    (DailyLimits(high_wh=30_000), days(29_999, 30_000, 30_001), {2: ("daily_high",)}),
    (DailyLimits(low_wh=500), days(499, 500, 0, 501), {0: ("daily_low",), 2: ("daily_low",)}),
    (DailyLimits(high_wh=30_000, low_wh=500), days(100, 12_000, 40_000),
     {0: ("daily_low",), 2: ("daily_high",)}),
    # Incomplete days are never judged, however low they look.
    (DailyLimits(low_wh=500), days(None, 10, None), {1: ("daily_low",)}),
    # History: above 3x the mean of the previous 3 complete days (mean 10,000).
    (DailyLimits(history_factor=Decimal(3), history_days=3),
     days(10_000, 10_000, 10_000, 30_000, 30_001),
     {}),  # 30,000 is exactly 3x (not above); day 4's mean is then 16,666: 30,001 is fine
    (DailyLimits(history_factor=Decimal(3), history_days=3),
     days(10_000, 10_000, 10_000, 30_001), {3: ("daily_history_high",)}),
    # ... and below the mean / 3 (3,333.3): 3,333 fires, 3,334 does not.
    (DailyLimits(history_factor=Decimal(3), history_days=3),
     days(10_000, 10_000, 10_000, 3_333), {3: ("daily_history_low",)}),
    (DailyLimits(history_factor=Decimal(3), history_days=3),
     days(10_000, 10_000, 10_000, 3_334), {}),
    # Too little history: the first K days are not compared with anything.
    (DailyLimits(history_factor=Decimal(2), history_days=3), days(100, 900, 5_000), {}),
    # Incomplete days are skipped in the history too: the mean is of complete days.
    (DailyLimits(history_factor=Decimal(2), history_days=2),
     days(1_000, None, 1_000, None, 2_001), {4: ("daily_history_high",)}),
    # ... but only within 2K calendar days: older ones are too stale to compare with.
    (DailyLimits(history_factor=Decimal(2), history_days=2),
     days(1_000, 1_000, None, None, None, 9_000), {}),
    # A zero mean never fires the history check (a vacant house starting to use power).
    (DailyLimits(history_factor=Decimal(2), history_days=2), days(0, 0, 5_000), {}),
    # Fractional factors are exact: 1.5 x 1,000 = 1,500 is not above, 1,501 is.
    (DailyLimits(history_factor=Decimal("1.5"), history_days=1), days(1_000, 1_500, 2_251),
     {2: ("daily_history_high",)}),
    # Absolute and history checks both fire on one day.
    (DailyLimits(high_wh=5_000, history_factor=Decimal(2), history_days=1),
     days(1_000, 9_000), {1: ("daily_high", "daily_history_high")}),
])
def test_daily_checks(limits: DailyLimits, values: list[DayUsage],
                      expected: dict[int, tuple[str, ...]]) -> None:
    assert fired(values, limits) == expected


def test_days_from_before_on_are_not_judged_but_days_before_count_as_history() -> None:
    limits = DailyLimits(high_wh=1_000, history_factor=Decimal(2), history_days=1)
    values = days(5_000, 100, 5_000)
    everything = {0: ("daily_high",), 1: ("daily_history_low",),
                  2: ("daily_high", "daily_history_high")}
    assert fired(values, limits) == everything
    assert fired(values, limits, before=D0 + timedelta(days=2)) == {
        k: v for k, v in everything.items() if k < 2}
    assert fired(values, limits, before=D0) == {}


def test_lookback_covers_the_history_window() -> None:
    assert lookback_days(DailyLimits(high_wh=1)) == 0
    assert lookback_days(DailyLimits(history_factor=Decimal(3), history_days=7)) == 14


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"high_wh": 0}, "daily_high_wh"),
    ({"low_wh": -5}, "daily_low_wh"),
    ({"high_wh": 100, "low_wh": 100}, "daily_low_wh"),
    ({"history_factor": Decimal(1)}, "daily_history_factor"),
    ({"history_factor": Decimal(2), "history_days": 0}, "daily_history_days"),
    ({"history_days": 14}, "daily_history_days"),
])
def test_bad_limits_name_their_key(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DailyLimits(**kwargs)  # type: ignore[arg-type]
    assert caught.value.key == key and caught.value.fix
