"""Customer logins and their accounts (on with ``[api] customers = true``).

- ``POST /api/v1/accounts`` (operator token): load the utility's billing accounts.
- ``POST /api/v1/customers``: a login (e-mail and password).
- ``POST /api/v1/sessions``: sign in, get a bearer token (12 h); ``DELETE
  /api/v1/sessions/current``: sign out.
- ``POST /api/v1/me/accounts``: link a billing account by proving it (account number
  and the amount of its last payment); ``GET /api/v1/me/accounts``: the linked ones.

A login's sessions and password are in ``gateway.api.sessions``, password reset by
mail in ``gateway.api.resets``, address confirmation for notifications in
``gateway.api.subscribe``.

Linking answers the same 404 "no account matches" whatever was wrong (no such account,
another payment, an amount that is no amount), and counts every try per login and per
account number in the store: after ``LINK_TRIES`` within ``LINK_WINDOW`` it answers 429
for either, whether the account exists or not. Signing in answers one 401 for an unknown
e-mail and a wrong password alike, after the same scrypt work.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.accounts import (
    LINK_TRIES,
    LINK_WINDOW,
    PASSWORD_MAX,
    PASSWORD_MIN,
    SESSION_TTL,
    BillingAccount,
    cents,
    hash_password,
    new_token,
    verify_password,
)
from gateway.api.access import AccountStore, Viewer, viewer
from gateway.api.auth import operator_guard
from gateway.errors import DataError

__all__ = ["customers_router"]

Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=3,
                                         max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
Password = Annotated[str, StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
AccountNumber = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                 max_length=64)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountIn(_In):
    account_number: AccountNumber
    meter_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    valid_from: date = Field(description="First local day the account holds the meter.")
    valid_to: date | None = Field(None, description="First local day it no longer does.")
    last_payment: Annotated[str, StringConstraints(max_length=32)] = Field(
        description="The last payment's amount, e.g. \"42.17\".")


class AccountsIn(_In):
    accounts: list[AccountIn] = Field(max_length=10_000)


class Stored(BaseModel):
    stored: int


class LoginIn(_In):
    email: Email
    password: Password


class SignInIn(_In):
    email: Email
    password: Annotated[str, StringConstraints(max_length=PASSWORD_MAX)]


class CustomerOut(BaseModel):
    email: str


class SessionOut(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'.")
    expires_at: datetime


class LinkIn(_In):
    account_number: AccountNumber
    last_payment: Annotated[str, StringConstraints(max_length=32)] = Field(
        description="The amount of the account's last payment, e.g. \"42.17\".")


class LinkedOut(BaseModel):
    account_number: str
    meter_id: str
    valid_from: date
    valid_to: date | None


class LinkedList(BaseModel):
    accounts: list[LinkedOut]


_NO_MATCH = HTTPException(404, detail="no account matches")
_TOO_MANY = HTTPException(429, detail="too many tries; try again later",
                          headers={"Retry-After": str(int(LINK_WINDOW.total_seconds()))})
_WRONG = HTTPException(401, detail="wrong e-mail or password",
                       headers={"WWW-Authenticate": "Bearer"})
# Spent on an unknown e-mail, so it takes as long as a wrong password.
_DUMMY_SALT, _DUMMY_DIGEST = hash_password("no such login", b"0" * 16)


async def customer_only(who: Annotated[Viewer, Depends(viewer)]) -> Viewer:
    if who.customer_id is None:
        raise HTTPException(403, detail="a customer session is required")
    return who


Customer = Annotated[Viewer, Depends(customer_only)]


def customers_router(accounts: AccountStore, operator_token: str | None,
                     now: Callable[[], datetime]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["customer accounts"])

    @router.post("/accounts", summary="Load the utility's billing accounts (operator)",
                 dependencies=[Depends(operator_guard(operator_token))])
    async def load(body: AccountsIn) -> Stored:
        try:
            rows = [BillingAccount(a.account_number, a.meter_id, a.valid_from, a.valid_to,
                                   cents(a.last_payment)) for a in body.accounts]
        except DataError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        return Stored(stored=await accounts.put_accounts(rows))

    @router.post("/customers", status_code=201, summary="Create a login")
    async def sign_up(body: LoginIn) -> CustomerOut:
        salt, digest = hash_password(body.password)
        if await accounts.add_customer(body.email, salt, digest, at=now()) is None:
            raise HTTPException(409, detail="this e-mail has a login: sign in")
        return CustomerOut(email=body.email)

    @router.post("/sessions", status_code=201, summary="Sign in: a bearer token for 12 hours")
    async def sign_in(body: SignInIn) -> SessionOut:
        found = await accounts.customer_by_email(body.email)
        if found is None:
            verify_password(body.password, _DUMMY_SALT, _DUMMY_DIGEST)
            raise _WRONG
        cid, salt, digest = found
        if not verify_password(body.password, salt, digest):
            raise _WRONG
        token, hashed = new_token()
        at = now()
        await accounts.add_session(hashed, cid, expires_at=at + SESSION_TTL, now=at)
        return SessionOut(token=token, expires_at=at + SESSION_TTL)

    @router.delete("/sessions/current", status_code=204, summary="Sign out")
    async def sign_out(who: Customer) -> Response:
        assert who.token_hash is not None
        await accounts.end_session(who.token_hash)
        return Response(status_code=204)

    @router.post("/me/accounts", status_code=201,
                 summary="Link a billing account: its number and the last payment's amount")
    async def link(who: Customer, body: LinkIn) -> LinkedList:
        assert who.customer_id is not None
        at = now()
        keys = [f"login:{who.customer_id}", f"account:{body.account_number.casefold()}"]
        if not await accounts.try_link(keys, since=at - LINK_WINDOW, now=at,
                                       limit=LINK_TRIES):
            raise _TOO_MANY
        try:
            amount = cents(body.last_payment)
        except DataError:
            raise _NO_MATCH from None
        if not await accounts.link(who.customer_id, body.account_number, amount, at=at):
            raise _NO_MATCH
        return await linked(who)

    @router.get("/me/accounts", summary="The login's linked accounts")
    async def linked(who: Customer) -> LinkedList:
        assert who.customer_id is not None
        return LinkedList(accounts=[
            LinkedOut(account_number=a.account_number, meter_id=a.meter_id,
                      valid_from=a.valid_from, valid_to=a.valid_to)
            for a in await accounts.linked(who.customer_id)])

    return router
