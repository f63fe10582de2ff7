"""The two-rate daily view and the daily usage checks, on a real store and the real app.

A time-of-use meter in Chicago keeps its day rate (tariff 1, 07:00-23:00 local), its
night rate (tariff 2) and its total register as three series. Its days straddle both
2026 DST changes: 92 quarter-hours on March 8, 100 on November 1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.api import create_app
from gateway.model import IntervalReading, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from gateway.validation.daily import DailyLimits

from .conftest import METER as PLAIN_METER
from .conftest import quarter_hours

TOU = "M-TOU-1"
TOTAL, DAY, NIGHT = "1.0.1.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255"
TZ = ZoneInfo("America/Chicago")
DAYS = [date(2026, 3, d) for d in (6, 7, 8, 9)] + [
    date(2026, 10, 30), date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
#: The day the household used three times as much.
HEAVY = date(2026, 11, 2)
LIMITS = DailyLimits(high_wh=9_000, history_factor=Decimal(2), history_days=2)


def usage_at(start: datetime) -> int:
    local = start.astimezone(TZ)
    wh = 40 + (int(start.timestamp()) // 900) % 23
    return 3 * wh if local.date() == HEAVY else wh


def tariff_at(start: datetime) -> int:
    return 1 if 7 <= start.astimezone(TZ).hour < 23 else 2


def intervals(channel: str, day: date) -> list[IntervalReading]:
    out = []
    for start in quarter_hours(day):
        wh = usage_at(start)
        if channel == DAY:
            wh = wh if tariff_at(start) == 1 else 0
        elif channel == NIGHT:
            wh = wh if tariff_at(start) == 2 else 0
        out.append(IntervalReading(meter_id=TOU, channel=channel, start=start, length_s=900,
                                   value=wh, unit=Unit.WH))
    return out


def expected(day: date, tariff: int | None) -> int:
    return sum(usage_at(s) for s in quarter_hours(day)
               if tariff is None or tariff_at(s) == tariff)


@pytest.fixture
async def tou_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "tou.db")
    await s.open()
    for channel in (TOTAL, DAY, NIGHT):
        await s.register_series(SeriesInfo(meter_id=TOU, channel=channel, unit=Unit.WH,
                                           interval_s=900, timezone="America/Chicago"))
        await s.write_intervals([iv for d in DAYS for iv in intervals(channel, d)])
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def tou(tou_store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(tou_store, daily_limits={TOU: LIMITS})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal") as c:
        yield c


async def rates(client: httpx.AsyncClient, first: str, last: str,
                meter: str = TOU) -> Any:
    r = await client.get(f"/api/v1/meters/{meter}/daily/rates",
                         params={"from": first, "to": last})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(("day", "quarter_hours_in_day", "night_quarter_hours"), [
    (date(2026, 3, 7), 96, 32),
    (date(2026, 3, 8), 92, 28),  # 02:00-03:00 never happens: one night hour less
    (date(2026, 11, 1), 100, 36),  # 01:00-02:00 happens twice: one night hour more
])
async def test_each_rate_and_the_total_over_dst_days(
    tou: httpx.AsyncClient, day: date, quarter_hours_in_day: int, night_quarter_hours: int,
) -> None:
    body = await rates(tou, day.isoformat(), day.isoformat())
    assert [(r["channel"], r["tariff"], r["label"]) for r in body["rates"]] == [
        (DAY, 1, "Day rate"), (NIGHT, 2, "Night rate")]
    [got] = body["days"]
    day_rate, night_rate = got["rates"]
    assert night_quarter_hours == sum(tariff_at(s) == 2 for s in quarter_hours(day))
    for rate, tariff in ((day_rate, 1), (night_rate, 2)):
        assert rate["quality"]["expected"] == quarter_hours_in_day
        assert rate["quality"]["present"] == quarter_hours_in_day
        assert rate["value"] == expected(day, tariff)
        assert Decimal(rate["value_kwh"]) * 1000 == rate["value"]
    assert got["value"] == day_rate["value"] + night_rate["value"] == expected(day, None)
    assert got["quality"]["expected"] == 2 * quarter_hours_in_day
    assert got["quality"]["complete"] is True
    assert got["total_register"] == {
        "channel": TOTAL, "value": expected(day, None),
        "value_kwh": f"{Decimal(expected(day, None)).scaleb(-3):f}",
        "quality": {"expected": quarter_hours_in_day, "present": quarter_hours_in_day,
                    "missing": 0, "estimated": 0, "questionable": 0, "edited": 0,
                    "derived": 0, "complete": True},
        "mismatch": 0,
    }


async def test_range_totals_per_rate_add_up(tou: httpx.AsyncClient) -> None:
    body = await rates(tou, "2026-03-01", "2026-03-31")
    days = body["days"]
    assert [d["date"] for d in days] == ["2026-03-06", "2026-03-07", "2026-03-08",
                                         "2026-03-09"]
    day_rate, night_rate = body["rates"]
    assert day_rate["total"] == sum(expected(d, 1) for d in DAYS[:4])
    assert night_rate["total"] == sum(expected(d, 2) for d in DAYS[:4])
    assert body["total"] == day_rate["total"] + night_rate["total"]
    assert Decimal(str(body["total_kwh"])) * 1000 == body["total"]


async def test_daily_checks_fire_on_the_heavy_day_only(tou: httpx.AsyncClient) -> None:
    body = await rates(tou, "2026-10-30", "2026-11-02")
    checks = {d["date"]: d["checks"] for d in body["days"]}
    # Oct 30 and 31 lack two days of history; the DST day is ordinary.
    assert checks == {"2026-10-30": [], "2026-10-31": [], "2026-11-01": [],
                      "2026-11-02": ["daily_high", "daily_history_high"]}
    heavy = body["days"][-1]
    by_channel = {r["channel"]: r["checks"] for r in heavy["rates"]}
    # Each rate is judged on its own: the day rate alone is above 9 kWh, the night's not.
    assert expected(HEAVY, 1) > 9_000 > expected(HEAVY, 2)
    assert by_channel == {DAY: ["daily_high", "daily_history_high"],
                          NIGHT: ["daily_history_high"]}


async def test_checks_use_history_before_the_asked_range(tou: httpx.AsyncClient) -> None:
    # Asking for the heavy day alone still compares it with the two days before.
    body = await rates(tou, "2026-11-02", "2026-11-02")
    assert body["days"][0]["checks"] == ["daily_high", "daily_history_high"]
    single = (await tou.get(f"/api/v1/meters/{TOU}/daily",
                            params={"from": "2026-11-02", "to": "2026-11-02",
                                    "channel": TOTAL})).json()
    assert [d["checks"] for d in single["days"]] == [["daily_high", "daily_history_high"]]
    night = (await tou.get(f"/api/v1/meters/{TOU}/daily",
                           params={"from": "2026-11-02", "to": "2026-11-02",
                                   "channel": NIGHT})).json()
    assert [d["checks"] for d in night["days"]] == [["daily_history_high"]]


async def test_an_incomplete_day_is_not_judged_and_a_lost_rate_shows_as_mismatch(
    tou_store: SqliteStore, tou: httpx.AsyncClient,
) -> None:
    # A third day of three times the usage, but only its first ten hours are stored.
    partial = date(2026, 11, 3)
    for channel in (TOTAL, DAY, NIGHT):
        await tou_store.write_intervals(
            [IntervalReading(meter_id=iv.meter_id, channel=iv.channel, start=iv.start,
                             length_s=900, value=iv.value * 3, unit=Unit.WH)
             for iv in intervals(channel, partial)[:40]])
    body = await rates(tou, "2026-11-03", "2026-11-03")
    [day] = body["days"]
    assert day["quality"]["complete"] is False and day["checks"] == []
    assert day["total_register"]["mismatch"] is None  # nothing to compare on an incomplete day

    # The night register loses 7 Wh in one interval: the total register tells.
    first_night = intervals(NIGHT, DAYS[1])[0]
    await tou_store.write_intervals([IntervalReading(
        meter_id=TOU, channel=NIGHT, start=first_night.start, length_s=900,
        value=first_night.value - 7, unit=Unit.WH)])
    body = await rates(tou, DAYS[1].isoformat(), DAYS[1].isoformat())
    [day] = body["days"]
    assert day["total_register"]["mismatch"] == 7
    assert day["value"] == expected(DAYS[1], None) - 7


async def test_a_rate_without_data_on_a_day_counts_as_missing(
    tou_store: SqliteStore, tou: httpx.AsyncClient,
) -> None:
    lone = date(2026, 12, 1)
    await tou_store.write_intervals(intervals(DAY, lone))
    body = await rates(tou, lone.isoformat(), lone.isoformat())
    [day] = body["days"]
    day_rate, night_rate = day["rates"]
    assert day_rate["quality"]["complete"] is True
    assert night_rate["value"] == 0
    assert night_rate["quality"] == {"expected": 96, "present": 0, "missing": 96,
                                     "estimated": 0, "questionable": 0, "edited": 0,
                                     "derived": 0, "complete": False}
    assert day["quality"]["complete"] is False and day["quality"]["missing"] == 96
    assert day["total_register"] is None


async def test_a_single_rate_meter_has_one_rate_its_total(
    store: SqliteStore,
) -> None:
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://portal") as client:
        body = await rates(client, "2026-03-08", "2026-03-08", meter=PLAIN_METER)
        assert body["rates"] == [{"channel": TOTAL, "tariff": 0, "label": "Total",
                                  "total": body["total"], "total_kwh": body["total_kwh"]}]
        [day] = body["days"]
        assert day["quality"]["expected"] == 92 and day["total_register"] is None
        plain = (await client.get(f"/api/v1/meters/{PLAIN_METER}/daily",
                                  params={"from": "2026-03-08", "to": "2026-03-08"})).json()
        # The single-channel view is unchanged but for the (empty) checks.
        assert day["value"] == plain["days"][0]["value"]
        assert plain["days"][0]["checks"] == []
        missing = await client.get("/api/v1/meters/NOPE/daily/rates",
                                   params={"from": "2026-03-08", "to": "2026-03-08"})
        assert missing.status_code == 404
        bad = await client.get(f"/api/v1/meters/{PLAIN_METER}/daily/rates",
                               params={"from": "2026-03-09", "to": "2026-03-08"})
        assert bad.status_code == 422


def test_local_midnights_step_right() -> None:
    """The fixture's days: 23 and 25 hours long in Chicago."""
    def span(day: date) -> timedelta:
        nxt = day + timedelta(days=1)
        return (datetime(nxt.year, nxt.month, nxt.day, tzinfo=TZ).astimezone(UTC)
                - datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC))
    assert span(date(2026, 3, 8)) == timedelta(hours=23)
    assert span(date(2026, 11, 1)) == timedelta(hours=25)


async def test_openapi_documents_the_rates_view(tou: httpx.AsyncClient) -> None:
    spec = (await tou.get("/openapi.json")).json()
    route = spec["paths"]["/api/v1/meters/{meter_id}/daily/rates"]["get"]
    assert {p["name"] for p in route["parameters"]} == {"meter_id", "from", "to", "channel"}
    assert "404" in route["responses"]
    schemas = spec["components"]["schemas"]
    assert {"RatesDailyList", "RatesDay", "RateUsage", "RegisterTotal", "Rate"} <= set(schemas)
    assert "checks" in schemas["Day"]["properties"]
    assert schemas["RatesDay"]["properties"]["value"]["type"] == "integer"
