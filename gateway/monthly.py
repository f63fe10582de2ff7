"""Monthly usage: the daily rollups of a series summed over local calendar months.

Pure: built from the store's per-series daily rollups (``DailyUsage``, one row per local
day of the meter's timezone), so a month's value is exactly the sum of its days, and
through them of its stored intervals. DST needs no care here: each local day already
holds its 23, 24 or 25 hours.

A month's quality is counted in days, the unit a bill reader thinks in: days with data,
days with at least one estimated / questionable / edited interval, and missing days (no
data at all). A month is complete when every one of its days is complete; the current
month never is until its last day is in.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

__all__ = [
    "Month",
    "MonthUsage",
    "UsageDay",
    "months_between",
    "parse_month",
    "summarize",
]

_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month (local to the meter)."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.year <= 9999 or not 1 <= self.month <= 12:
            raise ValueError(f"no month {self.year:04d}-{self.month:02d}")

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    @property
    def days(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last(self) -> date:
        return date(self.year, self.month, self.days)

    def shift(self, months: int) -> Month:
        """The month ``months`` later (earlier when negative)."""
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def parse_month(text: str) -> Month:
    """``YYYY-MM`` -> Month; ValueError that says what was wrong."""
    match = _MONTH.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a month; give YYYY-MM, e.g. 2026-03")
    return Month(int(match[1]), int(match[2]))


def months_between(first: Month, last: Month) -> int:
    """How many months ``[first, last]`` holds (0 when last is before first)."""
    return max((last.year - first.year) * 12 + last.month - first.month + 1, 0)


class UsageDay(Protocol):
    """What a month needs of a day: ``DailyUsage`` (one series) fits."""

    @property
    def day(self) -> date: ...
    @property
    def value(self) -> int: ...
    @property
    def present(self) -> int: ...
    @property
    def estimated(self) -> int: ...
    @property
    def questionable(self) -> int: ...
    @property
    def edited(self) -> int: ...
    @property
    def complete(self) -> bool: ...


@dataclass(frozen=True)
class MonthUsage:
    month: Month
    #: Sum of the month's days in the series' base unit (Wh): exact.
    value: int
    #: Days that have at least one stored interval.
    days_with_data: int
    #: Days with every interval of the local day stored.
    complete_days: int
    #: Days with at least one interval of that quality.
    estimated_days: int
    questionable_days: int
    edited_days: int

    @property
    def days(self) -> int:
        return self.month.days

    @property
    def missing_days(self) -> int:
        """Days of the month with no data at all (future days of the current month too)."""
        return self.days - self.days_with_data

    @property
    def complete(self) -> bool:
        return self.complete_days == self.days


def summarize(days: Iterable[UsageDay], first: Month, last: Month) -> list[MonthUsage]:
    """Every month of ``[first, last]``, oldest first, months without data included (value
    0, no days with data) so a chart of the window has all its bars. Days outside the
    window are ignored."""
    by_month: dict[Month, list[UsageDay]] = {}
    for d in days:
        m = Month.of(d.day)
        if first <= m <= last:
            by_month.setdefault(m, []).append(d)
    return [_month(first.shift(i), by_month.get(first.shift(i), ()))
            for i in range(months_between(first, last))]


def _month(month: Month, days: Sequence[UsageDay]) -> MonthUsage:
    # A rollup row may hold no interval (present 0) once its intervals are gone: no data.
    held = [d for d in days if d.present > 0]
    return MonthUsage(
        month=month,
        value=sum(d.value for d in held),
        days_with_data=len(held),
        complete_days=sum(1 for d in held if d.complete),
        estimated_days=sum(1 for d in held if d.estimated),
        questionable_days=sum(1 for d in held if d.questionable),
        edited_days=sum(1 for d in held if d.edited),
    )
