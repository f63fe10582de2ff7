"""Schema 6 on a real SqliteStore: a schema-5 store upgraded with its sessions kept, and
the rules of the confirmation, reset and unsubscribe tokens and of the mail caps."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from gateway.accounts import BillingAccount, token_hash
from gateway.notify.rules import SubscriptionFields
from gateway.store.sqlite import SCHEMA_VERSION, SqliteStore

AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def schema_5_store(path: Path) -> None:
    """The customer tables as schema 5 made them, with one login and two sessions."""
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema', '5');
            CREATE TABLE customer (id INTEGER PRIMARY KEY AUTOINCREMENT,
                email TEXT NOT NULL UNIQUE, salt BLOB NOT NULL, digest BLOB NOT NULL,
                created_at INTEGER NOT NULL);
            CREATE TABLE customer_session (token_hash BLOB PRIMARY KEY,
                customer_id INTEGER NOT NULL, expires_at INTEGER NOT NULL);
        """)
        conn.execute("INSERT INTO customer VALUES (1, 'a@example.org', x'00', x'00', 0)")
        conn.executemany("INSERT INTO customer_session VALUES (?, 1, ?)", [
            (token_hash("live"), ms(AT + 2 * H)), (token_hash("old"), ms(AT - H))])


async def test_a_schema_5_store_opens_upgraded_and_its_sessions_stay(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    schema_5_store(path)
    s = SqliteStore(path)
    await s.open()
    try:
        live = await s.live_session(token_hash("live"), now=AT)
        assert live is not None and live.customer_id == 1
        # Schema 5 kept no start: taken as one session-life (12 h) before the expiry.
        assert live.expires_at == AT + 2 * H and live.created_at == AT + 2 * H - 12 * H
        assert live.last_used_at is None
        assert await s.live_session(token_hash("old"), now=AT) is None
        await s.add_session(token_hash("new"), 1, expires_at=AT + 12 * H, now=AT)
        ids = [x.id for x in await s.sessions_of(1, now=AT)]
        assert len(ids) == 2 and ids[0] == live.id and ids[1] > live.id
        await s.try_mail("confirm:x@example.org", since=AT - H, now=AT, limit=1)
    finally:
        await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("6",)
        cols = [r[1] for r in conn.execute("PRAGMA table_info(customer_session)")]
        assert cols == ["id", "token_hash", "customer_id", "created_at", "expires_at",
                        "last_used_at"]
        assert conn.execute("SELECT count(*) FROM sqlite_master "
                            "WHERE name = 'customer_session_v5'").fetchone() == (0,)
    assert SCHEMA_VERSION == 6
    again = SqliteStore(path)  # opening an upgraded store again changes nothing
    await again.open()
    assert len(await again.sessions_of(1, now=AT)) == 2
    await again.close()


async def test_tokens_are_single_use_expire_and_mail_is_capped(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    try:
        await s.put_accounts([BillingAccount("A-1", "M1", date(2026, 1, 1), None, 1)])
        cid = await s.add_customer("a@example.org", b"s", b"d", at=AT)
        other = await s.add_customer("b@example.org", b"s", b"d", at=AT)
        assert cid is not None and other is not None
        # Address confirmation: once, before expiry, for that login only.
        await s.add_address_token(b"c1", cid, "x@example.org", expires_at=AT + H, now=AT)
        await s.add_address_token(b"c2", cid, "x@example.org", expires_at=AT + H, now=AT)
        await s.add_address_token(b"c3", cid, "y@example.org", expires_at=AT + H, now=AT)
        assert await s.confirm_address(b"c3", now=AT + H) is None  # expired
        assert await s.confirm_address(b"c1", now=AT) == "x@example.org"
        assert await s.confirm_address(b"c1", now=AT) is None  # used
        assert await s.confirm_address(b"c2", now=AT) is None  # spent with the first
        assert await s.confirmed(cid, ["x@example.org", "y@example.org"]) == {"x@example.org"}
        assert await s.confirmed(other, ["x@example.org"]) == set()
        # Password reset: once; sets the password and ends every session.
        await s.add_session(b"s1", cid, expires_at=AT + 12 * H, now=AT)
        await s.add_reset(b"r1", cid, expires_at=AT + H / 2, now=AT)
        await s.add_reset(b"r0", 0, expires_at=AT + H / 2, now=AT)  # an unknown address's
        assert not await s.use_reset(b"r1", b"S", b"D", now=AT + H / 2)
        assert await s.use_reset(b"r1", b"S", b"D", now=AT)
        assert not await s.use_reset(b"r1", b"S2", b"D2", now=AT)
        assert not await s.use_reset(b"r0", b"S2", b"D2", now=AT)
        assert await s.customer_by_email("a@example.org") == (cid, b"S", b"D")
        assert await s.live_session(b"s1", now=AT) is None
        # The mail cap counts per key within the window, and a restart keeps it.
        for _ in range(3):
            assert await s.try_mail("confirm:x", since=AT - 24 * H, now=AT, limit=3)
        assert not await s.try_mail("confirm:x", since=AT - 24 * H, now=AT, limit=3)
        assert await s.try_mail("confirm:y", since=AT - 24 * H, now=AT, limit=3)
        later = AT + 24 * H + timedelta(seconds=1)
        assert await s.try_mail("confirm:x", since=later - 24 * H, now=later, limit=3)
        # Unsubscribing deletes the subscription, with every token of it.
        sub = await s.add_notification("M1", SubscriptionFields(
            kind="no_data", address="x@example.org", days=2), at=AT)
        await s.own_notification(sub.id, cid)
        await s.add_unsubscribe(b"u1", sub.id, now=AT)
        await s.add_unsubscribe(b"u2", sub.id, now=AT)
        assert await s.unsubscribe(b"u1")
        assert await s.notification("M1", sub.id) is None
        assert await s.notification_owners([sub.id]) == {}
        assert not await s.unsubscribe(b"u2")
    finally:
        await s.close()
