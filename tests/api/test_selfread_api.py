"""POST /api/v1/meters/{id}/readings: the real app on a real store, behind the operator token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from edge.assembly import assemble
from gateway.api import create_app
from gateway.clock import ManualClock
from gateway.ingest.selfread import SelfReads
from gateway.settings import load_config
from gateway.store.sqlite import SqliteStore

TOKEN = "s3cret-operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)  # a Saturday noon in Chicago
CONFIG = """
[gateway]
data_dir = "data"
timezone = "America/Chicago"
[store]
synchronous = "NORMAL"
[self_reads]
windows = [{ last_days = 7 }]
[[meters]]
meter_id = "P1"
profile = "eastron_sdm120"
host = "127.0.0.1"
[[meters]]
meter_id = "H5"
protocol = "manual"
max_power_w = 10000
registers = [{ digits = 5 }, { channel = "1.0.1.8.2.255" }]
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    (tmp_path / "site.toml").write_text(CONFIG)
    s = SqliteStore(tmp_path / "data" / "store.db", synchronous="NORMAL")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def app_for(tmp_path: Path, store: SqliteStore, clock: ManualClock,
            token: str | None = TOKEN) -> httpx.AsyncClient:
    reads = SelfReads(assemble(load_config(tmp_path / "site.toml")), store, clock)
    app = create_app(store, operator_token=token, self_reads=reads)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal")
    client.self_reads = reads  # type: ignore[attr-defined]
    return client


@pytest.fixture
async def api(tmp_path: Path, store: SqliteStore,
              clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with app_for(tmp_path, store, clock) as client:
        await client.self_reads.open()  # type: ignore[attr-defined]
        yield client


def post(api: httpx.AsyncClient, body: object, meter: str = "H5",
         headers: dict[str, str] | None = None) -> object:
    return api.post(f"/api/v1/meters/{meter}/readings", json=body,
                    headers=AUTH if headers is None else headers)


async def submit(api: httpx.AsyncClient, raw: str, meter: str = "H5") -> httpx.Response:
    return await api.post(f"/api/v1/meters/{meter}/readings", content=raw,
                          headers={**AUTH, "Content-Type": "application/json"})


async def test_a_wrap_is_recorded_and_reported(api: httpx.AsyncClient) -> None:
    first = await submit(api, '{"value": "99950", "at": "2026-11-24T08:00:00-06:00", '
                              '"submitted_by": "dana", "source": "portal"}')
    assert first.status_code == 201, first.text
    assert (first.json()["outcome"], first.json()["intervals"], first.json()["quality"]) == (
        "baseline", 0, None)
    r = await submit(api, '{"value": "00030"}')
    assert r.status_code == 201, r.text
    got = r.json()
    assert (got["status"], got["outcome"], got["value"], got["unit"]) == (
        "recorded", "rollover", "30", "kWh")
    assert got["rollover"] == {"previous": "99950", "value": "30", "consumption": "80"}
    assert got["consumption"] == "80" and "rollover" in got["flags"]
    assert got["quality"] == {"code": 9, "name": "estimated_linear"}
    assert got["at"] == "2026-11-28T18:00:00Z" and got["channel"] == "1.0.1.8.0.255"
    day = await api.get("/api/v1/meters/H5/daily", params={"from": "2026-11-24",
                                                            "to": "2026-11-28"})
    assert sum(d["value"] for d in day.json()["days"]) == 80_000  # both reads in those days


async def test_a_json_number_is_read_exactly(api: httpx.AsyncClient) -> None:
    r = await submit(api, '{"value": 12345.6, "channel": "1.0.1.8.2.255", '
                          '"at": "2026-11-28T08:00:00-06:00"}')
    assert r.status_code == 201, r.text
    assert r.json()["value"] == "12345.6"
    r = await submit(api, '{"value": 0.1, "channel": "1.0.1.8.2.255"}')
    assert r.status_code == 422 and r.json()["error"] == "lower_than_last"
    assert "0.1 kWh is lower than the last reading, 12,345.6 kWh" in r.json()["message"]


@pytest.mark.parametrize(("raw", "status", "code"), [
    ('{"value": NaN}', 422, "not_a_number"),
    ('{"value": Infinity}', 422, "not_a_number"),
    ('{"value": "1e5"}', 422, "not_a_number"),
    ('{"value": -3}', 422, "negative"),
    ('{"value": "123456"}', 422, "too_many_digits"),
    ('{"value": "5", "channel": "9.9.9"}', 404, "unknown_channel"),
    ('{"value": "5", "at": "2026-11-28T20:00:00+00:00"}', 422, "future"),
    ('{"value": "5", "at": "2026-11-28T08:00:00"}', 422, "invalid_request"),
    ('{"value": [5]}', 422, "invalid_request"),
    ('{"value": true}', 422, "invalid_request"),
    ('{"value": "5", "at": "2026-10-01T08:00:00-05:00"}', 422, "too_old"),
    ('{"valeu": 5}', 422, "invalid_request"),
    ("not json", 422, "invalid_request"),
])
async def test_refusals_have_a_code_and_a_message(api: httpx.AsyncClient, store: SqliteStore,
                                                  raw: str, status: int, code: str) -> None:
    r = await submit(api, raw)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message"]
    [kept] = await store.quarantined()  # every refusal is kept, malformed requests too
    assert kept.source == "self-read" and kept.reason.startswith(f"{code}: ")


async def test_refusals_by_meter(api: httpx.AsyncClient) -> None:
    r = await submit(api, '{"value": 1}', meter="NOPE")
    assert (r.status_code, r.json()["error"]) == (404, "unknown_meter")
    r = await submit(api, '{"value": 1}', meter="P1")
    assert (r.status_code, r.json()["error"]) == (409, "polled_meter")


async def test_the_same_reading_twice_and_a_contradiction(api: httpx.AsyncClient) -> None:
    body = '{"value": "500", "at": "2026-11-25T09:30:00-06:00"}'
    assert (await submit(api, body)).status_code == 201
    again = await submit(api, body)
    assert again.status_code == 200 and again.json()["status"] == "already_recorded"
    r = await submit(api, body.replace("500", "501"))
    assert (r.status_code, r.json()["error"]) == (409, "conflicting_read")


async def test_out_of_window_says_when_the_next_opens(
        tmp_path: Path, store: SqliteStore) -> None:
    async with app_for(tmp_path, store, ManualClock(NOW + timedelta(days=5))) as api:
        await api.self_reads.open()  # type: ignore[attr-defined]
        r = await submit(api, '{"value": 1}')  # 3 December in Chicago
    assert (r.status_code, r.json()["error"]) == (422, "out_of_window")
    assert r.json()["message"].endswith("the next window opens on 2026-12-25")
    [kept] = await store.quarantined()
    assert kept.source == "self-read" and kept.reason.startswith("out_of_window: ")


async def test_the_manual_meter_is_listed(api: httpx.AsyncClient) -> None:
    meters = {m["meter_id"]: m for m in (await api.get("/api/v1/meters")).json()["meters"]}
    assert meters["H5"]["protocol"] == "manual" and meters["H5"]["status"] == "unknown"
    assert {c["channel"] for c in meters["H5"]["channels"]} == {"1.0.1.8.0.255",
                                                                  "1.0.1.8.2.255"}
    await submit(api, '{"value": 1}')
    meters = {m["meter_id"]: m for m in (await api.get("/api/v1/meters")).json()["meters"]}
    assert meters["H5"]["status"] == "ok"


async def test_only_with_the_operator_token(tmp_path: Path, store: SqliteStore,
                                            clock: ManualClock) -> None:
    async with app_for(tmp_path, store, clock) as api:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = await api.post("/api/v1/meters/H5/readings", json={"value": 1}, headers=headers)
            assert r.status_code == 401
    async with app_for(tmp_path, store, clock, token=None) as api:
        r = await api.post("/api/v1/meters/H5/readings", json={"value": 1}, headers=AUTH)
        assert r.status_code == 403
    assert await store.quarantined() == []  # nothing was submitted


async def test_the_route_is_documented(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    op = spec["paths"]["/api/v1/meters/{meter_id}/readings"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"value", "channel", "at", "submitted_by"} <= set(body["properties"])
    assert {"201", "200", "404", "409", "422"} <= set(op["responses"])
