"""The embedded store: idempotent writes, exact daily rollups over local (DST) days."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.errors import ConfigError, SinkError
from gateway.model import Flag, IntervalReading, MeterStatus, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

CHICAGO = ZoneInfo("America/Chicago")
CH = "1.0.1.8.0.255"


def quarter_hours(meter: str, local_day: date, tz: ZoneInfo, value: int = 250,
                  quality: Quality = Quality.VALID) -> list[IntervalReading]:
    """Every quarter-hour interval of one local day, each ``value`` Wh."""
    lo = datetime(local_day.year, local_day.month, local_day.day, tzinfo=tz).astimezone(UTC)
    nxt = local_day + timedelta(days=1)
    hi = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
    out = []
    at = lo
    while at < hi:
        out.append(IntervalReading(meter_id=meter, channel=CH, start=at, length_s=900,
                                   value=value, unit=Unit.WH, quality=quality))
        at += timedelta(minutes=15)
    return out


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SqliteStore(tmp_path / "store.db")
    await s.open()
    await s.register_series(SeriesInfo(meter_id="m1", channel=CH, unit=Unit.WH,
                                       interval_s=900, timezone="America/Chicago"))
    yield s
    await s.close()


@pytest.mark.parametrize(
    ("day", "expected"),
    [(date(2026, 3, 8), 92), (date(2026, 3, 9), 96), (date(2026, 11, 1), 100)],
)
async def test_local_day_has_its_dst_length(store: SqliteStore, day: date, expected: int) -> None:
    batch = quarter_hours("m1", day, CHICAGO)
    assert len(batch) == expected
    result = await store.write_intervals(batch)
    assert result.inserted == expected
    [usage] = await store.daily("m1", CH, day, day)
    assert (usage.day, usage.value, usage.expected, usage.present) == (
        day, 250 * expected, expected, expected)
    assert usage.complete and usage.missing == 0


async def test_replay_changes_nothing(store: SqliteStore) -> None:
    batch = quarter_hours("m1", date(2026, 6, 1), CHICAGO)
    await store.write_intervals(batch)
    again = await store.write_intervals(batch)
    assert (again.inserted, again.unchanged, again.updated) == (0, 96, 0)
    [usage] = await store.daily("m1", CH, date(2026, 6, 1), date(2026, 6, 1))
    assert usage.value == 96 * 250


async def test_partial_replay_counts_fresh_and_replayed_apart(store: SqliteStore) -> None:
    batch = quarter_hours("m1", date(2026, 6, 1), CHICAGO)
    await store.write_intervals(batch[:50])
    result = await store.write_intervals(batch)
    assert (result.inserted, result.unchanged, result.updated) == (46, 50, 0)


async def test_changed_value_replaces_and_keeps_history(store: SqliteStore, tmp_path: Path) -> None:
    day = date(2026, 6, 2)
    await store.write_intervals(quarter_hours("m1", day, CHICAGO))
    first = quarter_hours("m1", day, CHICAGO)[0]
    fixed = IntervalReading(meter_id="m1", channel=CH, start=first.start, length_s=900,
                            value=999, unit=Unit.WH, quality=Quality.EDITED,
                            flags=int(Flag.EDITED), raw=250)
    result = await store.write_intervals([fixed])
    assert (result.inserted, result.unchanged, result.updated) == (0, 0, 1)
    [usage] = await store.daily("m1", CH, day, day)
    assert usage.value == 95 * 250 + 999
    assert usage.edited == 1
    with sqlite3.connect(tmp_path / "store.db") as conn:
        history = conn.execute("SELECT value, quality FROM interval_history").fetchall()
    assert history == [(250, 0)]


async def test_quality_summary_counts_each_kind(store: SqliteStore) -> None:
    day = date(2026, 6, 3)
    batch = quarter_hours("m1", day, CHICAGO)
    kinds = [Quality.ESTIMATED_LINEAR, Quality.ESTIMATED_REFERENCE_DAY, Quality.QUESTIONABLE,
             Quality.DERIVED, Quality.DERIVED]
    batch = [
        IntervalReading(meter_id="m1", channel=CH, start=iv.start, length_s=900, value=iv.value,
                        unit=Unit.WH, quality=kinds[i] if i < len(kinds) else Quality.VALID)
        for i, iv in enumerate(batch[:90])  # 6 intervals missing
    ]
    await store.write_intervals(batch)
    [u] = await store.daily("m1", CH, day, day)
    assert (u.present, u.missing, u.estimated, u.questionable, u.derived, u.complete) == (
        90, 6, 2, 1, 2, False)


async def test_intervals_query_round_trips(store: SqliteStore) -> None:
    day = date(2026, 11, 1)
    batch = quarter_hours("m1", day, CHICAGO)
    await store.write_intervals(batch)
    got = await store.intervals("m1", CH, batch[0].start, batch[-1].start)
    assert got == batch[:-1]  # [from, to): the last start is excluded
    assert await store.intervals("nope", CH, batch[0].start, batch[-1].end) == []


async def test_data_survives_reopen(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    await s.register_series(SeriesInfo(meter_id="m1", channel=CH, unit=Unit.WH,
                                       interval_s=900, timezone="Europe/Kyiv"))
    await s.write_intervals(quarter_hours("m1", date(2026, 10, 25), ZoneInfo("Europe/Kyiv")))
    await s.close()
    again = SqliteStore(tmp_path / "s.db")
    await again.open()
    [u] = await again.daily("m1", CH, date(2026, 10, 25), date(2026, 10, 25))
    assert (u.expected, u.present, u.value) == (100, 100, 25_000)
    await again.close()


async def test_unregistered_series_and_off_grid_intervals_are_refused(store: SqliteStore) -> None:
    stray = quarter_hours("m2", date(2026, 6, 1), CHICAGO)[:1]
    with pytest.raises(SinkError, match="never registered"):
        await store.write_intervals(stray)
    off = IntervalReading(meter_id="m1", channel=CH, start=datetime(2026, 6, 1, 0, 7, tzinfo=UTC),
                          length_s=900, value=1, unit=Unit.WH)
    with pytest.raises(SinkError, match="off the series"):
        await store.write_intervals([off])


async def test_series_settings_cannot_change_silently(store: SqliteStore) -> None:
    with pytest.raises(ConfigError, match="stored with 900 s intervals") as err:
        await store.register_series(SeriesInfo(meter_id="m1", channel=CH, unit=Unit.WH,
                                               interval_s=3600, timezone="America/Chicago"))
    assert err.value.fix
    with pytest.raises(ConfigError, match="unknown timezone"):
        await store.register_series(SeriesInfo(meter_id="m9", channel=CH, unit=Unit.WH,
                                               interval_s=900, timezone="Mars/Olympus"))


async def test_meter_status(store: SqliteStore) -> None:
    [m] = await store.meters()
    assert (m.meter_id, m.status, m.last_read_at) == ("m1", "unknown", None)
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    await store.set_meter_status(MeterStatus(meter_id="m1", timezone="America/Chicago",
                                             status="ok", last_read_at=at, protocol="modbus_tcp"))
    await store.set_meter_status(MeterStatus(meter_id="m1", timezone="America/Chicago",
                                             status="failing", last_error="timeout",
                                             protocol="modbus_tcp"))
    m1 = await store.meter("m1")
    assert m1 is not None
    assert (m1.status, m1.last_read_at, m1.last_error) == ("failing", at, "timeout")
    assert await store.meter("nope") is None


async def test_cursors_and_quarantine_commit_with_the_intervals(tmp_path: Path) -> None:
    from gateway.store import QuarantineItem

    s = SqliteStore(tmp_path / "c.db")
    await s.open()
    await s.register_series(SeriesInfo(meter_id="m1", channel=CH, unit=Unit.WH,
                                       interval_s=900, timezone="UTC"))
    at = datetime(2026, 6, 1, tzinfo=UTC)
    bad = QuarantineItem(at=at, source="import:x.csv:7", payload="m1,ch,nope,1",
                         reason="bad timestamp", meter_id="m1", channel=CH)
    await s.write_intervals(quarter_hours("m1", date(2026, 6, 1), ZoneInfo("UTC"))[:4],
                            cursors={("m1", CH): b"state-1"}, quarantine=[bad])
    await s.close()
    again = SqliteStore(tmp_path / "c.db")
    await again.open()
    assert await again.cursors() == {("m1", CH): b"state-1"}
    assert await again.quarantined() == [bad]
    assert await again.quarantine_count() == 1
    with pytest.raises(SinkError, match="never registered"):
        await again.write_intervals([], cursors={("zz", CH): b"x"})
    await again.close()


def _one(start: datetime, value: int, quality: Quality, flags: int = 0) -> IntervalReading:
    return IntervalReading(meter_id="m1", channel=CH, start=start, length_s=900, value=value,
                           unit=Unit.WH, quality=quality, flags=flags)


async def test_late_data_replaces_estimates_and_never_the_reverse(
        store: SqliteStore, tmp_path: Path) -> None:
    day = date(2026, 6, 4)
    batch = quarter_hours("m1", day, CHICAGO)
    at = [iv.start for iv in batch[:4]]
    await store.write_intervals([iv for iv in batch if iv.start not in (at[1], at[2])])
    linear, measured = Quality.ESTIMATED_LINEAR, Quality.VALID
    # An estimate arriving over measured values (a second source with a gap) changes nothing.
    result = await store.write_intervals([_one(at[0], 90, linear, int(Flag.GAP_SPANNED))])
    assert (result.updated, result.unchanged) == (0, 1)
    # Measured values over estimates: replaced, no conflict (a catch-up).
    await store.write_intervals([_one(at[1], 10, linear), _one(at[2], 10, Quality.DERIVED)])
    await store.write_intervals([_one(at[1], 300, measured), _one(at[2], 200, measured)])
    # Two valid values that disagree: the later stands, flagged; the earlier is history.
    await store.write_intervals([_one(at[3], 260, measured)])
    got = {iv.start: iv for iv in await store.intervals("m1", CH, at[0], at[3] + timedelta(1))}
    assert (got[at[0]].value, got[at[0]].quality) == (250, measured)
    assert (got[at[1]].value, got[at[1]].quality) == (300, measured)
    assert (got[at[2]].value, got[at[2]].quality) == (200, measured)
    assert (got[at[3]].value, got[at[3]].quality) == (260, Quality.QUESTIONABLE)
    assert got[at[3]].flags & Flag.CONFLICT
    [usage] = await store.daily("m1", CH, day, day)
    assert usage.questionable == 1
    with sqlite3.connect(tmp_path / "store.db") as conn:
        kept = conn.execute("SELECT value, quality FROM interval_history WHERE start = ?",
                            (int(at[3].timestamp()),)).fetchall()
    assert kept == [(250, 0)]
