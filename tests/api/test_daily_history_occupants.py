"""The daily usage checks of a new occupant look back only over their own days.

A meter in Chicago changes hands on 2026-10-01: the previous occupant used ten times as
much. Judged against the previous days, the new occupant's first days would fire
``daily_history_low``, both unfair to them and a hint of the previous occupant's usage.
The operator, who sees every day, still sees those checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api import create_app
from gateway.clock import ManualClock
from gateway.model import IntervalReading, MeterStatus, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from gateway.validation.daily import DAILY_HISTORY_LOW, DailyLimits

from .conftest import CHANNEL, quarter_hours

METER = "M-MOVE-1"
TOKEN = "s3cret-operator-token-0123456789"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "correct horse battery"
MOVE_IN = date(2026, 10, 1)
#: Two days of history, looked for within four calendar days before a judged day.
LIMITS = DailyLimits(history_factor=Decimal(3), history_days=2)
ACCOUNTS = [
    {"account_number": "OLD-1", "meter_id": METER, "valid_from": "2026-01-01",
     "valid_to": MOVE_IN.isoformat(), "last_payment": "99.00"},
    {"account_number": "NEW-1", "meter_id": METER, "valid_from": MOVE_IN.isoformat(),
     "valid_to": None, "last_payment": "12.00"},
]
DAYS = [MOVE_IN + timedelta(days=d) for d in range(-4, 4)]  # Sep 27 .. Oct 4


def wh_at(day: date) -> int:
    """Wh per quarter-hour: the previous occupant ten times the new one."""
    return 1000 if day < MOVE_IN else 100


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = SqliteStore(tmp_path / "move.db")
    await store.open()
    await store.register_series(SeriesInfo(meter_id=METER, channel=CHANNEL, unit=Unit.WH,
                                           interval_s=900, timezone="America/Chicago"))
    await store.write_intervals([
        IntervalReading(meter_id=METER, channel=CHANNEL, start=s, length_s=900,
                        value=wh_at(day), unit=Unit.WH)
        for day in DAYS for s in quarter_hours(day)])
    await store.set_meter_status(MeterStatus(meter_id=METER, timezone="America/Chicago"))
    app = create_app(store, operator_token=TOKEN, accounts=store,
                     daily_limits={METER: LIMITS},
                     clock=ManualClock(datetime(2026, 12, 2, 12, tzinfo=UTC)))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://portal") as c:
            r = await c.post("/api/v1/accounts", headers=OPERATOR, json={"accounts": ACCOUNTS})
            assert r.status_code == 200, r.text
            yield c
    finally:
        await store.close()


async def customer(c: httpx.AsyncClient, email: str, number: str,
                   paid: str) -> dict[str, str]:
    r = await c.post("/api/v1/customers", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await c.post("/api/v1/sessions", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await c.post("/api/v1/me/accounts", headers=auth,
                     json={"account_number": number, "last_payment": paid})
    assert r.status_code == 201, r.text
    return auth


async def checks(c: httpx.AsyncClient, auth: dict[str, str], first: date, last: date,
                 route: str = "daily") -> dict[str, list[str]]:
    r = await c.get(f"/api/v1/meters/{METER}/{route}", headers=auth,
                    params={"from": first.isoformat(), "to": last.isoformat()})
    assert r.status_code == 200, r.text
    body: Any = r.json()
    return {d["date"]: d["checks"] for d in body["days"]}


@pytest.mark.parametrize("route", ["daily", "daily/rates"])
async def test_a_new_occupant_is_not_judged_against_the_previous_one(
        client: httpx.AsyncClient, route: str) -> None:
    new = await customer(client, "new@example.org", "NEW-1", "12.00")
    first, last = MOVE_IN, MOVE_IN + timedelta(days=3)
    # The operator sees every day: the first two after the move are far below the mean
    # of the two before (the previous occupant's); by the third, the history is the
    # new occupant's own.
    assert await checks(client, OPERATOR, first, last, route) == {
        "2026-10-01": [DAILY_HISTORY_LOW], "2026-10-02": [DAILY_HISTORY_LOW],
        "2026-10-03": [], "2026-10-04": []}
    # The new occupant: no history before their first day, so too little of it on the
    # first two days (the check says nothing), and an ordinary third and fourth day.
    assert await checks(client, new, first, last, route) == {
        "2026-10-01": [], "2026-10-02": [], "2026-10-03": [], "2026-10-04": []}
    # Asking for a later day alone looks back over the new occupant's days only.
    assert await checks(client, new, MOVE_IN + timedelta(days=1),
                        MOVE_IN + timedelta(days=1), route) == {"2026-10-02": []}
    assert await checks(client, OPERATOR, MOVE_IN + timedelta(days=1),
                        MOVE_IN + timedelta(days=1), route) == {
        "2026-10-02": [DAILY_HISTORY_LOW]}


async def test_the_previous_occupant_keeps_their_own_history(
        client: httpx.AsyncClient) -> None:
    old = await customer(client, "old@example.org", "OLD-1", "99.00")
    # Their days are judged as the operator's are: the history lies within their window.
    last = MOVE_IN - timedelta(days=1)
    first = last - timedelta(days=1)
    assert await checks(client, old, first, last) == await checks(client, OPERATOR, first,
                                                                  last)
