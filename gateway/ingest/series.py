"""One series end to end: register reads in, validated intervals and audit events out.

``SeriesProcessor`` composes, for one cumulative channel of one meter, the reading rules
(``gateway.validation.stage``), the register tracker (``gateway.validation.rollover``)
and the grid (``gateway.ingest.intervalize``). It is pure: the caller passes the
gateway's ``now_ms`` and stores what comes out.

Conventions:

- Reads are converted to base units exactly (``Decimal`` value × ``unit.factor``; a
  read in any unit with the series' base unit is accepted, kWh or Wh alike). Instants
  become integer epoch milliseconds (sub-millisecond parts are floored).
- Intervals come out in the base unit (Wh for a kWh register), identified by start,
  with ``quality = quality_of(flags)``; see ``intervalize`` for how values and flags
  are derived. A read's own flags (e.g. ``CLOCK_UNTRUSTED`` from its driver) and the
  flags the reading rules fire join the flags of the step that ends at it.
- Every read that is not simply used gives a ``SeriesEvent`` carrying the ``Reading`` it
  is about and a human reason: baseline, rollover, over_max, held, glitch / reset /
  superseded (about the read held earlier), stale, conflict, out_of_range, future,
  foreign, exchange, backfill. ``event.quarantine`` is true when that read will never
  be used (glitch, superseded, stale, conflict, out_of_range, future, foreign); the
  others are for the audit log. An exact duplicate of the last read gives nothing at all.
- A read stamped in the future (``Flag.FUTURE``) is quarantined, not used: taken in, a
  clock far ahead would make every later honest read look out of order.
- The optional VEE rules (``config.vee``, all off by default) add flags: a read
  repeating the previous read's meter timestamp gets ``Flag.FROZEN``; each emitted
  interval is judged in order by the demand limit and spike rules (``Flag.SPIKE``)
  and the zero-run rule (``Flag.ZERO_RUN``). Values are never changed by them. A
  frozen read that also repeats the last register value is the meter's previous
  snapshot served again (a known fault: the same registers and clock an hour later):
  it is not a reading at its gateway time, so it is not used (a ``FROZEN`` audit
  event), and the next fresh read spans the step: no false zero hour, no double hour.
  A frozen read whose value moved (a stuck clock, moving registers) is used, flagged.
- Gaps stay open to late reads. A step between two reads longer than ``max_gap_s``
  spreads its consumption linearly (``Flag.GAP_SPANNED``, ESPI 9) and is remembered
  (``gateway.ingest.gaps``, up to ``backfill_window_s`` back). A read older than the
  last one that falls inside such a gap (a catch-up from the meter's memory, a late
  batch) and fits the reads around it (between them, after the register turn that puts
  it there, and within the rating on both sides) re-derives the gap's intervals: the output
  repeats those intervals with their new values and a ``BACKFILL`` event says why.
  Fed in time order, however batched and across restarts, late reads end exactly
  where the same reads fed in time would have. One that does not fit is quarantined.
  Re-derived intervals are judged again by the rules without memory (demand limit);
  the stateful windows (spike, zero run) judged each interval once, as first derived.
- ``gaps`` in the output name the runs of intervals wholly inside a gap, for the
  caller to shape by a reference day (``reshape``; see
  ``gateway.validation.estimate``): the run's total stays exact, its flags gain
  ``Flag.REFERENCE_DAY`` (ESPI 8).
- ``snapshot()`` / ``SeriesProcessor.restore(config, state)`` carry the whole state
  (last read, held read, open interval, the rules' windows) over a restart, so the
  interval straddling it is still emitted, once, and judged as if nothing happened.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec

from gateway.errors import ConfigError
from gateway.ingest.gaps import GapRun, Gaps, GapSpan, LateRead
from gateway.ingest.intervalize import Interval, Intervalizer, IntervalizerState
from gateway.model import Flag, IntervalReading, Kind, Quality, Reading, Unit, quality_of
from gateway.validation.estimate import ReferenceDay, spread
from gateway.validation.rollover import (
    Notice,
    Outcome,
    Point,
    RegisterTracker,
    TrackerConfig,
    TrackerState,
    Verdict,
)
from gateway.validation.rules import JumpBeyondRating, StatefulRule, VeeState
from gateway.validation.stage import ValidationStage, VeeConfig

__all__ = ["EventKind", "GapRun", "GapSpan", "SeriesConfig", "SeriesEvent", "SeriesOutput",
           "SeriesProcessor", "SeriesState"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_FUTURE = int(Flag.FUTURE)
_FUTURE_OR_FROZEN = _FUTURE | int(Flag.FROZEN)
_QUALITY: dict[int, Quality] = {}


class SeriesConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One cumulative channel of one meter. Energies in base units, power in W."""

    meter_id: str
    channel: str
    #: The register's unit (kWh); intervals are in ``unit.base`` (Wh).
    unit: Unit
    interval_s: int = 900
    snap_tolerance_s: float = 0
    max_gap_s: int = 3600
    #: Where the register wraps, in base units (4-digit kWh register: 10_000_000).
    modulus: Decimal | None = None
    max_power_w: Decimal | None = None
    tolerance: Decimal = Decimal("0.1")
    #: Always-plausible energy on top of the rating, base units; None: one ``unit``
    #: (the register's last digit may tick between two close reads).
    slack: Decimal | None = None
    #: How far ahead of the gateway's clock a read may be stamped.
    future_tolerance_s: int = 300
    #: The optional VEE rules (spike, zero run, frozen register): all off by default.
    vee: VeeConfig = VeeConfig()
    #: How long a gap stays open to late reads (a catch-up) that re-derive its estimates.
    backfill_window_s: int = 35 * 86400
    #: Gaps at least this long are shaped by a reference day (the pipeline looks it up
    #: in the store); None: every gap is spread linearly.
    reference_day_after_s: int | None = None
    #: Which day: ``same_weekday`` (a week earlier, then two...) or ``previous_day``.
    reference_day: ReferenceDay = "same_weekday"
    #: How many candidate days to try, nearest first, before staying linear.
    reference_candidates: int = 4

    def __post_init__(self) -> None:
        if self.backfill_window_s < 0:
            raise ConfigError("backfill window must be >= 0 s", key="backfill_window_days",
                              fix="give how many days late reads may still fill a gap")
        if self.reference_day_after_s is not None and self.reference_day_after_s <= 0:
            raise ConfigError("reference_day_after_s must be > 0", key="reference_day_after_s",
                              fix="give the gap length (s) from which to shape estimates "
                                  "by a reference day, or omit it to stay linear")
        if self.reference_day not in ("same_weekday", "previous_day"):
            raise ConfigError(f"unknown reference day {self.reference_day!r}",
                              key="reference_day", fix='use "same_weekday" or "previous_day"')
        if self.reference_candidates < 1:
            raise ConfigError("reference_candidates must be >= 1", key="reference_candidates",
                              fix="give how many earlier days to try (e.g. 4)")

    def tracker_config(self) -> TrackerConfig:
        slack = self.slack if self.slack is not None else Decimal(self.unit.factor)
        return TrackerConfig(modulus=self.modulus, max_power_w=self.max_power_w,
                             tolerance=self.tolerance, slack=slack)


class EventKind(enum.StrEnum):
    """Why a read went to the audit. The tracker's verdicts plus the processor's own."""

    BASELINE = "baseline"
    ROLLOVER = "rollover"
    AMBIGUOUS = "ambiguous"  # kept, questionable: whole turns of the register may be missing
    HELD = "held"
    GLITCH = "glitch"
    RESET = "reset"
    SUPERSEDED = "superseded"
    STALE = "stale"
    CONFLICT = "conflict"
    OUT_OF_RANGE = "out_of_range"
    FUTURE = "future"  # stamped ahead of the gateway clock: quarantined
    EXCHANGE = "exchange"  # the first read of a new meter (new serial): a new baseline
    BACKFILL = "backfill"  # a late read inside a gap: the gap's estimates re-derived
    FROZEN = "frozen"  # the meter's previous snapshot served again: not used, audited
    FOREIGN = "foreign"  # not this series (meter, channel, kind, unit or naive time)


#: Register values are refused beyond 10^15 of their unit (a trillion kWh), and beyond a
#: 64-bit integer in base units: the store keeps energy as SQLite integers.
_MAX_DIGITS = 15
_INT64 = Decimal(2**63)
_NO_EVENTS: tuple[SeriesEvent, ...] = ()
_EXCHANGE = int(Flag.METER_EXCHANGE)


#: A datetime, its epoch ms, and the last whole-ms step between two reads and its ms.
_Memo = tuple[datetime, int, timedelta | None, int]


def _safe_digits(factor: int) -> int:
    """The largest ``adjusted()`` of a register value whose value in base units (× factor)
    is surely within a 64-bit integer: ``10^(digits + 1) × factor <= 2^63``."""
    digits = -1
    while 10 ** (digits + 2) * factor <= 2**63:
        digits += 1
    return digits


def _iso_ms(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()
_KIND = {verdict: EventKind(verdict.value) for verdict in Verdict}
_ABOUT_HELD = frozenset({Verdict.GLITCH, Verdict.RESET, Verdict.SUPERSEDED})
#: Events whose read is finally not used: they belong in the quarantine, the rest in the
#: audit log only. A held read is not yet final (it may become a reset's baseline; the
#: processor's state keeps it meanwhile).
_QUARANTINE = frozenset({EventKind.GLITCH, EventKind.SUPERSEDED, EventKind.STALE,
                         EventKind.CONFLICT, EventKind.OUT_OF_RANGE, EventKind.FUTURE,
                         EventKind.FOREIGN})


class SeriesEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one read, for the audit or the quarantine."""

    kind: EventKind
    reading: Reading
    flags: int
    reason: str

    @property
    def quarantine(self) -> bool:
        """True when the read will not be used: keep it in the quarantine."""
        return self.kind in _QUARANTINE


class SeriesOutput(msgspec.Struct, frozen=True, gc=False):
    """What one read produced. Read-only: most reads share the one empty ``events``."""

    intervals: Sequence[IntervalReading]
    events: Sequence[SeriesEvent]
    #: Runs of ``intervals`` that lie wholly inside a gap (linear estimates), for the
    #: caller to shape by a reference day (``reshape``) when the gap is long enough.
    gaps: Sequence[GapRun] = ()


class SeriesState(msgspec.Struct, frozen=True, kw_only=True):
    """A processor's whole state, to persist across a gateway restart."""

    meter_id: str
    channel: str
    interval_s: int
    tracker: TrackerState
    grid: IntervalizerState
    #: The read the tracker holds back (its audit record), and the flags it came with.
    held: Reading | None = None
    held_flags: int = 0
    #: What the stateful VEE rules remember (empty in states saved before they existed).
    vee: VeeState = VeeState()
    #: The meter's identity (serial number) as last seen, and an exchange seen but not yet
    #: applied: from ``exchange_at_ms`` on, reads come from meter ``exchange_to``.
    identity: str | None = None
    exchange_at_ms: int | None = None
    exchange_to: str | None = None
    #: Recent gaps still open to late reads (oldest first).
    spans: tuple[GapSpan, ...] = ()


_REFERENCE_DAY = int(Flag.REFERENCE_DAY)


class SeriesProcessor:
    """Tracker + rules + grid for one series. See the module doc."""

    __slots__ = (
        "_at_memo",
        "_base",
        "_channel",
        "_check_interval",
        "_check_reading",
        "_exchange_at",
        "_exchange_to",
        "_factor",
        "_gap_ms",
        "_gaps",
        "_grid",
        "_held",
        "_held_flags",
        "_identity",
        "_last_pt",
        "_len_ms",
        "_len_td",
        "_length_s",
        "_meter",
        "_meter_at_memo",
        "_next_dt",
        "_next_ms",
        "_plain_rules",
        "_safe_digits",
        "_stage",
        "_tracker",
        "_unit",
        "config",
    )

    def __init__(self, config: SeriesConfig, *, stage: ValidationStage | None = None) -> None:
        """``stage`` replaces the rules ``config`` asks for (``config.vee``)."""
        self.config = config
        self._stage = stage or ValidationStage.from_config(
            config.vee, future_tolerance_s=config.future_tolerance_s)
        self._check_reading = self._stage.check_reading
        self._check_interval = self._stage.check_interval if self._stage.interval_rules else None
        self._tracker = RegisterTracker(config.tracker_config())
        self._grid = Intervalizer(config.interval_s, snap_tolerance_s=config.snap_tolerance_s,
                                  max_gap_s=config.max_gap_s)
        self._meter = config.meter_id
        self._channel = config.channel
        self._base = config.unit.base
        self._unit = config.unit  # the unit of the last read and its factor, cached
        self._factor = config.unit.factor
        self._held: Reading | None = None
        self._held_flags = 0
        self._identity: str | None = None
        self._exchange_at: int | None = None
        self._exchange_to: str | None = None
        self._length_s = config.interval_s
        self._len_ms = config.interval_s * 1000
        self._len_td = timedelta(seconds=config.interval_s)
        self._next_ms: int | None = None  # start of the next interval, cached as a datetime
        self._next_dt = _EPOCH
        # The last read's time and epoch ms, and the last whole-ms step between two reads
        # and its ms (see feed_many); the same for the meter's own time.
        self._at_memo: _Memo = (_EPOCH, 0, None, 0)
        self._meter_at_memo: _Memo = (_EPOCH, 0, None, 0)
        self._safe_digits = _safe_digits(self._factor)
        self._gap_ms = config.max_gap_s * 1000
        self._last_pt: int | None = None  # the last point fed to the grid (epoch ms)
        self._gaps = self._new_gaps(())
        # Re-derived intervals are judged by the rules without memory only: the stateful
        # windows (spike, zero run) see each interval once, as first derived.
        self._plain_rules = tuple(rule for rule in self._stage.interval_rules
                                  if not isinstance(rule, StatefulRule))

    @classmethod
    def restore(cls, config: SeriesConfig, state: SeriesState, *,
                stage: ValidationStage | None = None) -> SeriesProcessor:
        """A processor that continues from ``state`` (taken by ``snapshot``)."""
        if (state.meter_id, state.channel) != (config.meter_id, config.channel):
            raise ConfigError(f"saved state is for {state.meter_id}/{state.channel}",
                              key="meter_id", fix="restore each series from its own state")
        if state.interval_s != config.interval_s:
            raise ConfigError(f"saved state uses {state.interval_s} s intervals, config "
                              f"{config.interval_s} s", key="interval_s",
                              fix="keep the interval length of a series")
        if (state.held is None) != (state.tracker.held_at_ms is None):
            raise ValueError("inconsistent series state: held read and tracker disagree")
        self = cls(config, stage=stage)
        self._tracker = RegisterTracker(self._tracker.config, state.tracker)
        self._grid = Intervalizer(config.interval_s, snap_tolerance_s=config.snap_tolerance_s,
                                  max_gap_s=config.max_gap_s, state=state.grid)
        self._held = state.held
        self._held_flags = state.held_flags
        self._stage.restore(state.vee)
        self._identity = state.identity
        self._exchange_at, self._exchange_to = state.exchange_at_ms, state.exchange_to
        self._gaps = self._new_gaps(state.spans)
        self._last_pt = state.grid.prev_at_ms
        return self

    def _new_gaps(self, spans: tuple[GapSpan, ...]) -> Gaps:
        cfg = self.config
        tracker = cfg.tracker_config()
        return Gaps(interval_s=cfg.interval_s, snap_tolerance_s=cfg.snap_tolerance_s,
                    max_gap_s=cfg.max_gap_s, backfill_window_s=cfg.backfill_window_s,
                    modulus=cfg.modulus, unit_name=cfg.unit.base.value, spans=spans,
                    jump=JumpBeyondRating(tracker.max_power_w, tolerance=tracker.tolerance,
                                          slack=tracker.slack))

    def snapshot(self) -> SeriesState:
        return SeriesState(meter_id=self._meter, channel=self._channel,
                           interval_s=self.config.interval_s, tracker=self._tracker.snapshot(),
                           grid=self._grid.snapshot(), held=self._held,
                           held_flags=self._held_flags,
                           identity=self._identity, exchange_at_ms=self._exchange_at,
                           exchange_to=self._exchange_to, vee=self._stage.snapshot(),
                           spans=tuple(self._gaps.spans))

    def feed(self, reading: Reading, now_ms: int) -> SeriesOutput:
        """Take one register read; ``now_ms`` is the gateway clock (epoch ms)."""
        return self.feed_many((reading,), now_ms)

    def feed_many(self, readings: Iterable[Reading], now_ms: int) -> SeriesOutput:
        """Take register reads in time order, with one output for them all.

        The pipeline hands over a batch's reads of this series at once: the lookups
        below are made once per batch, not once per read.
        """
        intervals: list[IntervalReading] = []
        events: list[SeriesEvent] = []
        gaps: list[GapRun] = []
        late: list[LateRead] = []
        book = self._gaps
        step, grid, check = self._tracker.step, self._grid.feed, self._check_reading
        gap_ms, last_pt, tail = self._gap_ms, self._last_pt, book.tail_ms
        interval = self._interval
        meter_time = self._stage.uses_meter_at
        # Only observe_identity (between calls) sets an exchange; here it is only applied.
        pending = self._exchange_at
        # Epoch ms of a UTC datetime by difference from the previous one when that
        # difference repeats (regular polls): ``(at - _EPOCH) // _MS`` costs a timedelta
        # division. Exact: floor((t0 + d) / 1 ms) = floor(t0 / 1 ms) + d / 1 ms when d is
        # whole ms. UTC only: between two times of one other zone, ``-`` ignores DST.
        prev_at, prev_ms, step_td, step_ms = self._at_memo
        prev_mt, prev_mt_ms, mstep_td, mstep_ms = self._meter_at_memo
        safe_digits = self._safe_digits
        for reading in readings:
            at = reading.at
            unit = reading.unit
            if unit is not self._unit:  # another unit of the same base (Wh for a kWh series)
                if unit.base is not self._base:
                    events.append(self._foreign(reading))
                    continue
                self._unit, self._factor = unit, unit.factor
                safe_digits = self._safe_digits = _safe_digits(unit.factor)
            if (reading.meter_id != self._meter or reading.channel != self._channel
                    or reading.kind is not Kind.CUMULATIVE or at.tzinfo is None):
                events.append(self._foreign(reading))
                continue
            raw = reading.value
            if not raw.is_finite():
                events.append(self._unusable(reading))
                continue
            digits = raw.adjusted()
            if digits > _MAX_DIGITS:
                events.append(self._unusable(reading))
                continue
            if at.tzinfo is UTC:
                dt = at - prev_at
                if dt == step_td:
                    at_ms = prev_ms + step_ms
                else:
                    at_ms = (at - _EPOCH) // _MS
                    if not dt.microseconds % 1000:
                        step_td, step_ms = dt, at_ms - prev_ms
                prev_at, prev_ms = at, at_ms
            else:
                at_ms = (at - _EPOCH) // _MS
            factor = self._factor
            value = raw * factor if factor != 1 else raw
            # |raw| < 10^(digits + 1): within 2^63 in base units without a look at value.
            if digits > safe_digits and (value >= _INT64 or value <= -_INT64):
                events.append(self._unusable(reading))
                continue
            exchange = None
            if pending is not None and at_ms >= pending:
                exchange = self._exchange(at_ms, value, events)
                step = self._tracker.step  # the new meter's tracker from here on
                pending = None
                tail = -1  # the old meter's gaps are closed
            meter_at = reading.meter_at if meter_time else None
            if meter_at is not None and meter_at.tzinfo is not None:
                if meter_at.tzinfo is UTC:
                    dt = meter_at - prev_mt
                    if dt == mstep_td:
                        meter_ms = prev_mt_ms + mstep_ms
                    else:
                        meter_ms = (meter_at - _EPOCH) // _MS
                        if not dt.microseconds % 1000:
                            mstep_td, mstep_ms = dt, meter_ms - prev_mt_ms
                    prev_mt, prev_mt_ms = meter_at, meter_ms
                else:
                    meter_ms = (meter_at - _EPOCH) // _MS
                flags = check(at_ms, value, now_ms, meter_ms) | reading.flags
            else:  # no rule looks at the meter's time, or it gave none (or a naive one)
                flags = check(at_ms, value, now_ms) | reading.flags
            if flags & _FUTURE_OR_FROZEN:
                if flags & _FUTURE:
                    reason = (f"stamped {at.isoformat()}, ahead of the gateway clock by more "
                              "than the tolerance: not used")
                    events.append(SeriesEvent(kind=EventKind.FUTURE, reading=reading,
                                              flags=flags, reason=reason))
                    continue
                if value == self._tracker.snapshot().last_value:
                    stamp = meter_at.isoformat() if meter_at is not None else "?"
                    events.append(SeriesEvent(
                        kind=EventKind.FROZEN, reading=reading, flags=flags,
                        reason=f"the meter served its snapshot of {stamp} again (same clock, "
                               "same register): not a new reading, not used"))
                    continue
            outcome = step(at_ms, value)
            if not isinstance(outcome, Outcome):  # a plain rise: its continuous cumulative
                if tail < 0 and last_pt is not None and at_ms - last_pt <= gap_ms:
                    for iv in grid(at_ms, outcome, flags, False):
                        intervals.append(interval(iv))
                    last_pt = at_ms
                    continue
                outcome = Outcome((Point(at_ms, outcome, 0, False),))  # the general way
            held_flags = self._held_flags  # before _events may take the held read's place
            if exchange is not None:  # the new meter's first read: its baseline is the swap
                flags |= _EXCHANGE
                events.append(SeriesEvent(kind=EventKind.EXCHANGE, reading=reading,
                                          flags=flags, reason=exchange))
            elif outcome.notices:
                if book.spans and outcome.notices[0].verdict is Verdict.STALE:
                    refused = book.place(reading, at_ms, value, flags)
                    if not isinstance(refused, str):
                        late.append(refused)
                        continue  # inside a gap: re-derives it below
                    if refused:
                        events.append(SeriesEvent(kind=EventKind.STALE, reading=reading,
                                                  flags=flags, reason=refused))
                        continue
                events.extend(self._events(outcome.notices, reading, flags))
            for point in outcome.points:
                p_at = point.at_ms
                p_flags = point.flags | (flags if p_at == at_ms else held_flags)
                if point.brk or last_pt is None or p_at - last_pt <= gap_ms:
                    if point.brk and tail >= 0:
                        book.lose_tail()
                        tail = -1
                    if tail < 0:
                        for iv in grid(p_at, point.cumulative, p_flags, point.brk):
                            intervals.append(interval(iv))
                    else:
                        for iv in grid(p_at, point.cumulative, p_flags, point.brk):
                            emitted = interval(iv)
                            intervals.append(emitted)
                            if iv.start_ms == tail:
                                book.capture_tail(emitted, p_at, long=False)
                                tail = -1
                else:  # a gap: its estimates stay open to late reads
                    book.open(self._grid, p_at, point.cumulative, p_flags, interval,
                              intervals, gaps)
                    tail = book.tail_ms
                last_pt = p_at
        self._last_pt = last_pt
        book.tail_ms = tail
        self._at_memo = (prev_at, prev_ms, step_td, step_ms)
        self._meter_at_memo = (prev_mt, prev_mt_ms, mstep_td, mstep_ms)
        if late:
            verdicts, moved = book.backfill(late, self._grid, self._plain, intervals, gaps)
            if moved is not None:
                self._grid = moved
            events += [SeriesEvent(kind=EventKind(kind), reading=entry.reading,
                                   flags=entry.flags, reason=reason)
                       for kind, entry, reason in verdicts]
        # Most batches raise no event: share one empty tuple rather than keep a list
        # (every container built on this path is work for the cyclic collector).
        return SeriesOutput(intervals, events or _NO_EVENTS, gaps or ())

    def _interval(self, iv: Interval) -> IntervalReading:
        start_ms, value, flags = iv.start_ms, iv.value, iv.flags
        if self._check_interval is not None:
            flags |= self._check_interval(start_ms, self._length_s, value, flags)
        if start_ms == self._next_ms:
            start = self._next_dt  # consecutive intervals: one addition, no conversion
        else:
            start = datetime.fromtimestamp(start_ms // 1000, UTC)  # the grid is whole seconds
        self._next_ms = start_ms + self._len_ms
        self._next_dt = start + self._len_td
        quality = _QUALITY.get(flags)
        if quality is None:
            quality = _QUALITY[flags] = quality_of(flags)
        return IntervalReading(meter_id=self._meter, channel=self._channel, start=start,
                               length_s=self._length_s, value=value, unit=self._base,
                               quality=quality, flags=flags)

    def _events(self, notices: tuple[Notice, ...], reading: Reading,
                flags: int) -> list[SeriesEvent]:
        """Audit events for the tracker's notices; keeps the held read's record current."""
        events = []
        for notice in notices:
            if notice.verdict in _ABOUT_HELD:
                about, about_flags = self._held, self._held_flags
                self._held, self._held_flags = None, 0
                assert about is not None, "restore() checks the held read and tracker agree"
            else:
                about, about_flags = reading, flags
            if notice.verdict is Verdict.HELD:
                self._held, self._held_flags = reading, flags
            events.append(SeriesEvent(kind=_KIND[notice.verdict], reading=about,
                                      flags=notice.flags | about_flags, reason=notice.reason))
        return events

    # -- gaps: late reads and reference days -----------------------------------------

    def _plain(self, iv: Interval) -> IntervalReading:
        """A re-derived or reshaped interval, judged by the rules without memory."""
        flags = iv.flags
        if self._plain_rules:
            flags &= ~self._plain_mask()
            for rule in self._plain_rules:
                flags |= rule.check(iv.start_ms, self._length_s, iv.value, flags)
        return IntervalReading(meter_id=self._meter, channel=self._channel,
                               start=datetime.fromtimestamp(iv.start_ms // 1000, UTC),
                               length_s=self._length_s, value=iv.value, unit=self._base,
                               quality=quality_of(flags), flags=flags)

    def _plain_mask(self) -> int:
        mask = 0
        for rule in self._plain_rules:
            mask |= int(rule.flag)
        return mask

    def reshape(self, run: Sequence[IntervalReading],
                weights: Sequence[int]) -> list[IntervalReading]:
        """The intervals of one gap run shaped by a reference day's ``weights`` (one per
        interval, see ``gateway.validation.estimate``): the run's total is kept exactly,
        only its distribution changes, flagged ``Flag.REFERENCE_DAY`` (ESPI code 8)."""
        if len(run) != len(weights):
            raise ValueError(f"{len(run)} intervals but {len(weights)} weights")
        values = spread(sum(iv.value for iv in run), weights)
        return [self._plain(Interval((iv.start - _EPOCH) // _MS, value,
                                     iv.flags | _REFERENCE_DAY))
                for iv, value in zip(run, values, strict=True)]

    def observe_identity(self, at_ms: int, identity: str) -> None:
        """The meter's identity as read at ``at_ms``. A new one is a meter exchange: the
        first read at or after ``at_ms`` starts a new baseline (see ``_exchange``)."""
        if self._identity is None:
            self._identity = identity
        elif identity == self._identity:
            self._exchange_at = self._exchange_to = None  # the same meter after all
        elif identity != self._exchange_to:
            self._exchange_at, self._exchange_to = at_ms, identity

    def _exchange(self, at_ms: int, value: Decimal, events: list[SeriesEvent]) -> str:
        """Apply a pending exchange before the new meter's first read: a fresh tracker,
        so that read is a baseline with a break; the old meter's last read is its final
        read; what was used between the two is unknown and not invented."""
        old, new = self._identity, self._exchange_to
        last = self._tracker.snapshot()
        final = "none"
        if last.last_at_ms is not None:
            final = f"{last.last_value} at {_iso_ms(last.last_at_ms)}"
        if self._held is not None:  # the old meter's held read will never be resolved
            events.append(SeriesEvent(kind=EventKind.SUPERSEDED, reading=self._held,
                                      flags=self._held_flags,
                                      reason="held read of the old meter, before an exchange"))
            self._held, self._held_flags = None, 0
        self._tracker = RegisterTracker(self._tracker.config)
        self._identity, self._exchange_at, self._exchange_to = new, None, None
        self._gaps.clear()  # a late read of the old meter cannot be placed in the new one
        return (f"meter exchange: serial {old} -> {new}; old meter's final read {final}, "
                f"new meter's start read {value} at {_iso_ms(at_ms)}; the consumption "
                "between the two is not known and not invented")

    def _unusable(self, reading: Reading) -> SeriesEvent:
        return SeriesEvent(kind=EventKind.OUT_OF_RANGE, reading=reading, flags=0,
                           reason=f"{reading.value} {reading.unit} is not a usable register "
                                  "value (not finite, or beyond what any meter counts)")

    def _foreign(self, reading: Reading) -> SeriesEvent:
        expected = (f"{self._meter}/{self._channel}, a cumulative read in a unit of "
                    f"{self._base.value}, with a UTC-aware time")
        got = (f"{reading.meter_id}/{reading.channel}, {reading.kind.value} in "
               f"{reading.unit.value} at {reading.at.isoformat()}")
        return SeriesEvent(kind=EventKind.FOREIGN, reading=reading, flags=reading.flags,
                           reason=f"not this series: expected {expected}, got {got}")
