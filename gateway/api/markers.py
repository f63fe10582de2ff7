"""Usage marker routes: a meter's markers (create, list, edit, delete) and the before/after
comparison around one (``gateway.markers_compare``).

Access: with customer access off these routes take the operator token
(``gateway.api.auth``); on, the operator token or a customer session, through
``gateway.api.access.meter_access``. A customer sees and edits a meter's markers that
lie within the days of their account (``valid_from`` to ``valid_to``), whoever made
them, and adds markers only within those days: the previous occupant's markers lie
before the new occupant's first day, so they stay out of sight, with no owner to keep.
A comparison reads only the days of the account around the marker. A marker of another
meter, or outside the customer's days, answers 404 like a marker that does not exist:
the reply never tells that it exists elsewhere.

The daily endpoint stays as it is: the page fetches the markers of the days it shows
from here (``GET .../markers?from=&to=``) and draws them on the daily graph.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.api.access import MeterAccess, MeterView, meter_access
from gateway.api.auth import operator_guard
from gateway.api.feed import ChannelParam, MeterId, Problem, find_series, invalid
from gateway.api.schemas import kwh
from gateway.clock import Clock, SystemClock
from gateway.errors import DataError
from gateway.markers import LABEL_MAX, NOTE_MAX, Category, Kind, Marker, MarkerFields, check_fields
from gateway.markers_compare import DEFAULT_DAYS, MAX_DAYS, MIN_DAYS, Window, compare, plan
from gateway.model import Unit
from gateway.store import Store


class MarkerIn(BaseModel):
    """A marker as the customer sets it (all of it again on an edit)."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = Field(description="point (one local day) or range (start to end, inclusive)")
    start: date = Field(description="The (first) local day, YYYY-MM-DD.")
    end: date | None = Field(None, description="A range's last local day, inclusive.")
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=LABEL_MAX)]
    category: Category
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=NOTE_MAX)] = ""

    @model_validator(mode="after")
    def _rules(self) -> MarkerIn:
        try:
            check_fields(self.fields())
        except DataError as exc:
            raise ValueError(str(exc).removeprefix(f"{exc.source}: ")) from None
        return self

    def fields(self) -> MarkerFields:
        return MarkerFields(kind=self.kind, start=self.start, end=self.end, label=self.label,
                            category=self.category, note=self.note)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MarkerOut(_Out):
    id: int
    meter_id: str
    kind: Kind
    start: date
    end: date | None
    label: str
    category: Category
    note: str
    created_at: datetime
    updated_at: datetime


class MarkerList(_Out):
    meter_id: str
    first: date | None
    last: date | None
    markers: list[MarkerOut]


class WindowOut(_Out):
    first: date
    last: date
    days: int
    days_with_data: int = Field(description="Days with data: the average's divisor.")
    total: int
    total_kwh: str | None
    average: int | None = Field(description="Average daily usage, rounded to whole units; "
                                            "null when the window has no data.")
    average_kwh: str | None
    estimated_days: int
    missing_days: int
    incomplete_days: int
    poor: bool = Field(description="More than 20 % of the days estimated or missing.")


class ComparisonOut(_Out):
    meter_id: str
    channel: str
    timezone: str
    unit: str
    marker: MarkerOut
    wanted_days: int
    days: int = Field(description="Length of each window (both equal), 0 when none fits.")
    before: WindowOut | None
    after: WindowOut | None
    change: int | None = Field(description="After minus before, per day.")
    change_kwh: str | None
    change_percent: str | None = Field(description="The change relative to before, one decimal.")
    quality: list[str]
    verdict: Literal["ok", "poor", "unavailable"]


_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or wrong token"},
    403: {"model": Problem, "description": "Marker routes are not enabled"},
    404: {"model": Problem, "description": "Unknown meter, channel or marker"},
}

MarkerId = Annotated[int, Path(description="The marker's id (unique across meters).")]


def marker_out(m: Marker) -> MarkerOut:
    return MarkerOut(id=m.id, meter_id=m.meter_id, kind=m.kind, start=m.start, end=m.end,
                     label=m.label, category=m.category, note=m.note, created_at=m.created_at,
                     updated_at=m.updated_at)


def _window_out(w: Window | None, unit: Unit) -> WindowOut | None:
    if w is None:
        return None
    return WindowOut(
        first=w.first, last=w.last, days=w.days, days_with_data=w.days_with_data,
        total=w.total, total_kwh=kwh(w.total, unit), average=w.average,
        average_kwh=None if w.average is None else kwh(w.average, unit),
        estimated_days=w.estimated_days, missing_days=w.missing_days,
        incomplete_days=w.incomplete_days, poor=w.poor)


def markers_router(store: Store, default_channel: str, token: str | None,
                   clock: Clock | None = None, *, customers: bool = False) -> APIRouter:
    """The marker routes. ``clock`` tells the meter's today (so a window never reaches it);
    ``customers``: customer sessions are let in (by ``meter_access``), not only the
    operator token."""
    guards = [Depends(meter_access)] + ([] if customers else [Depends(operator_guard(token))])
    router = APIRouter(prefix="/api/v1/meters/{meter_id}/markers", tags=["usage markers"],
                       responses=_RESPONSES, dependencies=guards)
    now = (clock or SystemClock()).now

    async def known_meter(meter_id: str) -> None:
        if await store.meter(meter_id) is None:
            raise HTTPException(404, detail=f"unknown meter {meter_id!r}")

    def visible(view: MeterView, m: Marker) -> bool:
        return view.sees_days(m.start, m.end or m.start)

    async def find(meter_id: str, marker_id: int, view: MeterView) -> Marker:
        await known_meter(meter_id)
        found = await store.marker(meter_id, marker_id)
        if found is None or not visible(view, found):
            raise HTTPException(404, detail=f"meter {meter_id!r} has no marker {marker_id}")
        return found

    def inside(view: MeterView, body: MarkerIn) -> None:
        if not view.sees_days(body.start, body.end or body.start):
            raise invalid("start", "the marker's days are outside the days of your account")

    @router.post("", status_code=201, summary="Add a usage marker")
    async def add(meter_id: MeterId, body: MarkerIn, view: MeterAccess) -> MarkerOut:
        await known_meter(meter_id)
        inside(view, body)
        return marker_out(await store.add_marker(meter_id, body.fields(), at=now()))

    @router.get("", summary="The meter's markers touching a range of local days")
    async def listed(
        meter_id: MeterId, view: MeterAccess,
        first: Annotated[date | None, Query(alias="from", description="First local day, "
                                            "inclusive; open when absent.")] = None,
        last: Annotated[date | None, Query(alias="to", description="Last local day, "
                                           "inclusive; open when absent.")] = None,
    ) -> MarkerList:
        if first is not None and last is not None and first > last:
            raise invalid("to", f"to ({last}) is before from ({first})")
        await known_meter(meter_id)
        found = await store.markers(meter_id, first, last)
        return MarkerList(meter_id=meter_id, first=first, last=last,
                          markers=[marker_out(m) for m in found if visible(view, m)])

    @router.get("/{marker_id}", summary="One marker")
    async def one(meter_id: MeterId, marker_id: MarkerId, view: MeterAccess) -> MarkerOut:
        return marker_out(await find(meter_id, marker_id, view))

    @router.put("/{marker_id}", summary="Edit a marker (all of its fields)")
    async def edit(meter_id: MeterId, marker_id: MarkerId, body: MarkerIn,
                   view: MeterAccess) -> MarkerOut:
        await find(meter_id, marker_id, view)
        inside(view, body)
        changed = await store.update_marker(meter_id, marker_id, body.fields(), at=now())
        if changed is None:  # deleted in between
            raise HTTPException(404, detail=f"meter {meter_id!r} has no marker {marker_id}")
        return marker_out(changed)

    @router.delete("/{marker_id}", status_code=204, summary="Delete a marker")
    async def delete(meter_id: MeterId, marker_id: MarkerId, view: MeterAccess) -> Response:
        await find(meter_id, marker_id, view)
        if not await store.delete_marker(meter_id, marker_id):
            raise HTTPException(404, detail=f"meter {meter_id!r} has no marker {marker_id}")
        return Response(status_code=204)

    @router.get("/{marker_id}/comparison",
                summary="Average daily usage before and after the marker")
    async def comparison(
        meter_id: MeterId, marker_id: MarkerId, view: MeterAccess,
        days: Annotated[int, Query(ge=MIN_DAYS, le=MAX_DAYS, description=(
            "Days on each side of a point marker (clipped to the data and to yesterday); "
            "a range marker is compared with as many days just before it."))] = DEFAULT_DAYS,
        channel: ChannelParam = None,
    ) -> ComparisonOut:
        marker = await find(meter_id, marker_id, view)
        info = await find_series(store, meter_id, channel or default_channel)
        yesterday = now().astimezone(ZoneInfo(info.timezone)).date() - timedelta(days=1)
        span = _clip(await store.daily_span(meter_id, info.channel), view, marker)
        p = plan(marker, span=span, yesterday=yesterday, window_days=days)
        rows = [] if p.days == 0 else await store.daily(meter_id, info.channel,
                                                        p.before_first, p.after_last)
        rows = [r for r in rows if view.sees_days(r.day, r.day)]
        c = compare(marker, rows, span=span, yesterday=yesterday, window_days=days)
        unit = info.unit.base
        return ComparisonOut(
            meter_id=meter_id, channel=info.channel, timezone=info.timezone, unit=unit.value,
            marker=marker_out(marker), wanted_days=c.wanted_days, days=c.days,
            before=_window_out(c.before, unit), after=_window_out(c.after, unit),
            change=c.change, change_kwh=None if c.change is None else kwh(c.change, unit),
            change_percent=None if c.change_percent is None else f"{c.change_percent:f}",
            quality=c.quality, verdict=c.verdict)

    return router


def _clip(span: tuple[date, date] | None, view: MeterView,
          marker: Marker) -> tuple[date, date] | None:
    """The data span cut to the customer's window that holds the marker, so the
    comparison's windows never reach another occupant's days."""
    if span is None or view.windows is None:
        return span
    for w in view.windows:
        last = w.end - timedelta(days=1) if w.end is not None else date.max
        if w.first <= marker.start <= last:
            first, end = max(span[0], w.first), min(span[1], last)
            return (first, end) if first <= end else None
    return None
