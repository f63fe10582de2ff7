"""Operator edits: ESPI code 7, raw and history kept, an audit of who, when and why."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from gateway.errors import DataError
from gateway.model import Flag, IntervalReading, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
DAY = date(2026, 6, 1)
T0 = datetime(2026, 6, 1, tzinfo=UTC)
AT = datetime(2026, 6, 5, 9, 30, tzinfo=UTC)


def day_of_intervals(value: int = 250) -> list[IntervalReading]:
    return [IntervalReading(meter_id="M1", channel=CH, start=T0 + timedelta(minutes=15 * i),
                            length_s=900, value=value, unit=Unit.WH,
                            quality=Quality.DERIVED if i == 3 else Quality.VALID,
                            flags=int(Flag.INTERPOLATED) if i == 3 else 0)
            for i in range(96)]


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    await s.register_series(SeriesInfo(meter_id="M1", channel=CH, unit=Unit.WH,
                                       interval_s=900, timezone="UTC"))
    await s.write_intervals(day_of_intervals())
    yield s
    await s.close()


async def test_an_edit_keeps_raw_history_and_audit_and_updates_the_day(
    store: SqliteStore, tmp_path: Path,
) -> None:
    start = T0 + timedelta(minutes=45)
    edited = await store.edit_interval("M1", CH, start, 400, operator="dana",
                                       reason="meter photo shows 0.4 kWh", at=AT)
    assert (edited.value, edited.quality, edited.raw) == (400, Quality.EDITED, 250)
    assert edited.flags == Flag.INTERPOLATED | Flag.EDITED  # what fired before stays known
    again = await store.edit_interval("M1", CH, start, 380, operator="lee",
                                      reason="second look", at=AT + timedelta(hours=1))
    assert again.raw == 250  # raw is the value first derived from the reads, always
    [day] = await store.daily("M1", CH, DAY, DAY)
    assert (day.value, day.edited, day.derived) == (95 * 250 + 380, 1, 0)
    trail = await store.edits("M1", CH)
    assert [(e.old_value, e.new_value, e.operator, e.reason, e.at) for e in trail] == [
        (250, 400, "dana", "meter photo shows 0.4 kWh", AT),
        (400, 380, "lee", "second look", AT + timedelta(hours=1))]
    with sqlite3.connect(tmp_path / "s.db") as conn:
        history = conn.execute("SELECT value, quality FROM interval_history").fetchall()
    assert history == [(250, Quality.DERIVED), (400, Quality.EDITED)]


async def test_an_operator_can_fill_a_missing_interval(store: SqliteStore) -> None:
    nxt = T0 + timedelta(days=1)
    filled = await store.edit_interval("M1", CH, nxt, 300, operator="dana",
                                       reason="estimated from the customer's reading", at=AT)
    assert (filled.value, filled.quality, filled.raw) == (300, Quality.EDITED, None)
    [day] = await store.daily("M1", CH, nxt.date(), nxt.date())
    assert (day.present, day.edited, day.value) == (1, 1, 300)
    [trail] = await store.edits("M1", CH)
    assert trail.old_value is None


async def test_a_replay_does_not_overwrite_an_edit(store: SqliteStore) -> None:
    start = T0 + timedelta(minutes=15)
    await store.edit_interval("M1", CH, start, 999, operator="dana", reason="fix", at=AT)
    result = await store.write_intervals(day_of_intervals())
    assert (result.inserted, result.updated) == (0, 0)
    [iv] = await store.intervals("M1", CH, start, start + timedelta(minutes=15))
    assert (iv.value, iv.quality) == (999, Quality.EDITED)


async def test_bad_edits_are_refused(store: SqliteStore) -> None:
    with pytest.raises(DataError, match="not the start"):
        await store.edit_interval("M1", CH, T0 + timedelta(minutes=7), 1, operator="d",
                                  reason="r", at=AT)
    with pytest.raises(DataError, match="negative"):
        await store.edit_interval("M1", CH, T0, -1, operator="d", reason="r", at=AT)
    with pytest.raises(DataError, match="reason"):
        await store.edit_interval("M1", CH, T0, 1, operator="d", reason="  ", at=AT)
    assert await store.edits("M1", CH) == []
