"""Did usage change around a marker? Average daily usage before and after it (pure).

The windows are whole local days of equal length, next to the marker:

- a point marker on day D: the N days ending the day before D, and the N days starting
  the day after D (the day of the change itself is mixed, so it is left out);
- a range marker: the range itself, and the equal-length window just before it.

Both windows shrink together (equal length is what makes the averages comparable) so
that the after window ends by yesterday (today is not over) and the last day with
data, and the before window starts on or after the first day with data. Days without
data inside the meter's data span are gaps, counted as missing, never shortened away.

A day counts as one day whatever its length (23 or 25 hours on DST days): the feed's
days are local days and a customer's "per day" is one. Averages are over the days with
data, exact (``Decimal``) and then rounded half up to whole units (Wh).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

import msgspec

from gateway.errors import DataError
from gateway.markers import Marker
from gateway.model import DailyUsage

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "MIN_DAYS", "POOR_SHARE_PERCENT", "Comparison", "Plan",
           "Window", "compare", "plan"]

DEFAULT_DAYS = 30
MIN_DAYS = 7
MAX_DAYS = 90
#: A window is poor when more than this share of its days are estimated or missing.
POOR_SHARE_PERCENT = 20

Verdict = Literal["ok", "poor", "unavailable"]


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Where the windows lie: ``days`` long each (0 when no comparison is possible)."""

    wanted: int
    days: int
    before_first: date
    after_first: date
    #: Why the windows are shorter than wanted (empty when they are not).
    shortened_by: str = ""

    @property
    def before_last(self) -> date:
        return self.before_first + timedelta(days=self.days - 1)

    @property
    def after_last(self) -> date:
        return self.after_first + timedelta(days=self.days - 1)


class Window(msgspec.Struct, frozen=True, kw_only=True):
    first: date
    last: date
    days: int
    #: Days with at least one stored interval: the average's divisor.
    days_with_data: int
    total: int
    average_exact: Decimal | None
    average: int | None
    estimated_days: int
    missing_days: int
    incomplete_days: int
    poor: bool


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    marker_id: int
    wanted_days: int
    days: int
    before: Window | None
    after: Window | None
    #: After minus before, per day, rounded to whole units; None without both averages.
    change: int | None
    #: The change relative to before, in percent to one decimal; None when before is 0.
    change_percent: Decimal | None
    quality: list[str]
    verdict: Verdict


def _whole(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def plan(marker: Marker, *, span: tuple[date, date] | None, yesterday: date,
         window_days: int = DEFAULT_DAYS) -> Plan:
    """The windows for ``marker`` given the series' data span (first and last day with
    data) and the meter's yesterday. ``window_days`` (``MIN_DAYS``..``MAX_DAYS``) is N of
    a point marker; a range's own length sets it for a range marker."""
    if not MIN_DAYS <= window_days <= MAX_DAYS:
        raise DataError(f"a window has {MIN_DAYS} to {MAX_DAYS} days (not {window_days})",
                        source="days")
    if marker.kind == "point":
        wanted, after_first = window_days, marker.start + timedelta(days=1)
    else:
        wanted, after_first = (marker.last - marker.start).days + 1, marker.start
    before_end = marker.start - timedelta(days=1)
    limits = [(wanted, "")]
    if after_first > yesterday:
        limits.append((0, f"the after window has not begun (yesterday is {yesterday})"))
    else:
        limits.append(((yesterday - after_first).days + 1, f"yesterday is {yesterday}"))
    if span is None:
        limits.append((0, "no data"))
    else:
        first, last = span
        limits.append(((last - after_first).days + 1, f"data ends {last}"))
        limits.append(((before_end - first).days + 1, f"data starts {first}"))
    # The first of the tightest limits names the reason (the clock before the data).
    days, why = min(((max(n, 0), why) for n, why in limits), key=lambda lim: lim[0])
    return Plan(wanted=wanted, days=days, before_first=before_end - timedelta(days=days - 1),
                after_first=after_first, shortened_by=why if days < wanted else "")


def _window(name: str, first: date, days: int, usage: Sequence[DailyUsage],
            notes: list[str]) -> Window:
    last = first + timedelta(days=days - 1)
    rows = [d for d in usage if first <= d.day <= last and d.present > 0]
    total = sum(d.value for d in rows)
    estimated = sum(1 for d in rows if d.estimated > 0)
    incomplete = sum(1 for d in rows if not d.complete)
    missing = days - len(rows)
    exact = Decimal(total) / len(rows) if rows else None
    poor = (estimated + missing) * 100 > POOR_SHARE_PERCENT * days
    if not rows:
        notes.append(f"{name}: no data in the window, so no average")
    else:
        for count, word in ((estimated, "estimated day"), (missing, "missing day"),
                            (incomplete, "incomplete day")):
            if count:
                notes.append(f"{name}: {_plural(count, word)}")
    if poor and rows:
        share = (estimated + missing) * 100 // days
        notes.append(f"{name}: poor data, {share} % of the days estimated or missing")
    return Window(first=first, last=last, days=days, days_with_data=len(rows), total=total,
                  average_exact=exact, average=None if exact is None else _whole(exact),
                  estimated_days=estimated, missing_days=missing, incomplete_days=incomplete,
                  poor=poor)


def compare(marker: Marker, usage: Sequence[DailyUsage], *, span: tuple[date, date] | None,
            yesterday: date, window_days: int = DEFAULT_DAYS) -> Comparison:
    """The comparison around ``marker`` over ``usage`` (the channel's daily rows; those
    outside the windows are ignored)."""
    p = plan(marker, span=span, yesterday=yesterday, window_days=window_days)
    notes: list[str] = []
    if p.days == 0:
        notes.append(f"no comparison: {p.shortened_by}")
        return Comparison(marker_id=marker.id, wanted_days=p.wanted, days=0, before=None,
                          after=None, change=None, change_percent=None, quality=notes,
                          verdict="unavailable")
    if p.shortened_by:
        notes.append(f"window shortened to {_plural(p.days, 'day')} ({p.shortened_by})")
    before = _window("before", p.before_first, p.days, usage, notes)
    after = _window("after", p.after_first, p.days, usage, notes)
    change = percent = None
    if before.average_exact is not None and after.average_exact is not None:
        delta = after.average_exact - before.average_exact
        change = _whole(delta)
        if before.average_exact:
            percent = (delta * 100 / before.average_exact).quantize(
                Decimal("0.1"), rounding=ROUND_HALF_UP)
    return Comparison(marker_id=marker.id, wanted_days=p.wanted, days=p.days, before=before,
                      after=after, change=change, change_percent=percent, quality=notes,
                      verdict="poor" if before.poor or after.poor else "ok")
