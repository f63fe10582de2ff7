"""One write transaction on a store connection (SQLite, autocommit mode): BEGIN
IMMEDIATE takes the write lock up front, so a busy store waits at the start instead of
failing half-way; any exception rolls the whole transaction back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["transaction"]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
