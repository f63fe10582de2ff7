"""The portal feed over HTTP against a real SqliteStore: DST days, exact sums, errors."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from gateway.api import create_app
from gateway.store.sqlite import SqliteStore

from .conftest import CHANNEL, METER, quality_at, quarter_hours, value_at


def no_floats(node: Any) -> None:
    """Energy is exact: no binary float anywhere in a response."""
    assert not isinstance(node, float), node
    if isinstance(node, dict):
        for v in node.values():
            no_floats(v)
    elif isinstance(node, list):
        for v in node:
            no_floats(v)


async def test_daily_counts_dst_days_and_sums_exactly(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/api/v1/meters/{METER}/daily", params={"from": "2026-03-07",
                                                                   "to": "2026-03-09"})
    assert r.status_code == 200, r.text
    body = r.json()
    no_floats(body)
    assert (body["meter_id"], body["channel"], body["timezone"]) == (
        METER, CHANNEL, "America/Chicago")
    days = {d["date"]: d for d in body["days"]}
    assert list(days) == ["2026-03-07", "2026-03-08", "2026-03-09"]
    for name, expected in (("2026-03-07", 96), ("2026-03-08", 92), ("2026-03-09", 96)):
        day = date.fromisoformat(name)
        starts = quarter_hours(day)
        want = sum(value_at(s) for s in starts)
        got = days[name]
        assert got["quality"]["expected"] == expected == len(starts)
        assert got["quality"]["present"] == expected
        assert got["quality"]["missing"] == 0 and got["quality"]["complete"] is True
        assert got["value"] == want
        assert got["unit"] == "Wh"
        assert Decimal(got["value_kwh"]) * 1000 == want
    assert days["2026-03-08"]["quality"]["estimated"] == 1
    assert days["2026-03-07"]["quality"]["estimated"] == 0
    assert body["total"] == sum(d["value"] for d in body["days"])
    assert Decimal(body["total_kwh"]) == Decimal(body["total"]) / 1000


async def test_daily_fall_back_day_holds_100_quarter_hours(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/api/v1/meters/{METER}/daily",
                         params={"from": "2026-11-01", "to": "2026-11-01"})
    assert r.status_code == 200, r.text
    [day] = r.json()["days"]
    # Local 01:30 happens twice that night (CDT, then CST): both seeded questionable.
    assert day["quality"] == {
        "expected": 100, "present": 100, "missing": 0, "estimated": 0, "questionable": 2,
        "edited": 0, "derived": 0, "complete": True,
    }
    assert day["value"] == sum(value_at(s) for s in quarter_hours(date(2026, 11, 1)))


async def test_daily_reports_a_partial_day_as_incomplete(
    store: SqliteStore, client: httpx.AsyncClient
) -> None:
    # A fresh channel of the same meter with only the first 10 hours of a day.
    from gateway.model import IntervalReading, Unit
    from gateway.store import SeriesInfo

    await store.register_series(SeriesInfo(meter_id=METER, channel="1.0.2.8.0.255",
                                           unit=Unit.WH, interval_s=900,
                                           timezone="America/Chicago"))
    starts = quarter_hours(date(2026, 3, 8))[:40]
    await store.write_intervals([
        IntervalReading(meter_id=METER, channel="1.0.2.8.0.255", start=s, length_s=900,
                        value=7, unit=Unit.WH) for s in starts
    ])
    r = await client.get(f"/api/v1/meters/{METER}/daily", params={
        "from": "2026-03-08", "to": "2026-03-08", "channel": "1.0.2.8.0.255"})
    [day] = r.json()["days"]
    assert day["value"] == 280 and day["value_kwh"] == "0.280"
    assert day["quality"]["missing"] == 52 and day["quality"]["complete"] is False


async def test_intervals_round_trip_over_spring_forward(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/api/v1/meters/{METER}/intervals", params={
        "from": "2026-03-08T00:00:00-06:00", "to": "2026-03-09T00:00:00-05:00"})
    assert r.status_code == 200, r.text
    body = r.json()
    no_floats(body)
    assert body["start"] == "2026-03-08T06:00:00Z" and body["end"] == "2026-03-09T05:00:00Z"
    rows = body["intervals"]
    starts = quarter_hours(date(2026, 3, 8))
    assert len(rows) == len(starts) == 92
    for row, start in zip(rows, starts, strict=True):
        assert row["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert row["end"] == (start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert row["value"] == value_at(start) and row["unit"] == "Wh"
        quality, _ = quality_at(start)
        assert row["quality"]["code"] == quality
    estimated = [row for row in rows if row["quality"]["code"] == 9]
    assert len(estimated) == 1
    assert estimated[0]["quality"]["name"] == "estimated_linear"
    assert estimated[0]["flags"] == ["gap_spanned"]
    # 04:00 local on the spring-forward day is 09:00 UTC (CDT, -05:00).
    assert estimated[0]["start"] == "2026-03-08T09:00:00Z"


async def test_intervals_any_offset_names_the_same_instants(client: httpx.AsyncClient) -> None:
    path = f"/api/v1/meters/{METER}/intervals"
    a = await client.get(path, params={"from": "2026-11-01T01:00:00-05:00",
                                       "to": "2026-11-01T01:00:00-06:00"})
    b = await client.get(path, params={"from": "2026-11-01T06:00:00Z",
                                       "to": "2026-11-01T07:00:00+00:00"})
    assert a.status_code == b.status_code == 200
    assert a.json()["intervals"] == b.json()["intervals"]
    # The repeated 01:00-02:00 hour: four quarter-hours before the clocks go back, one
    # of them (01:30 CDT) questionable with both rules named.
    rows = a.json()["intervals"]
    assert len(rows) == 4
    assert [r["flags"] for r in rows if r["quality"]["code"] == 10] == [
        ["clock_untrusted", "future"]]
    assert all(r["start"].endswith("Z") for r in rows)
    assert rows[0]["start"] == "2026-11-01T06:00:00Z"


async def test_naive_instants_are_refused_with_a_clear_message(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get(f"/api/v1/meters/{METER}/intervals", params={
        "from": "2026-03-08T00:00:00", "to": "2026-03-09T00:00:00-05:00"})
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["query", "from"]
    assert "no UTC offset" in error["msg"] and "2026-03-08T00:00:00" in error["msg"]


async def test_bad_ranges_are_422_naming_the_limit(client: httpx.AsyncClient) -> None:
    cases = [
        ("intervals", {"from": "2026-03-09T00:00:00Z", "to": "2026-03-08T00:00:00Z"},
         "before"),
        ("intervals", {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:01Z"},
         "31 days"),
        ("daily", {"from": "2026-03-09", "to": "2026-03-08"}, "before"),
        ("daily", {"from": "2025-01-01", "to": "2026-02-05"}, "400 days"),
        ("intervals", {"from": "0001-01-01T00:00:00+01:00", "to": "2026-02-01T00:00:00Z"},
         "years 1 to 9999"),
    ]
    for route, params, text in cases:
        r = await client.get(f"/api/v1/meters/{METER}/{route}", params=params)
        assert r.status_code == 422, (route, params, r.text)
        assert text in r.json()["detail"][0]["msg"], r.text
    # The limits themselves are allowed.
    ok = await client.get(f"/api/v1/meters/{METER}/daily",
                          params={"from": "2025-01-01", "to": "2026-02-04"})
    assert ok.status_code == 200, ok.text
    ok = await client.get(f"/api/v1/meters/{METER}/intervals",
                          params={"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})
    assert ok.status_code == 200, ok.text


async def test_unknown_meter_and_channel_are_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/meters/nope/daily", params={"from": "2026-03-08",
                                                               "to": "2026-03-08"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = await client.get("/api/v1/meters/nope/intervals", params={
        "from": "2026-03-08T00:00:00Z", "to": "2026-03-09T00:00:00Z"})
    assert r.status_code == 404
    r = await client.get(f"/api/v1/meters/{METER}/daily", params={
        "from": "2026-03-08", "to": "2026-03-08", "channel": "1.0.99.9.9.255"})
    assert r.status_code == 404
    assert "1.0.99.9.9.255" in r.json()["detail"] and CHANNEL in r.json()["detail"]


async def test_meters_lists_status_and_channels(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/meters")
    assert r.status_code == 200
    assert r.json() == {
        "default_channel": CHANNEL,
        "meters": [{
            "meter_id": METER, "timezone": "America/Chicago",
            "last_read_at": "2026-11-03T06:00:05Z", "status": "ok", "last_error": None,
            "protocol": "modbus", "profile": "eastron-sdm630",
            "channels": [{"channel": CHANNEL, "unit": "Wh", "interval_s": 900}],
        }],
    }


async def test_no_interactive_docs_that_load_third_party_scripts(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/docs")).status_code == 404
    assert (await client.get("/openapi.json")).status_code == 200


async def test_health_and_page(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "detail": None}
    page = await client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        got = await client.get(asset)
        assert got.status_code == 200 and got.content


async def test_health_is_503_when_the_store_cannot_answer(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "closed.db")
    await store.open()
    await store.close()
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as c:
        r = await c.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


async def test_openapi_documents_routes_and_exact_energy(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert {"/healthz", "/api/v1/meters", "/api/v1/meters/{meter_id}/intervals",
            "/api/v1/meters/{meter_id}/daily"} <= set(paths)
    assert "/" not in paths
    schemas = spec["components"]["schemas"]
    for name in ("MeterList", "IntervalList", "DailyList", "Day", "DayQuality", "Interval"):
        assert name in schemas
    day = schemas["Day"]["properties"]
    assert day["value"]["type"] == "integer"
    assert {"type": "string"} in day["value_kwh"]["anyOf"]
    params = {p["name"] for p in paths["/api/v1/meters/{meter_id}/daily"]["get"]["parameters"]}
    assert params == {"meter_id", "from", "to", "channel"}
    assert "404" in paths["/api/v1/meters/{meter_id}/daily"]["get"]["responses"]
    no_number = [
        (schema, prop) for schema, body in schemas.items()
        for prop, spec_ in body.get("properties", {}).items() if spec_.get("type") == "number"
    ]
    assert no_number == []
