"""The central ingest worker: edges' interval batches from the broker into the store.

One loop: take the messages waiting (a few ms' worth, bounded in count and bytes),
decode each (``central_decode``), write every message's intervals *and* the
quarantined messages in one store transaction, then publish each batch's ack. An ack
is only ever published after the commit that holds its intervals (the uplink
contract's guarantee); the store is idempotent on (meter, channel, start), so a batch
an edge sends twice changes nothing the second time and is simply acked again (the
counters tell the two apart: ``stored`` counts the intervals a write added or changed,
``unchanged`` those the store held already as sent, such as the copies an edge resent
while this worker restarted).

Nothing a message contains can stop the worker: a message unusable as a whole is
quarantined with its reason and the topic as its source (and acked with every
interval rejected when its batch id can be read); single bad intervals are rejected in
the ack. Only the store failing stops acking: the group is retried with backoff, the
worker keeps running, and the edges resend anything unacked in the meantime.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from gateway import log
from gateway.errors import ConfigError, SinkError
from gateway.ingest.central_decode import Decoded, Malformed, decode_batch, encode_ack
from gateway.ingest.central_link import BrokerLink, Received
from gateway.model import IntervalReading
from gateway.mqtt_names import edge_of_intervals_topic
from gateway.store import QuarantineItem, SeriesInfo
from gateway.store.sqlite import SqliteStore

__all__ = ["CentralIngest", "Counters", "IngestTarget", "SqliteTarget", "Written"]

_log = log.get("gateway.ingest.central")
#: Quarantined payloads are kept up to this many characters (a 1 MiB attack stays small).
QUARANTINE_CHARS = 16_384
SOURCE = "mqtt:"


@dataclass(frozen=True, slots=True)
class Written:
    """What a target did with a group's intervals."""

    #: Refused intervals by index, with the reason.
    refused: list[tuple[int, str]]
    #: Intervals the write added or changed; the others it held already as sent.
    changed: int


class IngestTarget(Protocol):
    """Where the intervals go; ``write`` raises SinkError when nothing was stored."""

    async def write(self, readings: Sequence[IntervalReading],
                    quarantine: Sequence[QuarantineItem]) -> Written: ...


class SqliteTarget:
    """The central's SQLite store: intervals and quarantine in one transaction (the
    store's outbox queues them for the central's own sinks in the same one)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def write(self, readings: Sequence[IntervalReading],
                    quarantine: Sequence[QuarantineItem]) -> Written:
        result = await self.store.write_intervals(readings, quarantine=quarantine)
        return Written(refused=[], changed=result.inserted + result.updated)


@dataclass
class Counters:
    received: int = 0
    batches: int = 0
    acked: int = 0
    #: Intervals added or changed in the store.
    stored: int = 0
    #: Intervals acked as stored that the store held already as sent (duplicates).
    unchanged: int = 0
    rejected: int = 0
    quarantined: int = 0
    store_failures: int = 0
    groups: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Group:
    """One store transaction's worth: readings, quarantine and the acks it owes."""

    readings: list[IntervalReading] = field(default_factory=list)
    #: Per decoded batch: its ack #, where its readings start in ``readings``, the batch.
    spans: list[tuple[int, int, Decoded]] = field(default_factory=list)
    quarantine: list[QuarantineItem] = field(default_factory=list)
    #: (edge, batch id, intervals in the batch, rejected: (index, reason))
    acks: list[tuple[str, str, int, list[tuple[int, str]]]] = field(default_factory=list)

    def owner(self, j: int) -> tuple[int, int]:
        """The ack # and the batch index of ``readings[j]``."""
        k = bisect.bisect_right([offset for _, offset, _ in self.spans], j) - 1
        ack, offset, decoded = self.spans[k]
        return ack, decoded.indices[j - offset]


class CentralIngest:
    def __init__(self, link: BrokerLink, target: IngestTarget, *, registry: SqliteStore | None,
                 batch_ms: float = 5.0, max_batch_messages: int = 500,
                 max_batch_bytes: int = 8 << 20, max_backoff_s: float = 30.0) -> None:
        self.link = link
        self.target = target
        #: Where each batch's series are declared before writing (None: the target
        #: needs no declaration, e.g. InfluxDB).
        self.registry = registry
        self.batch_s = batch_ms / 1000
        self.max_messages = max_batch_messages
        self.max_bytes = max_batch_bytes
        self.max_backoff_s = max_backoff_s
        self.counters = Counters()
        self._failures = 0  # consecutive store failures: the backoff's exponent
        #: Series declarations the store refused (another grid, timezone or unit).
        self._conflicts: dict[SeriesInfo, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; then the group being written is finished and acked.

        Two groups are in hand at a time: while the store's thread commits one, this
        loop decodes the next (the store releases the GIL inside SQLite). Commits, and
        so acks, stay in the order the messages arrived."""
        stopping = asyncio.ensure_future(stop.wait())
        writing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                waiting = asyncio.ensure_future(self.link.wait())
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not waiting.done():
                    waiting.cancel()
                    break
                if writing is None and self.batch_s and self.link.backlog < self.max_messages:
                    await asyncio.sleep(self.batch_s)  # let a burst gather into one commit
                group = self.prepare(self.link.take(self.max_messages, self.max_bytes))
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self.commit(group, stop))
        finally:
            stopping.cancel()
            if writing is not None:
                await writing

    async def shutdown(self) -> None:
        """After ``run``: take no more messages, store and ack those held, and
        disconnect once the broker has every ack (and the PUBACK of every message
        taken), so a graceful stop leaves nothing for the next session to redo."""
        self.link.stop_taking()
        await self.drain()
        await self.link.stop()

    async def drain(self) -> None:
        """Store and ack what is still held (after the link stopped taking messages),
        trying each group once: with the store failing, the edges send it again later."""
        once = asyncio.Event()
        once.set()
        while self.link.backlog:
            await self.process(self.link.take(self.max_messages, self.max_bytes), once)

    async def process(self, messages: list[Received], stop: asyncio.Event | None) -> None:
        await self.commit(self.prepare(messages), stop)

    def prepare(self, messages: list[Received]) -> _Group:
        """Decode a group of messages (never raises: what is unusable is quarantined)."""
        group = _Group()
        for msg in messages:
            self._add(group, msg)
        self.counters.received += len(messages)
        return group

    async def commit(self, group: _Group, stop: asyncio.Event | None) -> None:
        """Declare the series, write, and only then ack (unless stopped while the store
        fails: then nothing is acked and the edges send those batches again)."""
        if await self._register(group, stop) and await self._write(group, stop):
            self._ack(group)

    # -- decoding ---------------------------------------------------------------------

    def _add(self, group: _Group, msg: Received) -> None:
        try:
            edge = edge_of_intervals_topic(msg.topic)
            decoded = decode_batch(msg.payload, edge)
        except Malformed as exc:
            self._quarantine(group, msg, exc.reason)
            if exc.batch is not None:
                reason = f"batch refused: {exc.reason}"
                group.acks.append((edge, exc.batch, exc.count,
                                   [(i, reason) for i in range(exc.count)]))
            return
        except Exception as exc:  # never let a message stop the worker
            self._quarantine(group, msg, f"unreadable: {type(exc).__name__}: {exc}")
            return
        if self._conflicts and any(s in self._conflicts for s in decoded.series):
            _drop(decoded, self._conflicts)
        group.spans.append((len(group.acks), len(group.readings), decoded))
        group.readings.extend(decoded.readings)
        group.acks.append((edge, decoded.batch, decoded.count, decoded.rejected))
        self.counters.batches += 1

    def _quarantine(self, group: _Group, msg: Received, reason: str) -> None:
        text = msg.payload[:QUARANTINE_CHARS].decode("utf-8", errors="replace")
        if len(msg.payload) > QUARANTINE_CHARS:
            text += f"... ({len(msg.payload)} bytes)"
        group.quarantine.append(QuarantineItem(at=datetime.now(UTC), source=SOURCE + msg.topic,
                                               payload=text, reason=reason))

    # -- storing ----------------------------------------------------------------------

    async def _register(self, group: _Group, stop: asyncio.Event | None) -> bool:
        """Declare each new series (idempotent). A series the store already holds with
        another grid, timezone or unit is refused: its intervals are rejected."""
        if self.registry is None or not group.readings:
            return True
        refused = False
        declared = dict.fromkeys(s for _, _, d in group.spans for s in d.series)
        for info in declared:  # in the order the batches came: the first declared wins
            while True:
                try:
                    await self.registry.register_series(info)
                    break
                except ConfigError as exc:
                    self._conflicts[info] = f"series refused: {exc}"
                    refused = True
                    break
                except SinkError as exc:
                    await self._store_failed(exc, stop)
                    if stop is not None and stop.is_set():
                        return False
        if refused:
            group.readings = []
            spans, group.spans = group.spans, []
            for ack, _, decoded in spans:
                _drop(decoded, self._conflicts)
                group.spans.append((ack, len(group.readings), decoded))
                group.readings.extend(decoded.readings)
        return True

    async def _write(self, group: _Group, stop: asyncio.Event | None) -> bool:
        """Write until it succeeds (True), or until stopped while the store fails."""
        while True:
            try:
                written = await self.target.write(group.readings, group.quarantine)
                break
            except SinkError as exc:
                if not exc.retryable and len(group.acks) + len(group.quarantine) > 1:
                    return await self._one_by_one(group, stop)
                if not exc.retryable:
                    return await self._refuse_all(group, exc, stop)
                await self._store_failed(exc, stop)
                if stop is not None and stop.is_set():
                    return False
        self._failures = 0
        for j, reason in written.refused:
            ack, index = group.owner(j)
            group.acks[ack][3].append((index, reason))
        self.counters.stored += written.changed
        self.counters.unchanged += len(group.readings) - len(written.refused) - written.changed
        self.counters.quarantined += len(group.quarantine)
        self.counters.groups += 1
        return True

    async def _one_by_one(self, group: _Group, stop: asyncio.Event | None) -> bool:
        """A permanent store refusal of a group: find the message it is about by
        writing each alone, so one poison batch cannot hold the others back."""
        ok = True
        for single in _split(group):
            if await self._write(single, stop):
                self._ack(single)
            else:
                ok = False
        group.acks.clear()  # each part acked itself
        return ok

    async def _refuse_all(self, group: _Group, exc: SinkError,
                          stop: asyncio.Event | None) -> bool:
        """One batch the store refuses for good: quarantined and acked as rejected."""
        reason = f"central store refused the batch: {exc}"
        for edge, batch, _n, _ in group.acks:
            group.quarantine.append(QuarantineItem(
                at=datetime.now(UTC), source=f"{SOURCE}ami/v1/{edge}/intervals",
                payload=batch, reason=reason))
        group.acks = [(e, b, n, [(i, reason) for i in range(n)]) for e, b, n, _ in group.acks]
        group.readings, group.spans = [], []
        return await self._write(group, stop)

    async def _store_failed(self, exc: SinkError, stop: asyncio.Event | None) -> None:
        self.counters.store_failures += 1
        self._failures += 1
        delay = min(self.max_backoff_s, 0.1 * 2 ** min(self._failures, 12))
        _log.error("store write failed; the group waits and is tried again", error=str(exc),
                   retry_in_s=round(delay, 2))
        if stop is None:
            await asyncio.sleep(delay)
            return
        try:
            async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):
                await stop.wait()
        except TimeoutError:
            pass

    # -- acknowledging ----------------------------------------------------------------

    def _ack(self, group: _Group) -> None:
        for edge, batch, count, rejected in group.acks:
            rejected.sort()
            stored = count - len(rejected)
            self.link.publish_ack(edge, encode_ack(batch, stored, rejected))
            self.counters.acked += 1
            self.counters.rejected += len(rejected)


def _drop(decoded: Decoded, conflicts: dict[SeriesInfo, str]) -> None:
    """Move the readings of refused series declarations to the batch's rejections."""
    keep: list[IntervalReading] = []
    where: list[int] = []
    for r, index in zip(decoded.readings, decoded.indices, strict=True):
        reason = conflicts.get(decoded.series_of(r))
        if reason is None:
            keep.append(r)
            where.append(index)
        else:
            decoded.rejected.append((index, reason))
    decoded.readings, decoded.indices = keep, where


def _split(group: _Group) -> list[_Group]:
    parts = []
    for ack, _, decoded in group.spans:
        part = _Group(readings=list(decoded.readings), spans=[(0, 0, decoded)],
                      acks=[group.acks[ack]])
        parts.append(part)
    spanned = {ack for ack, _, _ in group.spans}
    parts += [_Group(acks=[a]) for k, a in enumerate(group.acks) if k not in spanned]
    return parts + [_Group(quarantine=[q]) for q in group.quarantine]
