"""Notification routes: create, list, one, delete, validation 422s, unknown meter or
channel 404, the operator token, on a real SqliteStore through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.api import create_app
from gateway.clock import ManualClock
from gateway.store.sqlite import SqliteStore

from .conftest import CHANNEL, METER

TOKEN = "s3cret-operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
URL = f"/api/v1/meters/{METER}/notifications"
ABOVE = {"kind": "daily_above", "address": "c@example.org", "threshold_wh": 12_000}
QUIET = {"kind": "no_data", "address": "q@example.org", "days": 3}


@pytest.fixture
async def api(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, operator_token=TOKEN, clock=ManualClock(NOW))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal", headers=AUTH) as c:
        yield c


async def test_create_list_one_delete(api: httpx.AsyncClient) -> None:
    r = await api.post(URL, json=ABOVE)
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["meter_id"] == METER and a["channel"] == CHANNEL and a["kind"] == "daily_above"
    assert (a["threshold_wh"], a["days"], a["last_sent_key"]) == (12_000, None, None)
    assert datetime.fromisoformat(a["created_at"]) == NOW
    b = (await api.post(URL, json=QUIET)).json()
    listed = (await api.get(URL)).json()
    assert [n["id"] for n in listed["notifications"]] == [a["id"], b["id"]]
    assert (await api.get(f"{URL}/{b['id']}")).json() == b
    assert (await api.delete(f"{URL}/{a['id']}")).status_code == 204
    assert (await api.delete(f"{URL}/{a['id']}")).status_code == 404
    assert (await api.get(f"{URL}/{a['id']}")).status_code == 404
    assert [n["id"] for n in (await api.get(URL)).json()["notifications"]] == [b["id"]]


@pytest.mark.parametrize("body", [
    {"kind": "daily_above", "address": "c@example.org"},  # no threshold
    {**ABOVE, "threshold_wh": -1},
    {**ABOVE, "days": 3},
    {**QUIET, "days": 0},
    {**QUIET, "days": 367},
    {**QUIET, "threshold_wh": 5},
    {**QUIET, "address": "not-an-address"},
    {**QUIET, "address": "a@example.org\nBcc: b@example.org"},
    {**QUIET, "kind": "weekly"},
    {**QUIET, "colour": "red"},
])
async def test_invalid_bodies_are_422(api: httpx.AsyncClient, body: dict[str, Any]) -> None:
    r = await api.post(URL, json=body)
    assert r.status_code == 422, r.text
    assert (await api.get(URL)).json()["notifications"] == []


async def test_unknown_meter_or_channel_is_404(api: httpx.AsyncClient) -> None:
    other = "/api/v1/meters/NOPE/notifications"
    assert (await api.post(other, json=ABOVE)).status_code == 404
    assert (await api.get(other)).status_code == 404
    assert (await api.post(URL, json={**ABOVE, "channel": "1.0.2.8.0.255"})).status_code == 404
    created = (await api.post(URL, json=ABOVE)).json()
    # Another meter's path does not find it, even for a meter that exists.
    assert (await api.delete(f"{other}/{created['id']}")).status_code == 404


async def test_the_operator_token_is_required(store: SqliteStore,
                                              api: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        api.headers.clear()
        api.headers.update(headers)
        assert (await api.get(URL)).status_code == 401
        assert (await api.post(URL, json=ABOVE)).status_code == 401
        assert (await api.delete(f"{URL}/1")).status_code == 401
    app = create_app(store)  # no token configured: the routes are off
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal", headers=AUTH) as off:
        assert (await off.get(URL)).status_code == 403
