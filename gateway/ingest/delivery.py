"""Delivery: one task per sink moves the outbox to it, in order, at its own pace.

A batch is read from the outbox (``gateway.store.outbox``), handed to the sink, and
acknowledged only once the sink says it holds it durably; the acknowledgement moves
the sink's position and quarantines what the sink refused, in one transaction. So a
crash anywhere leaves every interval either acknowledged or still queued: it is sent
again (the sinks' writes are idempotent), never lost.

A sink that fails (down, overloaded, refusing credentials) is retried with jittered
exponential backoff, logged once when it starts failing and once when it recovers;
the pollers never wait for it: they only write to the store. After an outage the
queue drains in batches as large as the sink takes (5,000 lines for InfluxDB), many
times the live rate, while live intervals queue behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from gateway import log
from gateway.errors import SinkError
from gateway.model import IntervalReading
from gateway.store import QuarantineItem
from gateway.store.outbox import OutboxEntry
from gateway.store.sqlite import SqliteStore

__all__ = ["Delivery", "DeliveryStats", "KeyedSink", "Sink"]

_log = log.get("gateway.delivery")


class Sink(Protocol):
    """Where delivered intervals go (InfluxDB, an uplink)."""

    name: str

    async def open(self) -> None: ...

    async def deliver(self, batch: Sequence[IntervalReading]) -> list[tuple[int, str]]:
        """Store ``batch`` durably. Returns the intervals refused for good, by index,
        with the sink's reason (the others are stored); raises SinkError when nothing
        could be stored (``retryable`` says whether trying again may help)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class KeyedSink(Sink, Protocol):
    """A sink whose store confirms each batch from afar (the MQTT uplink's ack): it gets
    a stable id per batch, ``<first seq>-<last seq>`` of the outbox entries, the same
    when the same entries are sent again."""

    needs_batch_id: bool

    async def deliver(self, batch: Sequence[IntervalReading], *,
                      batch_id: str | None = None) -> list[tuple[int, str]]: ...


@dataclass
class DeliveryStats:
    delivered: int = 0
    rejected: int = 0
    batches: int = 0
    failing: bool = False
    last_error: str | None = None


class Delivery:
    """Drains the outbox into one sink until cancelled."""

    def __init__(self, store: SqliteStore, sink: Sink, *, batch_size: int = 5000,
                 idle_s: float = 0.5, max_backoff_s: float = 60.0,
                 transitions: log.Transitions | None = None) -> None:
        self.store = store
        self.sink = sink
        self.batch_size = batch_size
        self.idle_s = idle_s
        self.max_backoff_s = max_backoff_s
        self.stats = DeliveryStats()
        self._transitions = transitions or log.Transitions(_log)
        self._wake = asyncio.Event()
        self._failures = 0

    def nudge(self) -> None:
        """New intervals were queued: look now rather than at the next idle tick."""
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._open()
            while True:
                try:
                    sent = await self.drain()
                except SinkError as exc:
                    await self._failed(exc)
                    continue
                if sent:
                    continue
                self._wake.clear()
                try:
                    async with asyncio.timeout(self.idle_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            await self.sink.close()

    async def _open(self) -> None:
        """Open the sink, retrying like a failed delivery: a sink that cannot be reached
        at start (InfluxDB not up yet, its CREATE DATABASE failing) must not stop the
        gateway, whose pollers only write to the store."""
        while True:
            try:
                await self.sink.open()
                return
            except SinkError as exc:
                await self._failed(exc)

    async def drain(self) -> int:
        """Deliver batch after batch until the queue is empty; the number of entries
        covered. The next batch is read while the sink writes this one (the read is
        the store's thread and the sink's server at work, this one mostly waits), and
        each batch is acknowledged only after the sink has confirmed it."""
        total = 0
        entries = await self.store.outbox_batch(self.sink.name, self.batch_size)
        while entries:
            ahead = asyncio.ensure_future(self.store.outbox_batch(
                self.sink.name, self.batch_size, after=entries[-1].seq))
            try:
                total += await self._deliver(entries)
            except BaseException:
                _discard(ahead)  # read again from the position once the sink is back
                raise
            entries = await ahead
        return total

    async def drain_once(self) -> int:
        """Deliver one batch; the number of entries it covered (0: nothing queued)."""
        entries = await self.store.outbox_batch(self.sink.name, self.batch_size)
        return await self._deliver(entries) if entries else 0

    async def _deliver(self, entries: list[OutboxEntry]) -> int:
        began = time.perf_counter()
        batch = [e.interval for e in entries]
        if isinstance(self.sink, KeyedSink) and self.sink.needs_batch_id:
            refused = await self.sink.deliver(
                batch, batch_id=f"{entries[0].seq}-{entries[-1].seq}")
        else:
            refused = await self.sink.deliver(batch)
        elapsed = time.perf_counter() - began
        rejected = [_quarantined(self.sink.name, entries[i], reason) for i, reason in refused]
        await self.store.outbox_ack(self.sink.name, entries[-1].seq,
                                    len(entries) - len(rejected), rejected, elapsed)
        for item in rejected:
            _log.error("sink refused an interval: quarantined", sink=self.sink.name,
                       meter_id=item.meter_id, channel=item.channel, reason=item.reason)
        self.stats.delivered += len(entries) - len(rejected)
        self.stats.rejected += len(rejected)
        self.stats.batches += 1
        if self._failures:
            self._failures = 0
            self._transitions.ok(f"sink {self.sink.name}")
        self.stats.failing, self.stats.last_error = False, None
        return len(entries)

    async def _failed(self, exc: SinkError) -> None:
        self._failures += 1
        self.stats.failing, self.stats.last_error = True, str(exc)
        self._transitions.failed(f"sink {self.sink.name}", exc, retryable=exc.retryable)
        if self._failures == 1:
            # The local store failing too is not this sink's news: the log says why.
            with contextlib.suppress(SinkError):
                await self.store.outbox_failed(self.sink.name, str(exc))
        delay = min(2.0 ** (self._failures - 1), self.max_backoff_s)
        await asyncio.sleep(delay * (0.75 + 0.5 * random.random()))


def _discard(read: asyncio.Future[list[OutboxEntry]]) -> None:
    """Drop a batch read ahead that will not be delivered (its failure included)."""
    if not read.cancel() and not read.cancelled():
        read.exception()


def _quarantined(sink: str, entry: OutboxEntry, reason: str) -> QuarantineItem:
    iv = entry.interval
    payload = (f"{iv.meter_id} {iv.channel} {iv.start.isoformat()} value={iv.value} "
               f"quality={int(iv.quality)} flags={iv.flags}")
    return QuarantineItem(at=datetime.now(UTC), source=f"sink:{sink}", payload=payload,
                          reason=reason, meter_id=iv.meter_id, channel=iv.channel)
