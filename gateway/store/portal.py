"""The portal's store when InfluxDB is the production store: intervals and daily usage
come from InfluxDB (what the outbox delivered there), everything else (the series and
their local days, meters, edits, the audit) from the local store, which keeps it.

An operator's edit goes to the local store, which queues it: the portal shows it once
the outbox has delivered it (the status tells how far behind that is).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from gateway.errors import ConfigError
from gateway.markers import Marker, MarkerFields
from gateway.model import DailyUsage, IntervalReading, MeterStatus
from gateway.notify.rules import Subscription, SubscriptionFields
from gateway.store import (
    Cursors,
    EditRecord,
    QuarantineItem,
    SeriesEventRecord,
    SeriesInfo,
    WriteResult,
)
from gateway.store.influx import InfluxReader
from gateway.store.sqlite import SqliteStore

__all__ = ["InfluxPortalStore"]


class InfluxPortalStore:
    """``Store`` for the portal API: reads of intervals and days from InfluxDB."""

    def __init__(self, local: SqliteStore, reader: InfluxReader) -> None:
        self.local = local
        self.reader = reader

    async def open(self) -> None:
        await self.reader.open()

    async def close(self) -> None:
        await self.reader.close()

    async def _series(self, meter_id: str, channel: str) -> SeriesInfo:
        for info in await self.local.series(meter_id):
            if info.channel == channel:
                return info
        raise ConfigError(f"meter {meter_id} has no series {channel}", key="channel",
                          fix="ask for a channel the meter stores")

    async def intervals(self, meter_id: str, channel: str, start: datetime, end: datetime
                        ) -> list[IntervalReading]:
        return await self.reader.intervals(await self._series(meter_id, channel), start, end)

    async def daily(self, meter_id: str, channel: str, first: date, last: date
                    ) -> list[DailyUsage]:
        return await self.reader.daily(await self._series(meter_id, channel), first, last)

    # -- the rest is the local store's ---------------------------------------------------

    async def register_series(self, series: SeriesInfo) -> None:
        await self.local.register_series(series)

    async def write_intervals(self, batch: Sequence[IntervalReading], *,
                              cursors: Cursors | None = None,
                              quarantine: Sequence[QuarantineItem] = (),
                              events: Sequence[SeriesEventRecord] = ()) -> WriteResult:
        return await self.local.write_intervals(batch, cursors=cursors, quarantine=quarantine,
                                                events=events)

    async def cursors(self) -> dict[tuple[str, str], bytes]:
        return await self.local.cursors()

    async def quarantined(self, limit: int = 100) -> list[QuarantineItem]:
        return await self.local.quarantined(limit)

    async def quarantine_count(self) -> int:
        return await self.local.quarantine_count()

    async def edit_interval(self, meter_id: str, channel: str, start: datetime, value: int, *,
                            operator: str, reason: str, at: datetime) -> IntervalReading:
        return await self.local.edit_interval(meter_id, channel, start, value,
                                              operator=operator, reason=reason, at=at)

    async def events(self, meter_id: str) -> list[SeriesEventRecord]:
        return await self.local.events(meter_id)

    async def edits(self, meter_id: str, channel: str) -> list[EditRecord]:
        return await self.local.edits(meter_id, channel)

    async def series(self, meter_id: str | None = None) -> list[SeriesInfo]:
        return await self.local.series(meter_id)

    async def set_meter_status(self, status: MeterStatus) -> None:
        await self.local.set_meter_status(status)

    async def meters(self) -> list[MeterStatus]:
        return await self.local.meters()

    async def meter(self, meter_id: str) -> MeterStatus | None:
        return await self.local.meter(meter_id)

    async def daily_span(self, meter_id: str, channel: str) -> tuple[date, date] | None:
        return await self.local.daily_span(meter_id, channel)

    async def add_marker(self, meter_id: str, fields: MarkerFields, *, at: datetime) -> Marker:
        return await self.local.add_marker(meter_id, fields, at=at)

    async def markers(self, meter_id: str, first: date | None = None,
                      last: date | None = None) -> list[Marker]:
        return await self.local.markers(meter_id, first, last)

    async def marker(self, meter_id: str, marker_id: int) -> Marker | None:
        return await self.local.marker(meter_id, marker_id)

    async def update_marker(self, meter_id: str, marker_id: int, fields: MarkerFields, *,
                            at: datetime) -> Marker | None:
        return await self.local.update_marker(meter_id, marker_id, fields, at=at)

    async def delete_marker(self, meter_id: str, marker_id: int) -> bool:
        return await self.local.delete_marker(meter_id, marker_id)

    async def add_notification(self, meter_id: str, fields: SubscriptionFields, *,
                               at: datetime) -> Subscription:
        return await self.local.add_notification(meter_id, fields, at=at)

    async def notifications(self, meter_id: str | None = None) -> list[Subscription]:
        return await self.local.notifications(meter_id)

    async def notification(self, meter_id: str, notification_id: int) -> Subscription | None:
        return await self.local.notification(meter_id, notification_id)

    async def delete_notification(self, meter_id: str, notification_id: int) -> bool:
        return await self.local.delete_notification(meter_id, notification_id)

    async def notification_sent(self, notification_id: int, key: str, address: str, *,
                                at: datetime) -> bool:
        return await self.local.notification_sent(notification_id, key, address, at=at)
