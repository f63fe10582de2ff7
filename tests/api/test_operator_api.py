"""Operator routes: corrections and the audit trail, behind an operator token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest

from gateway.api import create_app
from gateway.store.sqlite import SqliteStore

from .conftest import METER, local_midnight

TOKEN = "s3cret-operator-token-0123456789"
DAY = date(2026, 11, 1)


@pytest.fixture
async def operator(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, operator_token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal") as c:
        yield c


def url(start: str) -> str:
    return f"/api/v1/meters/{METER}/intervals/{start}"


async def test_a_correction_is_stored_and_audited(operator: httpx.AsyncClient) -> None:
    start = local_midnight(DAY).isoformat()
    body = {"value": 777, "reason": "register photo", "operator": "dana"}
    r = await operator.put(url(start), json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["value"], got["quality"]["code"], got["quality"]["name"]) == (
        777, 7, "edited")
    trail = await operator.get(f"/api/v1/meters/{METER}/edits",
                               headers={"Authorization": f"Bearer {TOKEN}"})
    [edit] = trail.json()["edits"]
    assert (edit["new_value"], edit["operator"], edit["reason"]) == (777, "dana",
                                                                     "register photo")
    daily = await operator.get(f"/api/v1/meters/{METER}/daily",
                               params={"from": DAY.isoformat(), "to": DAY.isoformat()})
    assert daily.json()["days"][0]["quality"]["edited"] == 1


async def test_without_the_right_token_nothing_changes(operator: httpx.AsyncClient) -> None:
    start = local_midnight(DAY).isoformat()
    body = {"value": 1, "reason": "x", "operator": "mallory"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN + "x"}):
        r = await operator.put(url(start), json=body, headers=headers)
        assert r.status_code == 401 and r.json()["detail"] == "operator token required"
    r = await operator.get(f"/api/v1/meters/{METER}/edits")
    assert r.status_code == 401
    trail = await operator.get(f"/api/v1/meters/{METER}/edits",
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert trail.json()["edits"] == []


async def test_operator_routes_are_off_without_a_configured_token(
    client: httpx.AsyncClient,
) -> None:
    r = await client.put(url(local_midnight(DAY).isoformat()),
                         json={"value": 1, "reason": "x", "operator": "d"},
                         headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403 and "operator_token_env" in r.json()["detail"]


async def test_bad_corrections_are_refused(operator: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    off_grid = local_midnight(DAY).replace(minute=7).isoformat()
    r = await operator.put(url(off_grid), json={"value": 1, "reason": "x", "operator": "d"},
                           headers=auth)
    assert r.status_code == 422 and "not the start" in r.text
    r = await operator.put(url(local_midnight(DAY).isoformat()),
                           json={"value": -5, "reason": "", "operator": "d"}, headers=auth)
    assert r.status_code == 422
    r = await operator.put(f"/api/v1/meters/NOPE/intervals/{local_midnight(DAY).isoformat()}",
                           json={"value": 1, "reason": "x", "operator": "d"}, headers=auth)
    assert r.status_code == 404
