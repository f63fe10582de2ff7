"""The high/low daily usage check (VEE): pure, judged on a series' daily rollups.

A complete local day (every interval of it stored) is compared with the meter's limits:

- ``daily_high`` / ``daily_low``: the day's usage is above ``high_wh`` / below ``low_wh``.
- ``daily_history_high`` / ``daily_history_low``: the day's usage is above ``factor`` x
  the mean of the previous ``history_days`` complete days, or below that mean / factor.
  The previous complete days are looked for within ``2 x history_days`` calendar days
  before the day; with fewer than ``history_days`` of them the history check says
  nothing (too little history), and a mean of zero never fires it.

Only complete days are judged: an incomplete day (today, or one with missing intervals)
would look low for want of data, not of usage. Every complete day counts as history,
flagged or not. Arithmetic is exact (integers and ``Decimal``). No clock, no I/O: the
caller gives the days, oldest first, and says which day is the first not to judge
(the meter's local today).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

import msgspec

from gateway.errors import ConfigError

__all__ = [
    "DAILY_HIGH",
    "DAILY_HISTORY_HIGH",
    "DAILY_HISTORY_LOW",
    "DAILY_LOW",
    "DailyLimits",
    "DayUsage",
    "judge_days",
    "lookback_days",
]

DAILY_HIGH = "daily_high"
DAILY_LOW = "daily_low"
DAILY_HISTORY_HIGH = "daily_history_high"
DAILY_HISTORY_LOW = "daily_history_low"


class DailyLimits(msgspec.Struct, frozen=True, kw_only=True):
    """A meter's daily usage limits, in the base unit (Wh). All off by default."""

    high_wh: int | None = None
    low_wh: int | None = None
    #: A day above this factor x the recent mean (or below the mean / factor) fires.
    history_factor: Decimal | None = None
    history_days: int = 7

    def __post_init__(self) -> None:
        if self.high_wh is not None and self.high_wh <= 0:
            raise ConfigError("must be above 0", key="daily_high_wh", fix="give a limit in Wh")
        if self.low_wh is not None and self.low_wh <= 0:
            raise ConfigError("must be above 0", key="daily_low_wh",
                              fix="give a limit in Wh, or leave it out")
        if self.high_wh is not None and self.low_wh is not None and \
                self.low_wh >= self.high_wh:
            raise ConfigError(f"daily_low_wh ({self.low_wh}) is not below daily_high_wh "
                              f"({self.high_wh})", key="daily_low_wh",
                              fix="give a low limit below the high one")
        if self.history_factor is not None and self.history_factor <= 1:
            raise ConfigError("must be above 1", key="daily_history_factor",
                              fix="give a factor such as 3 (above 3x or below 1/3 of the mean)")
        if self.history_days < 1:
            raise ConfigError("must be at least 1", key="daily_history_days",
                              fix="give the number of previous days to average, e.g. 7")
        if self.history_factor is None and self.history_days != 7:
            raise ConfigError("daily_history_days needs daily_history_factor",
                              key="daily_history_days",
                              fix="set daily_history_factor (e.g. 3), or drop daily_history_days")

    @property
    def active(self) -> bool:
        return self.high_wh is not None or self.low_wh is not None or \
            self.history_factor is not None


class DayUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One local day of one series, as the check sees it."""

    day: date
    value: int
    complete: bool


def lookback_days(limits: DailyLimits) -> int:
    """Calendar days before the first judged day the history check may look at."""
    return 2 * limits.history_days if limits.history_factor is not None else 0


def judge_days(days: Sequence[DayUsage], limits: DailyLimits, *,
               before: date | None = None) -> dict[date, tuple[str, ...]]:
    """The checks that fire on each judged day (days with none are left out).

    ``days`` are oldest first, at most one per date; days on or after ``before`` are
    not judged (the local today is never complete), nor are incomplete ones.
    """
    fired: dict[date, tuple[str, ...]] = {}
    if not limits.active:
        return fired
    factor = limits.history_factor
    window = limits.history_days
    # The factor as an exact fraction: the comparisons stay in integers (a year of days
    # is judged on every daily request, and Decimal arithmetic was most of that time).
    num, den = factor.as_integer_ratio() if factor is not None else (0, 1)
    span = timedelta(days=2 * window)
    # Complete days seen so far, oldest first, and the sum of the last ``window`` values.
    seen_days: list[date] = []
    seen_values: list[int] = []
    recent_total = 0
    for usage in days:
        if not usage.complete:
            continue
        day, value = usage.day, usage.value
        if before is None or day < before:
            checks = _absolute(value, limits)
            # The previous ``window`` complete days, all within 2 x window calendar days
            # (oldest first: the oldest of them is the one to test).
            n = len(seen_days)
            if factor is not None and n >= window and seen_days[n - window] >= day - span:
                checks += _historic(value, recent_total, window, num, den)
            if checks:
                fired[day] = checks
        seen_days.append(day)
        seen_values.append(value)
        recent_total += value
        if len(seen_values) > window:
            recent_total -= seen_values[-window - 1]
    return fired


def _absolute(value: int, limits: DailyLimits) -> tuple[str, ...]:
    if limits.high_wh is not None and value > limits.high_wh:
        return (DAILY_HIGH,)
    if limits.low_wh is not None and value < limits.low_wh:
        return (DAILY_LOW,)
    return ()


def _historic(value: int, total: int, window: int, num: int, den: int) -> tuple[str, ...]:
    """``total``: the usage of the previous ``window`` complete days; the factor is
    ``num / den``."""
    if total <= 0:
        return ()
    # value > factor x total / window, and value < total / (window x factor), exactly.
    if value * window * den > num * total:
        return (DAILY_HISTORY_HIGH,)
    if value * window * num < total * den:
        return (DAILY_HISTORY_LOW,)
    return ()
