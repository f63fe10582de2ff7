"""A login's own sessions and password (on with ``[api] customers = true``).

- ``GET /api/v1/me/sessions``: the login's live sessions (id, start, expiry, last use to
  within ``TOUCH_EVERY``, which one is asking); never a token.
- ``DELETE /api/v1/me/sessions/{session_id}``: end one of them. Another login's
  session answers 404 like one that does not exist.
- ``PUT /api/v1/me/password``: the current and a new password; every other session of
  the login ends (the one asking stays signed in). A wrong current password answers 403,
  and the tries count like linking tries (``LINK_TRIES`` per ``LINK_WINDOW``, then 429),
  so a stolen session cannot guess its way to the password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from gateway.accounts import (
    LINK_TRIES,
    LINK_WINDOW,
    PASSWORD_MAX,
    hash_password,
    verify_password,
)
from gateway.api.access import AccountStore
from gateway.api.customers import Customer, Password
from gateway.clock import Clock, SystemClock

__all__ = ["sessions_router"]


class SessionInfo(BaseModel):
    id: int
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    current: bool


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: Annotated[str, StringConstraints(max_length=PASSWORD_MAX)]
    new_password: Password


_TOO_MANY = HTTPException(429, detail="too many tries; try again later",
                          headers={"Retry-After": str(int(LINK_WINDOW.total_seconds()))})


def sessions_router(accounts: AccountStore, clock: Clock | None = None) -> APIRouter:
    router = APIRouter(prefix="/api/v1/me", tags=["customer accounts"])
    now = (clock or SystemClock()).now

    @router.get("/sessions", summary="The login's live sessions")
    async def listed(who: Customer) -> SessionList:
        assert who.customer_id is not None
        return SessionList(sessions=[
            SessionInfo(id=s.id, created_at=s.created_at, expires_at=s.expires_at,
                        last_used_at=s.last_used_at, current=s.id == who.session_id)
            for s in await accounts.sessions_of(who.customer_id, now=now())])

    @router.delete("/sessions/{session_id}", status_code=204,
                   summary="End one of the login's sessions")
    async def revoke(who: Customer, session_id: Annotated[int, Path()]) -> Response:
        assert who.customer_id is not None
        if not await accounts.end_session_of(who.customer_id, session_id):
            raise HTTPException(404, detail=f"no session {session_id}")
        return Response(status_code=204)

    @router.put("/password", status_code=204,
                summary="Change the password; every other session ends")
    async def change(who: Customer, body: PasswordChange) -> Response:
        assert who.customer_id is not None
        at = now()
        if not await accounts.try_link([f"password:{who.customer_id}"],
                                       since=at - LINK_WINDOW, now=at, limit=LINK_TRIES):
            raise _TOO_MANY
        found = await accounts.password_of(who.customer_id)
        if found is None or not verify_password(body.current_password, *found):
            raise HTTPException(403, detail="the current password is wrong")
        salt, digest = hash_password(body.new_password)
        await accounts.set_password(who.customer_id, salt, digest,
                                    keep_session=who.session_id)
        return Response(status_code=204)

    return router
