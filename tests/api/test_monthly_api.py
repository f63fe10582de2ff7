"""Monthly usage over HTTP against a real SqliteStore: a year of a two-rate meter in Chicago.

The meter keeps its day rate (tariff 1, 07:00-23:00 local), night rate (tariff 2) and
total register as three hourly series from 2026-01-01 to 2026-12-20 local, across both
DST changes (a 23-hour March 8, a 25-hour November 1). July 10-12 hold an estimated
hour; February 14 lacks its evening; December is cut short on the 20th.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.api import create_app
from gateway.clock import ManualClock
from gateway.model import Flag, IntervalReading, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

from .test_feed_api import no_floats

TOU = "M-TOU-Y"
PLAIN = "M-PLAIN-Y"
TOTAL, DAY, NIGHT = "1.0.1.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255"
TZ = ZoneInfo("America/Chicago")
FIRST, LAST = date(2026, 1, 1), date(2026, 12, 20)
ESTIMATED_DAYS = {date(2026, 7, 10), date(2026, 7, 11), date(2026, 7, 12)}
SHORT_DAY = date(2026, 2, 14)
#: 21:00 local on 2026-12-31 is already 2027 in UTC: the current month is still December.
NOW = datetime(2027, 1, 1, 3, 0, tzinfo=UTC)


def local_days() -> list[date]:
    return [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


def hours(day: date) -> list[datetime]:
    """UTC starts of every hour of a local day (stepping in UTC, so 23/25 h work)."""
    start = datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=TZ).astimezone(UTC)
    out = []
    while start < end:
        out.append(start)
        start += timedelta(hours=1)
    return out


def stored_hours(day: date) -> list[datetime]:
    starts = hours(day)
    return starts[:18] if day == SHORT_DAY else starts


def usage_at(start: datetime) -> int:
    """Deterministic, uneven Wh per hour."""
    return 300 + (int(start.timestamp()) // 3600) % 211


def tariff_at(start: datetime) -> int:
    return 1 if 7 <= start.astimezone(TZ).hour < 23 else 2


def readings(meter: str, channel: str) -> list[IntervalReading]:
    out = []
    for day in local_days():
        for i, start in enumerate(stored_hours(day)):
            wh = usage_at(start)
            if channel != TOTAL and tariff_at(start) != (1 if channel == DAY else 2):
                wh = 0
            estimated = day in ESTIMATED_DAYS and i == 3
            out.append(IntervalReading(
                meter_id=meter, channel=channel, start=start, length_s=3600, value=wh,
                unit=Unit.WH,
                quality=Quality.ESTIMATED_LINEAR if estimated else Quality.VALID,
                flags=int(Flag.GAP_SPANNED) if estimated else 0))
    return out


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def expected_month(month: str, tariff: int | None = None) -> int:
    return sum(usage_at(s) for d in local_days() if month_of(d) == month
               for s in stored_hours(d) if tariff is None or tariff_at(s) == tariff)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "monthly.db")
    await s.open()
    for meter, channels in ((TOU, (TOTAL, DAY, NIGHT)), (PLAIN, (TOTAL,))):
        for channel in channels:
            await s.register_series(SeriesInfo(meter_id=meter, channel=channel, unit=Unit.WH,
                                               interval_s=3600, timezone="America/Chicago"))
            await s.write_intervals(readings(meter, channel))
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def client(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    # The whole portal app, as served (its access check included), at a fixed time.
    app = create_app(store, default_channel=TOTAL, clock=ManualClock(NOW))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as c:
        yield c


async def get_months(client: httpx.AsyncClient, meter: str,
                     **params: str) -> dict[str, object]:
    r = await client.get(f"/api/v1/meters/{meter}/monthly", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    no_floats(body)
    return body


async def test_default_window_is_the_last_12_local_months(client: httpx.AsyncClient) -> None:
    body = await get_months(client, PLAIN)
    assert (body["first"], body["last"], body["timezone"]) == (
        "2026-01", "2026-12", "America/Chicago")
    months = body["months"]
    assert isinstance(months, list)
    assert [m["month"] for m in months] == [f"2026-{m:02d}" for m in range(1, 13)]


async def test_months_total_their_days_across_both_dst_changes(
    store: SqliteStore, client: httpx.AsyncClient,
) -> None:
    body = await get_months(client, PLAIN, **{"from": "2026-01", "to": "2026-12"})
    months = {m["month"]: m for m in body["months"]}  # type: ignore[attr-defined]
    for name in ("2026-03", "2026-11"):  # DST months: a 23-hour and a 25-hour day
        month = months[name]
        assert month["value"] == expected_month(name)
        assert Decimal(month["value_kwh"]) * 1000 == month["value"]
        assert month["complete"] is True and month["missing_days"] == 0
        assert month["days"] == month["days_with_data"] == month["complete_days"] == (
            31 if name == "2026-03" else 30)
    # Each month equals the sum of the store's daily rollups of its local days.
    for name, month in months.items():
        first = date.fromisoformat(f"{name}-01")
        last = (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)
        days = await store.daily(PLAIN, TOTAL, first, last)
        assert month["value"] == sum(d.value for d in days) == expected_month(name), name
    assert body["total"] == sum(m["value"] for m in months.values())
    assert body["rates"] == [] and all(m["rates"] == [] for m in months.values())


async def test_a_partial_month_is_not_complete(client: httpx.AsyncClient) -> None:
    body = await get_months(client, PLAIN, **{"from": "2026-02", "to": "2026-12"})
    months = {m["month"]: m for m in body["months"]}  # type: ignore[attr-defined]
    dec = months["2026-12"]
    assert (dec["days"], dec["days_with_data"], dec["missing_days"]) == (31, 20, 11)
    assert dec["complete"] is False
    feb = months["2026-02"]  # every day has data, one lacks its evening
    assert (feb["days"], feb["days_with_data"], feb["complete_days"]) == (28, 28, 27)
    assert feb["missing_days"] == 0 and feb["complete"] is False
    assert feb["value"] == expected_month("2026-02")


async def test_a_month_counts_its_estimated_days(client: httpx.AsyncClient) -> None:
    body = await get_months(client, PLAIN, **{"from": "2026-06", "to": "2026-08"})
    by = {m["month"]: m for m in body["months"]}  # type: ignore[attr-defined]
    assert by["2026-07"]["estimated_days"] == 3
    assert by["2026-07"]["questionable_days"] == by["2026-07"]["edited_days"] == 0
    assert by["2026-07"]["complete"] is True
    assert by["2026-06"]["estimated_days"] == by["2026-08"]["estimated_days"] == 0


async def test_two_rate_months_are_day_plus_night(client: httpx.AsyncClient) -> None:
    body = await get_months(client, TOU, **{"from": "2026-01", "to": "2026-12"})
    rates = body["rates"]
    assert isinstance(rates, list)
    assert [(r["channel"], r["tariff"], r["label"]) for r in rates] == [
        (DAY, 1, "Day rate"), (NIGHT, 2, "Night rate")]
    months = body["months"]
    assert isinstance(months, list)
    for month in months:
        day, night = month["rates"]
        assert (day["channel"], night["channel"]) == (DAY, NIGHT)
        assert day["value"] == expected_month(month["month"], 1)
        assert night["value"] == expected_month(month["month"], 2)
        assert month["value"] == day["value"] + night["value"] > 0
    assert body["total"] == sum(r["total"] for r in rates)
    assert Decimal(rates[0]["total_kwh"]) * 1000 == rates[0]["total"]


async def test_month_range_beyond_the_data_and_from_alone(client: httpx.AsyncClient) -> None:
    body = await get_months(client, PLAIN, **{"from": "2025-11"})
    assert (body["first"], body["last"]) == ("2025-11", "2026-10")
    months = body["months"]
    assert isinstance(months, list)
    assert months[0] == {
        "month": "2025-11", "value": 0, "value_kwh": "0.000", "unit": "Wh", "days": 30,
        "days_with_data": 0, "complete_days": 0, "estimated_days": 0,
        "questionable_days": 0, "edited_days": 0, "missing_days": 30, "complete": False,
        "rates": [],
    }


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-13"}, "from"),
    ({"to": "2026-1"}, "to"),
    ({"from": "March"}, "from"),
    ({"from": "2026-05", "to": "2026-04"}, "to"),
    ({"from": "2023-01", "to": "2026-01"}, "to"),  # 37 months
    ({"to": "0001-03"}, "from"),  # the default year back falls before year 1
])
async def test_bad_months_are_422(client: httpx.AsyncClient, params: dict[str, str],
                                  field: str) -> None:
    r = await client.get(f"/api/v1/meters/{PLAIN}/monthly", params=params)
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["query", field]


async def test_36_months_is_the_longest_range(client: httpx.AsyncClient) -> None:
    body = await get_months(client, PLAIN, **{"from": "2024-01", "to": "2026-12"})
    assert len(body["months"]) == 36  # type: ignore[arg-type]


async def test_unknown_meter_and_channel_are_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/meters/NOPE/monthly")
    assert r.status_code == 404 and r.json() == {"detail": "unknown meter 'NOPE'"}
    r = await client.get(f"/api/v1/meters/{PLAIN}/monthly", params={"channel": "1.0.2.8.0.255"})
    assert r.status_code == 404
    assert r.json() == {"detail": f"meter '{PLAIN}' has no channel '1.0.2.8.0.255' "
                        f"(channels: {TOTAL})"}
