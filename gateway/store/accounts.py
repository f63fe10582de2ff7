"""Customer accounts in the store's SQLite file (``gateway.accounts``): functions on a
connection.

- ``billing_account``: the utility's accounts, one row per (account, meter, valid_from).
- ``customer``: logins (e-mail, scrypt salt and digest); ``customer_session``: the
  SHA-256 of each live session token; ``customer_account``: which accounts a login linked.
  The confirmation, reset and unsubscribe tokens are in ``gateway.store.tokens``.
- ``link_attempt``: linking tries, kept here so a restart does not reset the limit.
- ``notification_owner``: the login that created a notification (none: the operator).

Days are proleptic ordinals, instants UTC milliseconds, like the rest of the store.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime

from gateway.accounts import BillingAccount, Window, ms
from gateway.store.tx import transaction

__all__ = ["ACCOUNTS_SCHEMA", "SESSION_COLUMNS"]

#: Schema 6 gave sessions an id (to list and revoke them), a start and a last use.
SESSION_COLUMNS = """ (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash BLOB NOT NULL UNIQUE,
    customer_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_used_at INTEGER
)"""

ACCOUNTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS billing_account (
    account_number TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_to INTEGER,
    last_payment_cents INTEGER NOT NULL,
    PRIMARY KEY (account_number, meter_id, valid_from)
);
CREATE INDEX IF NOT EXISTS billing_account_meter ON billing_account (meter_id);
CREATE TABLE IF NOT EXISTS customer (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    salt BLOB NOT NULL,
    digest BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
""" + "CREATE TABLE IF NOT EXISTS customer_session" + SESSION_COLUMNS + """;
CREATE TABLE IF NOT EXISTS customer_account (
    customer_id INTEGER NOT NULL,
    account_number TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (customer_id, account_number)
);
CREATE TABLE IF NOT EXISTS link_attempt (
    key TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS link_attempt_key ON link_attempt (key, at);
CREATE TABLE IF NOT EXISTS notification_owner (
    notification_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL
);
"""


def put_accounts(conn: sqlite3.Connection, accounts: list[BillingAccount]) -> int:
    """Insert or replace the utility's accounts (by account, meter and valid_from)."""
    with transaction(conn):
        for a in accounts:
            conn.execute(
                "INSERT OR REPLACE INTO billing_account VALUES (?, ?, ?, ?, ?)",
                (a.account_number, a.meter_id, a.valid_from.toordinal(),
                 None if a.valid_to is None else a.valid_to.toordinal(),
                 a.last_payment_cents))
    return len(accounts)


def add_customer(conn: sqlite3.Connection, email: str, salt: bytes, digest: bytes,
                 at: datetime) -> int | None:
    """The new login's id; ``None`` when the e-mail is taken."""
    with transaction(conn):
        cur = conn.execute("INSERT OR IGNORE INTO customer (email, salt, digest, created_at) "
                           "VALUES (?, ?, ?, ?)", (email, salt, digest, ms(at)))
        if cur.rowcount != 1:
            return None
        assert cur.lastrowid is not None
        return cur.lastrowid


def customer_by_email(conn: sqlite3.Connection, email: str) -> tuple[int, bytes, bytes] | None:
    row = conn.execute("SELECT id, salt, digest FROM customer WHERE email = ?",
                       (email,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def add_session(conn: sqlite3.Connection, token_hash: bytes, customer_id: int,
                expires_at: datetime, now: datetime) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM customer_session WHERE expires_at <= ?", (ms(now),))
        conn.execute("INSERT INTO customer_session (token_hash, customer_id, created_at, "
                     "expires_at) VALUES (?, ?, ?, ?)",
                     (token_hash, customer_id, ms(now), ms(expires_at)))


def session(conn: sqlite3.Connection, token_hash: bytes, now: datetime) -> int | None:
    row = conn.execute("SELECT customer_id FROM customer_session WHERE token_hash = ? "
                       "AND expires_at > ?", (token_hash, ms(now))).fetchone()
    return None if row is None else int(row[0])


def end_session(conn: sqlite3.Connection, token_hash: bytes) -> bool:
    with transaction(conn):
        return conn.execute("DELETE FROM customer_session WHERE token_hash = ?",
                            (token_hash,)).rowcount == 1


def try_link(conn: sqlite3.Connection, keys: list[str], since: datetime, now: datetime,
             limit: int) -> bool:
    """Count one linking try under each key; ``False`` (nothing counted) when any key
    already has ``limit`` tries since ``since``."""
    with transaction(conn):
        conn.execute("DELETE FROM link_attempt WHERE at < ?", (ms(since),))
        for key in keys:
            n = conn.execute("SELECT count(*) FROM link_attempt WHERE key = ? AND at >= ?",
                             (key, ms(since))).fetchone()[0]
            if n >= limit:
                return False
        conn.executemany("INSERT INTO link_attempt VALUES (?, ?)",
                         [(key, ms(now)) for key in keys])
    return True


def link(conn: sqlite3.Connection, customer_id: int, account_number: str, cents: int,
         at: datetime) -> bool:
    """Link the account when it exists with that last payment; ``False`` otherwise."""
    with transaction(conn):
        found = conn.execute(
            "SELECT 1 FROM billing_account WHERE account_number = ? AND last_payment_cents = ?",
            (account_number, cents)).fetchone()
        if found is None:
            return False
        conn.execute("INSERT OR IGNORE INTO customer_account VALUES (?, ?, ?)",
                     (customer_id, account_number, ms(at)))
    return True


def linked(conn: sqlite3.Connection, customer_id: int) -> list[BillingAccount]:
    """The login's accounts on each meter (payments are not repeated back: 0)."""
    rows = conn.execute(
        "SELECT b.account_number, b.meter_id, b.valid_from, b.valid_to FROM customer_account c "
        "JOIN billing_account b ON b.account_number = c.account_number "
        "WHERE c.customer_id = ? ORDER BY b.account_number, b.meter_id, b.valid_from",
        (customer_id,)).fetchall()
    return [BillingAccount(n, m, date.fromordinal(f),
                           None if t is None else date.fromordinal(t), 0)
            for n, m, f, t in rows]


def windows(conn: sqlite3.Connection, customer_id: int, meter_id: str) -> list[Window]:
    """The days of ``meter_id`` the login's linked accounts held."""
    rows = conn.execute(
        "SELECT b.valid_from, b.valid_to FROM customer_account c "
        "JOIN billing_account b ON b.account_number = c.account_number "
        "WHERE c.customer_id = ? AND b.meter_id = ?", (customer_id, meter_id)).fetchall()
    return [Window(date.fromordinal(f), None if t is None else date.fromordinal(t))
            for f, t in rows]


def own_notification(conn: sqlite3.Connection, notification_id: int, customer_id: int) -> None:
    with transaction(conn):
        conn.execute("INSERT OR REPLACE INTO notification_owner VALUES (?, ?)",
                     (notification_id, customer_id))


def notification_owners(conn: sqlite3.Connection, ids: list[int]) -> dict[int, int]:
    """Owner login by notification id, for those of ``ids`` a login created."""
    out: dict[int, int] = {}
    for nid in ids:
        row = conn.execute("SELECT customer_id FROM notification_owner "
                           "WHERE notification_id = ?", (nid,)).fetchone()
        if row is not None:
            out[nid] = int(row[0])
    return out
