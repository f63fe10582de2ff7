"""The portal feed routes: meters, intervals and daily usage, read from a ``Store``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import AwareDatetime, BaseModel

from gateway.api.access import MeterAccess, MeterView, meter_access
from gateway.api.daily_json import daily_list_json
from gateway.api.rates import build_view, checks_by_day, rate_label, tariff_of, tariffs_of
from gateway.api.schemas import (
    DailyList,
    IntervalList,
    MeterList,
    Rate,
    RatesDailyList,
    interval_out,
    kwh,
    meter_out,
    rates_day_out,
)
from gateway.store import SeriesInfo, Store
from gateway.validation.daily import DailyLimits, lookback_days

#: Longest interval query: a month of 15-minute data is ~3000 rows, one page of JSON.
MAX_INTERVAL_SPAN = timedelta(days=31)
#: Longest daily query: a year of history plus a margin for year-on-year views.
MAX_DAILY_DAYS = 400


class Problem(BaseModel):
    detail: str


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown meter or channel"}
}

MeterId = Annotated[str, Path(description="The utility's meter identity.")]
ChannelParam = Annotated[
    str | None, Query(description="Channel (OBIS code); defaults to active energy import.")
]


def invalid(field: str, message: str) -> HTTPException:
    """A 422 in the same shape FastAPI uses for parameter errors."""
    return HTTPException(
        status_code=422,
        detail=[{"type": "value_error", "loc": ["query", field], "msg": message}],
    )


async def find_series(store: Store, meter_id: str, channel: str) -> SeriesInfo:
    """The stored series, or a 404 that says what the meter has."""
    known = await store.series(meter_id)
    for info in known:
        if info.channel == channel:
            return info  # its meter is known (Store.register_series): one call, not two
    if await store.meter(meter_id) is None:
        raise HTTPException(404, detail=f"unknown meter {meter_id!r}")
    have = ", ".join(s.channel for s in known) or "none"
    raise HTTPException(
        404, detail=f"meter {meter_id!r} has no channel {channel!r} (channels: {have})"
    )


def feed_router(store: Store, default_channel: str,
                daily_limits: Mapping[str, DailyLimits] | None = None) -> APIRouter:
    """The feed routes. ``daily_limits`` (by meter) are the daily usage checks, judged on
    the meter's active import (``default_channel`` and its tariff registers) when a
    daily view is built from the stored rollups: consistent with whatever the store
    holds now (replays, edits), and cheap (a few more rollup rows for the history)."""
    router = APIRouter(prefix="/api/v1", tags=["portal feed"],
                       dependencies=[Depends(meter_access)])  # who may see which meter
    limits_of = dict(daily_limits or {})

    async def series_of(meter_id: str, channel: str | None) -> SeriesInfo:
        return await find_series(store, meter_id, channel or default_channel)

    def usage_limits(meter_id: str, channel: str) -> DailyLimits | None:
        """The meter's limits when ``channel`` is its usage (total or a tariff)."""
        if tariff_of(channel, default_channel) is None:
            return None
        return limits_of.get(meter_id)

    def check_range(first: date, last: date) -> None:
        if first > last:
            raise invalid("to", f"to ({last}) is before from ({first})")
        if (last - first).days + 1 > MAX_DAILY_DAYS:
            raise invalid("to", f"range is longer than {MAX_DAILY_DAYS} days")

    def history_start(first: date, limits: DailyLimits | None, view: MeterView) -> date:
        """The first day the usage checks may look back to. For a customer, never before
        their window holding ``first``: a new occupant's first days are not judged against
        the previous occupant's usage, which would also hint at it."""
        back = lookback_days(limits) if limits is not None else 0
        try:
            since = first - timedelta(days=back)
        except OverflowError:
            since = date.min
        return max(since, _window_start(view, first))

    @router.get("/meters", summary="Meters, their status and channels")
    async def meters(view: Annotated[MeterView, Depends(meter_access)]) -> MeterList:
        by_meter: dict[str, list[SeriesInfo]] = defaultdict(list)
        for info in await store.series():
            by_meter[info.meter_id].append(info)
        statuses = sorted((m for m in await store.meters() if view.sees_meter(m.meter_id)),
                          key=lambda m: m.meter_id)
        return MeterList(
            default_channel=default_channel,
            meters=[meter_out(m, by_meter.get(m.meter_id, [])) for m in statuses],
        )

    @router.get(
        "/meters/{meter_id}/intervals",
        summary="Interval readings of one channel",
        responses=_NOT_FOUND,
    )
    async def intervals(
        meter_id: MeterId,
        start: Annotated[
            AwareDatetime,
            Query(
                alias="from",
                description="Range start, inclusive: ISO 8601 instant with an offset.",
                examples=["2026-03-08T00:00:00-06:00"],
            ),
        ],
        end: Annotated[
            AwareDatetime,
            Query(
                alias="to",
                description="Range end, exclusive: ISO 8601 instant with an offset.",
                examples=["2026-03-09T00:00:00-05:00"],
            ),
        ],
        channel: ChannelParam = None,
    ) -> IntervalList:
        try:
            start, end = start.astimezone(UTC), end.astimezone(UTC)
        except OverflowError:
            raise invalid("from", "an instant outside the years 1 to 9999 in UTC") from None
        if start > end:
            raise invalid("to", f"to ({end.isoformat()}) is before from ({start.isoformat()})")
        if end - start > MAX_INTERVAL_SPAN:
            raise invalid(
                "to", f"range is longer than {MAX_INTERVAL_SPAN.days} days; ask in smaller pages"
            )
        info = await series_of(meter_id, channel)
        rows = await store.intervals(meter_id, info.channel, start, end)
        return IntervalList(
            meter_id=meter_id,
            channel=info.channel,
            timezone=info.timezone,
            start=start,
            end=end,
            intervals=[interval_out(r) for r in rows],
        )

    @router.get(
        "/meters/{meter_id}/daily",
        summary="Daily usage over the meter's local days",
        responses=_NOT_FOUND,
        response_model=DailyList,
    )
    async def daily(
        meter_id: MeterId,
        first: Annotated[
            date,
            Query(alias="from", description="First local day, inclusive (YYYY-MM-DD)."),
        ],
        last: Annotated[
            date,
            Query(alias="to", description="Last local day, inclusive (YYYY-MM-DD)."),
        ],
        view: MeterAccess,
        channel: ChannelParam = None,
    ) -> Response:
        check_range(first, last)
        info = await series_of(meter_id, channel)
        limits = usage_limits(meter_id, info.channel)
        since = history_start(first, limits, view)
        history = await store.daily(meter_id, info.channel, since, last)
        checks = checks_by_day(history, limits)
        days = [d for d in history if d.day >= first]
        total = sum(d.value for d in days)
        # A DailyList, encoded without a pydantic model per day (gateway.api.daily_json).
        return Response(daily_list_json(
            meter_id=meter_id,
            channel=info.channel,
            timezone=info.timezone,
            first=first,
            last=last,
            unit=info.unit.base.value,
            total=total,
            total_kwh=kwh(total, info.unit.base),
            days=days,
            checks=checks,
        ), media_type="application/json")

    @router.get(
        "/meters/{meter_id}/daily/rates",
        summary="Daily usage per rate (day/night tariff registers) and their total",
        responses=_NOT_FOUND,
    )
    async def daily_rates(
        meter_id: MeterId,
        first: Annotated[
            date,
            Query(alias="from", description="First local day, inclusive (YYYY-MM-DD)."),
        ],
        last: Annotated[
            date,
            Query(alias="to", description="Last local day, inclusive (YYYY-MM-DD)."),
        ],
        view: MeterAccess,
        channel: Annotated[str | None, Query(
            description="The total channel whose tariff registers are the rates (OBIS, "
            "tariff group 0); defaults to active energy import. A meter without tariff "
            "registers has one rate: this channel.")] = None,
    ) -> RatesDailyList:
        check_range(first, last)
        total_channel = channel or default_channel
        if await store.meter(meter_id) is None:
            raise HTTPException(404, detail=f"unknown meter {meter_id!r}")
        known = {s.channel: s for s in await store.series(meter_id)}
        rates = tariffs_of(total_channel, list(known))
        if not rates:
            info = await find_series(store, meter_id, total_channel)
            rates = [(0, info.channel)]
        info = known[rates[0][1]]
        limits = usage_limits(meter_id, total_channel)
        since = history_start(first, limits, view)
        by_rate = {ch: await store.daily(meter_id, ch, since, last) for _, ch in rates}
        register = []
        if rates[0][0] != 0 and total_channel in known:
            register = await store.daily(meter_id, total_channel, first, last)
        built = build_view(rates, by_rate, register, limits, first=first)
        unit = info.unit.base
        days = [rates_day_out(d, unit) for d in built.days]
        total = sum(d.value for d in days)
        return RatesDailyList(
            meter_id=meter_id, channel=total_channel, timezone=info.timezone, first=first,
            last=last, unit=unit.value,
            rates=[
                Rate(channel=ch, tariff=tariff, label=rate_label(tariff),
                     total=(rate_total := sum(d.rates[i].value for d in days)),
                     total_kwh=kwh(rate_total, unit))
                for i, (tariff, ch) in enumerate(rates)
            ],
            total=total, total_kwh=kwh(total, unit), days=days,
        )

    return router


def _window_start(view: MeterView, day: date) -> date:
    """The first day of the caller's window holding ``day`` (``date.min`` for the operator,
    who sees every day). ``meter_access`` has checked that the asked days lie within one."""
    if view.windows is None:
        return date.min
    for w in view.windows:
        if w.first <= day and (w.end is None or day < w.end):
            return w.first
    return day  # not reached: no history rather than another occupant's
