"""Customer access ([api] customers = true) on a real SqliteStore through
httpx.ASGITransport: logins and sessions, linking (uniform errors, the rate limit),
several accounts per login, a broken-object-level-authorization matrix over every
meter route of the app, the validity dates of an account, and the operator token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.api import create_app
from gateway.clock import ManualClock
from gateway.model import IntervalReading, MeterStatus, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

from .conftest import CHANNEL, METER, local_midnight

TOKEN = "s3cret-operator-token-0123456789"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
OTHER = "M-B"  # customer B's meter
SECOND = "M-A2"  # customer A's second account's meter
PASSWORD = "correct horse battery"

ACCOUNTS = [
    # The seeded meter: A until October, then a new occupant (C) from October 1st.
    {"account_number": "A-100", "meter_id": METER, "valid_from": "2026-01-01",
     "valid_to": "2026-10-01", "last_payment": "42.17"},
    {"account_number": "C-100", "meter_id": METER, "valid_from": "2026-10-01",
     "valid_to": None, "last_payment": "50.00"},
    {"account_number": "B-100", "meter_id": OTHER, "valid_from": "2026-01-01",
     "valid_to": None, "last_payment": "10.00"},
    {"account_number": "A-200", "meter_id": SECOND, "valid_from": "2026-01-01",
     "valid_to": None, "last_payment": "7.50"},
]


@dataclass
class Portal:
    app: FastAPI
    client: httpx.AsyncClient
    clock: ManualClock

    async def login(self, email: str) -> dict[str, str]:
        r = await self.client.post("/api/v1/customers", json={"email": email,
                                                               "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = await self.client.post("/api/v1/sessions", json={"email": email,
                                                              "password": PASSWORD})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    async def customer(self, email: str, *links: tuple[str, str]) -> dict[str, str]:
        auth = await self.login(email)
        for number, paid in links:
            r = await self.client.post("/api/v1/me/accounts", headers=auth,
                                       json={"account_number": number, "last_payment": paid})
            assert r.status_code == 201, r.text
        return auth


async def _seed_other_meter(store: SqliteStore) -> None:
    await store.register_series(SeriesInfo(meter_id=OTHER, channel=CHANNEL, unit=Unit.WH,
                                           interval_s=900, timezone="America/Chicago"))
    start = local_midnight(date(2026, 3, 8))
    await store.write_intervals([
        IntervalReading(meter_id=OTHER, channel=CHANNEL, start=start + timedelta(minutes=15 * i),
                        length_s=900, value=100, unit=Unit.WH, quality=Quality.VALID, flags=0)
        for i in range(96)])
    for meter in (OTHER, SECOND):
        await store.set_meter_status(MeterStatus(meter_id=meter, timezone="America/Chicago"))


@pytest.fixture
async def portal(store: SqliteStore) -> AsyncIterator[Portal]:
    await _seed_other_meter(store)
    clock = ManualClock(NOW)
    app = create_app(store, operator_token=TOKEN, clock=clock, accounts=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal") as c:
        r = await c.post("/api/v1/accounts", headers=OPERATOR, json={"accounts": ACCOUNTS})
        assert r.status_code == 200 and r.json() == {"stored": 4}, r.text
        yield Portal(app, c, clock)


async def test_sign_up_in_and_out(portal: Portal) -> None:
    c = portal.client
    auth = await portal.login("a@example.org")
    assert (await c.get("/api/v1/me/accounts", headers=auth)).json() == {"accounts": []}
    again = await c.post("/api/v1/customers", json={"email": "A@example.org",
                                                    "password": PASSWORD})
    assert again.status_code == 409  # e-mails are compared in lower case
    short = await c.post("/api/v1/customers", json={"email": "s@example.org", "password": "x"})
    assert short.status_code == 422
    assert (await c.delete("/api/v1/sessions/current", headers=auth)).status_code == 204
    assert (await c.get("/api/v1/me/accounts", headers=auth)).status_code == 401
    assert (await c.get("/api/v1/meters", headers=auth)).status_code == 401


async def test_a_session_expires_after_12_hours(portal: Portal) -> None:
    auth = await portal.login("a@example.org")
    portal.clock.set(NOW + timedelta(hours=12) - timedelta(seconds=1))
    assert (await portal.client.get("/api/v1/me/accounts", headers=auth)).status_code == 200
    portal.clock.set(NOW + timedelta(hours=12))
    assert (await portal.client.get("/api/v1/me/accounts", headers=auth)).status_code == 401


async def test_a_wrong_password_and_an_unknown_email_answer_alike(portal: Portal) -> None:
    c = portal.client
    await portal.login("a@example.org")
    wrong = await c.post("/api/v1/sessions", json={"email": "a@example.org",
                                                   "password": "not the password"})
    unknown = await c.post("/api/v1/sessions", json={"email": "nobody@example.org",
                                                     "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "wrong e-mail or password"}


async def test_linking_needs_the_number_and_the_last_payment(portal: Portal) -> None:
    c = portal.client
    auth = await portal.login("a@example.org")
    failures = [("A-100", "42.18"), ("A-999", "42.17"), ("A-100", "not money"),
                ("C-100", "42.17")]
    for number, paid in failures:
        r = await c.post("/api/v1/me/accounts", headers=auth,
                         json={"account_number": number, "last_payment": paid})
        assert (r.status_code, r.json()) == (404, {"detail": "no account matches"}), number
    r = await c.post("/api/v1/me/accounts", headers=auth,
                     json={"account_number": "A-100", "last_payment": "$42.17"})
    assert r.status_code == 201, r.text
    assert r.json()["accounts"] == [{"account_number": "A-100", "meter_id": METER,
                                     "valid_from": "2026-01-01", "valid_to": "2026-10-01"}]
    assert "last_payment" not in r.text  # the proof is not repeated back


async def test_linking_is_limited_per_login_and_per_account(portal: Portal) -> None:
    c = portal.client
    a = await portal.login("a@example.org")
    for _ in range(5):
        r = await c.post("/api/v1/me/accounts", headers=a,
                         json={"account_number": "B-100", "last_payment": "1.00"})
        assert r.status_code == 404
    # The sixth try is refused even with the right payment, the same way for any account.
    for number, paid in (("B-100", "10.00"), ("A-100", "42.17"), ("NOPE", "1")):
        r = await c.post("/api/v1/me/accounts", headers=a,
                         json={"account_number": number, "last_payment": paid})
        assert r.status_code == 429 and r.json() == {"detail": "too many tries; try again later"}
    # Another login trying the same account number is limited as well (per account) ...
    b = await portal.login("b@example.org")
    r = await c.post("/api/v1/me/accounts", headers=b,
                     json={"account_number": "B-100", "last_payment": "10.00"})
    assert r.status_code == 429
    # ... and links after the window.
    portal.clock.set(NOW + timedelta(minutes=16))
    r = await c.post("/api/v1/me/accounts", headers=b,
                     json={"account_number": "B-100", "last_payment": "10.00"})
    assert r.status_code == 201, r.text


async def test_several_accounts_under_one_login(portal: Portal) -> None:
    a = await portal.customer("a@example.org", ("A-100", "42.17"), ("A-200", "7.50"))
    r = await portal.client.get("/api/v1/meters", headers=a)
    assert r.status_code == 200
    assert [m["meter_id"] for m in r.json()["meters"]] == sorted([METER, SECOND])
    linked = (await portal.client.get("/api/v1/me/accounts", headers=a)).json()["accounts"]
    assert {x["account_number"] for x in linked} == {"A-100", "A-200"}


def _meter_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every documented route with a meter in its path."""
    return sorted((method.upper(), path) for path, ops in app.openapi()["paths"].items()
                  if "{meter_id}" in path for method in ops)


def _request(method: str, path: str, meter: str, marker: int, notification: int
             ) -> tuple[str, dict[str, str], dict[str, Any] | None]:
    url = (path.replace("{meter_id}", meter).replace("{marker_id}", str(marker))
           .replace("{notification_id}", str(notification))
           .replace("{start}", "2026-03-08T06:00:00Z"))
    if path.endswith("/intervals"):
        query = {"from": "2026-03-08T06:00:00Z", "to": "2026-03-09T06:00:00Z"}
    elif path.endswith("/monthly"):
        query = {"from": "2026-03", "to": "2026-03"}
    else:
        query = {"from": "2026-03-08", "to": "2026-03-08"}
    body: dict[str, Any] | None = None
    if method in ("POST", "PUT"):
        if "/markers" in path:
            body = {"kind": "point", "start": "2026-03-08", "label": "x", "category": "other"}
        elif "/notifications" in path:
            body = {"kind": "no_data", "address": "b@example.org", "days": 2}
        else:
            body = {"value": 1}
    return url, query, body


async def test_no_customer_reaches_another_customers_meter_marker_or_export(
        portal: Portal) -> None:
    """Every route with a meter in its path, as the app has them now: customer A asking
    for B's meter (B's marker, B's notification) gets 404, and nothing changes."""
    c = portal.client
    a = await portal.customer("a@example.org", ("A-100", "42.17"))
    b = await portal.customer("b@example.org", ("B-100", "10.00"))
    r = await c.post(f"/api/v1/meters/{OTHER}/markers", headers=b, json={
        "kind": "point", "start": "2026-03-08", "label": "new heat pump", "category": "other"})
    assert r.status_code == 201, r.text
    marker = r.json()["id"]
    r = await c.post(f"/api/v1/meters/{OTHER}/notifications", headers=b,
                     json={"kind": "no_data", "address": "b@example.org", "days": 2})
    assert r.status_code == 201, r.text
    notification = r.json()["id"]

    routes = _meter_routes(portal.app)
    paths = {p for _, p in routes}
    for needed in ("intervals", "daily", "daily/rates", "greenbutton", "markers",
                   "markers/{marker_id}", "markers/{marker_id}/comparison",
                   "notifications", "notifications/{notification_id}",
                   "notifications/{notification_id}/confirmation"):
        assert f"/api/v1/meters/{{meter_id}}/{needed}" in paths, needed
    for method, path in routes:
        url, query, body = _request(method, path, OTHER, marker, notification)
        r = await c.request(method, url, params=query, json=body, headers=a)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert OTHER in r.json()["detail"] and "marker" not in r.json()["detail"]
        # A's own meter with B's marker or notification id: 404 as well.
        if "{marker_id}" in path or "{notification_id}" in path:
            url, query, body = _request(method, path, METER, marker, notification)
            r = await c.request(method, url, params=query, json=body, headers=a)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
    # B still has everything, and reads it (the same requests are not 404 for the owner).
    for method, path in routes:
        if method == "GET":
            url, query, _ = _request(method, path, OTHER, marker, notification)
            r = await c.get(url, params=query, headers=b)
            assert r.status_code != 404 or "no channel" in r.text, (path, r.text)
    assert (await c.get(f"/api/v1/meters/{OTHER}/markers/{marker}", headers=b)).status_code \
        == 200
    mine = await c.get(f"/api/v1/meters/{OTHER}/notifications/{notification}", headers=b)
    assert mine.status_code == 200
    # An unknown meter answers exactly as B's meter did for A.
    r1 = await c.get(f"/api/v1/meters/{OTHER}/daily", params={"from": "2026-03-08",
                                                              "to": "2026-03-08"}, headers=a)
    r2 = await c.get("/api/v1/meters/NOPE/daily", params={"from": "2026-03-08",
                                                          "to": "2026-03-08"}, headers=a)
    assert r1.json()["detail"].replace(OTHER, "X") == r2.json()["detail"].replace("NOPE", "X")
    assert [m["meter_id"] for m in (await c.get("/api/v1/meters", headers=a)).json()[
        "meters"]] == [METER]


async def test_a_new_occupant_sees_only_their_days(portal: Portal) -> None:
    c = portal.client
    old = await portal.customer("a@example.org", ("A-100", "42.17"))
    new = await portal.customer("c@example.org", ("C-100", "50.00"))
    march = {"from": "2026-03-07", "to": "2026-03-09"}
    november = {"from": "2026-10-31", "to": "2026-11-02"}
    daily = f"/api/v1/meters/{METER}/daily"
    r = await c.get(daily, params=march, headers=new)
    assert r.status_code == 404 and r.json() == {"detail": f"unknown meter {METER!r}"}
    r = await c.get(daily, params=november, headers=new)
    assert r.status_code == 200 and len(r.json()["days"]) == 3
    r = await c.get(daily, params={"from": "2026-09-30", "to": "2026-10-31"}, headers=new)
    assert r.status_code == 422 and "from 2026-10-01" in r.text
    intervals = f"/api/v1/meters/{METER}/intervals"
    r = await c.get(intervals, headers=new, params={"from": "2026-03-08T06:00:00Z",
                                                    "to": "2026-03-09T05:00:00Z"})
    assert r.status_code == 404
    # Local midnight of October 1st in Chicago is 05:00Z: an hour before is A's.
    r = await c.get(intervals, headers=new, params={"from": "2026-10-01T04:00:00Z",
                                                    "to": "2026-10-01T06:00:00Z"})
    assert r.status_code == 422
    r = await c.get(intervals, headers=new, params={"from": "2026-10-31T05:00:00Z",
                                                    "to": "2026-11-01T05:00:00Z"})
    assert r.status_code == 200 and len(r.json()["intervals"]) == 96
    gb = f"/api/v1/meters/{METER}/greenbutton"
    assert (await c.get(gb, params=march, headers=new)).status_code == 404
    assert (await c.get(gb, params=march, headers=old)).status_code == 200
    assert (await c.get(daily, params=november, headers=old)).status_code == 404
    assert (await c.get(f"{daily}/rates", params=march, headers=new)).status_code == 404

    # Markers: the old occupant's stay on their days; the new one sees only theirs.
    markers = f"/api/v1/meters/{METER}/markers"
    r = await c.post(markers, headers=old, json={"kind": "point", "start": "2026-03-08",
                                                 "label": "moved in", "category": "other"})
    old_marker = r.json()["id"]
    r = await c.post(markers, headers=new, json={"kind": "point", "start": "2026-03-08",
                                                 "label": "x", "category": "other"})
    assert r.status_code == 422  # not on a day of the new occupant's account
    r = await c.post(markers, headers=new, json={"kind": "point", "start": "2026-11-01",
                                                 "label": "new fridge", "category": "other"})
    assert r.status_code == 201
    new_marker = r.json()["id"]
    listed = (await c.get(markers, headers=new)).json()["markers"]
    assert [m["id"] for m in listed] == [new_marker]
    assert (await c.get(f"{markers}/{old_marker}", headers=new)).status_code == 404
    assert (await c.delete(f"{markers}/{old_marker}", headers=new)).status_code == 404
    assert (await c.get(f"{markers}/{old_marker}/comparison", headers=new)).status_code == 404
    r = await c.get(f"{markers}/{new_marker}/comparison", headers=new, params={"days": 7})
    assert r.status_code == 200, r.text
    assert r.json()["before"] is None or r.json()["before"]["first"] >= "2026-10-01"
    listed = (await c.get(markers, headers=old)).json()["markers"]
    assert [m["id"] for m in listed] == [old_marker]
    all_of = (await c.get(markers, headers=OPERATOR)).json()["markers"]
    assert {m["id"] for m in all_of} == {old_marker, new_marker}

    # Notifications: only while an account holds the meter, and only one's own.
    notes = f"/api/v1/meters/{METER}/notifications"
    body = {"kind": "no_data", "address": "a@example.org", "days": 2}
    assert (await c.post(notes, headers=old, json=body)).status_code == 404
    r = await c.post(notes, headers=new, json=body | {"address": "c@example.org"})
    assert r.status_code == 201
    note = r.json()["id"]
    assert (await c.get(notes, headers=old)).json()["notifications"] == []
    assert (await c.get(f"{notes}/{note}", headers=old)).status_code == 404
    assert (await c.delete(f"{notes}/{note}", headers=old)).status_code == 404
    assert len((await c.get(notes, headers=new)).json()["notifications"]) == 1
    assert len((await c.get(notes, headers=OPERATOR)).json()["notifications"]) == 1


async def test_the_operator_token_sees_every_meter_and_day(portal: Portal) -> None:
    c = portal.client
    r = await c.get("/api/v1/meters", headers=OPERATOR)
    assert {m["meter_id"] for m in r.json()["meters"]} == {METER, OTHER, SECOND}
    for meter in (METER, OTHER):
        r = await c.get(f"/api/v1/meters/{meter}/daily", headers=OPERATOR,
                        params={"from": "2026-03-07", "to": "2026-11-02"})
        assert r.status_code == 200 and r.json()["days"]
    # Without a token nothing is open when customer access is on.
    assert (await c.get("/api/v1/meters")).status_code == 401
    assert (await c.get(f"/api/v1/meters/{METER}/daily",
                        params={"from": "2026-03-07", "to": "2026-03-09"})).status_code == 401
    bad = {"Authorization": "Bearer not-a-session"}
    assert (await c.get("/api/v1/meters", headers=bad)).status_code == 401
    # Loading accounts is the operator's.
    a = await portal.login("a@example.org")
    assert (await c.post("/api/v1/accounts", headers=a, json={"accounts": []})).status_code \
        == 401


async def test_with_customers_off_the_api_is_as_before(store: SqliteStore) -> None:
    app = create_app(store, operator_token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal") as c:
        assert (await c.get("/api/v1/meters")).status_code == 200
        r = await c.get(f"/api/v1/meters/{METER}/daily",
                        params={"from": "2026-03-07", "to": "2026-03-09"})
        assert r.status_code == 200 and len(r.json()["days"]) == 3
        assert (await c.get(f"/api/v1/meters/{METER}/markers")).status_code == 401
        assert (await c.get(f"/api/v1/meters/{METER}/markers", headers=OPERATOR)
                ).status_code == 200
        assert (await c.post("/api/v1/customers", json={"email": "a@example.org",
                                                        "password": PASSWORD})
                ).status_code in (404, 405)


async def test_a_route_added_without_the_check_is_guarded_all_the_same(portal: Portal) -> None:
    """The app-wide guard: a meter route whose router forgot ``meter_access`` (a new one,
    say) still answers 404 for another customer's meter."""

    @portal.app.get("/api/v1/meters/{meter_id}/forgetful")
    async def forgetful(meter_id: str) -> dict[str, str]:
        return {"meter_id": meter_id, "secret": "usage"}

    a = await portal.customer("a@example.org", ("A-100", "42.17"))
    r = await portal.client.get(f"/api/v1/meters/{OTHER}/forgetful", headers=a)
    assert r.status_code == 404 and "secret" not in r.text
    assert (await portal.client.get(f"/api/v1/meters/{METER}/forgetful", headers=a)
            ).status_code == 200
    r = await portal.client.get(f"/api/v1/meters/{METER}/forgetful")
    assert r.status_code == 401


async def test_a_new_occupant_s_months_leave_out_the_previous_occupant(portal: Portal) -> None:
    """Monthly usage by default covers 12 months: for a customer, only whole months of
    their own accounts; a month asked for that is partly another's is refused."""
    c = portal.client
    new = await portal.customer("c2@example.org", ("C-100", "50.00"))
    old = await portal.customer("a2@example.org", ("A-100", "42.17"))
    monthly = f"/api/v1/meters/{METER}/monthly"
    r = await c.get(monthly, headers=new)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["first"] == "2026-10" and all(m["month"] >= "2026-10" for m in body["months"])
    r = await c.get(monthly, headers=old)
    assert r.status_code == 200 and r.json()["last"] == "2026-09"
    r = await c.get(monthly, headers=new, params={"from": "2026-09", "to": "2026-11"})
    assert r.status_code == 422
    r = await c.get(monthly, headers=OPERATOR)
    assert r.status_code == 200 and r.json()["first"] < "2026-10"
