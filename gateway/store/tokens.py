"""Schema 6 of the customer tables (``gateway.store.accounts``): sessions one can list and
revoke, address confirmation (double opt-in), password resets, unsubscribe tokens, and
the count of mails sent per address. Functions on a connection.

- ``customer_address``: the addresses a login confirmed; a login's notification to any
  other address is pending and is sent nothing but the confirmation mail.
- ``address_token``, ``password_reset``, ``unsubscribe_token``: only the SHA-256 of each
  token (``gateway.accounts.token_hash``), like sessions. Confirmation and reset tokens
  are single-use and expire; an unsubscribe token lives as long as its subscription.
- ``mail_attempt``: mails asked for per key (an address), so a restart does not reset
  the caps.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from gateway.accounts import LiveSession, ms
from gateway.store.accounts import SESSION_COLUMNS
from gateway.store.tx import transaction

__all__ = ["TOKENS_SCHEMA", "upgrade_sessions"]

TOKENS_SCHEMA = """
CREATE INDEX IF NOT EXISTS customer_session_customer ON customer_session (customer_id);
CREATE TABLE IF NOT EXISTS customer_address (
    customer_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    confirmed_at INTEGER NOT NULL,
    PRIMARY KEY (customer_id, address)
);
CREATE TABLE IF NOT EXISTS address_token (
    token_hash BLOB PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS password_reset (
    token_hash BLOB PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS unsubscribe_token (
    token_hash BLOB PRIMARY KEY,
    notification_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS unsubscribe_token_notification
    ON unsubscribe_token (notification_id);
CREATE TABLE IF NOT EXISTS mail_attempt (
    key TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mail_attempt_key ON mail_attempt (key, at);
"""

#: Mail attempts older than this are forgotten (the longest cap window is a day).
_ATTEMPTS_KEPT = timedelta(days=2)
#: Sessions of schema 5 had no start: they are taken to have begun one session-life ago.
_V5_SESSION_MS = 12 * 3600 * 1000


def upgrade_sessions(conn: sqlite3.Connection) -> None:
    """Schema 5 -> 6: ``customer_session`` rebuilt with an id, a start and a last use;
    live sessions stay signed in. Nothing to do on a new or an upgraded store."""
    cols = [r[1] for r in conn.execute("PRAGMA table_info(customer_session)")]
    if not cols or "id" in cols:
        return
    with transaction(conn):
        conn.execute("ALTER TABLE customer_session RENAME TO customer_session_v5")
        conn.execute("CREATE TABLE customer_session" + SESSION_COLUMNS)
        conn.execute("INSERT INTO customer_session (token_hash, customer_id, created_at, "
                     "expires_at) SELECT token_hash, customer_id, expires_at - ?, expires_at "
                     "FROM customer_session_v5 ORDER BY expires_at", (_V5_SESSION_MS,))
        conn.execute("DROP TABLE customer_session_v5")


def _at(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def _session(row: tuple[int, int, int, int, int | None]) -> LiveSession:
    sid, cid, created, expires, used = row
    created_at, expires_at = _at(created), _at(expires)
    assert created_at is not None and expires_at is not None
    return LiveSession(sid, cid, created_at, expires_at, _at(used))


_SESSION = "SELECT id, customer_id, created_at, expires_at, last_used_at FROM customer_session"


def live_session(conn: sqlite3.Connection, token_hash: bytes, now: datetime
                 ) -> LiveSession | None:
    row = conn.execute(f"{_SESSION} WHERE token_hash = ? AND expires_at > ?",
                       (token_hash, ms(now))).fetchone()
    return None if row is None else _session(row)


def touch_session(conn: sqlite3.Connection, session_id: int, now: datetime) -> None:
    with transaction(conn):
        conn.execute("UPDATE customer_session SET last_used_at = ? WHERE id = ?",
                     (ms(now), session_id))


def sessions_of(conn: sqlite3.Connection, customer_id: int, now: datetime
                ) -> list[LiveSession]:
    rows = conn.execute(f"{_SESSION} WHERE customer_id = ? AND expires_at > ? ORDER BY id",
                        (customer_id, ms(now))).fetchall()
    return [_session(r) for r in rows]


def end_session_of(conn: sqlite3.Connection, customer_id: int, session_id: int) -> bool:
    """End one of the login's sessions; ``False`` when it has none with that id."""
    with transaction(conn):
        return conn.execute("DELETE FROM customer_session WHERE id = ? AND customer_id = ?",
                            (session_id, customer_id)).rowcount == 1


def set_password(conn: sqlite3.Connection, customer_id: int, salt: bytes, digest: bytes,
                 keep_session: int | None) -> None:
    """A new password, and every session of the login ended but ``keep_session``."""
    with transaction(conn):
        _set_password(conn, customer_id, salt, digest, keep_session)


def _set_password(conn: sqlite3.Connection, customer_id: int, salt: bytes, digest: bytes,
                  keep_session: int | None) -> bool:
    found = conn.execute("UPDATE customer SET salt = ?, digest = ? WHERE id = ?",
                         (salt, digest, customer_id)).rowcount == 1
    conn.execute("DELETE FROM customer_session WHERE customer_id = ? AND id IS NOT ?",
                 (customer_id, keep_session))
    return found


def try_mail(conn: sqlite3.Connection, key: str, since: datetime, now: datetime,
             limit: int) -> bool:
    """Count one mail under ``key``; ``False`` (nothing counted) when it already has
    ``limit`` since ``since``."""
    with transaction(conn):
        conn.execute("DELETE FROM mail_attempt WHERE at < ?", (ms(now - _ATTEMPTS_KEPT),))
        n = conn.execute("SELECT count(*) FROM mail_attempt WHERE key = ? AND at >= ?",
                         (key, ms(since))).fetchone()[0]
        if n >= limit:
            return False
        conn.execute("INSERT INTO mail_attempt VALUES (?, ?)", (key, ms(now)))
    return True


def add_address_token(conn: sqlite3.Connection, token_hash: bytes, customer_id: int,
                      address: str, expires_at: datetime, now: datetime) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM address_token WHERE expires_at <= ?", (ms(now),))
        conn.execute("INSERT INTO address_token VALUES (?, ?, ?, ?)",
                     (token_hash, customer_id, address, ms(expires_at)))


def confirm_address(conn: sqlite3.Connection, token_hash: bytes, now: datetime
                    ) -> str | None:
    """Use a confirmation token once: its address confirmed for its login (and every
    other token of that login and address spent); ``None`` when unknown, used or old."""
    with transaction(conn):
        row = conn.execute("SELECT customer_id, address FROM address_token "
                           "WHERE token_hash = ? AND expires_at > ?",
                           (token_hash, ms(now))).fetchone()
        if row is None:
            return None
        cid, address = int(row[0]), str(row[1])
        conn.execute("DELETE FROM address_token WHERE customer_id = ? AND address = ?",
                     (cid, address))
        conn.execute("INSERT OR IGNORE INTO customer_address VALUES (?, ?, ?)",
                     (cid, address, ms(now)))
    return address


def confirmed(conn: sqlite3.Connection, customer_id: int, addresses: list[str]) -> set[str]:
    """Those of ``addresses`` (as stored: case-folded) the login confirmed."""
    out: set[str] = set()
    for address in set(addresses):
        if conn.execute("SELECT 1 FROM customer_address WHERE customer_id = ? AND address = ?",
                        (customer_id, address)).fetchone() is not None:
            out.add(address)
    return out


def add_reset(conn: sqlite3.Connection, token_hash: bytes, customer_id: int,
              expires_at: datetime, now: datetime) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM password_reset WHERE expires_at <= ?", (ms(now),))
        conn.execute("INSERT INTO password_reset VALUES (?, ?, ?)",
                     (token_hash, customer_id, ms(expires_at)))


def use_reset(conn: sqlite3.Connection, token_hash: bytes, salt: bytes, digest: bytes,
              now: datetime) -> bool:
    """Use a reset token once: the new password set, every reset token of the login spent
    and every session ended, in one transaction. ``False`` when unknown, used or old."""
    with transaction(conn):
        row = conn.execute("SELECT customer_id FROM password_reset WHERE token_hash = ? "
                           "AND expires_at > ?", (token_hash, ms(now))).fetchone()
        if row is None:
            return False
        cid = int(row[0])
        conn.execute("DELETE FROM password_reset WHERE customer_id = ?", (cid,))
        # False for the token of an unknown address (customer 0: the same work was done).
        return _set_password(conn, cid, salt, digest, None)


def add_unsubscribe(conn: sqlite3.Connection, token_hash: bytes, notification_id: int,
                    now: datetime) -> None:
    with transaction(conn):
        conn.execute("INSERT INTO unsubscribe_token VALUES (?, ?, ?)",
                     (token_hash, notification_id, ms(now)))


def unsubscribe(conn: sqlite3.Connection, token_hash: bytes) -> bool:
    """Delete the subscription the token was sent for (with its sent notices, owner and
    tokens); ``False`` when no subscription has that token (any more)."""
    with transaction(conn):
        row = conn.execute("SELECT notification_id FROM unsubscribe_token "
                           "WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return False
        nid = int(row[0])
        for table, column in (("notification", "id"), ("notification_sent", "notification_id"),
                              ("notification_owner", "notification_id"),
                              ("unsubscribe_token", "notification_id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (nid,))
    return True
