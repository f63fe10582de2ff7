"""Usage markers in the store's SQLite file (``gateway.markers``): functions on a connection.

Days are stored as proleptic ordinals like the daily rollups, instants as UTC
milliseconds. Ids come from AUTOINCREMENT, so a deleted marker's id (and the URL that
named it) never comes back as another marker. Every lookup is by meter and id: a
marker of another meter is simply not found.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from typing import TypeVar

from gateway.markers import Marker, MarkerFields
from gateway.store.tx import transaction

__all__ = ["MARKER_SCHEMA", "add", "delete", "get", "in_range", "update"]

MARKER_SCHEMA = """
CREATE TABLE IF NOT EXISTS marker (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meter_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('point', 'range')),
    first_day INTEGER NOT NULL,
    last_day INTEGER,
    label TEXT NOT NULL,
    category TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS marker_meter ON marker (meter_id, first_day);
"""

_COLUMNS = ("id, meter_id, kind, first_day, last_day, label, category, note, created_at, "
            "updated_at")

T = TypeVar("T")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _marker(row: tuple[int, str, str, int, int | None, str, str, str, int, int]) -> Marker:
    mid, meter, kind, first, last, label, category, note, created, updated = row
    return Marker(
        id=mid, meter_id=meter, kind=kind,  # type: ignore[arg-type]  # CHECKed on write
        start=date.fromordinal(first), end=None if last is None else date.fromordinal(last),
        label=label, category=category,  # type: ignore[arg-type]  # checked on write
        note=note, created_at=datetime.fromtimestamp(created / 1000, UTC),
        updated_at=datetime.fromtimestamp(updated / 1000, UTC))


def _one(conn: sqlite3.Connection, meter_id: str, marker_id: int) -> Marker | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM marker WHERE meter_id = ? AND id = ?",
                       (meter_id, marker_id)).fetchone()
    return None if row is None else _marker(row)


def _days(fields: MarkerFields) -> tuple[int, int | None]:
    return fields.start.toordinal(), None if fields.end is None else fields.end.toordinal()


def add(conn: sqlite3.Connection, meter_id: str, fields: MarkerFields, at: datetime) -> Marker:
    """Store a new marker (fields already checked) and return it with its id."""
    first, last = _days(fields)
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO marker (meter_id, kind, first_day, last_day, label, category, note, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (meter_id, fields.kind, first, last, fields.label, fields.category, fields.note,
             _ms(at), _ms(at)))
        assert cur.lastrowid is not None
        found = _one(conn, meter_id, cur.lastrowid)
    assert found is not None
    return found


def update(conn: sqlite3.Connection, meter_id: str, marker_id: int, fields: MarkerFields,
           at: datetime) -> Marker | None:
    """Replace a marker's fields; ``None`` when the meter has no such marker."""
    first, last = _days(fields)
    with transaction(conn):
        conn.execute(
            "UPDATE marker SET kind = ?, first_day = ?, last_day = ?, label = ?, category = ?, "
            "note = ?, updated_at = ? WHERE meter_id = ? AND id = ?",
            (fields.kind, first, last, fields.label, fields.category, fields.note, _ms(at),
             meter_id, marker_id))
        return _one(conn, meter_id, marker_id)


def delete(conn: sqlite3.Connection, meter_id: str, marker_id: int) -> bool:
    """Remove a marker; ``False`` when the meter has no such marker."""
    with transaction(conn):
        return conn.execute("DELETE FROM marker WHERE meter_id = ? AND id = ?",
                            (meter_id, marker_id)).rowcount == 1


def get(conn: sqlite3.Connection, meter_id: str, marker_id: int) -> Marker | None:
    return _one(conn, meter_id, marker_id)


def in_range(conn: sqlite3.Connection, meter_id: str, first: date | None,
             last: date | None) -> list[Marker]:
    """The meter's markers that touch ``[first, last]`` (either end open when ``None``),
    by start day then id."""
    lo = first.toordinal() if first is not None else 0
    hi = last.toordinal() if last is not None else date.max.toordinal()
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM marker WHERE meter_id = ? AND first_day <= ? "
        "AND coalesce(last_day, first_day) >= ? ORDER BY first_day, id",
        (meter_id, hi, lo)).fetchall()
    return [_marker(r) for r in rows]
