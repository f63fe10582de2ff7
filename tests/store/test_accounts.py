"""Customer account tables on a real SqliteStore: accounts, logins, sessions, links, the
persistent linking limit, notification owners, and the schema 4 -> 5 upgrade."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from gateway.accounts import (
    BillingAccount,
    Window,
    cents,
    coverage_of_days,
    coverage_of_instants,
    hash_password,
    merge,
    verify_password,
)
from gateway.store.sqlite import SCHEMA_VERSION, SqliteStore

AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


async def test_accounts_logins_sessions_and_links(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    try:
        await s.put_accounts([BillingAccount("A-1", "M1", date(2026, 1, 1), None, 4217),
                              BillingAccount("A-0", "M1", date(2025, 1, 1),
                                             date(2026, 1, 1), 999)])
        cid = await s.add_customer("a@example.org", b"salt", b"digest", at=AT)
        assert cid is not None
        assert await s.add_customer("a@example.org", b"x", b"y", at=AT) is None
        assert await s.customer_by_email("a@example.org") == (cid, b"salt", b"digest")
        await s.add_session(b"h" * 32, cid, expires_at=AT + timedelta(hours=1), now=AT)
        assert await s.session(b"h" * 32, now=AT) == cid
        assert await s.session(b"h" * 32, now=AT + timedelta(hours=1)) is None
        assert await s.link(cid, "A-1", 4216, at=AT) is False
        assert await s.link(cid, "A-1", 4217, at=AT) is True
        assert await s.windows(cid, "M1") == [Window(date(2026, 1, 1), None)]
        assert await s.windows(cid, "M2") == []
        assert [a.account_number for a in await s.linked(cid)] == ["A-1"]
        assert await s.end_session(b"h" * 32) is True
        assert await s.end_session(b"h" * 32) is False
    finally:
        await s.close()


async def test_the_linking_limit_survives_a_restart(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "g.db")
    since = AT - timedelta(minutes=15)
    await s.open()
    for _ in range(3):
        assert await s.try_link(["login:1", "account:X"], since=since, now=AT, limit=5)
    await s.close()
    await s.open()
    try:
        for _ in range(2):
            assert await s.try_link(["login:2", "account:X"], since=since, now=AT, limit=5)
        assert not await s.try_link(["login:3", "account:X"], since=since, now=AT, limit=5)
        assert await s.try_link(["login:3", "account:Y"], since=since, now=AT, limit=5)
        later = AT + timedelta(minutes=16)
        assert await s.try_link(["account:X"], since=later - timedelta(minutes=15),
                                now=later, limit=5)
        await s.own_notification(7, 1)
        assert await s.notification_owners([7, 8]) == {7: 1}
    finally:
        await s.close()


async def test_a_schema_4_store_gains_the_account_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '4')")
    s = SqliteStore(path)
    await s.open()
    await s.put_accounts([BillingAccount("A-1", "M1", date(2026, 1, 1), None, 1)])
    await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
            str(SCHEMA_VERSION),)
    assert SCHEMA_VERSION == 6


def test_windows_cover_days_and_instants() -> None:
    ws = [Window(date(2026, 3, 8), date(2026, 3, 10)), Window(date(2026, 3, 10), None)]
    assert merge(ws) == [Window(date(2026, 3, 8), None)]
    closed = [Window(date(2026, 3, 8), date(2026, 3, 10))]
    assert coverage_of_days(closed, date(2026, 3, 8), date(2026, 3, 9)) == "all"
    assert coverage_of_days(closed, date(2026, 3, 7), date(2026, 3, 8)) == "some"
    assert coverage_of_days(closed, date(2026, 3, 10), date(2026, 3, 11)) == "none"
    assert coverage_of_days(closed, date(2026, 3, 1), date(2026, 3, 7)) == "none"
    tz = "America/Chicago"
    # Local midnight of March 8 in Chicago is 06:00Z; an hour before is still March 7.
    start = datetime(2026, 3, 8, 6, tzinfo=UTC)
    assert coverage_of_instants(closed, tz, start, start + timedelta(hours=47)) == "all"
    assert coverage_of_instants(closed, tz, start - timedelta(hours=1), start) == "none"
    assert coverage_of_instants(closed, tz, start - timedelta(hours=1),
                                start + timedelta(hours=1)) == "some"


def test_passwords_and_amounts() -> None:
    salt, digest = hash_password("correct horse battery")
    assert verify_password("correct horse battery", salt, digest)
    assert not verify_password("correct horse batterY", salt, digest)
    assert hash_password("correct horse battery")[0] != salt  # a salt per login
    assert cents("42.17") == 4217 and cents("$42") == 4200
    for bad in ("42.171", "-1", "x", "nan"):
        try:
            cents(bad)
        except Exception as exc:
            assert type(exc).__name__ == "DataError"
        else:
            raise AssertionError(bad)
