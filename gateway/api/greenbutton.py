"""``GET /api/v1/meters/{meter_id}/greenbutton``: Green Button Download My Data for a
meter's channel over local days, as ESPI 3.3 Atom XML or the portals' CSV layout
(gateway.espi). Access is the feed's (``gateway.api.access.meter_access``): open with
customer access off; on, a customer downloads only the days of their own accounts."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from gateway.api.access import meter_access
from gateway.errors import DataError
from gateway.espi_cli import render_espi
from gateway.store import Store

__all__ = ["greenbutton_router"]

#: A year and a day: a Download My Data request is for a billing history, not more.
MAX_DAYS = 366

_MEDIA = {"xml": "application/atom+xml", "csv": "text/csv; charset=utf-8"}


def greenbutton_router(store: Store, default_channel: str) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["feed"], dependencies=[Depends(meter_access)])

    @router.get(
        "/meters/{meter_id}/greenbutton",
        summary="Green Button Download My Data: ESPI Atom XML or CSV over local days",
        response_class=Response,
        responses={200: {"content": {_MEDIA["xml"]: {}, _MEDIA["csv"]: {}}},
                   404: {"description": "Unknown meter or channel"}},
    )
    async def greenbutton(
        request: Request, meter_id: str,
        first: Annotated[date, Query(alias="from", description="First local day")],
        last: Annotated[date, Query(alias="to", description="Last local day, inclusive")],
        fmt: Annotated[Literal["xml", "csv"], Query(alias="format")] = "xml",
        channel: Annotated[str | None, Query()] = None,
    ) -> Response:
        if last < first:
            raise HTTPException(422, detail="to is before from")
        if (last - first).days + 1 > MAX_DAYS:
            raise HTTPException(422, detail=f"at most {MAX_DAYS} days per download")
        chosen = channel or default_channel
        if not await store.series(meter_id):
            raise HTTPException(404, detail=f"unknown meter {meter_id!r}")
        try:
            body = await render_espi(store, meter_id, chosen, first, last, fmt,
                                     base_url=str(request.base_url).rstrip("/"))
        except DataError as exc:
            raise HTTPException(404, detail=str(exc)) from exc
        name = f"greenbutton-{meter_id}-{first}-{last}.{fmt}"
        return Response(body, media_type=_MEDIA[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    return router
