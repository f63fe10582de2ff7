"""The daily view of a meter's usage: rates, their total, and the daily usage checks.

Pure: built from the store's per-series daily rollups (no schema of its own), so every
figure is exactly the sum of the stored intervals of its series and local day (92, 96
or 100 quarter-hours on 15-minute data).

Rates. A two-rate meter keeps each tariff register as its own series: OBIS
``1.0.1.8.1.255`` (tariff 1, the day rate) and ``1.0.1.8.2.255`` (tariff 2, the night
rate) beside the total register ``1.0.1.8.0.255``. The tariffs of a total channel are
the channels that differ from it only in the tariff group (the fifth, 1-63). A meter
without tariff registers has one rate: the channel itself.

Total. A day's total is the sum of its rates: the figures a time-of-use bill is made of,
and what the stacked bars add up to. When the meter also keeps the total register, it is
reported beside the sum, not instead of it, with the difference (register - sum) on days
when the register and every rate are complete: a meter counts each Wh on the total and on
exactly one tariff register, so anything but 0 means a rate was lost or double-counted
(a tariff register left out of the channels, a meter clock switching tariffs wrongly),
which the sum alone would hide and the register alone would not explain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from gateway.model import DailyUsage
from gateway.validation.daily import DailyLimits, DayUsage, judge_days

__all__ = [
    "RateDay",
    "RateView",
    "TotalDay",
    "build_view",
    "checks_by_day",
    "rate_label",
    "tariff_of",
    "tariffs_of",
]

_LABELS = {0: "Total", 1: "Day rate", 2: "Night rate"}


def tariff_of(channel: str, total_channel: str) -> int | None:
    """The tariff number of ``channel`` among ``total_channel``'s rates (0: the total
    itself), or None when it is not one of them."""
    mine, base = channel.split("."), total_channel.split(".")
    if len(mine) != 6 or len(base) != 6 or mine[:4] != base[:4] or mine[5] != base[5]:
        return None
    if mine[4] == base[4]:
        return 0
    if base[4] != "0" or not mine[4].isdigit():
        return None
    tariff = int(mine[4])
    return tariff if 1 <= tariff <= 63 else None


def tariffs_of(total_channel: str, channels: Sequence[str]) -> list[tuple[int, str]]:
    """(tariff, channel) of every tariff register of ``total_channel`` in ``channels``."""
    found = ((tariff_of(c, total_channel), c) for c in channels)
    return sorted((t, c) for t, c in found if t)


def rate_label(tariff: int) -> str:
    """Tariff 1 is the day rate and tariff 2 the night rate (domain.md, OBIS 1.8.1/1.8.2)."""
    return _LABELS.get(tariff, f"Tariff {tariff}")


@dataclass(frozen=True)
class RateDay:
    """One rate's usage on one day; ``usage`` None when its series has no data that day."""

    channel: str
    usage: DailyUsage | None
    checks: tuple[str, ...]


@dataclass(frozen=True)
class TotalDay:
    day: date
    value: int
    #: Intervals summed over the rates (expected, present, estimated, ...).
    expected: int
    present: int
    estimated: int
    questionable: int
    edited: int
    derived: int
    complete: bool
    checks: tuple[str, ...]
    rates: tuple[RateDay, ...]
    register: DailyUsage | None
    #: register - sum of the rates, when the register and every rate are complete.
    mismatch: int | None


@dataclass(frozen=True)
class RateView:
    rates: tuple[tuple[int, str], ...]
    days: tuple[TotalDay, ...]


def checks_by_day(days: Sequence[DailyUsage], limits: DailyLimits | None,
                  ) -> dict[date, tuple[str, ...]]:
    """The daily usage checks that fire on a series' days (oldest first)."""
    if limits is None or not limits.active:
        return {}
    return judge_days([DayUsage(day=d.day, value=d.value, complete=d.complete) for d in days],
                      limits)


def build_view(rates: Sequence[tuple[int, str]], by_rate: Mapping[str, Sequence[DailyUsage]],
               register: Sequence[DailyUsage], limits: DailyLimits | None, *,
               first: date) -> RateView:
    """Each local day from ``first`` on that has data: every rate, their total and the
    checks. ``by_rate`` and ``register`` may start earlier (the history the checks need)."""
    rate_days = {ch: {d.day: d for d in by_rate.get(ch, ())} for _, ch in rates}
    rate_checks = {ch: checks_by_day(by_rate.get(ch, ()), limits) for _, ch in rates}
    register_days = {d.day: d for d in register}
    dates = sorted({day for days in rate_days.values() for day in days})
    totals: list[TotalDay] = []
    for day in dates:
        usages = [rate_days[ch].get(day) for _, ch in rates]
        present = [u for u in usages if u is not None]
        # Every series of a meter shares its timezone and interval length, so a rate with
        # no data that day expected as many intervals as the others.
        expected_each = max(u.expected for u in present)
        complete = len(present) == len(usages) and all(u.complete for u in present)
        value = sum(u.value for u in present)
        reg = register_days.get(day)
        mismatch = reg.value - value if reg is not None and reg.complete and complete else None
        totals.append(TotalDay(
            day=day, value=value, expected=expected_each * len(usages),
            present=sum(u.present for u in present),
            estimated=sum(u.estimated for u in present),
            questionable=sum(u.questionable for u in present),
            edited=sum(u.edited for u in present), derived=sum(u.derived for u in present),
            complete=complete, checks=(),
            rates=tuple(RateDay(channel=ch, usage=u, checks=rate_checks[ch].get(day, ()))
                        for (_, ch), u in zip(rates, usages, strict=True)),
            register=reg, mismatch=mismatch,
        ))
    total_checks: dict[date, tuple[str, ...]] = {}
    if limits is not None and limits.active:
        total_checks = judge_days(
            [DayUsage(day=t.day, value=t.value, complete=t.complete) for t in totals], limits)
    shown = tuple(replace(t, checks=total_checks.get(t.day, ())) for t in totals
                  if t.day >= first)
    return RateView(rates=tuple(rates), days=shown)
