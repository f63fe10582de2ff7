"""The ingest pipeline: readings in; validated intervals, cursors and quarantine out.

One ``feed`` is one store transaction. The series processors' state is snapshotted
before a feed and put back if the write fails, so a reading is either fully accounted
for (its intervals and the cursor that follows from it committed together) or not at
all and can be fed again. Nothing is half-applied, nothing counted twice.

Long gaps (``SeriesConfig.reference_day_after_s``) are shaped here, between processing
and commit: the processors say which intervals lie wholly inside a gap, and the
pipeline looks up the reference day (``gateway.validation.estimate``) among the stored
intervals and those of the batch itself. Without a complete, measured reference the
gap stays linear.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from gateway.errors import ConfigError
from gateway.ingest.series import (
    EventKind,
    GapRun,
    SeriesConfig,
    SeriesEvent,
    SeriesProcessor,
    SeriesState,
)
from gateway.model import IntervalReading, Kind, Quality, Reading
from gateway.store import QuarantineItem, SeriesEventRecord, SeriesInfo, Store, WriteResult
from gateway.validation.estimate import (
    candidate_offsets,
    reference_starts,
    reference_weights,
)

_encode = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(SeriesState).decode


class FeedResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one feed did."""

    readings: int
    intervals: int
    written: WriteResult
    #: Readings of channels that are not stored as intervals (instant values).
    skipped: int = 0
    quarantined: int = 0

    def __add__(self, other: FeedResult) -> FeedResult:
        a, b = self.written, other.written
        return FeedResult(
            readings=self.readings + other.readings,
            intervals=self.intervals + other.intervals,
            written=WriteResult(inserted=a.inserted + b.inserted,
                                unchanged=a.unchanged + b.unchanged,
                                updated=a.updated + b.updated),
            skipped=self.skipped + other.skipped,
            quarantined=self.quarantined + other.quarantined,
        )


class Pipeline:
    """Routes each reading to its series processor and commits what comes out."""

    def __init__(self, store: Store, processors: dict[tuple[str, str], SeriesProcessor],
                 configs: dict[tuple[str, str], SeriesConfig],
                 timezones: dict[tuple[str, str], str] | None = None) -> None:
        self._store = store
        self._procs = processors
        self._configs = configs
        self._zones = {key: ZoneInfo(tz) for key, tz in (timezones or {}).items()}
        self._by_meter: dict[str, list[tuple[str, str]]] = {}
        for key in configs:
            self._by_meter.setdefault(key[0], []).append(key)

    @classmethod
    async def open(cls, store: Store, series: Iterable[tuple[SeriesConfig, str]]) -> Pipeline:
        """Register every (config, timezone) series and resume each from its saved cursor."""
        configs: dict[tuple[str, str], SeriesConfig] = {}
        zones: dict[tuple[str, str], str] = {}
        for cfg, tz in series:
            key = (cfg.meter_id, cfg.channel)
            if key in configs:
                raise ConfigError(f"meter {cfg.meter_id} channel {cfg.channel} is configured twice",
                                  key=f"meters.{cfg.meter_id}", fix="configure each meter once")
            configs[key] = cfg
            zones[key] = tz
            await store.register_series(SeriesInfo(
                meter_id=cfg.meter_id, channel=cfg.channel, unit=cfg.unit.base,
                interval_s=cfg.interval_s, timezone=tz,
            ))
        saved = await store.cursors()
        procs = {
            key: SeriesProcessor.restore(cfg, _decode_state(saved[key]))
            if key in saved else SeriesProcessor(cfg)
            for key, cfg in configs.items()
        }
        return cls(store, procs, configs, zones)

    def last_read_at(self, meter_id: str, channels: Iterable[str]) -> datetime | None:
        """The time of the last read every one of ``channels`` has taken in (committed,
        or fed in this process): where a meter that keeps its own history (a DLMS load
        profile) is read from next. None when one of them has taken none yet."""
        last: int | None = None
        for channel in channels:
            proc = self._procs.get((meter_id, channel))
            at_ms = proc.snapshot().tracker.last_at_ms if proc is not None else None
            if at_ms is None:
                return None
            last = at_ms if last is None else min(last, at_ms)
        if last is None:
            return None
        return datetime.fromtimestamp(last / 1000, UTC)

    async def feed(self, readings: Sequence[Reading], *, source: str,
                   now: datetime | None = None) -> FeedResult:
        """Process readings in order and commit the result in one transaction.

        On a store failure the processors are rewound and the error propagates: the
        caller may feed the same readings again later.
        """
        step = self._process(readings, source, now)
        if step.shapes:
            try:
                await self._shape(step)
            except BaseException:
                self._rewind(step.before)
                raise
        commit = asyncio.ensure_future(self._commit(step))
        try:
            written = await asyncio.shield(commit)
        except BaseException:
            if not await _committed(commit):
                self._rewind(step.before)
            raise
        return step.result(written)

    async def feed_batches(self, batches: Iterable[Sequence[Reading]], *, source: str,
                           now: datetime | None = None) -> FeedResult:
        """Feed batch after batch, processing each while the one before it commits.

        The store writes on its own thread and SQLite releases the GIL while it works,
        so validation and intervalization of batch k+1 overlap the commit of batch k.
        On a failure every series is rewound to its state before the first batch that
        did not commit, and the error propagates (``committed`` on the error counts
        the readings that did).
        """
        total = FeedResult(readings=0, intervals=0, written=WriteResult())
        inflight: tuple[_Step, asyncio.Future[WriteResult]] | None = None
        newest: _Step | None = None  # processed; its commit not yet confirmed
        try:
            for batch in batches:
                newest = self._process(batch, source, now)
                if newest.shapes:
                    if inflight is not None:  # its intervals may be the reference
                        total = total + inflight[0].result(await inflight[1])
                        inflight = None
                    await self._shape(newest)
                if inflight is not None:
                    total = total + inflight[0].result(await inflight[1])
                    inflight = None  # counted: never to be counted or undone again
                inflight = (newest, asyncio.ensure_future(self._commit(newest)))
                # Let the commit hand its write to the store's thread now, not when it
                # is next awaited: otherwise nothing overlaps.
                await asyncio.sleep(0)
            if inflight is not None:
                total = total + inflight[0].result(await inflight[1])
                inflight = None
            newest = None
        except BaseException as exc:
            # A commit in flight runs on the store's thread whatever happens here: wait
            # for its outcome. If it landed, its batch stays applied; if not, undo it.
            # The newest batch started from the end state of the one in flight: undo it
            # first, so the older batch's "before" is what remains.
            landed = inflight is not None and await _committed(inflight[1])
            if landed and inflight is not None:
                total = total + inflight[0].result(inflight[1].result())
            if newest is not None and (inflight is None or newest is not inflight[0]):
                self._rewind(newest.before)
            if inflight is not None and not landed:
                self._rewind(inflight[0].before)
            exc.add_note(f"readings committed before the failure: {total.readings}")
            raise
        return total

    def _process(self, readings: Sequence[Reading], source: str,
                 now: datetime | None) -> _Step:
        now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
        procs = self._procs
        touched: dict[tuple[str, str], SeriesProcessor] = {}
        before: dict[tuple[str, str], SeriesState] = {}
        intervals: list[IntervalReading] = []
        quarantine: list[QuarantineItem] = []
        notes: list[SeriesEventRecord] = []
        shapes: list[_Shape] = []
        skipped = 0
        # Series are independent: each one's reads are fed in order, series after series,
        # so the loop per read is short and the store gets each series' rows together.
        groups: dict[tuple[str, str], list[Reading]] = {}
        identities: list[Reading] = []
        identity_kind = Kind.IDENTITY
        for reading in readings:
            if reading.kind is identity_kind:
                identities.append(reading)
                continue
            key = (reading.meter_id, reading.channel)
            group = groups.get(key)
            if group is None:
                groups[key] = [reading]
            else:
                group.append(reading)
        # A meter's identity readings, in time order: each series of the meter is fed in
        # segments split at their instants, so every exchange falls between the reads it
        # separates, however many a batch holds.
        seen: dict[str, list[tuple[int, str]]] = {}
        for reading in identities:
            if reading.meter_id in self._by_meter:
                seen.setdefault(reading.meter_id, []).append(
                    ((reading.at - _EPOCH) // _MS, _identity(reading)))
            else:
                skipped += 1  # a meter the gateway stores nothing for
        for marks in seen.values():
            marks.sort(key=lambda mark: mark[0])
        try:
            for meter, marks in seen.items():  # series of the meter with no reads here
                for key in self._by_meter[meter]:
                    if key not in groups:
                        series = procs[key]
                        touched.setdefault(key, series)
                        before.setdefault(key, series.snapshot())
                        for at_ms, identity in marks:
                            series.observe_identity(at_ms, identity)
            for key, group in groups.items():
                proc = procs.get(key)
                if proc is None:
                    for reading in group:
                        if reading.kind is Kind.CUMULATIVE:
                            quarantine.append(_unknown_series(reading, source, now_ms))
                        else:
                            skipped += 1
                    continue
                if key not in touched:
                    touched[key] = proc
                    before[key] = proc.snapshot()
                for segment in _segments(proc, group, seen.get(key[0], ())):
                    out = proc.feed_many(segment, now_ms)
                    if out.gaps:
                        shapes.extend(_long_gaps(key, self._configs[key], out.gaps,
                                                 out.intervals, len(intervals)))
                    intervals.extend(out.intervals)
                    if out.events:
                        quarantine.extend(_quarantined(out.events, source, now_ms))
                        notes.extend(_noted(out.events, source))
            cursors = {key: _encode(proc.snapshot()) for key, proc in touched.items()}
        except BaseException:
            self._rewind(before)  # nothing of a half-processed batch stays applied
            raise
        return _Step(readings=len(readings), intervals=intervals, cursors=cursors,
                     quarantine=quarantine, notes=notes, before=before, skipped=skipped,
                     shapes=shapes)

    async def _shape(self, step: _Step) -> None:
        """Shape each long gap of the step by its reference day, where one is found."""
        for shape in step.shapes:
            key, cfg = shape.key, self._configs[shape.key]
            zone = self._zones.get(key)
            if zone is None:
                continue
            run = step.intervals[shape.offset:shape.offset + shape.count]
            starts = [int(iv.start.timestamp()) for iv in run]
            known = _own(step.intervals, key, shape)
            for days_back in candidate_offsets(cfg.reference_day, cfg.reference_candidates):
                refs = reference_starts(starts, zone, days_back, cfg.interval_s)
                lo, hi = min(refs), max(refs) + cfg.interval_s
                stored = {int(iv.start.timestamp()): (iv.value, iv.quality)
                          for iv in await self._store.intervals(
                              key[0], key[1], datetime.fromtimestamp(lo, UTC),
                              datetime.fromtimestamp(hi, UTC))}
                stored.update((s, v) for s, v in known.items() if lo <= s < hi)
                weights = reference_weights(refs, stored)
                if weights is not None:
                    step.intervals[shape.offset:shape.offset + shape.count] = (
                        self._procs[key].reshape(run, weights))
                    break

    async def _commit(self, step: _Step) -> WriteResult:
        return await self._store.write_intervals(
            step.intervals, cursors=step.cursors, quarantine=step.quarantine,
            events=step.notes
        )

    def _rewind(self, before: dict[tuple[str, str], SeriesState]) -> None:
        for key, state in before.items():
            self._procs[key] = SeriesProcessor.restore(self._configs[key], state)


class _Step(msgspec.Struct, frozen=True, kw_only=True):
    """One batch processed and not yet committed, with what it takes to undo it."""

    readings: int
    intervals: list[IntervalReading]
    cursors: dict[tuple[str, str], bytes]
    quarantine: list[QuarantineItem]
    notes: list[SeriesEventRecord]
    before: dict[tuple[str, str], SeriesState]
    skipped: int
    #: Long gap runs to shape by a reference day before the commit.
    shapes: list[_Shape] = msgspec.field(default_factory=list)

    def result(self, written: WriteResult) -> FeedResult:
        return FeedResult(readings=self.readings, intervals=len(self.intervals),
                          written=written, skipped=self.skipped,
                          quarantined=len(self.quarantine))


class _Shape(msgspec.Struct, frozen=True, gc=False):
    """A run of a step's intervals (``offset``, ``count``) wholly inside one long gap."""

    key: tuple[str, str]
    offset: int
    count: int


def _long_gaps(key: tuple[str, str], cfg: SeriesConfig, gaps: Sequence[GapRun],
               intervals: Sequence[IntervalReading], offset: int) -> list[_Shape]:
    """The runs of one output long enough to be shaped by a reference day."""
    after = cfg.reference_day_after_s
    if after is None:
        return []
    out = []
    index = {int(iv.start.timestamp()) * 1000: i for i, iv in enumerate(intervals)}
    for gap in gaps:
        first, last = index.get(gap.first_ms), index.get(gap.last_ms)
        if first is None or last is None or last < first:
            continue
        if (gap.last_ms - gap.first_ms) // 1000 + cfg.interval_s >= after:
            out.append(_Shape(key, offset + first, last - first + 1))
    return out


def _own(intervals: Sequence[IntervalReading], key: tuple[str, str],
         shape: _Shape) -> dict[int, tuple[int, Quality]]:
    """The step's own intervals of the series outside the run: a reference may be in
    the very batch (an import of several weeks)."""
    return {int(iv.start.timestamp()): (iv.value, iv.quality)
            for i, iv in enumerate(intervals)
            if (iv.meter_id, iv.channel) == key
            and not shape.offset <= i < shape.offset + shape.count}


async def _committed(commit: asyncio.Future[WriteResult]) -> bool:
    """Wait for a commit to finish, even while being cancelled; True if it landed."""
    while not commit.done():
        try:
            await asyncio.wait([commit])
        except asyncio.CancelledError:
            continue  # the store's thread finishes the transaction regardless
    return not commit.cancelled() and commit.exception() is None


#: Events kept in the audit although their read was used: what changes how a series
#: continues. (Rollovers are in the intervals' flags; held reads end as one of these.)
_NOTED = frozenset({EventKind.EXCHANGE, EventKind.RESET, EventKind.AMBIGUOUS,
                    EventKind.BACKFILL, EventKind.FROZEN})


def _noted(events: Sequence[SeriesEvent], source: str) -> list[SeriesEventRecord]:
    return [
        SeriesEventRecord(at=event.reading.at, kind=str(event.kind),
                          meter_id=event.reading.meter_id, channel=event.reading.channel,
                          payload=f"{source}: {_describe(event.reading)}", reason=event.reason)
        for event in events if event.kind in _NOTED
    ]


def _quarantined(events: Sequence[SeriesEvent], source: str,
                 now_ms: int) -> list[QuarantineItem]:
    at = datetime.fromtimestamp(now_ms / 1000, UTC)
    return [
        QuarantineItem(at=at, source=source, meter_id=event.reading.meter_id,
                       channel=event.reading.channel, payload=_describe(event.reading),
                       reason=event.reason)
        for event in events if event.quarantine
    ]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _segments(proc: SeriesProcessor, group: list[Reading],
              marks: Sequence[tuple[int, str]]) -> Iterator[list[Reading]]:
    """The group's reads split at each identity mark, the mark given to ``proc`` before
    the reads at or after its instant. Without marks: the whole group, no copy."""
    if not marks:
        yield group
        return
    i = 0
    for at_ms, identity in marks:
        j = i
        while j < len(group) and (group[j].at - _EPOCH) // _MS < at_ms:
            j += 1
        if j > i:
            yield group[i:j]
        proc.observe_identity(at_ms, identity)
        i = j
    if i < len(group):
        yield group[i:]


def _identity(reading: Reading) -> str:
    """A serial number as text: 12345678, not 12345678.0 or 1.2345678E+7."""
    value = reading.value
    return str(int(value)) if value == value.to_integral_value() else str(value)


def _describe(reading: Reading) -> str:
    return f"{reading.meter_id},{reading.channel},{reading.at.isoformat()},{reading.value}"


def _unknown_series(reading: Reading, source: str, now_ms: int) -> QuarantineItem:
    return QuarantineItem(
        at=datetime.fromtimestamp(now_ms / 1000, UTC), source=source,
        meter_id=reading.meter_id, channel=reading.channel, payload=_describe(reading),
        reason=f"no configured meter {reading.meter_id!r} with cumulative channel "
               f"{reading.channel!r}",
    )
