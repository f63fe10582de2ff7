"""Notification routes: a meter's usage notifications (create, list, one, delete).

A subscription is attached to a meter and an e-mail address. With customer access off
these routes take the operator token (``gateway.api.auth``); on, the operator token or
a customer session, through ``gateway.api.access.meter_access``. A subscription a
customer creates is theirs (``notification_owner``): a customer sees and deletes only
their own, and creates one only while an account of theirs holds the meter today; the
operator sees all. A subscription of another meter, or of another login, answers 404
like one that does not exist.

A customer's subscription to an address that login has not confirmed is ``pending``
(``gateway.api.subscribe``): creating it mails a confirmation link to the address
(429 past the per-address cap, and then nothing is created), and
``POST .../{notification_id}/confirmation`` mails a new one. Without mail configured it
is created pending, and asking for a confirmation answers 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.api.access import AccountStore, MeterAccess, MeterView, meter_access
from gateway.api.auth import operator_guard
from gateway.api.feed import MeterId, Problem, find_series
from gateway.api.resets import NO_MAIL
from gateway.api.subscribe import ask_confirmation
from gateway.clock import Clock, SystemClock
from gateway.errors import DataError
from gateway.notify.letters import MailOut
from gateway.notify.rules import (
    ADDRESS_MAX,
    MAX_NO_DATA_DAYS,
    MAX_THRESHOLD_WH,
    Kind,
    Subscription,
    SubscriptionFields,
    check_fields,
)
from gateway.store import Store


class NotificationIn(BaseModel):
    """A notification as the customer sets it."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = Field(description="daily_above: a complete local day's usage above "
                                   "threshold_wh; no_data: days whole local days without data.")
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3,
                                              max_length=ADDRESS_MAX)] = Field(
        description="The e-mail address notices go to.")
    channel: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="Channel (OBIS code); defaults to active energy import.")
    threshold_wh: int | None = Field(None, ge=0, le=MAX_THRESHOLD_WH,
                                     description="daily_above: the daily usage in Wh "
                                                 "that a day must exceed.")
    days: int | None = Field(None, ge=1, le=MAX_NO_DATA_DAYS,
                             description="no_data: whole local days without data.")

    @model_validator(mode="after")
    def _rules(self) -> NotificationIn:
        try:
            check_fields(self.fields("-"))
        except DataError as exc:
            raise ValueError(str(exc).removeprefix(f"{exc.source}: ")) from None
        return self

    def fields(self, default_channel: str) -> SubscriptionFields:
        return SubscriptionFields(kind=self.kind, address=self.address,
                                  channel=self.channel or default_channel,
                                  threshold_wh=self.threshold_wh, days=self.days)


class NotificationOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    meter_id: str
    channel: str
    kind: Kind
    address: str
    threshold_wh: int | None
    days: int | None
    created_at: datetime
    last_sent_key: str | None = Field(description="What the last notice sent was about: "
                                                  "its day, or the outage.")
    last_sent_at: datetime | None
    status: Literal["active", "pending"] = Field(
        "active", description="pending: a customer's address not confirmed yet; it is sent "
                              "nothing but the confirmation mail.")


class Sent(BaseModel):
    detail: str


class NotificationList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_id: str
    notifications: list[NotificationOut]


_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or wrong token"},
    403: {"model": Problem, "description": "Notification routes are not enabled"},
    404: {"model": Problem, "description": "Unknown meter, channel or notification"},
}

NotificationId = Annotated[int, Path(description="The notification's id (unique across "
                                                 "meters).")]


def notification_out(s: Subscription, pending: bool = False) -> NotificationOut:
    return NotificationOut(id=s.id, meter_id=s.meter_id, channel=s.channel, kind=s.kind,
                           address=s.address, threshold_wh=s.threshold_wh, days=s.days,
                           created_at=s.created_at, last_sent_key=s.last_sent_key,
                           last_sent_at=s.last_sent_at,
                           status="pending" if pending else "active")


def notifications_router(store: Store, default_channel: str, token: str | None,
                         clock: Clock | None = None, *,
                         accounts: AccountStore | None = None,
                         mail: MailOut | None = None) -> APIRouter:
    """``accounts``: customer access is on, customer sessions are let in (by
    ``meter_access``) and own the subscriptions they create; ``mail``: how confirmation
    mails go out."""
    guards = [Depends(meter_access)] + (
        [] if accounts is not None else [Depends(operator_guard(token))])
    router = APIRouter(prefix="/api/v1/meters/{meter_id}/notifications",
                       tags=["usage notifications"], responses=_RESPONSES,
                       dependencies=guards)
    now = (clock or SystemClock()).now

    async def known_meter(meter_id: str) -> None:
        if await store.meter(meter_id) is None:
            raise HTTPException(404, detail=f"unknown meter {meter_id!r}")

    async def mine(view: MeterView, found: list[Subscription]) -> list[Subscription]:
        if view.customer_id is None or accounts is None:
            return found
        owners = await accounts.notification_owners([s.id for s in found])
        return [s for s in found if owners.get(s.id) == view.customer_id]

    async def pending(found: list[Subscription]) -> set[int]:
        """The ids of those whose owner has not confirmed the address."""
        if accounts is None:
            return set()
        owners = await accounts.notification_owners([s.id for s in found])
        out = set()
        for s in found:
            owner = owners.get(s.id)
            address = s.address.casefold()
            if owner is not None and address not in await accounts.confirmed(owner, [address]):
                out.add(s.id)
        return out

    async def out(found: list[Subscription]) -> list[NotificationOut]:
        waiting = await pending(found)
        return [notification_out(s, s.id in waiting) for s in found]

    async def find(meter_id: str, notification_id: int, view: MeterView) -> Subscription:
        await known_meter(meter_id)
        found = await store.notification(meter_id, notification_id)
        if found is None or not await mine(view, [found]):
            raise HTTPException(404, detail=f"meter {meter_id!r} has no notification "
                                            f"{notification_id}")
        return found

    @router.post("", status_code=201, summary="Add a usage notification")
    async def add(meter_id: MeterId, body: NotificationIn, view: MeterAccess,
                  background: BackgroundTasks) -> NotificationOut:
        fields = body.fields(default_channel)
        info = await find_series(store, meter_id, fields.channel)  # 404: unknown meter or channel
        at = now()
        today = at.astimezone(ZoneInfo(info.timezone)).date()
        if not view.sees_days(today, today):
            raise HTTPException(404, detail=f"unknown meter {meter_id!r}")
        cid = view.customer_id
        waiting = cid is not None and accounts is not None and fields.address.casefold() \
            not in await accounts.confirmed(cid, [fields.address.casefold()])
        if waiting and mail is not None and cid is not None and accounts is not None:
            # Counted before anything is created: past the cap, nothing is.
            await ask_confirmation(accounts, mail, cid, fields.address, at, background)
        added = await store.add_notification(meter_id, fields, at=at)
        if cid is not None and accounts is not None:
            await accounts.own_notification(added.id, cid)
        return notification_out(added, waiting)

    @router.get("", summary="The meter's usage notifications")
    async def listed(meter_id: MeterId, view: MeterAccess) -> NotificationList:
        await known_meter(meter_id)
        return NotificationList(meter_id=meter_id, notifications=[
            *await out(await mine(view, await store.notifications(meter_id)))])

    @router.get("/{notification_id}", summary="One usage notification")
    async def one(meter_id: MeterId, notification_id: NotificationId,
                  view: MeterAccess) -> NotificationOut:
        [one] = await out([await find(meter_id, notification_id, view)])
        return one

    @router.post("/{notification_id}/confirmation", status_code=202,
                 summary="Mail a new confirmation link to a pending notification's address")
    async def confirmation(meter_id: MeterId, notification_id: NotificationId,
                           view: MeterAccess, background: BackgroundTasks) -> Sent:
        found = await find(meter_id, notification_id, view)
        if accounts is None or found.id not in await pending([found]):
            raise HTTPException(409, detail=f"notification {notification_id} is active: "
                                            "its address needs no confirmation")
        if mail is None:
            raise NO_MAIL
        owner = (await accounts.notification_owners([found.id]))[found.id]
        await ask_confirmation(accounts, mail, owner, found.address, now(), background)
        return Sent(detail=f"a confirmation link was mailed to {found.address}")

    @router.delete("/{notification_id}", status_code=204, summary="Delete a notification")
    async def delete(meter_id: MeterId, notification_id: NotificationId,
                     view: MeterAccess) -> Response:
        await find(meter_id, notification_id, view)
        if not await store.delete_notification(meter_id, notification_id):
            raise HTTPException(404, detail=f"meter {meter_id!r} has no notification "
                                            f"{notification_id}")
        return Response(status_code=204)

    return router
