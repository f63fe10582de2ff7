"""The embedded time-series store: SQLite in WAL mode, no server needed.

Layout, chosen for size and for idempotent writes:

- ``series``: one row per (meter, channel), with its unit, grid length and timezone.
- ``interval``: ``(series, start) -> value, quality, flags, raw`` in a WITHOUT ROWID
  table, so the primary key *is* the b-tree and a stored interval costs about
  20 bytes (small integers; SQLite stores 0 and 1 in no bytes at all).
- ``daily``: the rollup per local day of the series' timezone, recomputed from the
  intervals of every day a write touches, in the same transaction (so it is always
  exactly the sum of what is stored, replays and corrections included).
- ``interval_history``: the previous version of any interval a write replaced.

``start`` is whole seconds since the Unix epoch (UTC); a day is its proleptic ordinal.

sqlite3 blocks, so each connection lives on its own single thread: one writer, one
reader (WAL lets the portal read while a batch is being written).
"""

from __future__ import annotations

import asyncio
import copy
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from gateway.accounts import BillingAccount, LiveSession, Window
from gateway.errors import ConfigError, DataError, SinkError
from gateway.markers import Marker, MarkerFields, check_fields
from gateway.model import DailyUsage, Flag, IntervalReading, MeterStatus, Quality, Unit
from gateway.notify.rules import Subscription, SubscriptionFields
from gateway.notify.rules import check_fields as check_subscription
from gateway.store import (
    Cursors,
    EditRecord,
    QuarantineItem,
    SeriesEventRecord,
    SeriesInfo,
    WriteResult,
    outbox,
)
from gateway.store import accounts as account_sql
from gateway.store import markers as marker_sql
from gateway.store import notify as notify_sql
from gateway.store import tokens as token_sql

#: 2: the outbox and its sinks (a gateway of schema 1 would write without queueing).
#: 3: usage markers (gateway.store.markers); additive.
#: 4: notification subscriptions (gateway.store.notify); additive.
#: 5: customer accounts, logins and sessions (gateway.store.accounts); additive.
#: 6: sessions with an id, start and last use (the table rebuilt, live sessions kept);
#:    address confirmations, password resets, unsubscribe tokens (gateway.store.tokens).
SCHEMA_VERSION = 6
#: Page cache per connection, in KiB (SQLite takes a negative number as KiB).
CACHE_KIB = -65536

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    meter_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    unit TEXT NOT NULL,
    interval_s INTEGER NOT NULL,
    timezone TEXT NOT NULL,
    UNIQUE (meter_id, channel)
);
CREATE TABLE IF NOT EXISTS interval (
    series INTEGER NOT NULL,
    start INTEGER NOT NULL,
    value INTEGER NOT NULL,
    quality INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    raw INTEGER,
    PRIMARY KEY (series, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS interval_history (
    series INTEGER NOT NULL,
    start INTEGER NOT NULL,
    value INTEGER NOT NULL,
    quality INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    raw INTEGER,
    replaced_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS interval_history_key ON interval_history (series, start);
CREATE TABLE IF NOT EXISTS daily (
    series INTEGER NOT NULL,
    day INTEGER NOT NULL,
    value INTEGER NOT NULL,
    expected INTEGER NOT NULL,
    present INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    questionable INTEGER NOT NULL,
    edited INTEGER NOT NULL,
    derived INTEGER NOT NULL,
    PRIMARY KEY (series, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursor (
    series INTEGER PRIMARY KEY,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    source TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS event_meter ON event (meter_id, id);
CREATE TABLE IF NOT EXISTS edit (
    id INTEGER PRIMARY KEY,
    series INTEGER NOT NULL,
    start INTEGER NOT NULL,
    old_value INTEGER,
    new_value INTEGER NOT NULL,
    operator TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS edit_key ON edit (series, start);
CREATE TABLE IF NOT EXISTS meter (
    meter_id TEXT PRIMARY KEY,
    timezone TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'unknown',
    last_read_at INTEGER,
    last_error TEXT,
    protocol TEXT NOT NULL DEFAULT '',
    profile TEXT NOT NULL DEFAULT ''
);
"""

#: Recomputes the rollup of every touched day in one statement; the days come as a JSON
#: array of [series, day, first second, end second, expected intervals].
_ROLLUP_JSON = f"""
INSERT OR REPLACE INTO daily
SELECT d.s, d.day, coalesce(sum(i.value), 0), d.expected, count(i.start),
       coalesce(sum(i.quality IN ({Quality.ESTIMATED_LINEAR},
                                  {Quality.ESTIMATED_REFERENCE_DAY})), 0),
       coalesce(sum(i.quality = {Quality.QUESTIONABLE}), 0),
       coalesce(sum(i.quality = {Quality.EDITED}), 0),
       coalesce(sum(i.quality = {Quality.DERIVED}), 0)
FROM (SELECT json_extract(value, '$[0]') AS s, json_extract(value, '$[1]') AS day,
             json_extract(value, '$[2]') AS lo, json_extract(value, '$[3]') AS hi,
             json_extract(value, '$[4]') AS expected FROM json_each(?)) AS d
LEFT JOIN interval AS i ON i.series = d.s AND i.start >= d.lo AND i.start < d.hi
GROUP BY d.s, d.day
"""
#: SQLite's default limit on parameters in one statement (since 3.32).
_MAX_PARAMS = 32_766

#: All rows of a series in one statement, passed as one JSON array: SQLite then inserts
#: them in a single step with the GIL released. executemany would release and retake
#: the GIL around every row, and each retake waits behind the ingest thread's Python
#: work (a convoy that measured over 10x slower while the pipeline was busy).
_INSERT_JSON = (
    "INSERT OR IGNORE INTO interval SELECT json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), "
    "json_extract(value, '$[4]'), json_extract(value, '$[5]') FROM json_each(?)"
)
_json = msgspec.json.Encoder().encode

T = TypeVar("T")

_Row = tuple[int, int, int, int, int, int | None]


class _Series:
    """What the writer needs to know of a series, cached in memory."""

    __slots__ = ("_day", "_day_hi", "_day_lo", "id", "info", "length", "tz")

    def __init__(self, sid: int, info: SeriesInfo) -> None:
        self.id = sid
        self.info = info
        self.length = info.interval_s
        self.tz = ZoneInfo(info.timezone)
        self._day_lo = 0
        self._day_hi = -1
        self._day = 0

    def day_of(self, start: int) -> tuple[int, int, int]:
        """(day ordinal, first second, end second) of the local day holding ``start``.

        Consecutive intervals nearly always fall in the day of the previous one, so the
        last answer is kept; zoneinfo is asked only when a day boundary is crossed.
        """
        if not self._day_lo <= start < self._day_hi:
            local = datetime.fromtimestamp(start, self.tz).date()
            self._day_lo, self._day_hi = day_bounds(local, self.tz)
            self._day = local.toordinal()
        return self._day, self._day_lo, self._day_hi


def day_bounds(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """UTC epoch seconds of local midnight starting ``day`` and the next one.

    23 hours apart on a spring-forward day, 25 on a fall-back day.
    """
    lo = datetime(day.year, day.month, day.day, tzinfo=tz)
    nxt = day + timedelta(days=1)
    hi = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return int(lo.timestamp()), int(hi.timestamp())


def _validate_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown timezone {name!r}", key="timezone",
            fix="use an IANA name such as 'America/Chicago' or 'Europe/Kyiv'",
        ) from exc


class SqliteStore:
    """``Store`` on one SQLite file. ``synchronous`` is SQLite's setting: FULL (the
    default) makes every committed batch survive power loss, which billing data wants."""

    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigError(
                f"synchronous={synchronous!r} is not a SQLite setting", key="store.synchronous",
                fix="use FULL (default, survives power loss), NORMAL or EXTRA",
            )
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._writer = self._reader = _closed_pool()
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._by_key: dict[tuple[str, str], _Series] = {}
        # Set on a view made by guarded(): the write's compare-and-swap and extra events.
        self._expect: list[tuple[int, bytes | None]] = []
        self._also: tuple[SeriesEventRecord, ...] = ()
        #: Queue what is written for the sinks (see gateway.store.outbox): while any sink
        #: is declared in the file.
        self._queue = False

    # -- plumbing -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        # 64 MiB of page cache: writes of many series land all over the b-tree, and the
        # default 2 MiB cache halves the insert rate once the store outgrows it.
        conn.execute(f"PRAGMA cache_size={CACHE_KIB}")
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._wconn, self._writer, fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._rconn, self._reader, fn)

    async def _run(self, conn: sqlite3.Connection | None, pool: ThreadPoolExecutor,
                   fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run on the connection's thread; SQLite's errors become SinkError here, once."""
        if conn is None:
            raise SinkError("store is not open", retryable=False)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, conn)
        except sqlite3.OperationalError as exc:
            # Locked, busy or a full disk: the transaction was rolled back whole.
            raise SinkError(f"store {self.path}: {exc}", retryable=True) from exc
        except sqlite3.Error as exc:
            raise SinkError(f"store {self.path}: {exc}", retryable=False) from exc

    async def open(self) -> None:
        if self._wconn is not None:
            return
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="store-reader")
        loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._wconn = await loop.run_in_executor(self._writer, self._connect)
            await self._write(self._migrate)
            self._rconn = await loop.run_in_executor(self._reader, self._connect)
        except sqlite3.Error as exc:
            raise SinkError(f"cannot open store {self.path}: {exc}", retryable=False) from exc
        for sid, info in await self._read(_all_series):
            self._by_key[(info.meter_id, info.channel)] = _Series(sid, info)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone()
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() \
            if row is not None else None
        if version is not None and int(version[0]) > SCHEMA_VERSION:
            raise SinkError(
                f"store {self.path} has schema {version[0]}, newer than this gateway's "
                f"{SCHEMA_VERSION}: upgrade the gateway", retryable=False,
            )
        token_sql.upgrade_sessions(conn)  # 5 -> 6: the one table rebuilt
        # Otherwise new tables only: additive.
        conn.executescript(_SCHEMA + outbox.OUTBOX_SCHEMA + marker_sql.MARKER_SCHEMA
                           + notify_sql.NOTIFY_SCHEMA + account_sql.ACCOUNTS_SCHEMA
                           + token_sql.TOKENS_SCHEMA)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        self._queue = bool(outbox.sink_names(conn))

    async def close(self) -> None:
        for conn, pool in ((self._wconn, self._writer), (self._rconn, self._reader)):
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        self._wconn = self._rconn = None
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    # -- series and meters ----------------------------------------------------------

    async def register_series(self, series: SeriesInfo) -> None:
        _validate_timezone(series.timezone)
        if series.interval_s <= 0 or 86400 % series.interval_s:
            raise ConfigError(
                f"interval length {series.interval_s} s does not divide a day",
                key="interval_s", fix="use 300, 600, 900, 1800 or 3600",
            )
        known = self._by_key.get((series.meter_id, series.channel))
        if known is not None:
            if (known.info.interval_s, known.info.timezone, known.info.unit) != (
                series.interval_s, series.timezone, series.unit,
            ):
                raise ConfigError(
                    f"meter {series.meter_id} channel {series.channel} is stored with "
                    f"{known.info.interval_s} s intervals in {known.info.timezone} "
                    f"({known.info.unit}); the config now says {series.interval_s} s in "
                    f"{series.timezone} ({series.unit})",
                    key=f"meters.{series.meter_id}",
                    fix="keep the stored settings, or export the data and start a new store",
                )
            return
        sid = await self._write(lambda c: _insert_series(c, series))
        self._by_key[(series.meter_id, series.channel)] = _Series(sid, series)

    async def series(self, meter_id: str | None = None) -> list[SeriesInfo]:
        def q(conn: sqlite3.Connection) -> list[SeriesInfo]:
            sql = "SELECT meter_id, channel, unit, interval_s, timezone FROM series"
            args: tuple[str, ...] = ()
            if meter_id is not None:
                sql += " WHERE meter_id = ?"
                args = (meter_id,)
            return [
                SeriesInfo(meter_id=m, channel=c, unit=Unit(u), interval_s=i, timezone=t)
                for m, c, u, i, t in conn.execute(sql + " ORDER BY meter_id, channel", args)
            ]

        return await self._read(q)

    async def set_meter_status(self, status: MeterStatus) -> None:
        at = _ms(status.last_read_at) if status.last_read_at is not None else None

        def w(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO meter VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id) DO UPDATE "
                "SET timezone = excluded.timezone, status = excluded.status, "
                "last_read_at = coalesce(excluded.last_read_at, last_read_at), "
                "last_error = excluded.last_error, protocol = excluded.protocol, "
                "profile = excluded.profile",
                (status.meter_id, status.timezone, status.status, at, status.last_error,
                 status.protocol, status.profile),
            )

        await self._write(w)

    async def meters(self) -> list[MeterStatus]:
        return await self._read(lambda c: _meters(c, None))

    async def meter(self, meter_id: str) -> MeterStatus | None:
        found = await self._read(lambda c: _meters(c, meter_id))
        return found[0] if found else None

    # -- intervals ------------------------------------------------------------------

    def _known(self, meter_id: str, channel: str) -> _Series:
        s = self._by_key.get((meter_id, channel))
        if s is None:
            raise SinkError(
                f"meter {meter_id} channel {channel} was never registered", retryable=False
            )
        return s

    async def cursors(self) -> dict[tuple[str, str], bytes]:
        names = {s.id: key for key, s in self._by_key.items()}

        def q(conn: sqlite3.Connection) -> dict[tuple[str, str], bytes]:
            return {
                names[sid]: bytes(state)
                for sid, state in conn.execute("SELECT series, state FROM cursor")
                if sid in names
            }

        return await self._read(q)

    async def cursor(self, meter_id: str, channel: str) -> bytes | None:
        """One series' saved cursor, or None when none was saved yet."""
        sid = self._known(meter_id, channel).id

        def q(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT state FROM cursor WHERE series = ?", (sid,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._read(q)

    def guarded(self, expect: Mapping[tuple[str, str], bytes | None], *,
                events: Sequence[SeriesEventRecord] = ()) -> SqliteStore:
        """This store for a compare-and-swap write: ``write_intervals`` on the view commits
        only while each series' saved cursor is still ``expect[series]`` (None: none
        saved), and adds ``events`` to the write. If another process wrote one of those
        series meanwhile, the write raises a retryable ``SinkError`` and changes nothing.
        The view shares this store's connections: do not open or close it."""
        view = copy.copy(self)
        view._expect = [(self._known(m, c).id, state) for (m, c), state in expect.items()]
        view._also = tuple(events)
        return view

    async def quarantined(self, limit: int = 100) -> list[QuarantineItem]:
        def q(conn: sqlite3.Connection) -> list[QuarantineItem]:
            cur = conn.execute(
                "SELECT at, source, meter_id, channel, payload, reason FROM quarantine "
                "ORDER BY id DESC LIMIT ?", (limit,),
            )
            return [
                QuarantineItem(at=datetime.fromtimestamp(at / 1000, UTC), source=src,
                               meter_id=m, channel=c, payload=p, reason=r)
                for at, src, m, c, p, r in cur
            ]

        return await self._read(q)

    async def quarantine_count(self) -> int:
        return await self._read(
            lambda c: int(c.execute("SELECT count(*) FROM quarantine").fetchone()[0])
        )

    async def edit_interval(
        self, meter_id: str, channel: str, start: datetime, value: int, *,
        operator: str, reason: str, at: datetime,
    ) -> IntervalReading:
        s = self._known(meter_id, channel)
        start_s = int(start.timestamp())
        if start_s % s.length:
            raise DataError(f"{start.isoformat()} is not the start of a {s.length} s interval",
                            source=f"{meter_id}/{channel}")
        if value < 0:
            raise DataError(f"an interval's consumption cannot be negative ({value})",
                            source=f"{meter_id}/{channel}")
        if not operator.strip() or not reason.strip():
            raise DataError("an edit needs the operator's name and a reason",
                            source=f"{meter_id}/{channel}")
        day = _touched_days(s, [(s.id, start_s, 0, 0, 0, None)])
        queue = self._queue
        row = await self._write(
            lambda c: _edit(c, s.id, start_s, value, operator.strip(), reason.strip(),
                            _ms(at), day, queue)
        )
        v, q, f, r = row
        return IntervalReading(meter_id=meter_id, channel=channel, start=start.astimezone(UTC),
                               length_s=s.length, value=v, unit=s.info.unit, quality=Quality(q),
                               flags=f, raw=r)

    # -- the outbox (gateway.store.outbox) --------------------------------------------

    async def use_sinks(self, names: Sequence[str]) -> dict[str, int]:
        """Declare the sinks the config names; from now on every write is queued for
        them. Returns the entries each dropped sink had not taken."""
        dropped = await self._write(lambda c: outbox.sync_sinks(c, list(names)))
        self._queue = bool(names)
        return dropped

    async def outbox_batch(self, sink: str, limit: int, *, after: int | None = None
                           ) -> list[outbox.OutboxEntry]:
        """The sink's next entries after its position (or after ``after``)."""
        return await self._read(lambda c: outbox.next_batch(c, sink, limit, after=after))

    async def outbox_ack(self, sink: str, upto: int, delivered: int,
                         rejected: Sequence[QuarantineItem], elapsed_s: float) -> None:
        held = [(_ms(q.at), q.source, q.meter_id, q.channel, q.payload, q.reason)
                for q in rejected]
        now_ms = _ms(datetime.now(UTC))
        await self._write(lambda c: outbox.acknowledge(c, sink, upto, delivered, held, now_ms,
                                                       elapsed_s))

    async def outbox_failed(self, sink: str, error: str) -> None:
        """Keep why the sink's last delivery failed (shown by the status until one works)."""
        await self._write(lambda c: outbox.failed(c, sink, error))

    async def outbox_status(self) -> list[outbox.SinkStatus]:
        return await self._read(outbox.status)

    async def events(self, meter_id: str) -> list[SeriesEventRecord]:
        def q(conn: sqlite3.Connection) -> list[SeriesEventRecord]:
            return [
                SeriesEventRecord(at=datetime.fromtimestamp(at / 1000, UTC), kind=k,
                                  meter_id=m, channel=c, payload=p, reason=r)
                for at, k, m, c, p, r in conn.execute(
                    "SELECT at, kind, meter_id, channel, payload, reason FROM event "
                    "WHERE meter_id = ? ORDER BY id", (meter_id,))
            ]

        return await self._read(q)

    async def edits(self, meter_id: str, channel: str) -> list[EditRecord]:
        s = self._by_key.get((meter_id, channel))
        if s is None:
            return []

        def q(conn: sqlite3.Connection) -> list[EditRecord]:
            return [
                EditRecord(meter_id=meter_id, channel=channel,
                           start=datetime.fromtimestamp(st, UTC), old_value=old,
                           new_value=new, operator=op, reason=why,
                           at=datetime.fromtimestamp(at / 1000, UTC))
                for st, old, new, op, why, at in conn.execute(
                    "SELECT start, old_value, new_value, operator, reason, at FROM edit "
                    "WHERE series = ? ORDER BY id", (s.id,))
            ]

        return await self._read(q)

    def _rows(self, batch: Sequence[IntervalReading]) -> dict[_Series, list[_Row]]:
        grouped: dict[_Series, list[_Row]] = {}
        by_key = self._by_key
        meter = channel = None
        s: _Series | None = None
        rows: list[_Row] = []
        sid = length = 0
        for iv in batch:
            # Batches usually hold each series' intervals together (the pipeline feeds
            # series by series): look the series up only when it changes.
            if iv.meter_id is not meter or iv.channel is not channel:
                meter, channel = iv.meter_id, iv.channel
                s = by_key.get((meter, channel)) or self._known(meter, channel)
                sid, length = s.id, s.length
                found = grouped.get(s)
                rows = grouped[s] = [] if found is None else found
            start = int(iv.start.timestamp())
            if start % length or iv.length_s != length:
                raise SinkError(
                    f"interval {iv.start.isoformat()} ({iv.length_s} s) of meter "
                    f"{iv.meter_id} is off the series' {length} s grid", retryable=False,
                )
            # quality is an IntEnum: an int to SQLite and to the JSON encoder alike.
            rows.append((sid, start, iv.value, iv.quality, iv.flags, iv.raw))
        return grouped

    async def write_intervals(
        self,
        batch: Sequence[IntervalReading],
        *,
        cursors: Cursors | None = None,
        quarantine: Sequence[QuarantineItem] = (),
        events: Sequence[SeriesEventRecord] = (),
    ) -> WriteResult:
        if self._also:
            events = [*events, *self._also]
        if not batch and not cursors and not quarantine and not events:
            return WriteResult()
        grouped = self._rows(batch)
        states = [(self._known(m, c).id, state) for (m, c), state in (cursors or {}).items()]
        held = [
            (_ms(q.at), q.source, q.meter_id, q.channel, q.payload, q.reason) for q in quarantine
        ]
        notes = [(_ms(e.at), e.kind, e.meter_id, e.channel, e.payload, e.reason) for e in events]
        expect = self._expect
        queue_ms = _ms(datetime.now(UTC)) if self._queue else None
        return await self._write(
            lambda c: _write(c, grouped, states, held, notes, expect, queue_ms))

    async def intervals(
        self, meter_id: str, channel: str, start: datetime, end: datetime
    ) -> list[IntervalReading]:
        s = self._by_key.get((meter_id, channel))
        if s is None:
            return []
        lo, hi = int(start.timestamp()), int(end.timestamp())
        info = s.info
        unit = info.unit

        def q(conn: sqlite3.Connection) -> list[IntervalReading]:
            cur = conn.execute(
                "SELECT start, value, quality, flags, raw FROM interval "
                "WHERE series = ? AND start >= ? AND start < ? ORDER BY start",
                (s.id, lo, hi),
            )
            return [
                IntervalReading(
                    meter_id=meter_id, channel=channel,
                    start=datetime.fromtimestamp(t, UTC), length_s=info.interval_s,
                    value=v, unit=unit, quality=Quality(qu), flags=f, raw=r,
                )
                for t, v, qu, f, r in cur
            ]

        return await self._read(q)

    async def daily(
        self, meter_id: str, channel: str, first: date, last: date
    ) -> list[DailyUsage]:
        s = self._by_key.get((meter_id, channel))
        if s is None:
            return []
        unit = s.info.unit

        def q(conn: sqlite3.Connection) -> list[DailyUsage]:
            cur = conn.execute(
                "SELECT day, value, expected, present, estimated, questionable, edited, "
                "derived FROM daily WHERE series = ? AND day >= ? AND day <= ? ORDER BY day",
                (s.id, first.toordinal(), last.toordinal()),
            )
            return [
                DailyUsage(
                    meter_id=meter_id, channel=channel, day=date.fromordinal(d), value=v,
                    unit=unit, expected=ex, present=p, estimated=es, questionable=qu,
                    edited=ed, derived=de,
                )
                for d, v, ex, p, es, qu, ed, de in cur
            ]

        return await self._read(q)

    async def daily_span(self, meter_id: str, channel: str) -> tuple[date, date] | None:
        s = self._by_key.get((meter_id, channel))
        if s is None:
            return None
        row = await self._read(lambda c: c.execute(
            "SELECT min(day), max(day) FROM daily WHERE series = ? AND present > 0",
            (s.id,)).fetchone())
        return None if row[0] is None else (date.fromordinal(row[0]), date.fromordinal(row[1]))

    # -- usage markers (gateway.store.markers) ------------------------------------------

    async def add_marker(self, meter_id: str, fields: MarkerFields, *, at: datetime) -> Marker:
        checked = check_fields(fields)
        return await self._write(lambda c: marker_sql.add(c, meter_id, checked, at))

    async def markers(self, meter_id: str, first: date | None = None,
                      last: date | None = None) -> list[Marker]:
        return await self._read(lambda c: marker_sql.in_range(c, meter_id, first, last))

    async def marker(self, meter_id: str, marker_id: int) -> Marker | None:
        return await self._read(lambda c: marker_sql.get(c, meter_id, marker_id))

    async def update_marker(self, meter_id: str, marker_id: int, fields: MarkerFields, *,
                            at: datetime) -> Marker | None:
        checked = check_fields(fields)
        return await self._write(
            lambda c: marker_sql.update(c, meter_id, marker_id, checked, at))

    async def delete_marker(self, meter_id: str, marker_id: int) -> bool:
        return await self._write(lambda c: marker_sql.delete(c, meter_id, marker_id))

    # -- notification subscriptions (gateway.store.notify) ------------------------------

    async def add_notification(self, meter_id: str, fields: SubscriptionFields, *,
                               at: datetime) -> Subscription:
        checked = check_subscription(fields)
        return await self._write(lambda c: notify_sql.add(c, meter_id, checked, at))

    async def notifications(self, meter_id: str | None = None) -> list[Subscription]:
        return await self._read(lambda c: notify_sql.all_of(c, meter_id))

    async def notification(self, meter_id: str, notification_id: int) -> Subscription | None:
        return await self._read(lambda c: notify_sql.get(c, meter_id, notification_id))

    async def delete_notification(self, meter_id: str, notification_id: int) -> bool:
        return await self._write(lambda c: notify_sql.delete(c, meter_id, notification_id))

    async def notification_sent(self, notification_id: int, key: str, address: str, *,
                                at: datetime) -> bool:
        return await self._write(
            lambda c: notify_sql.sent(c, notification_id, key, address, at))

    # -- customer accounts (gateway.store.accounts; the AccountStore protocol) ----------

    async def put_accounts(self, accounts: list[BillingAccount]) -> int:
        return await self._write(lambda c: account_sql.put_accounts(c, accounts))

    async def add_customer(self, email: str, salt: bytes, digest: bytes, *,
                           at: datetime) -> int | None:
        return await self._write(lambda c: account_sql.add_customer(c, email, salt, digest, at))

    async def customer_by_email(self, email: str) -> tuple[int, bytes, bytes] | None:
        return await self._read(lambda c: account_sql.customer_by_email(c, email))

    async def add_session(self, token_hash: bytes, customer_id: int, *, expires_at: datetime,
                          now: datetime) -> None:
        await self._write(
            lambda c: account_sql.add_session(c, token_hash, customer_id, expires_at, now))

    async def session(self, token_hash: bytes, *, now: datetime) -> int | None:
        return await self._read(lambda c: account_sql.session(c, token_hash, now))

    async def end_session(self, token_hash: bytes) -> bool:
        return await self._write(lambda c: account_sql.end_session(c, token_hash))

    async def try_link(self, keys: list[str], *, since: datetime, now: datetime,
                       limit: int) -> bool:
        return await self._write(lambda c: account_sql.try_link(c, keys, since, now, limit))

    async def link(self, customer_id: int, account_number: str, cents: int, *,
                   at: datetime) -> bool:
        return await self._write(
            lambda c: account_sql.link(c, customer_id, account_number, cents, at))

    async def linked(self, customer_id: int) -> list[BillingAccount]:
        return await self._read(lambda c: account_sql.linked(c, customer_id))

    async def windows(self, customer_id: int, meter_id: str) -> list[Window]:
        return await self._read(lambda c: account_sql.windows(c, customer_id, meter_id))

    async def own_notification(self, notification_id: int, customer_id: int) -> None:
        await self._write(lambda c: account_sql.own_notification(c, notification_id,
                                                                 customer_id))

    async def notification_owners(self, ids: list[int]) -> dict[int, int]:
        return await self._read(lambda c: account_sql.notification_owners(c, ids))

    # -- sessions, confirmations, resets, unsubscribing (gateway.store.tokens) -----------

    async def live_session(self, token_hash: bytes, *, now: datetime) -> LiveSession | None:
        return await self._read(lambda c: token_sql.live_session(c, token_hash, now))

    async def touch_session(self, session_id: int, *, now: datetime) -> None:
        await self._write(lambda c: token_sql.touch_session(c, session_id, now))

    async def sessions_of(self, customer_id: int, *, now: datetime) -> list[LiveSession]:
        return await self._read(lambda c: token_sql.sessions_of(c, customer_id, now))

    async def end_session_of(self, customer_id: int, session_id: int) -> bool:
        return await self._write(lambda c: token_sql.end_session_of(c, customer_id,
                                                                    session_id))

    async def password_of(self, customer_id: int) -> tuple[bytes, bytes] | None:
        row = await self._read(lambda c: c.execute(
            "SELECT salt, digest FROM customer WHERE id = ?", (customer_id,)).fetchone())
        return None if row is None else (row[0], row[1])

    async def set_password(self, customer_id: int, salt: bytes, digest: bytes, *,
                           keep_session: int | None) -> None:
        await self._write(lambda c: token_sql.set_password(c, customer_id, salt, digest,
                                                           keep_session))

    async def try_mail(self, key: str, *, since: datetime, now: datetime, limit: int) -> bool:
        return await self._write(lambda c: token_sql.try_mail(c, key, since, now, limit))

    async def add_address_token(self, token_hash: bytes, customer_id: int, address: str, *,
                                expires_at: datetime, now: datetime) -> None:
        await self._write(lambda c: token_sql.add_address_token(
            c, token_hash, customer_id, address, expires_at, now))

    async def confirm_address(self, token_hash: bytes, *, now: datetime) -> str | None:
        return await self._write(lambda c: token_sql.confirm_address(c, token_hash, now))

    async def confirmed(self, customer_id: int, addresses: list[str]) -> set[str]:
        return await self._read(lambda c: token_sql.confirmed(c, customer_id, addresses))

    async def add_reset(self, token_hash: bytes, customer_id: int, *, expires_at: datetime,
                        now: datetime) -> None:
        await self._write(lambda c: token_sql.add_reset(c, token_hash, customer_id,
                                                        expires_at, now))

    async def use_reset(self, token_hash: bytes, salt: bytes, digest: bytes, *,
                        now: datetime) -> bool:
        return await self._write(lambda c: token_sql.use_reset(c, token_hash, salt, digest,
                                                               now))

    async def add_unsubscribe(self, token_hash: bytes, notification_id: int, *,
                              now: datetime) -> None:
        await self._write(lambda c: token_sql.add_unsubscribe(c, token_hash, notification_id,
                                                              now))

    async def unsubscribe(self, token_hash: bytes) -> bool:
        return await self._write(lambda c: token_sql.unsubscribe(c, token_hash))


def _closed_pool() -> ThreadPoolExecutor:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    return pool


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _all_series(conn: sqlite3.Connection) -> list[tuple[int, SeriesInfo]]:
    return [
        (sid, SeriesInfo(meter_id=m, channel=c, unit=Unit(u), interval_s=i, timezone=t))
        for sid, m, c, u, i, t in conn.execute(
            "SELECT id, meter_id, channel, unit, interval_s, timezone FROM series"
        )
    ]


def _series_id(conn: sqlite3.Connection, info: SeriesInfo) -> int:
    row = conn.execute(
        "SELECT id FROM series WHERE meter_id = ? AND channel = ?", (info.meter_id, info.channel)
    ).fetchone()
    return int(row[0])


def _insert_series(conn: sqlite3.Connection, info: SeriesInfo) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO series (meter_id, channel, unit, interval_s, timezone) VALUES "
            "(?, ?, ?, ?, ?) ON CONFLICT (meter_id, channel) DO NOTHING",
            (info.meter_id, info.channel, str(info.unit), info.interval_s, info.timezone),
        )
        conn.execute(
            "INSERT INTO meter (meter_id, timezone) VALUES (?, ?) "
            "ON CONFLICT (meter_id) DO NOTHING",
            (info.meter_id, info.timezone),
        )
        sid = _series_id(conn, info)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return sid


def _write(
    conn: sqlite3.Connection,
    grouped: dict[_Series, list[_Row]],
    states: list[tuple[int, bytes]],
    held: list[tuple[int, str, str, str, str, str]],
    notes: list[tuple[int, str, str, str, str, str]],
    expect: Sequence[tuple[int, bytes | None]] = (),
    queue_ms: int | None = None,
) -> WriteResult:
    """One transaction: insert new intervals, replace changed ones (keeping the old
    version in interval_history), recompute the rollup of every touched day, save the
    cursors and the quarantined items; with ``queue_ms``, queue every written interval
    for the sinks (replays too: a redelivery is harmless, a missed one is not).

    Each part is a handful of large statements, whatever the batch size: a statement
    is where the GIL is released, and every release costs a wait to take it back
    while the ingest thread runs Python (see _INSERT_JSON).
    """
    inserted = unchanged = updated = 0
    rows = [row for series_rows in grouped.values() for row in series_rows]
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sid, state in expect:  # see SqliteStore.guarded
            row = conn.execute("SELECT state FROM cursor WHERE series = ?", (sid,)).fetchone()
            if (None if row is None else bytes(row[0])) != state:
                raise SinkError("the series was written by another process meanwhile; "
                                "nothing was changed", retryable=True)
        before = conn.total_changes
        if rows:
            rows_json = _json(rows).decode()
            conn.execute(_INSERT_JSON, (rows_json,))
        inserted = conn.total_changes - before
        if rows and queue_ms is not None:
            conn.execute(outbox.QUEUE_JSON, (queue_ms, rows_json))
        if inserted < len(rows):  # replays or corrections among them: the slow path
            distinct = 0
            for series, series_rows in grouped.items():
                u, keys = _replace_changed(conn, series.id, series_rows)
                updated += u
                distinct += keys
            # Every distinct interval was either new, replaced, or already as given.
            unchanged = max(distinct - updated - inserted, 0)
        days = [d for series, series_rows in grouped.items()
                for d in _touched_days(series, series_rows)]
        if days:
            conn.execute(_ROLLUP_JSON, (_json(days).decode(),))
        _insert_many(conn, "INSERT OR REPLACE INTO cursor VALUES ", states, 2)
        _insert_many(conn, "INSERT INTO quarantine (at, source, meter_id, channel, payload, "
                           "reason) VALUES ", held, 6)
        _insert_many(conn, "INSERT INTO event (at, kind, meter_id, channel, payload, reason) "
                           "VALUES ", notes, 6)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return WriteResult(inserted=inserted, unchanged=unchanged, updated=updated)


def _edit(conn: sqlite3.Connection, sid: int, start: int, value: int, operator: str,
          reason: str, at_ms: int, days: list[tuple[int, int, int, int, int]],
          queue: bool = False) -> tuple[int, int, int, int | None]:
    """One transaction: the edit, the replaced version into the history, the audit row
    and the day's rollup."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        old = conn.execute(
            "SELECT value, quality, flags, raw FROM interval WHERE series = ? AND start = ?",
            (sid, start),
        ).fetchone()
        if old is None:  # an operator fills a missing interval
            row = (value, int(Quality.EDITED), int(Flag.EDITED), None)
            conn.execute("INSERT INTO interval VALUES (?, ?, ?, ?, ?, ?)", (sid, start, *row))
        else:
            old_value, _, old_flags, old_raw = old
            # raw keeps the value as first derived from the reads, through any re-edits.
            row = (value, int(Quality.EDITED), old_flags | int(Flag.EDITED),
                   old_raw if old_raw is not None else old_value)
            conn.execute("INSERT INTO interval_history VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (sid, start, *old, at_ms))
            conn.execute("UPDATE interval SET value = ?, quality = ?, flags = ?, raw = ? "
                         "WHERE series = ? AND start = ?", (*row, sid, start))
        conn.execute(
            "INSERT INTO edit (series, start, old_value, new_value, operator, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, start, None if old is None else old[0], value, operator, reason, at_ms),
        )
        conn.execute(_ROLLUP_JSON, (_json(days).decode(),))
        if queue:
            outbox.queue_one(conn, sid, start, _ms(datetime.now(UTC)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return row


def _insert_many(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[object, ...]],
                 width: int) -> None:
    """Multi-row VALUES, as few statements as SQLite's parameter limit allows."""
    per = max(_MAX_PARAMS // width, 1)
    one = "(" + ", ".join("?" * width) + ")"
    for i in range(0, len(rows), per):
        chunk = rows[i:i + per]
        conn.execute(sql + ", ".join([one] * len(chunk)), [v for row in chunk for v in row])


#: Derived from reads, not estimated: an estimate never replaces one of these.
_MEASURED = (int(Quality.VALID), int(Quality.DERIVED))
_ESTIMATES = (int(Quality.ESTIMATED_LINEAR), int(Quality.ESTIMATED_REFERENCE_DAY))
_CONFLICT = int(Flag.CONFLICT)


def _replace_changed(conn: sqlite3.Connection, sid: int, rows: list[_Row]) -> tuple[int, int]:
    """Rows that met an existing interval: identical ones are replays (nothing to do);
    different ones replace the stored version, which moves to interval_history, except
    that an operator's edit stands and an estimate never replaces a measured value. A
    measured value replacing another *valid* one with a different value is a conflict:
    stored flagged ``CONFLICT`` (questionable), the earlier one kept in the history.
    Replacing an estimate, or a derived value, is what late data is for: no conflict.

    Returns (replaced, distinct intervals compared). Rows this batch just inserted
    compare equal to themselves; the caller subtracts them.
    """
    updated = 0
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    latest: dict[int, _Row] = {}
    for row in rows:
        latest[row[1]] = row  # one interval twice in a batch: the last one stands
    # One range read for the series, not one query per row: a replayed batch is common.
    stored = {
        start: (value, quality, flags, raw)
        for start, value, quality, flags, raw in conn.execute(
            "SELECT start, value, quality, flags, raw FROM interval "
            "WHERE series = ? AND start >= ? AND start <= ?",
            (sid, min(latest), max(latest)),
        )
        if start in latest
    }
    for start, row in latest.items():
        old = stored[start]
        if old == row[2:] or old[1] == Quality.EDITED:
            continue  # a replay, or an operator's edit: the operator's word stands
        quality = row[3]
        if quality in _ESTIMATES and old[1] in _MEASURED:
            continue  # a measurement is not degraded to an estimate
        if quality == old[1] == Quality.VALID and row[2] != old[0]:
            row = (*row[:3], int(Quality.QUESTIONABLE), row[4] | _CONFLICT, row[5])
        conn.execute(
            "INSERT INTO interval_history VALUES (?, ?, ?, ?, ?, ?, ?)", (sid, start, *old, now_ms)
        )
        conn.execute(
            "UPDATE interval SET value = ?, quality = ?, flags = ?, raw = ? "
            "WHERE series = ? AND start = ?",
            (*row[2:], sid, start),
        )
        updated += 1
    return updated, len(latest)


def _touched_days(series: _Series, rows: list[_Row]) -> list[tuple[int, int, int, int, int]]:
    """(series, day, first second, end second, expected intervals) of each day touched."""
    days: dict[int, tuple[int, int, int, int, int]] = {}
    length = series.info.interval_s
    lo = hi = 0
    for row in rows:
        start = row[1]
        if lo <= start < hi:  # the day of the row before: by far the usual case
            continue
        day, lo, hi = series.day_of(start)
        if day not in days:
            days[day] = (series.id, day, lo, hi, (hi - lo) // length)
    return list(days.values())


def _meters(conn: sqlite3.Connection, meter_id: str | None) -> list[MeterStatus]:
    sql = ("SELECT meter_id, timezone, status, last_read_at, last_error, protocol, profile "
           "FROM meter")
    args: tuple[str, ...] = ()
    if meter_id is not None:
        sql += " WHERE meter_id = ?"
        args = (meter_id,)
    return [
        MeterStatus(
            meter_id=m, timezone=tz, status=st,
            last_read_at=datetime.fromtimestamp(at / 1000, UTC) if at is not None else None,
            last_error=err, protocol=proto, profile=prof,
        )
        for m, tz, st, at, err, proto, prof in conn.execute(sql + " ORDER BY meter_id", args)
    ]
