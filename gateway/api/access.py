"""Who may see which meter: the ``meter_access`` dependency every meter route uses.

Customer access is opt-in (``[api] customers = true``; ``create_app(accounts=...)``).
Off, the API is as it always was: the feed routes are open (a proxy in front decides
who reaches them) and the marker and notification routes take the operator token; the
demo and the page keep working unchanged.

On, every meter route takes a bearer token: the operator token (every meter, every
day) or a customer session (``gateway.api.customers``). A customer sees a meter only
through a linked billing account, and only over the days the account held it
(``valid_from`` inclusive to ``valid_to`` exclusive, in the meter's local days):

- a meter the customer has no account on answers 404 exactly like an unknown meter;
- a ``from``/``to`` range entirely outside those days answers the same 404 (for this
  customer there is no such data);
- a range partly outside answers 422 naming the customer's own days, to ask again
  within them. Refusing rather than clipping keeps every route's reply what it says
  it is (a ``from``..``to`` that was asked for), and keeps this check in one place:
  no route has to remember to clip.

The dependency reads ``meter_id`` from the path and ``from``/``to`` through the route's
own parameter fields (the same parsing the route applies), so a route added later is
covered as soon as it is on a router that uses ``meter_access``. Routes with open or
other ranges (markers, notifications) also get the ``MeterView`` and filter by it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Protocol

from fastapi import Depends, Header, HTTPException, Request
from fastapi.dependencies.models import Dependant

from gateway.accounts import (
    TOUCH_EVERY,
    BillingAccount,
    Coverage,
    LiveSession,
    Window,
    coverage_of_days,
    coverage_of_instants,
    merge,
    token_hash,
    within,
)
from gateway.store import Store

__all__ = ["Access", "AccountStore", "MeterAccess", "MeterView", "Viewer", "guard_meter_routes",
           "meter_access", "unknown_meter", "viewer"]


# Hidden from the schema: with customer access off it is not asked for.
Bearer = Annotated[str | None, Header(include_in_schema=False)]


class AccountStore(Protocol):
    """Customer accounts (``gateway.store.accounts``); ``SqliteStore`` is one."""

    async def put_accounts(self, accounts: list[BillingAccount]) -> int: ...

    async def add_customer(self, email: str, salt: bytes, digest: bytes, *,
                           at: datetime) -> int | None: ...

    async def customer_by_email(self, email: str) -> tuple[int, bytes, bytes] | None: ...

    async def add_session(self, token_hash: bytes, customer_id: int, *, expires_at: datetime,
                          now: datetime) -> None: ...

    async def session(self, token_hash: bytes, *, now: datetime) -> int | None: ...

    async def end_session(self, token_hash: bytes) -> bool: ...

    async def try_link(self, keys: list[str], *, since: datetime, now: datetime,
                       limit: int) -> bool: ...

    async def link(self, customer_id: int, account_number: str, cents: int, *,
                   at: datetime) -> bool: ...

    async def linked(self, customer_id: int) -> list[BillingAccount]: ...

    async def windows(self, customer_id: int, meter_id: str) -> list[Window]: ...

    async def own_notification(self, notification_id: int, customer_id: int) -> None: ...

    async def notification_owners(self, ids: list[int]) -> dict[int, int]: ...

    # Sessions, password, address confirmation and resets (gateway.store.tokens).

    async def live_session(self, token_hash: bytes, *, now: datetime) -> LiveSession | None: ...

    async def touch_session(self, session_id: int, *, now: datetime) -> None: ...

    async def sessions_of(self, customer_id: int, *, now: datetime) -> list[LiveSession]: ...

    async def end_session_of(self, customer_id: int, session_id: int) -> bool: ...

    async def password_of(self, customer_id: int) -> tuple[bytes, bytes] | None: ...

    async def set_password(self, customer_id: int, salt: bytes, digest: bytes, *,
                           keep_session: int | None) -> None: ...

    async def try_mail(self, key: str, *, since: datetime, now: datetime,
                       limit: int) -> bool: ...

    async def add_address_token(self, token_hash: bytes, customer_id: int, address: str, *,
                                expires_at: datetime, now: datetime) -> None: ...

    async def confirm_address(self, token_hash: bytes, *, now: datetime) -> str | None: ...

    async def confirmed(self, customer_id: int, addresses: list[str]) -> set[str]: ...

    async def add_reset(self, token_hash: bytes, customer_id: int, *, expires_at: datetime,
                        now: datetime) -> None: ...

    async def use_reset(self, token_hash: bytes, salt: bytes, digest: bytes, *,
                        now: datetime) -> bool: ...

    async def unsubscribe(self, token_hash: bytes) -> bool: ...


@dataclass(frozen=True)
class Access:
    """What ``meter_access`` needs, kept in ``app.state.access`` by ``create_app``."""

    store: Store
    accounts: AccountStore | None  # None: customer access is off
    operator_token: str | None
    now: Callable[[], datetime]


@dataclass(frozen=True)
class Viewer:
    """The caller: a customer login, or ``None`` for the operator (or anyone, when
    customer access is off)."""

    customer_id: int | None
    token_hash: bytes | None = None
    session_id: int | None = None


@dataclass(frozen=True)
class MeterView:
    """What the caller may see of the meter in the path (``None`` on a route without one).
    ``windows`` None: every day; ``meters`` None: every meter."""

    meter_id: str | None
    customer_id: int | None
    windows: tuple[Window, ...] | None
    meters: frozenset[str] | None

    def sees_days(self, first: date, last: date) -> bool:
        return self.windows is None or within(list(self.windows), first, last)

    def sees_meter(self, meter_id: str) -> bool:
        return self.meters is None or meter_id in self.meters


def _access(request: Request) -> Access:
    access = getattr(request.app.state, "access", None)
    assert isinstance(access, Access), "create_app sets app.state.access"
    return access


_SIGN_IN = HTTPException(401, detail="sign in: a customer session or the operator token",
                         headers={"WWW-Authenticate": "Bearer"})


#: Where a request keeps its caller and its MeterView once worked out: the app-wide guard
#: and the route's own dependency both ask, and each answer costs store calls.
_VIEWER_KEY = "gateway.access.viewer"
_VIEW_KEY = "gateway.access.meter_view"


async def viewer(request: Request,
                 authorization: Bearer = None) -> Viewer:
    """The caller, from the bearer token (401 when customer access is on and none fits)."""
    known = request.scope.get(_VIEWER_KEY)
    if isinstance(known, Viewer):
        return known
    who = await _viewer(request, authorization)
    request.scope[_VIEWER_KEY] = who
    return who


async def _viewer(request: Request, authorization: str | None) -> Viewer:
    access = _access(request)
    if access.accounts is None:
        return Viewer(None)
    if not authorization or not authorization.startswith("Bearer "):
        raise _SIGN_IN
    given = authorization.removeprefix("Bearer ")
    if access.operator_token is not None and hmac.compare_digest(
            given.encode(), access.operator_token.encode()):
        return Viewer(None)
    digest = token_hash(given)
    now = access.now()
    live = await access.accounts.live_session(digest, now=now)
    if live is None:
        raise _SIGN_IN
    if live.last_used_at is None or now - live.last_used_at >= TOUCH_EVERY:
        await access.accounts.touch_session(live.id, now=now)
    return Viewer(live.customer_id, digest, live.id)


def unknown_meter(meter_id: str) -> HTTPException:
    """The same 404 the routes give for a meter that does not exist."""
    return HTTPException(404, detail=f"unknown meter {meter_id!r}")


async def meter_access(request: Request,
                       who: Annotated[Viewer, Depends(viewer)]) -> MeterView:
    """May the caller see the meter in the path, over the asked range? 404 when not."""
    known = request.scope.get(_VIEW_KEY)
    if isinstance(known, MeterView):
        return known
    view = await _meter_access(request, who)
    request.scope[_VIEW_KEY] = view
    return view


async def _meter_access(request: Request, who: Viewer) -> MeterView:
    access = _access(request)
    meter_id = request.path_params.get("meter_id")
    if who.customer_id is None or access.accounts is None:
        return MeterView(meter_id, None, None, None)
    if meter_id is None:  # a list of meters: the customer's own
        mine = frozenset(a.meter_id for a in await access.accounts.linked(who.customer_id))
        return MeterView(None, who.customer_id, None, mine)
    windows = merge(await access.accounts.windows(who.customer_id, meter_id))
    status = await access.store.meter(meter_id)
    if not windows or status is None:
        raise unknown_meter(meter_id)
    coverage = _coverage(request, windows, status.timezone)
    if coverage == "none":
        raise unknown_meter(meter_id)
    if coverage == "some":
        days = ", ".join(f"from {w.first}" + (f" to before {w.end}" if w.end else "")
                         for w in windows)
        raise HTTPException(422, detail=[{
            "type": "value_error", "loc": ["query", "from"],
            "msg": f"your account covers this meter's days {days}; ask within them"}])
    return MeterView(meter_id, who.customer_id, tuple(windows), frozenset([meter_id]))


def _range_params(request: Request) -> dict[str, Any]:
    """``from`` and ``to`` parsed by the route's own fields; absent or invalid ones left
    out (the route answers 422 for an invalid one before it reads anything)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return {}
    out: dict[str, Any] = {}
    for field in _query_fields(dependant):
        raw = request.query_params.get(field.alias)
        if field.alias not in ("from", "to") or raw is None:
            continue
        value, errors = field.validate(raw, {}, loc=("query", field.alias))
        if not errors:
            out[field.alias] = value
    return out


def _query_fields(dependant: Dependant) -> list[Any]:
    fields = list(dependant.query_params)
    for sub in dependant.dependencies:
        fields += _query_fields(sub)
    return fields


def _coverage(request: Request, windows: list[Window], tz: str) -> Coverage:
    asked = _range_params(request)
    lo, hi = asked.get("from"), asked.get("to")
    if isinstance(lo, datetime) and isinstance(hi, datetime):
        return coverage_of_instants(windows, tz, lo, hi) if lo <= hi else "all"
    if isinstance(lo, date) and isinstance(hi, date):
        return coverage_of_days(windows, lo, hi) if lo <= hi else "all"
    months = _month_days(lo, hi)
    if months is not None:
        return coverage_of_days(windows, *months) if months[0] <= months[1] else "all"
    # One end or none: the route filters what it returns by the MeterView.
    return "all"


async def guard_meter_routes(request: Request,
                             authorization: Bearer = None) -> None:
    """The app-wide safety net (``create_app`` sets it on every route): any route with a
    ``meter_id`` in its path runs ``meter_access``, even one whose router forgot it."""
    if "meter_id" in request.path_params:
        await meter_access(request, await viewer(request, authorization))


def _month_days(lo: object, hi: object) -> tuple[date, date] | None:
    """Months asked as "YYYY-MM" (the monthly route): their first and last day."""
    if not (isinstance(lo, str) and isinstance(hi, str)):
        return None
    try:
        first = date.fromisoformat(f"{lo}-01")
        after = date.fromisoformat(f"{hi}-01")
    except ValueError:
        return None
    nxt = date(after.year + after.month // 12, after.month % 12 + 1, 1) \
        if after.year < 9999 or after.month < 12 else date.max
    return first, nxt - timedelta(days=1) if nxt != date.max else nxt


#: A route parameter: what the caller may see of the meter in the path.
MeterAccess = Annotated[MeterView, Depends(meter_access)]
