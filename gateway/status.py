"""What ``ami-gateway status`` and ``GET /api/v1/status`` report: per sink, how much of
the outbox it still has to take, since when, how fast it takes it, what it refused;
and the meters and quarantine at a glance.

The running gateway adds what only it knows (a sink failing right now); the CLI,
reading the store of a gateway that may not run, gives what the store keeps (the last
delivery error stays until a delivery succeeds).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import msgspec

from gateway.ingest.delivery import DeliveryStats
from gateway.settings_sinks import OutboxSection
from gateway.store.sqlite import SqliteStore

__all__ = ["MeterCounts", "OutboxState", "SinkState", "StatusView", "gateway_status"]


class SinkState(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    depth: int
    oldest_undelivered: datetime | None
    delivery_rate_per_s: float
    delivered_total: int
    quarantined: int
    last_delivery_at: datetime | None
    failing: bool
    last_error: str | None


class OutboxState(msgspec.Struct, frozen=True, kw_only=True):
    depth: int
    alarm_depth: int
    pause_depth: int
    #: Past alarm_depth; ``paused``: past pause_depth (meters that can wait are not read).
    alarm: bool
    paused: bool


class MeterCounts(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    ok: int
    failing: int
    unknown: int


class StatusView(msgspec.Struct, frozen=True, kw_only=True):
    #: ok; degraded (a sink or a meter failing); alarm (the outbox past alarm_depth).
    status: Literal["ok", "degraded", "alarm"]
    outbox: OutboxState
    sinks: list[SinkState]
    meters: MeterCounts
    quarantined: int


async def gateway_status(store: SqliteStore, outbox: OutboxSection,
                         live: Mapping[str, DeliveryStats] | None = None) -> StatusView:
    sinks = []
    for s in await store.outbox_status():
        stats = (live or {}).get(s.sink)
        failing = stats.failing if stats is not None else s.last_error is not None
        error = (stats.last_error if stats is not None else None) or s.last_error
        sinks.append(SinkState(
            name=s.sink, depth=s.depth, oldest_undelivered=s.oldest_queued_at,
            delivery_rate_per_s=s.rate_per_s, delivered_total=s.delivered_total,
            quarantined=s.quarantined, last_delivery_at=s.last_delivery_at, failing=failing,
            last_error=error if failing else None))
    depth = max((s.depth for s in sinks), default=0)
    meters = await store.meters()
    counts = MeterCounts(total=len(meters), ok=sum(m.status == "ok" for m in meters),
                         failing=sum(m.status == "failing" for m in meters),
                         unknown=sum(m.status not in ("ok", "failing") for m in meters))
    state = OutboxState(depth=depth, alarm_depth=outbox.alarm_depth,
                        pause_depth=outbox.pause_depth, alarm=depth >= outbox.alarm_depth,
                        paused=depth >= outbox.pause_depth)
    overall: Literal["ok", "degraded", "alarm"] = "ok"
    if state.alarm:
        overall = "alarm"
    elif counts.failing or any(s.failing for s in sinks):
        overall = "degraded"
    return StatusView(status=overall, outbox=state, sinks=sinks, meters=counts,
                      quarantined=await store.quarantine_count())
