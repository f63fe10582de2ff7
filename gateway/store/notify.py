"""Notification subscriptions in the store's SQLite file (``gateway.notify``): functions
on a connection.

``notification`` holds each subscription with the key of the last notice the mail
server accepted; ``notification_sent`` keeps every sent notice. ``sent`` writes both in
one transaction, after the server accepted the notice: a crash in between re-sends that
one notice at most once on the next run, and never loses one. Every lookup is by meter
and id, so a subscription of another meter is not found.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from gateway.notify.rules import Subscription, SubscriptionFields
from gateway.store.tx import transaction

__all__ = ["NOTIFY_SCHEMA", "add", "all_of", "delete", "get", "sent"]

NOTIFY_SCHEMA = """
CREATE TABLE IF NOT EXISTS notification (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meter_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('daily_above', 'no_data')),
    threshold_wh INTEGER,
    days INTEGER,
    address TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_sent_key TEXT,
    last_sent_at INTEGER
);
CREATE INDEX IF NOT EXISTS notification_meter ON notification (meter_id);
CREATE TABLE IF NOT EXISTS notification_sent (
    notification_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    at INTEGER NOT NULL,
    address TEXT NOT NULL,
    PRIMARY KEY (notification_id, key)
);
"""

_COLUMNS = ("id, meter_id, channel, kind, threshold_wh, days, address, created_at, "
            "last_sent_key, last_sent_at")

_Row = tuple[int, str, str, str, int | None, int | None, str, int, str | None, int | None]


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _subscription(row: _Row) -> Subscription:
    sid, meter, channel, kind, threshold, days, address, created, key, sent_at = row
    return Subscription(
        id=sid, meter_id=meter, channel=channel,
        kind=kind,  # type: ignore[arg-type]  # CHECKed on write
        threshold_wh=threshold, days=days, address=address, created_at=_at(created),
        last_sent_key=key, last_sent_at=None if sent_at is None else _at(sent_at))


def _one(conn: sqlite3.Connection, meter_id: str, sid: int) -> Subscription | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM notification WHERE meter_id = ? AND id = ?",
                       (meter_id, sid)).fetchone()
    return None if row is None else _subscription(row)


def add(conn: sqlite3.Connection, meter_id: str, fields: SubscriptionFields,
        at: datetime) -> Subscription:
    """Store a new subscription (fields already checked) and return it with its id."""
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO notification (meter_id, channel, kind, threshold_wh, days, address, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (meter_id, fields.channel, fields.kind, fields.threshold_wh, fields.days,
             fields.address, _ms(at)))
        assert cur.lastrowid is not None
        found = _one(conn, meter_id, cur.lastrowid)
    assert found is not None
    return found


def delete(conn: sqlite3.Connection, meter_id: str, sid: int) -> bool:
    """Remove a subscription and its sent notices; ``False`` when the meter has none such."""
    with transaction(conn):
        gone = conn.execute("DELETE FROM notification WHERE meter_id = ? AND id = ?",
                            (meter_id, sid)).rowcount == 1
        if gone:
            conn.execute("DELETE FROM notification_sent WHERE notification_id = ?", (sid,))
            # Its unsubscribe links (gateway.store.tokens) end with it.
            conn.execute("DELETE FROM unsubscribe_token WHERE notification_id = ?", (sid,))
    return gone


def get(conn: sqlite3.Connection, meter_id: str, sid: int) -> Subscription | None:
    return _one(conn, meter_id, sid)


def all_of(conn: sqlite3.Connection, meter_id: str | None) -> list[Subscription]:
    """The meter's subscriptions (every meter's with ``None``), by id."""
    if meter_id is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM notification ORDER BY id").fetchall()
    else:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM notification WHERE meter_id = ? "
                            "ORDER BY id", (meter_id,)).fetchall()
    return [_subscription(r) for r in rows]


def sent(conn: sqlite3.Connection, sid: int, key: str, address: str, at: datetime) -> bool:
    """Record a notice the server accepted and move the subscription's key to it, in one
    transaction. ``False`` when the subscription was deleted meanwhile (nothing kept)."""
    with transaction(conn):
        moved = conn.execute(
            "UPDATE notification SET last_sent_key = ?, last_sent_at = ? WHERE id = ?",
            (key, _ms(at), sid)).rowcount == 1
        if moved:
            conn.execute("INSERT OR REPLACE INTO notification_sent VALUES (?, ?, ?, ?)",
                         (sid, key, _ms(at), address))
    return moved
