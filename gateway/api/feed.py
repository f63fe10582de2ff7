"""The portal feed routes: meters, intervals and daily usage, read from a ``Store``."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import AwareDatetime, BaseModel

from gateway.api.schemas import (
    DailyList,
    IntervalList,
    MeterList,
    day_out,
    interval_out,
    kwh,
    meter_out,
)
from gateway.store import SeriesInfo, Store

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
    if await store.meter(meter_id) is None:
        raise HTTPException(404, detail=f"unknown meter {meter_id!r}")
    known = await store.series(meter_id)
    for info in known:
        if info.channel == channel:
            return info
    have = ", ".join(s.channel for s in known) or "none"
    raise HTTPException(
        404, detail=f"meter {meter_id!r} has no channel {channel!r} (channels: {have})"
    )


def feed_router(store: Store, default_channel: str) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["portal feed"])

    async def series_of(meter_id: str, channel: str | None) -> SeriesInfo:
        return await find_series(store, meter_id, channel or default_channel)

    @router.get("/meters", summary="Meters, their status and channels")
    async def meters() -> MeterList:
        by_meter: dict[str, list[SeriesInfo]] = defaultdict(list)
        for info in await store.series():
            by_meter[info.meter_id].append(info)
        statuses = sorted(await store.meters(), key=lambda m: m.meter_id)
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
        channel: ChannelParam = None,
    ) -> DailyList:
        if first > last:
            raise invalid("to", f"to ({last}) is before from ({first})")
        if (last - first).days + 1 > MAX_DAILY_DAYS:
            raise invalid("to", f"range is longer than {MAX_DAILY_DAYS} days")
        info = await series_of(meter_id, channel)
        days = await store.daily(meter_id, info.channel, first, last)
        total = sum(d.value for d in days)
        return DailyList(
            meter_id=meter_id,
            channel=info.channel,
            timezone=info.timezone,
            first=first,
            last=last,
            unit=info.unit.base.value,
            total=total,
            total_kwh=kwh(total, info.unit.base),
            days=[day_out(d) for d in days],
        )

    return router
