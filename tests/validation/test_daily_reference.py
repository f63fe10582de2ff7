"""``judge_days`` (integers, a running sum) against the check as the module docs state
it, written plainly: the mean of the previous ``history_days`` complete days within
``2 x history_days`` calendar days, compared in Decimal."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from gateway.validation.daily import (
    DAILY_HIGH,
    DAILY_HISTORY_HIGH,
    DAILY_HISTORY_LOW,
    DAILY_LOW,
    DailyLimits,
    DayUsage,
    judge_days,
)


def reference(days: list[DayUsage], limits: DailyLimits,
              before: date | None) -> dict[date, tuple[str, ...]]:
    fired: dict[date, tuple[str, ...]] = {}
    complete = [d for d in days if d.complete]
    for i, usage in enumerate(complete):
        if before is not None and usage.day >= before:
            continue
        checks: tuple[str, ...] = ()
        if limits.high_wh is not None and usage.value > limits.high_wh:
            checks = (DAILY_HIGH,)
        elif limits.low_wh is not None and usage.value < limits.low_wh:
            checks = (DAILY_LOW,)
        factor, window = limits.history_factor, limits.history_days
        earliest = usage.day - timedelta(days=2 * window)
        recent = [d.value for d in complete[max(i - window, 0):i] if d.day >= earliest]
        if factor is not None and len(recent) == window and sum(recent) > 0:
            mean = Decimal(sum(recent)) / window
            if usage.value > factor * mean:
                checks += (DAILY_HISTORY_HIGH,)
            elif usage.value * factor < mean:
                checks += (DAILY_HISTORY_LOW,)
        if checks:
            fired[usage.day] = checks
    return fired


def test_judge_days_agrees_with_the_plain_statement_of_the_check() -> None:
    rng = random.Random(7)
    fired = 0
    for _ in range(3000):
        factor = rng.choice([None, Decimal(2), Decimal("2.5"), Decimal("1.01"), Decimal(3)])
        limits = DailyLimits(
            high_wh=rng.choice([None, rng.randint(500, 5000)]),
            low_wh=rng.choice([None, rng.randint(1, 99)]),
            history_factor=factor,
            history_days=rng.randint(1, 8) if factor is not None else 7)
        day = date(2026, 3, 1)
        days = []
        for _ in range(rng.randint(0, 40)):
            day += timedelta(days=rng.choice([1, 1, 1, 2, 6]))
            value = rng.choice([0, rng.randint(0, 20), rng.randint(0, 10_000)])
            days.append(DayUsage(day=day, value=value, complete=rng.random() < 0.85))
        before = rng.choice([None, day, day - timedelta(days=4)])
        got = judge_days(days, limits, before=before)
        assert got == reference(days, limits, before), (days, limits, before)
        fired += len(got)
    assert fired > 1000  # the cases exercise the checks, not only quiet days
