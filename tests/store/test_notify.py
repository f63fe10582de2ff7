"""Notification subscriptions in the SQLite store: add, list, delete by meter and id,
sent keys committed with the record, and the schema 3 -> 4 migration."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import DataError
from gateway.notify.rules import SubscriptionFields
from gateway.store.sqlite import SCHEMA_VERSION, SqliteStore

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
ABOVE = SubscriptionFields(kind="daily_above", address="a@example.org", threshold_wh=9_000)
QUIET = SubscriptionFields(kind="no_data", address="b@example.org", days=3, channel="x")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    yield s
    await s.close()


async def test_add_list_get_delete_by_meter(store: SqliteStore) -> None:
    a = await store.add_notification("A", ABOVE, at=AT)
    b = await store.add_notification("A", QUIET, at=AT)
    c = await store.add_notification("B", ABOVE, at=AT)
    assert (a.kind, a.threshold_wh, a.days, a.channel) == ("daily_above", 9_000, None,
                                                          "1.0.1.8.0.255")
    assert (b.kind, b.days, b.channel, b.created_at) == ("no_data", 3, "x", AT)
    assert a.last_sent_key is None and a.last_sent_at is None
    assert [s.id for s in await store.notifications("A")] == [a.id, b.id]
    assert [s.id for s in await store.notifications()] == [a.id, b.id, c.id]
    assert await store.notification("A", c.id) is None  # another meter's: not found
    assert await store.notification("B", c.id) == c
    assert not await store.delete_notification("A", c.id)
    assert await store.delete_notification("A", a.id)
    assert not await store.delete_notification("A", a.id)
    assert [s.id for s in await store.notifications()] == [b.id, c.id]
    d = await store.add_notification("A", ABOVE, at=AT)
    assert d.id > c.id  # a deleted id never comes back


async def test_sent_moves_the_key_and_keeps_the_record(store: SqliteStore) -> None:
    a = await store.add_notification("A", ABOVE, at=AT)
    later = datetime(2026, 3, 5, tzinfo=UTC)
    assert await store.notification_sent(a.id, "2026-03-04", a.address, at=later)
    got = await store.notification("A", a.id)
    assert got is not None and (got.last_sent_key, got.last_sent_at) == ("2026-03-04", later)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT notification_id, key, address FROM notification_sent"
                            ).fetchall() == [(a.id, "2026-03-04", "a@example.org")]
    assert await store.delete_notification("A", a.id)
    assert not await store.notification_sent(a.id, "2026-03-05", a.address, at=later)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM notification_sent").fetchone() == (0,)


@pytest.mark.parametrize("fields", [
    SubscriptionFields(kind="daily_above", address="a@example.org"),
    SubscriptionFields(kind="daily_above", address="a@example.org", threshold_wh=-1),
    SubscriptionFields(kind="daily_above", address="a@example.org", threshold_wh=1, days=2),
    SubscriptionFields(kind="no_data", address="a@example.org", days=0),
    SubscriptionFields(kind="no_data", address="a@example.org", days=2, threshold_wh=1),
    SubscriptionFields(kind="no_data", address="a@example.org\r\nBcc: x@y.org", days=2),
    SubscriptionFields(kind="no_data", address="nobody", days=2),
    SubscriptionFields(kind="no_data", address="a@b@example.org", days=2),
])
async def test_fields_breaking_a_rule_are_refused(store: SqliteStore,
                                                  fields: SubscriptionFields) -> None:
    with pytest.raises(DataError):
        await store.add_notification("A", fields, at=AT)
    assert await store.notifications() == []


async def test_a_schema_3_store_gains_the_notification_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '3')")
    s = SqliteStore(path)
    await s.open()
    await s.add_notification("A", ABOVE, at=AT)
    await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
            str(SCHEMA_VERSION),)
        assert conn.execute("SELECT count(*) FROM notification").fetchone() == (1,)
    assert SCHEMA_VERSION == 6
