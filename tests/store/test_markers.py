"""Usage markers in the SQLite store: add, list by overlap, get, update, delete, migrate."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.errors import DataError
from gateway.markers import MarkerFields
from gateway.store.sqlite import SCHEMA_VERSION, SqliteStore

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 5, 2, 8, 30, tzinfo=UTC)


def point(day: date, label: str = "new fridge") -> MarkerFields:
    return MarkerFields(kind="point", start=day, label=label, category="appliance")


def span(first: date, last: date, label: str = "away") -> MarkerFields:
    return MarkerFields(kind="range", start=first, end=last, label=label, category="occupancy",
                        note="  holiday  ")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "m.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_add_get_update_delete(store: SqliteStore) -> None:
    m = await store.add_marker("A", span(date(2026, 4, 1), date(2026, 4, 10)), at=AT)
    assert (m.meter_id, m.kind, m.start, m.end, m.note, m.created_at, m.updated_at) == (
        "A", "range", date(2026, 4, 1), date(2026, 4, 10), "holiday", AT, AT)
    assert await store.marker("A", m.id) == m
    changed = await store.update_marker("A", m.id, point(date(2026, 4, 3), "  heat pump "),
                                        at=LATER)
    assert changed is not None
    assert (changed.kind, changed.end, changed.label, changed.created_at, changed.updated_at) \
        == ("point", None, "heat pump", AT, LATER)
    assert await store.delete_marker("A", m.id) is True
    assert await store.marker("A", m.id) is None
    assert await store.delete_marker("A", m.id) is False
    # A deleted marker's id is never handed out again.
    again = await store.add_marker("A", point(date(2026, 4, 3)), at=AT)
    assert again.id > m.id


async def test_another_meters_marker_is_not_found(store: SqliteStore) -> None:
    m = await store.add_marker("A", point(date(2026, 4, 1)), at=AT)
    assert await store.marker("B", m.id) is None
    assert await store.update_marker("B", m.id, point(date(2026, 1, 1)), at=LATER) is None
    assert await store.delete_marker("B", m.id) is False
    assert await store.marker("A", m.id) == m
    assert await store.markers("B") == []


async def test_markers_are_listed_by_overlap(store: SqliteStore) -> None:
    early = await store.add_marker("A", point(date(2026, 3, 1)), at=AT)
    trip = await store.add_marker("A", span(date(2026, 3, 10), date(2026, 3, 20)), at=AT)
    late = await store.add_marker("A", point(date(2026, 3, 25)), at=AT)
    ids = [m.id for m in await store.markers("A", date(2026, 3, 15), date(2026, 3, 25))]
    assert ids == [trip.id, late.id]
    ids = [m.id for m in await store.markers("A", date(2026, 3, 1), date(2026, 3, 10))]
    assert ids == [early.id, trip.id]
    assert [m.id for m in await store.markers("A", date(2026, 3, 21))] == [late.id]
    assert [m.id for m in await store.markers("A")] == [early.id, trip.id, late.id]
    assert await store.markers("A", date(2026, 3, 2), date(2026, 3, 9)) == []


@pytest.mark.parametrize(("fields", "says"), [
    (MarkerFields(kind="range", start=date(2026, 4, 2), end=date(2026, 4, 1), label="x",
                  category="other"), "before start"),
    (MarkerFields(kind="range", start=date(2026, 4, 2), label="x", category="other"),
     "needs an end"),
    (MarkerFields(kind="point", start=date(2026, 4, 2), end=date(2026, 4, 3), label="x",
                  category="other"), "no end"),
    (MarkerFields(kind="point", start=date(2026, 4, 2), label="   ", category="other"),
     "1 to 80"),
    (MarkerFields(kind="point", start=date(2026, 4, 2), label="x" * 81, category="other"),
     "1 to 80"),
    (MarkerFields(kind="point", start=date(2026, 4, 2), label="x", note="n" * 501,
                  category="other"), "at most 500"),
    (MarkerFields(kind="point", start=date(2026, 4, 2), label="x",
                  category="pool"), "not one of"),  # type: ignore[arg-type]
    (MarkerFields(kind="point", start=date(1, 1, 1), label="x", category="other"),
     "not between"),
])
async def test_broken_rules_are_refused(store: SqliteStore, fields: MarkerFields,
                                        says: str) -> None:
    with pytest.raises(DataError, match=says):
        await store.add_marker("A", fields, at=AT)
    assert await store.markers("A") == []


async def test_a_schema_2_store_gains_the_marker_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '2')")
    s = SqliteStore(path)
    await s.open()
    await s.add_marker("A", point(date(2026, 4, 1)), at=AT)
    await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
            str(SCHEMA_VERSION),)
        assert conn.execute("SELECT count(*) FROM marker").fetchone() == (1,)
    assert SCHEMA_VERSION == 6
