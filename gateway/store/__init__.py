"""The time-series store: what the ingest writes and the portal reads.

``Store`` is the interface; ``gateway.store.sqlite.SqliteStore`` is the embedded default.
Every method is async; a backend over a blocking library wraps it once, inside.

Writes are idempotent on (meter, channel, interval start): writing the same interval
again changes nothing, so a replay or a redelivery is harmless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Protocol

import msgspec

from gateway.markers import Marker, MarkerFields
from gateway.model import DailyUsage, IntervalReading, MeterStatus, Unit
from gateway.notify.rules import Subscription, SubscriptionFields


class SeriesInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One stored channel of one meter: its unit, grid and the timezone of its local day."""

    meter_id: str
    channel: str
    unit: Unit
    interval_s: int
    timezone: str


class QuarantineItem(msgspec.Struct, frozen=True, kw_only=True):
    """Input that could not be used, kept with the reason instead of being dropped."""

    at: datetime
    source: str
    payload: str
    reason: str
    meter_id: str = ""
    channel: str = ""


class SeriesEventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Something the audit keeps about a series: a meter exchange, a reset, ambiguous wraps."""

    at: datetime
    kind: str
    meter_id: str
    channel: str
    payload: str
    reason: str


#: A series' processing state (opaque bytes), keyed by (meter_id, channel).
Cursors = Mapping[tuple[str, str], bytes]


class EditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One operator correction: who changed which interval, when, why, from what to what."""

    meter_id: str
    channel: str
    start: datetime
    old_value: int | None
    new_value: int
    operator: str
    reason: str
    at: datetime


class WriteResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a write did: new intervals, identical replays, and changed values."""

    inserted: int = 0
    unchanged: int = 0
    updated: int = 0


class Store(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema. Idempotent."""

    async def close(self) -> None: ...

    async def register_series(self, series: SeriesInfo) -> None:
        """Declare a series before writing to it (idempotent; a changed timezone or
        interval length for an existing series raises ``ConfigError``). Its meter is
        known from then on (``meter`` finds it)."""

    async def write_intervals(
        self,
        batch: Sequence[IntervalReading],
        *,
        cursors: Cursors | None = None,
        quarantine: Sequence[QuarantineItem] = (),
        events: Sequence[SeriesEventRecord] = (),
    ) -> WriteResult:
        """Store intervals, keep the daily rollups current, save the series cursors, the
        quarantined items and the audit events: all in one transaction, so the data and
        the state that produced it never disagree after a crash."""

    async def cursors(self) -> dict[tuple[str, str], bytes]:
        """The cursors saved by the last writes, to resume series processing."""

    async def quarantined(self, limit: int = 100) -> list[QuarantineItem]:
        """The most recent quarantined items, newest first."""

    async def quarantine_count(self) -> int: ...

    async def edit_interval(
        self, meter_id: str, channel: str, start: datetime, value: int, *,
        operator: str, reason: str, at: datetime,
    ) -> IntervalReading:
        """An operator's correction (ESPI code 7): the value as first derived stays in
        ``raw``, the replaced version in the history, and who, when and why in the audit.
        Later writes from the pipeline do not overwrite an edited interval."""

    async def events(self, meter_id: str) -> list[SeriesEventRecord]:
        """The audit events of a meter's series, oldest first."""

    async def edits(self, meter_id: str, channel: str) -> list[EditRecord]:
        """The audit trail of a series' corrections, oldest first."""

    async def intervals(
        self, meter_id: str, channel: str, start: datetime, end: datetime
    ) -> list[IntervalReading]:
        """Intervals whose start lies in ``[start, end)``, oldest first."""

    async def daily(
        self, meter_id: str, channel: str, first: date, last: date
    ) -> list[DailyUsage]:
        """Daily usage for each local day from ``first`` to ``last`` inclusive that has data."""

    async def daily_span(self, meter_id: str, channel: str) -> tuple[date, date] | None:
        """The first and last local day with data, or ``None`` when there is none."""

    async def series(self, meter_id: str | None = None) -> list[SeriesInfo]: ...

    async def set_meter_status(self, status: MeterStatus) -> None: ...

    async def meters(self) -> list[MeterStatus]: ...

    async def meter(self, meter_id: str) -> MeterStatus | None:
        """The meter's status, or ``None`` when no such meter is known (a lookup, not a failure)."""

    # Usage markers (gateway.markers). Each call is one transaction; every lookup is by
    # meter and id, so a marker of another meter is not found.

    async def add_marker(self, meter_id: str, fields: MarkerFields, *, at: datetime) -> Marker:
        """Store a new marker (``DataError`` when its fields break a rule)."""

    async def markers(self, meter_id: str, first: date | None = None,
                      last: date | None = None) -> list[Marker]:
        """The meter's markers touching ``[first, last]`` (open ends when ``None``)."""

    async def marker(self, meter_id: str, marker_id: int) -> Marker | None: ...

    async def update_marker(self, meter_id: str, marker_id: int, fields: MarkerFields, *,
                            at: datetime) -> Marker | None:
        """Replace a marker's fields; ``None`` when the meter has no such marker."""

    async def delete_marker(self, meter_id: str, marker_id: int) -> bool:
        """``False`` when the meter has no such marker."""

    # Notification subscriptions (gateway.notify). Lookups are by meter and id, like markers.

    async def add_notification(self, meter_id: str, fields: SubscriptionFields, *,
                               at: datetime) -> Subscription:
        """Store a new subscription (``DataError`` when its fields break a rule)."""

    async def notifications(self, meter_id: str | None = None) -> list[Subscription]:
        """The meter's subscriptions (every meter's with ``None``), by id."""

    async def notification(self, meter_id: str, notification_id: int) -> Subscription | None: ...

    async def delete_notification(self, meter_id: str, notification_id: int) -> bool:
        """``False`` when the meter has no such subscription."""

    async def notification_sent(self, notification_id: int, key: str, address: str, *,
                                at: datetime) -> bool:
        """Record a notice the notifier accepted and move the subscription's key to it,
        in one transaction; ``False`` when the subscription is gone."""
