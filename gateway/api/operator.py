"""Operator routes: correcting an interval and reading the audit trail.

They change billing data, so they need an operator token (a bearer token whose value
comes from the environment or a file, never from the config itself). Without one
configured they answer 403 and say how to enable them; a missing or wrong token gets
the same 401 whatever was wrong, compared in constant time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, Field

from gateway.api.auth import operator_guard
from gateway.api.feed import ChannelParam, MeterId, Problem, find_series, invalid
from gateway.api.schemas import Interval, interval_out
from gateway.errors import DataError
from gateway.store import Store


class Correction(BaseModel):
    """An operator's corrected value for one interval, with who and why."""

    value: Annotated[int, Field(ge=0, description="Corrected consumption in Wh")]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    operator: Annotated[str, Field(min_length=1, max_length=100)]


class Edit(BaseModel):
    start: datetime
    old_value: int | None
    new_value: int
    operator: str
    reason: str
    at: datetime


class EditList(BaseModel):
    meter_id: str
    channel: str
    edits: list[Edit]


_AUTH: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or wrong operator token"},
    403: {"model": Problem, "description": "Operator routes are not enabled"},
    404: {"model": Problem, "description": "Unknown meter or channel"},
}


def operator_router(store: Store, default_channel: str, token: str | None) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["operator"], responses=_AUTH)

    operator_only = operator_guard(token)

    async def channel_of(meter_id: str, channel: str | None) -> str:
        return (await find_series(store, meter_id, channel or default_channel)).channel

    @router.put("/meters/{meter_id}/intervals/{start}", summary="Correct one interval",
                dependencies=[Depends(operator_only)])
    async def correct(meter_id: MeterId, start: AwareDatetime, body: Correction,
                      channel: ChannelParam = None) -> Interval:
        wanted = await channel_of(meter_id, channel)
        try:
            edited = await store.edit_interval(
                meter_id, wanted, start.astimezone(UTC), body.value,
                operator=body.operator, reason=body.reason, at=datetime.now(UTC))
        except DataError as exc:
            raise invalid("start", str(exc)) from exc
        return interval_out(edited)

    @router.get("/meters/{meter_id}/edits", summary="Audit trail of corrections",
                dependencies=[Depends(operator_only)])
    async def edits(meter_id: MeterId, channel: ChannelParam = None) -> EditList:
        wanted = await channel_of(meter_id, channel)
        trail = await store.edits(meter_id, wanted)
        return EditList(meter_id=meter_id, channel=wanted, edits=[
            Edit(start=e.start, old_value=e.old_value, new_value=e.new_value,
                 operator=e.operator, reason=e.reason, at=e.at) for e in trail])

    return router
