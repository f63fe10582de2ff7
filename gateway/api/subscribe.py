"""Address confirmation (double opt-in) and unsubscribing, for usage notifications.

A notification a customer creates to an address they have not confirmed is *pending*:
it is sent nothing but one confirmation mail (``gateway.notify.letters``) with a
single-use link valid ``CONFIRM_TTL``. Confirming the address makes every notification
of that login to it active; later ones to it need no new confirmation. At most
``CONFIRM_MAILS`` confirmation mails go to one address within ``CONFIRM_WINDOW``,
whoever asks (429 beyond), so the portal cannot be used to flood a stranger.
Notifications the operator creates need no confirmation.

Routes (no sign-in: the token is the proof):

- ``GET /api/v1/notifications/confirm?token=...``: a tiny page with one button, which
  POSTs to the same address (a link scanner's GET changes nothing).
- ``POST /api/v1/notifications/confirm?token=...``: confirm; 404 for a token unknown,
  used or expired.
- ``GET``/``POST /api/v1/notifications/unsubscribe?token=...``: the same for the link in
  every notice; the POST deletes the subscription. It is the RFC 8058 one-click target
  of the notice's ``List-Unsubscribe`` header (the mail client POSTs
  ``List-Unsubscribe=One-Click``, which needs nothing more).

Answers are JSON, or a tiny page when the caller accepts HTML (the button's POST).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.accounts import (
    CONFIRM_MAILS,
    CONFIRM_TTL,
    CONFIRM_WINDOW,
    new_token,
    token_hash,
)
from gateway.api.access import AccountStore
from gateway.clock import Clock, SystemClock
from gateway.notify.letters import (
    CONFIRM_PATH,
    UNSUBSCRIBE_PATH,
    MailOut,
    confirm_letter,
    send_quietly,
)

__all__ = ["ask_confirmation", "subscribe_router"]

Token = Annotated[str, Query(min_length=1, max_length=128,
                             description="The token from the mail.")]

_TOO_MANY = HTTPException(429, detail="too many confirmation mails to this address today; "
                                      "try again tomorrow",
                          headers={"Retry-After": str(int(CONFIRM_WINDOW.total_seconds()))})
_HEADERS = {"Content-Security-Policy": "default-src 'none'; form-action 'self'; "
                                       "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"}


async def ask_confirmation(accounts: AccountStore, mail: MailOut, customer_id: int,
                           address: str, now: datetime, background: BackgroundTasks) -> None:
    """Count and send one confirmation mail to ``address`` (429 past the cap)."""
    key = address.casefold()
    if not await accounts.try_mail(f"confirm:{key}", since=now - CONFIRM_WINDOW, now=now,
                                   limit=CONFIRM_MAILS):
        raise _TOO_MANY
    token, hashed = new_token()
    await accounts.add_address_token(hashed, customer_id, key, expires_at=now + CONFIRM_TTL,
                                     now=now)
    background.add_task(send_quietly, mail.mailer,
                        confirm_letter(mail, address, token, now + CONFIRM_TTL),
                        "address confirmation")


def _page(title: str, text: str, button: str | None = None, status: int = 200) -> HTMLResponse:
    # The form has no action: it POSTs to this very address, token included.
    form = f'<form method="post"><button type="submit">{button}</button></form>' \
        if button else ""
    return HTMLResponse(f"<!doctype html><html lang=en><meta charset=utf-8><title>{title}"
                        f"</title><h1>{title}</h1><p>{text}</p>{form}</html>",
                        status_code=status, headers=_HEADERS)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def subscribe_router(accounts: AccountStore, clock: Clock | None = None) -> APIRouter:
    router = APIRouter(tags=["usage notifications"])
    now = (clock or SystemClock()).now
    gone = "This link is unknown, used or expired."

    @router.get(CONFIRM_PATH, include_in_schema=False)
    async def confirm_page() -> Response:
        return _page("Confirm your address", "Send usage notifications to this address?",
                     "Confirm")

    @router.post(CONFIRM_PATH, summary="Confirm an address (the mail's token)")
    async def confirm(token: Token, request: Request) -> Response:
        address = await accounts.confirm_address(token_hash(token), now=now())
        if _wants_html(request):
            return _page("Address confirmed", "Usage notifications will come to this address.") \
                if address else _page("Not confirmed", gone, status=404)
        if address is None:
            return JSONResponse({"detail": gone}, status_code=404)
        return JSONResponse({"address": address, "confirmed": True})

    @router.get(UNSUBSCRIBE_PATH, include_in_schema=False)
    async def unsubscribe_page() -> Response:
        return _page("Stop these notices", "Stop the usage notification this mail came from?",
                     "Unsubscribe")

    @router.post(UNSUBSCRIBE_PATH,
                 summary="End a notification (the token of one of its notices)")
    async def unsubscribe(token: Token, request: Request) -> Response:
        done = await accounts.unsubscribe(token_hash(token))
        if _wants_html(request):
            return _page("Unsubscribed", "No more notices of this notification will come.") \
                if done else _page("Not unsubscribed", gone, status=404)
        if not done:
            return JSONResponse({"detail": gone}, status_code=404)
        return JSONResponse({"unsubscribed": True})

    return router
