"""Password reset by mail (on with ``[api] customers = true`` and mail configured).

- ``POST /api/v1/password-resets`` ``{"email"}``: always the same 202, whether a login
  has the address or not, after the same work (the same store writes; the mail goes
  out after the reply). When one has, a single-use token valid ``RESET_TTL`` is mailed
  to it. At most ``RESET_MAILS`` asks per address within ``RESET_WINDOW`` (429 beyond,
  for any address alike).
- ``POST /api/v1/password-resets/confirm`` ``{"token", "password"}``: the new password
  set, the token and every other of the login spent, every session ended; 400 for a
  token unknown, used or expired.

Without mail (no ``[notify]`` section) both answer 503 naming the keys to set.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from gateway.accounts import (
    RESET_MAILS,
    RESET_TTL,
    RESET_WINDOW,
    hash_password,
    new_token,
    token_hash,
)
from gateway.api.access import AccountStore
from gateway.api.customers import Email, Password
from gateway.clock import Clock, SystemClock
from gateway.notify.letters import MailOut, reset_letter, send_quietly

__all__ = ["NO_MAIL", "resets_router"]


class ResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class ResetConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    password: Password


class Accepted(BaseModel):
    detail: str


NO_MAIL = HTTPException(503, detail="the portal sends no mail: set [notify] smtp_host and "
                                    "sender (and public_url) in the config file")
_SENT = Accepted(detail="if a login has this address, a reset token was mailed to it")
_BAD = HTTPException(400, detail="the reset token is unknown, used or expired")
_TOO_MANY = HTTPException(429, detail="too many resets asked for this address; try later",
                          headers={"Retry-After": str(int(RESET_WINDOW.total_seconds()))})
#: The login of an unknown address: no customer has id 0 (ids start at 1).
_NOBODY = 0


def resets_router(accounts: AccountStore, mail: MailOut | None,
                  clock: Clock | None = None) -> APIRouter:
    router = APIRouter(prefix="/api/v1/password-resets", tags=["customer accounts"])
    now = (clock or SystemClock()).now

    @router.post("", status_code=202, summary="Mail a password-reset token to a login's address")
    async def ask(body: ResetIn, background: BackgroundTasks) -> Accepted:
        if mail is None:
            raise NO_MAIL
        at = now()
        if not await accounts.try_mail(f"reset:{body.email}", since=at - RESET_WINDOW, now=at,
                                       limit=RESET_MAILS):
            raise _TOO_MANY
        found = await accounts.customer_by_email(body.email)
        token, hashed = new_token()
        # Stored either way, so an unknown address costs the same; nobody gets that token.
        await accounts.add_reset(hashed, _NOBODY if found is None else found[0],
                                 expires_at=at + RESET_TTL, now=at)
        if found is not None:
            background.add_task(send_quietly, mail.mailer,
                                reset_letter(mail, body.email, token, at + RESET_TTL),
                                "password reset")
        return _SENT

    @router.post("/confirm", status_code=204,
                 summary="Set a new password with a reset token; every session ends")
    async def confirm(body: ResetConfirm) -> Response:
        if mail is None:
            raise NO_MAIL
        salt, digest = hash_password(body.password)
        if not await accounts.use_reset(token_hash(body.token), salt, digest, now=now()):
            raise _BAD
        return Response(status_code=204)

    return router
