"""``GET /api/v1/status``: the outbox per sink, the meters and the quarantine at a glance
(see ``gateway.status``). With an operator token configured it takes the token; it
names sinks and counts, never a customer's meter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from fastapi import APIRouter, Depends, Response

from gateway.api.auth import operator_guard
from gateway.status import StatusView

__all__ = ["status_router"]


def status_router(status: Callable[[], Awaitable[StatusView]],
                  operator_token: str | None) -> APIRouter:
    guard = [Depends(operator_guard(operator_token))] if operator_token is not None else []
    router = APIRouter(tags=["ops"], dependencies=guard)

    @router.get(
        "/api/v1/status",
        summary="Outbox depth, oldest undelivered interval, delivery rate and quarantine, "
                "per sink; meters by state",
        response_class=Response,
        responses={200: {"content": {"application/json": {}}}},
    )
    async def get_status() -> Response:
        view = await status()
        return Response(msgspec.json.encode(view), media_type="application/json")

    return router
