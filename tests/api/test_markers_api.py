"""Usage marker routes: CRUD, validation, cross-meter 404s and the before/after comparison,
on a real SqliteStore through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.api import create_app
from gateway.clock import ManualClock
from gateway.model import IntervalReading, MeterStatus, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

from .conftest import CHANNEL, METER, TZ, quarter_hours

TOKEN = "s3cret-operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: A second meter with three weeks around Chicago's 25-hour day (2026-11-01).
OTHER = "M-CHI-2"
FIRST, LAST = date(2026, 10, 22), date(2026, 11, 8)
#: Days with one estimated interval.
ESTIMATED = (date(2026, 10, 30), date(2026, 10, 31))
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def other_meter_intervals() -> list[IntervalReading]:
    """10 Wh a quarter-hour up to 2026-10-31, 20 Wh from the 25-hour day on."""
    out = []
    day = FIRST
    while day <= LAST:
        wh = 10 if day < date(2026, 11, 1) else 20
        for i, start in enumerate(quarter_hours(day)):
            quality = Quality.ESTIMATED_LINEAR if day in ESTIMATED and i == 8 else Quality.VALID
            out.append(IntervalReading(meter_id=OTHER, channel=CHANNEL, start=start,
                                       length_s=900, value=wh, unit=Unit.WH, quality=quality))
        day += timedelta(days=1)
    return out


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def api(store: SqliteStore, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    await store.register_series(SeriesInfo(meter_id=OTHER, channel=CHANNEL, unit=Unit.WH,
                                           interval_s=900, timezone="America/Chicago"))
    await store.write_intervals(other_meter_intervals())
    await store.set_meter_status(MeterStatus(meter_id=OTHER, timezone="America/Chicago"))
    app = create_app(store, operator_token=TOKEN, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal",
                                 headers=AUTH) as c:
        yield c


def url(meter: str = METER, tail: str = "") -> str:
    return f"/api/v1/meters/{meter}/markers{tail}"


async def add(api: httpx.AsyncClient, meter: str = METER, **body: Any) -> dict[str, Any]:
    body = {"kind": "point", "start": "2026-03-08", "label": "new fridge",
            "category": "appliance"} | body
    r = await api.post(url(meter), json=body)
    assert r.status_code == 201, r.text
    got: dict[str, Any] = r.json()
    return got


async def test_create_list_edit_delete(api: httpx.AsyncClient, clock: ManualClock) -> None:
    trip = await add(api, kind="range", start="2026-03-07", end="2026-03-09",
                     label="  away skiing ", category="occupancy", note="house empty")
    assert {k: trip[k] for k in ("meter_id", "kind", "start", "end", "label", "note")} == {
        "meter_id": METER, "kind": "range", "start": "2026-03-07", "end": "2026-03-09",
        "label": "away skiing", "note": "house empty"}
    assert trip["created_at"] == trip["updated_at"] == "2026-12-02T12:00:00Z"
    fridge = await add(api, start="2026-11-01")
    assert (await api.get(url(tail=f"/{fridge['id']}"))).json() == fridge

    listed = (await api.get(url(), params={"from": "2026-03-09", "to": "2026-10-31"})).json()
    assert [m["id"] for m in listed["markers"]] == [trip["id"]]
    assert (listed["first"], listed["last"]) == ("2026-03-09", "2026-10-31")
    every = (await api.get(url())).json()["markers"]
    assert [m["id"] for m in every] == [trip["id"], fridge["id"]]

    clock.set(NOW + timedelta(hours=1))
    r = await api.put(url(tail=f"/{fridge['id']}"),
                      json={"kind": "point", "start": "2026-11-02", "label": "heat pump",
                            "category": "heating_cooling"})
    assert r.status_code == 200, r.text
    edited = r.json()
    assert (edited["start"], edited["label"], edited["category"], edited["created_at"],
            edited["updated_at"]) == ("2026-11-02", "heat pump", "heating_cooling",
                                      "2026-12-02T12:00:00Z", "2026-12-02T13:00:00Z")

    r = await api.delete(url(tail=f"/{trip['id']}"))
    assert r.status_code == 204 and r.content == b""
    assert (await api.get(url(tail=f"/{trip['id']}"))).status_code == 404
    assert (await api.delete(url(tail=f"/{trip['id']}"))).status_code == 404
    assert [m["id"] for m in (await api.get(url())).json()["markers"]] == [fridge["id"]]


@pytest.mark.parametrize(("body", "says"), [
    ({"kind": "range", "start": "2026-03-09", "end": "2026-03-08"},
     "end (2026-03-08) is before start (2026-03-09)"),
    ({"kind": "range"}, "a range marker needs an end"),
    ({"end": "2026-03-09"}, "a point marker has no end"),
    ({"category": "pool"}, "'appliance', 'efficiency'"),
    ({"label": "x" * 81}, "at most 80 characters"),
    ({"label": "   "}, "at least 1 character"),
    ({"note": "n" * 501}, "at most 500 characters"),
    ({"kind": "moment"}, "'point' or 'range'"),
    ({"start": "2026-02-30"}, "valid date"),
    ({"meter_id": "M-OTHER"}, "Extra inputs are not permitted"),
])
async def test_bad_markers_get_a_422_that_says_why(api: httpx.AsyncClient, body: dict[str, Any],
                                                   says: str) -> None:
    full = {"kind": "point", "start": "2026-03-08", "label": "x", "category": "other"} | body
    r = await api.post(url(), json=full)
    assert r.status_code == 422, r.text
    assert says in r.text
    assert (await api.get(url())).json()["markers"] == []


async def test_a_list_range_backwards_is_refused(api: httpx.AsyncClient) -> None:
    r = await api.get(url(), params={"from": "2026-03-09", "to": "2026-03-08"})
    assert r.status_code == 422 and "is before from" in r.text


async def test_another_meters_marker_is_not_found(api: httpx.AsyncClient) -> None:
    mine = await add(api, OTHER)
    tail = f"/{mine['id']}"
    body = {"kind": "point", "start": "2026-03-08", "label": "taken", "category": "other"}
    for r in (await api.get(url(METER, tail)), await api.put(url(METER, tail), json=body),
              await api.delete(url(METER, tail)),
              await api.get(url(METER, tail + "/comparison"))):
        assert r.status_code == 404
        assert r.json()["detail"] == f"meter {METER!r} has no marker {mine['id']}"
    assert (await api.get(url(METER))).json()["markers"] == []
    assert (await api.get(url(OTHER, tail))).json() == mine


async def test_an_unknown_meter_is_a_404(api: httpx.AsyncClient) -> None:
    for r in (await api.get(url("NOPE")), await api.get(url("NOPE", "/1")),
              await api.post(url("NOPE"), json={"kind": "point", "start": "2026-03-08",
                                                "label": "x", "category": "other"})):
        assert r.status_code == 404 and r.json()["detail"] == "unknown meter 'NOPE'"


async def test_marker_routes_need_the_token(store: SqliteStore) -> None:
    app = create_app(store, operator_token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal") as c:
        assert (await c.get(url())).status_code == 401
        r = await c.post(url(), headers={"Authorization": "Bearer wrong"},
                         json={"kind": "point", "start": "2026-03-08", "label": "x",
                               "category": "other"})
        assert r.status_code == 401
        assert (await c.get(url(), headers=AUTH)).json()["markers"] == []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)),
                                 base_url="http://portal") as c:
        assert (await c.get(url(), headers=AUTH)).status_code == 403


async def test_a_range_over_the_dst_day_against_estimated_days_is_poor(
    api: httpx.AsyncClient,
) -> None:
    trial = await add(api, OTHER, kind="range", start="2026-11-01", end="2026-11-03",
                      label="heat pump trial", category="heating_cooling")
    r = await api.get(url(OTHER, f"/{trial['id']}/comparison"))
    assert r.status_code == 200, r.text
    c = r.json()
    # After: 2026-11-01 (25 h: 100 x 20 Wh) and two 96 x 20 Wh days, over three days.
    assert (c["after"]["first"], c["after"]["last"], c["after"]["days"], c["after"]["total"],
            c["after"]["average"], c["after"]["average_kwh"]) == (
        "2026-11-01", "2026-11-03", 3, 5_840, 1_947, "1.947")
    assert (c["before"]["first"], c["before"]["last"], c["before"]["average"],
            c["before"]["estimated_days"], c["before"]["poor"]) == (
        "2026-10-29", "2026-10-31", 960, 2, True)
    assert (c["days"], c["change"], c["change_kwh"], c["change_percent"], c["unit"]) == (
        3, 987, "0.987", "102.8", "Wh")
    assert c["verdict"] == "poor"
    assert c["quality"] == ["before: 2 estimated days",
                            "before: poor data, 66 % of the days estimated or missing"]


async def test_a_point_marker_clipped_to_the_data(api: httpx.AsyncClient) -> None:
    m = await add(api, OTHER, start="2026-10-25")
    c = (await api.get(url(OTHER, f"/{m['id']}/comparison"), params={"days": 7})).json()
    assert (c["wanted_days"], c["days"], c["before"]["first"], c["after"]["last"]) == (
        7, 3, "2026-10-22", "2026-10-28")
    assert (c["before"]["average"], c["after"]["average"], c["change"], c["change_percent"],
            c["verdict"]) == (960, 960, 0, "0.0", "ok")
    assert c["quality"] == ["window shortened to 3 days (data starts 2026-10-22)"]
    # Data beyond the marker but its day is past the data: nothing to compare.
    late = await add(api, OTHER, start="2026-11-08")
    c = (await api.get(url(OTHER, f"/{late['id']}/comparison"))).json()
    assert (c["verdict"], c["before"], c["after"], c["quality"]) == (
        "unavailable", None, None, ["no comparison: data ends 2026-11-08"])


async def test_the_after_window_stops_at_the_meters_yesterday(
    api: httpx.AsyncClient, store: SqliteStore,
) -> None:
    trial = await add(api, OTHER, kind="range", start="2026-11-01", end="2026-11-03",
                      label="trial", category="heating_cooling")
    # 2026-11-03 05:30 UTC is still 2026-11-02 in Chicago: yesterday is 2026-11-01.
    early = datetime(2026, 11, 3, 5, 30, tzinfo=UTC)
    assert early.astimezone(TZ).date() == date(2026, 11, 2)
    app = create_app(store, operator_token=TOKEN, clock=ManualClock(early))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal", headers=AUTH) as then:
        c = (await then.get(url(OTHER, f"/{trial['id']}/comparison"))).json()
    assert (c["days"], c["after"]["last"], c["before"]["first"], c["after"]["average"]) == (
        1, "2026-11-01", "2026-10-31", 2_000)
    assert c["quality"][0] == "window shortened to 1 day (yesterday is 2026-11-01)"


async def test_comparison_parameters_are_checked(api: httpx.AsyncClient) -> None:
    m = await add(api, OTHER, start="2026-10-29")
    for days in (6, 91):
        r = await api.get(url(OTHER, f"/{m['id']}/comparison"), params={"days": days})
        assert r.status_code == 422
    r = await api.get(url(OTHER, f"/{m['id']}/comparison"), params={"channel": "1.0.2.8.0.255"})
    assert r.status_code == 404 and "has no channel" in r.json()["detail"]


async def test_the_daily_endpoint_is_unchanged(api: httpx.AsyncClient) -> None:
    await add(api)
    day = (await api.get(f"/api/v1/meters/{METER}/daily",
                         params={"from": "2026-03-08", "to": "2026-03-08"})).json()
    assert "markers" not in day and len(day["days"]) == 1
