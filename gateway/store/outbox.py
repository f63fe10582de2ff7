"""The outbox: intervals waiting to be delivered to each sink (InfluxDB, an uplink).

It lives in the store's SQLite file, and an interval is queued in the same transaction
that writes it (or edits it), so what is stored is always either delivered or still
queued, whatever crashes when. A queue entry names the interval, not its value: the
sink gets the interval as stored when it is sent, so a value replaced twice before
delivery is sent as it stands (the sinks' writes are idempotent on meter, channel
and start, so a second delivery of the same interval changes nothing there either).

Each sink has its own position (``delivered``: the last entry it has acknowledged as
durably stored); an entry leaves the queue once every sink is past it. A sink's
refusal of one interval (a poison record) is quarantined with the sink's reason in the
same transaction that moves its position past it: the queue never blocks on it.

Sinks are declared by the config (:func:`sync_sinks`); while any is declared, every
process writing to the store queues what it writes (the gateway, ``import``,
``edit``, self-reads). A sink added later starts from the entries queued after it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from gateway.model import IntervalReading, Quality, Unit
from gateway.store.tx import transaction

__all__ = ["BATCH_SQL", "OUTBOX_SCHEMA", "QUEUE_JSON", "OutboxEntry", "SinkStatus", "acknowledge",
           "failed", "next_batch", "queue_one", "sink_names", "status", "sync_sinks"]

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    series INTEGER NOT NULL,
    start INTEGER NOT NULL,
    queued_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sink (
    name TEXT PRIMARY KEY,
    delivered INTEGER NOT NULL,
    delivered_total INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0,
    last_ok_at INTEGER,
    rate REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
"""

#: Queues the rows of one write (the same JSON array the insert takes: series, start...).
QUEUE_JSON = ("INSERT INTO outbox (series, start, queued_at) SELECT json_extract(value, '$[0]'), "
              "json_extract(value, '$[1]'), ? FROM json_each(?)")

#: A sink's next entries after a position, each joined with the interval as stored now.
BATCH_SQL = ("SELECT o.seq, o.queued_at, s.meter_id, s.channel, s.unit, s.interval_s, "
             "o.start, i.value, i.quality, i.flags, i.raw FROM outbox AS o "
             "JOIN series AS s ON s.id = o.series "
             "JOIN interval AS i ON i.series = o.series AND i.start = o.start "
             "WHERE o.seq > ? ORDER BY o.seq LIMIT ?")

_UNITS = {u.value: u for u in Unit}
_QUALITIES = {int(q): q for q in Quality}

#: How quickly the delivery rate follows a change (an exponential moving average per
#: acknowledged batch).
_RATE_WEIGHT = 0.3


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    seq: int
    interval: IntervalReading
    queued_at: datetime


class SinkStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What one sink still has to take, and how it has been taking it."""

    sink: str
    depth: int
    oldest_queued_at: datetime | None
    delivered_total: int
    quarantined: int
    last_delivery_at: datetime | None
    #: Intervals per second over the recent batches (0 when idle).
    rate_per_s: float
    #: Why the last delivery failed, while it keeps failing (None once one succeeds).
    last_error: str | None = None


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def sink_names(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM sink ORDER BY name")]


def sync_sinks(conn: sqlite3.Connection, names: Sequence[str]) -> dict[str, int]:
    """Make the declared sinks exactly ``names``. A new one starts after what is queued
    now; a sink no longer declared is dropped with its position. Returns, for each
    dropped sink, how many queued entries it had not taken."""
    with transaction(conn):
        last = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
        dropped: dict[str, int] = {}
        for name, delivered in conn.execute("SELECT name, delivered FROM sink").fetchall():
            if name not in names:
                dropped[name] = conn.execute("SELECT count(*) FROM outbox WHERE seq > ?",
                                             (delivered,)).fetchone()[0]
                conn.execute("DELETE FROM sink WHERE name = ?", (name,))
        for name in names:
            conn.execute("INSERT OR IGNORE INTO sink (name, delivered) VALUES (?, ?)",
                         (name, last))
        _trim(conn)
    return dropped


def queue_one(conn: sqlite3.Connection, series: int, start: int, now_ms: int) -> None:
    """Queue one interval (inside the caller's transaction)."""
    conn.execute("INSERT INTO outbox (series, start, queued_at) VALUES (?, ?, ?)",
                 (series, start, now_ms))


def next_batch(conn: sqlite3.Connection, sink: str, limit: int, *,
               after: int | None = None) -> list[OutboxEntry]:
    """The sink's next entries, in queue order, each with the interval as stored now:
    those after its position, or after ``after`` (a batch read ahead while the one
    before it is still being delivered)."""
    if after is None:
        row = conn.execute("SELECT delivered FROM sink WHERE name = ?", (sink,)).fetchone()
        if row is None:
            return []
        after = row[0]
    # The hot path of a drain (every queued interval passes here): the instants, units
    # and qualities repeat across a batch (one write queues many series at the same
    # starts, with one queued_at), so each distinct one is built once.
    starts: dict[int, datetime] = {}
    queued_at: dict[int, datetime] = {}
    out: list[OutboxEntry] = []
    append = out.append
    for seq, queued, meter, channel, unit, length, start, value, quality, flags, raw in \
            conn.execute(BATCH_SQL, (after, limit)):
        at = starts.get(start)
        if at is None:
            at = starts[start] = datetime.fromtimestamp(start, UTC)
        when = queued_at.get(queued)
        if when is None:
            when = queued_at[queued] = _at(queued) or at
        kind = _QUALITIES.get(quality)
        interval = IntervalReading(
            meter_id=meter, channel=channel, start=at, length_s=length, value=value,
            unit=_UNITS.get(unit) or Unit(unit), quality=Quality(quality) if kind is None
            else kind, flags=flags, raw=raw)
        append(OutboxEntry(seq=seq, interval=interval, queued_at=when))
    return out


def acknowledge(conn: sqlite3.Connection, sink: str, upto: int, delivered: int,
                rejected: Sequence[tuple[int, str, str, str, str, str]], now_ms: int,
                elapsed_s: float) -> None:
    """The sink has durably taken every entry up to ``upto`` but ``rejected`` (quarantine
    rows: at, source, meter_id, channel, payload, reason): one transaction moves its
    position, quarantines the refused, and trims what every sink has taken."""
    with transaction(conn):
        rate = delivered / elapsed_s if elapsed_s > 0 else 0.0
        conn.execute(
            "UPDATE sink SET delivered = max(delivered, ?), delivered_total = delivered_total "
            "+ ?, quarantined = quarantined + ?, last_ok_at = ?, rate = rate * ? + ? * ?, "
            "last_error = NULL WHERE name = ?",
            (upto, delivered, len(rejected), now_ms, 1 - _RATE_WEIGHT, _RATE_WEIGHT, rate, sink))
        if rejected:
            conn.executemany("INSERT INTO quarantine (at, source, meter_id, channel, payload, "
                             "reason) VALUES (?, ?, ?, ?, ?, ?)", rejected)
        _trim(conn)


def failed(conn: sqlite3.Connection, sink: str, error: str) -> None:
    conn.execute("UPDATE sink SET last_error = ? WHERE name = ?", (error[:500], sink))


def _trim(conn: sqlite3.Connection) -> None:
    """Drop the entries every sink has taken (all of them when no sink is declared)."""
    conn.execute("DELETE FROM outbox WHERE seq <= (SELECT coalesce(min(delivered), "
                 "(SELECT coalesce(max(seq), 0) FROM outbox)) FROM sink)")


def status(conn: sqlite3.Connection) -> list[SinkStatus]:
    out: list[SinkStatus] = []
    # Entries are only ever removed from the head, so the queue has no holes: its depth
    # for a sink is the last sequence number handed out minus the sink's position.
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    last = row[0] if row is not None else 0
    for name, delivered, total, quarantined, last_ok, rate, error in conn.execute(
            "SELECT name, delivered, delivered_total, quarantined, last_ok_at, rate, last_error "
            "FROM sink ORDER BY name").fetchall():
        depth = max(last - delivered, 0)
        first = conn.execute("SELECT queued_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1",
                             (delivered,)).fetchone()
        oldest = first[0] if first is not None else None
        out.append(SinkStatus(sink=name, depth=depth, oldest_queued_at=_at(oldest),
                              delivered_total=total, quarantined=quarantined,
                              last_delivery_at=_at(last_ok), rate_per_s=round(rate, 1),
                              last_error=error))
    return out
