"""The monthly usage route: a meter's usage per local calendar month, with its rates.

Built from the store's daily rollups (``gateway.monthly``), so every month is exactly the
sum of the days the daily endpoint returns for it. For a two-rate meter, each tariff
register of the channel (``gateway.api.rates.tariffs_of``) gets its own monthly figures
beside the channel's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.access import MeterAccess, MeterView, unknown_meter
from gateway.api.feed import ChannelParam, MeterId, Problem, find_series, invalid
from gateway.api.rates import rate_label, tariffs_of
from gateway.api.schemas import Rate, kwh
from gateway.clock import Clock, SystemClock
from gateway.model import Unit
from gateway.monthly import Month, MonthUsage, months_between, parse_month, summarize
from gateway.store import Store

__all__ = ["DEFAULT_MONTHS", "MAX_MONTHS", "MonthlyList", "current_month", "monthly_router"]

#: Longest monthly query: three years, for year-on-year views of a whole year.
MAX_MONTHS = 36
#: The window when none is asked for: a year up to the current month.
DEFAULT_MONTHS = 12

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown meter or channel"}
}


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RateMonth(_Out):
    channel: str = Field(description="The rate's register (OBIS), e.g. 1.0.1.8.1.255.")
    value: int = Field(description="The rate's usage over the month in the base unit (Wh).")
    value_kwh: str | None
    days_with_data: int
    complete: bool = Field(description="Every day of the month complete on this register.")


class MonthOut(_Out):
    month: str = Field(description="Local calendar month in the meter's timezone (YYYY-MM).")
    value: int = Field(description="Sum of the month's days in the base unit (Wh), exact.")
    value_kwh: str | None = Field(
        description="The same value in kWh as an exact decimal string; null unless unit is Wh.")
    unit: str
    days: int = Field(description="Days in the month (28-31).")
    days_with_data: int = Field(description="Days with at least one stored interval.")
    complete_days: int
    estimated_days: int = Field(description="Days with at least one estimated interval.")
    questionable_days: int
    edited_days: int
    missing_days: int = Field(description="Days with no data at all (days still to come "
                              "in the current month count too).")
    complete: bool = Field(description="Every day of the month complete.")
    rates: list[RateMonth] = Field(description="Each tariff register's month, when the "
                                   "meter keeps tariff registers of this channel; else empty.")


class MonthlyList(_Out):
    meter_id: str
    channel: str
    timezone: str
    first: str = Field(description="First month, inclusive (YYYY-MM).")
    last: str = Field(description="Last month, inclusive (YYYY-MM).")
    unit: str
    total: int = Field(description="Sum over the returned months in the base unit.")
    total_kwh: str | None
    rates: list[Rate] = Field(description="The tariff registers and their totals over the "
                              "months; empty when the meter has none for this channel.")
    months: list[MonthOut] = Field(description="Every month of the range, oldest first, "
                                   "months without data included (value 0).")


def current_month(now: datetime, timezone: str) -> Month:
    """The month ``now`` falls in on the meter's local calendar."""
    return Month.of(now.astimezone(ZoneInfo(timezone)).date())


def _month_param(field: str, text: str | None) -> Month | None:
    if text is None:
        return None
    try:
        return parse_month(text)
    except ValueError as exc:
        raise invalid(field, str(exc)) from None


def _window(first: Month | None, last: Month | None, today: Month) -> tuple[Month, Month]:
    """The months asked for: ``to`` defaults to the current month (or a year after
    ``from``), ``from`` to a year before ``to``."""
    try:
        if last is None:
            last = today if first is None else max(
                first, min(first.shift(DEFAULT_MONTHS - 1), today))
        if first is None:
            first = last.shift(1 - DEFAULT_MONTHS)
    except ValueError as exc:  # a default window reaching past the years 1 to 9999
        raise invalid("from" if first is None else "to", str(exc)) from None
    if first > last:
        raise invalid("to", f"to ({last}) is before from ({first})")
    if months_between(first, last) > MAX_MONTHS:
        raise invalid("to", f"range is longer than {MAX_MONTHS} months")
    return first, last


def _month_out(m: MonthUsage, unit: Unit, rates: list[tuple[str, MonthUsage]]) -> MonthOut:
    return MonthOut(
        month=str(m.month), value=m.value, value_kwh=kwh(m.value, unit), unit=unit.value,
        days=m.days, days_with_data=m.days_with_data, complete_days=m.complete_days,
        estimated_days=m.estimated_days, questionable_days=m.questionable_days,
        edited_days=m.edited_days, missing_days=m.missing_days, complete=m.complete,
        rates=[RateMonth(channel=ch, value=r.value, value_kwh=kwh(r.value, unit),
                         days_with_data=r.days_with_data, complete=r.complete)
               for ch, r in rates],
    )


def monthly_router(store: Store, default_channel: str,
                   clock: Clock | None = None) -> APIRouter:
    """The monthly route. ``clock`` tells the current month (the system's unless given)."""
    router = APIRouter(prefix="/api/v1", tags=["portal feed"])
    now = (clock or SystemClock()).now

    @router.get(
        "/meters/{meter_id}/monthly",
        summary="Monthly usage over the meter's local calendar months, per rate",
        responses=_NOT_FOUND,
    )
    async def monthly(
        meter_id: MeterId,
        view: MeterAccess,
        first_text: Annotated[str | None, Query(
            alias="from", description="First month, inclusive (YYYY-MM); defaults to 11 "
            "months before `to`.", examples=["2026-01"])] = None,
        last_text: Annotated[str | None, Query(
            alias="to", description="Last month, inclusive (YYYY-MM); defaults to the "
            "current month in the meter's timezone. At most 36 months in all.",
            examples=["2026-12"])] = None,
        channel: ChannelParam = None,
    ) -> MonthlyList:
        asked_first = _month_param("from", first_text)
        asked_last = _month_param("to", last_text)
        info = await find_series(store, meter_id, channel or default_channel)
        first, last = _window(asked_first, asked_last, current_month(now(), info.timezone))
        if view.windows is not None:
            # A customer's months: the access check judged only what was asked for, so a
            # default window keeps to whole months of their own accounts (a month half
            # the previous occupant's would show that occupant's usage).
            own = _own_months(view, first, last)
            if own is None:
                raise unknown_meter(meter_id)
            first, last = own
        unit = info.unit.base
        months = summarize(await store.daily(meter_id, info.channel, first.first, last.last),
                           first, last)
        known = [s.channel for s in await store.series(meter_id)]
        rates = tariffs_of(info.channel, known)
        by_rate = [
            (ch, summarize(await store.daily(meter_id, ch, first.first, last.last),
                           first, last))
            for _, ch in rates
        ]
        total = sum(m.value for m in months)
        return MonthlyList(
            meter_id=meter_id, channel=info.channel, timezone=info.timezone,
            first=str(first), last=str(last), unit=unit.value, total=total,
            total_kwh=kwh(total, unit),
            rates=[
                Rate(channel=ch, tariff=tariff, label=rate_label(tariff),
                     total=(rate_total := sum(m.value for m in ms)),
                     total_kwh=kwh(rate_total, unit))
                for (tariff, ch), (_, ms) in zip(rates, by_rate, strict=True)
            ],
            months=[
                _month_out(m, unit, [(ch, ms[i]) for ch, ms in by_rate])
                for i, m in enumerate(months)
            ],
        )

    return router


def _own_months(view: MeterView, first: Month, last: Month) -> tuple[Month, Month] | None:
    """The latest run of whole months in ``first``..``last`` that the customer sees
    entirely; None when there is none."""
    latest: tuple[Month, Month] | None = None
    start: Month | None = None
    month = first
    while month <= last:
        if view.sees_days(month.first, month.last):
            start = start or month
            latest = (start, month)
        else:
            start = None
        month = month.shift(1)
    return latest
