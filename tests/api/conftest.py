"""A real SqliteStore in tmp_path, seeded around Chicago's 2026 DST days, and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.api import create_app
from gateway.model import Flag, IntervalReading, MeterStatus, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

METER = "M-CHI-1"
CHANNEL = "1.0.1.8.0.255"
TZ = ZoneInfo("America/Chicago")
#: Local days seeded in full: each DST day with a normal day either side.
DAYS = [date(2026, 3, d) for d in (7, 8, 9)] + [
    date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)
]


def local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)


def quarter_hours(day: date) -> list[datetime]:
    """UTC starts of every quarter-hour of a local day (stepping in UTC, so 23/25 h work)."""
    start, end = local_midnight(day), local_midnight(day + timedelta(days=1))
    out = []
    while start < end:
        out.append(start)
        start += timedelta(minutes=15)
    return out


def value_at(start: datetime) -> int:
    """Deterministic, uneven Wh per quarter-hour."""
    return 50 + (int(start.timestamp()) // 900) % 37


def quality_at(start: datetime) -> tuple[Quality, int]:
    local = start.astimezone(TZ)
    if local.date() == date(2026, 3, 8) and local.hour == 4 and local.minute == 0:
        return Quality.ESTIMATED_LINEAR, int(Flag.GAP_SPANNED)
    if local.date() == date(2026, 11, 1) and local.hour == 1 and local.minute == 30:
        return Quality.QUESTIONABLE, int(Flag.CLOCK_UNTRUSTED | Flag.FUTURE)
    return Quality.VALID, 0


def seeded_intervals() -> list[IntervalReading]:
    out = []
    for day in DAYS:
        for start in quarter_hours(day):
            quality, flags = quality_at(start)
            out.append(
                IntervalReading(
                    meter_id=METER, channel=CHANNEL, start=start, length_s=900,
                    value=value_at(start), unit=Unit.WH, quality=quality, flags=flags,
                )
            )
    return out


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "gateway.db")
    await s.open()
    await s.register_series(
        SeriesInfo(meter_id=METER, channel=CHANNEL, unit=Unit.WH, interval_s=900,
                   timezone="America/Chicago")
    )
    await s.write_intervals(seeded_intervals())
    await s.set_meter_status(
        MeterStatus(
            meter_id=METER, timezone="America/Chicago", status="ok",
            last_read_at=datetime(2026, 11, 3, 6, 0, 5, tzinfo=UTC),
            protocol="modbus", profile="eastron-sdm630",
        )
    )
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def client(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as c:
        yield c
