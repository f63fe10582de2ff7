"""The HTTP application: the portal feed API, a health check and the usage page.

The caller owns the store: open it before serving and close it after (see the module
docs of ``gateway.api``). The app only reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from gateway.api.access import Access, AccountStore, guard_meter_routes
from gateway.api.customers import customers_router
from gateway.api.feed import feed_router
from gateway.api.greenbutton import greenbutton_router
from gateway.api.markers import markers_router
from gateway.api.monthly import monthly_router
from gateway.api.notifications import notifications_router
from gateway.api.operator import operator_router
from gateway.api.resets import resets_router
from gateway.api.schemas import Health
from gateway.api.selfread import selfread_router
from gateway.api.sessions import sessions_router
from gateway.api.status import status_router
from gateway.api.subscribe import subscribe_router
from gateway.clock import Clock, SystemClock
from gateway.ingest.selfread import SelfReads
from gateway.notify.letters import MailOut
from gateway.status import StatusView
from gateway.store import Store
from gateway.validation.daily import DailyLimits

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: A health probe that waits longer than this is told the store is not answering.
HEALTH_TIMEOUT_S = 2.0

# The page loads nothing from elsewhere and runs no inline script; say so to the browser.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    store: Store, *, title: str = "ami-gateway", default_channel: str = "1.0.1.8.0.255",
    operator_token: str | None = None,
    self_reads: SelfReads | None = None,
    daily_limits: Mapping[str, DailyLimits] | None = None,
    status: Callable[[], Awaitable[StatusView]] | None = None,
    clock: Clock | None = None,
    accounts: AccountStore | None = None,
    mail: MailOut | None = None,
    session_clock: Clock | None = None,
) -> FastAPI:
    """The portal app. ``daily_limits`` are each meter's daily usage checks (from the
    config: ``Assembly.daily_limits()``), judged when a daily view is built; ``clock``
    tells today (the system's clock unless given). ``accounts`` (the store, when
    ``[api] customers = true``) turns customer access on (``gateway.api.access``);
    ``mail`` (from ``[notify]``) sends its confirmation and password-reset mails.
    ``session_clock`` times sessions, tokens and rate limits (``clock`` unless given): the
    wall clock even where ``clock`` runs simulated time, as in the demo, whose 12-hour
    session would otherwise end in 30 seconds."""
    app = FastAPI(
        # Every route with a meter in its path checks who may see it, even one whose
        # router forgot to (gateway.api.access).
        dependencies=[Depends(guard_meter_routes)],
        # The interactive docs load their scripts from a CDN: off; /openapi.json stays.
        docs_url=None, redoc_url=None,
        title=title,
        summary="Portal feed: meters, interval readings and daily usage.",
        version="1",
    )
    app.add_exception_handler(RequestValidationError, _explain_validation)
    wall = session_clock or clock
    now = (wall or SystemClock()).now
    app.state.access = Access(store=store, accounts=accounts, operator_token=operator_token,
                              now=now)
    customers = accounts is not None
    app.include_router(feed_router(store, default_channel, daily_limits))
    app.include_router(operator_router(store, default_channel, operator_token))
    app.include_router(markers_router(store, default_channel, operator_token, clock,
                                      customers=customers))
    app.include_router(notifications_router(store, default_channel, operator_token, clock,
                                            accounts=accounts, mail=mail))
    if accounts is not None:
        app.include_router(customers_router(accounts, operator_token, now))
        app.include_router(sessions_router(accounts, wall))
        app.include_router(resets_router(accounts, mail, wall))
        app.include_router(subscribe_router(accounts, wall))
    app.include_router(greenbutton_router(store, default_channel))
    app.include_router(monthly_router(store, default_channel, clock))
    if self_reads is not None:  # manual meters' readings (gateway.api.selfread)
        app.include_router(selfread_router(self_reads, operator_token))
    if status is not None:  # the running gateway's outbox and meters (gateway.status)
        app.include_router(status_router(status, operator_token))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Liveness and store reachability",
        responses={503: {"model": Health, "description": "The store did not answer"}},
    )
    async def healthz(response: Response) -> Health:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                # A lookup of a name no meter has: cheap, yet it goes through the store.
                await store.meter("\x00healthz")
        except Exception as exc:  # any failure means "not healthy"; the probe reports it
            log.warning("health check: store did not answer: %r", exc)
            response.status_code = 503
            return Health(status="unavailable", detail=type(exc).__name__)
        return Health(status="ok")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    return app


def _field_name(loc: Any) -> str:
    return str(loc[-1]) if isinstance(loc, (list, tuple)) and loc else "value"


async def _explain_validation(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 shape, with a message that says how to fix a naive instant."""
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = []
    for error in exc.errors():
        error = dict(error)
        if error.get("type") == "timezone_aware":
            name = _field_name(error.get("loc"))
            error["msg"] = (
                f"{name}={error.get('input')} has no UTC offset; give an ISO 8601 instant "
                "with one, e.g. 2026-03-08T00:00:00-06:00 or 2026-03-08T06:00:00Z"
            )
        errors.append(error)
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})

