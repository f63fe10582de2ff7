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
  (``GapSpan``, up to ``backfill_window_s`` back). A read older than the last one that
  falls inside such a gap (a catch-up from the meter's memory, a late batch) and fits
  the reads around it (between them, after the register turn that puts it there, and
  within the rating on both sides) re-derives the gap's intervals with it: the output
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
from decimal import ROUND_CEILING, Decimal

import msgspec

from gateway.errors import ConfigError
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


class GapRun(msgspec.Struct, frozen=True, gc=False):
    """Consecutive intervals wholly inside one gap: starts ``first_ms`` .. ``last_ms``."""

    first_ms: int
    last_ms: int


class GapSpan(msgspec.Struct, frozen=True, kw_only=True):
    """A step between two reads longer than the max gap, kept so that a late read inside
    it (a catch-up, a replay from the meter's memory) can re-derive its estimates.

    ``grid`` is the grid just before the step (its last point is the gap's start read);
    ``end_*`` is the read that closed the gap, as it was fed. The *tail* is the interval
    that starts at the last boundary before the end read: it is emitted only by a later
    read, so its value is captured when it is (``tail_value``), to correct it by how
    much its start boundary moves.
    """

    grid: IntervalizerState
    end_at_ms: int
    end_cumulative: Decimal
    end_flags: int
    tail_ms: int
    #: The tail's start boundary as derived then (quantized, base units).
    tail_q: int
    #: The tail interval once emitted: its value, flags, and how its end boundary was
    #: derived (0 measured, INTERPOLATED or GAP_SPANNED). None while it is still open.
    tail_value: int | None = None
    tail_flags: int = 0
    tail_end_how: int = 0
    #: False once a break (reset) made the tail interval impossible.
    tail_open: bool = True


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


#: At most this many gaps per series stay open to late reads (the oldest go first).
_MAX_SPANS = 32
_GAP_SPANNED = int(Flag.GAP_SPANNED)
_REFERENCE_DAY = int(Flag.REFERENCE_DAY)
_INTERPOLATED = int(Flag.INTERPOLATED)
#: How a boundary was derived; an interval's own flags beside them come from its reads.
_DERIVATION = _INTERPOLATED | _GAP_SPANNED


class _Late(msgspec.Struct, frozen=True, gc=False):
    """A late read placed inside an open gap, waiting for the end of the batch."""

    span: GapSpan
    at_ms: int
    cumulative: Decimal
    flags: int
    reading: Reading


class SeriesProcessor:
    """Tracker + rules + grid for one series. See the module doc."""

    __slots__ = ("_at_memo", "_base", "_channel", "_check_interval", "_check_reading",
                 "_exchange_at", "_exchange_to", "_factor", "_gap_ms", "_grid", "_held",
                 "_held_flags", "_identity", "_jump", "_last_pt", "_len_ms", "_len_td",
                 "_length_s", "_meter", "_meter_at_memo", "_next_dt", "_next_ms", "_plain_rules",
                 "_safe_digits", "_spans", "_stage", "_tail_ms", "_tracker", "_unit", "config")

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
        self._spans: list[GapSpan] = []
        self._last_pt: int | None = None  # the last point fed to the grid (epoch ms)
        self._tail_ms = -1  # the newest span's tail interval, awaited (-1: none)
        tracker = config.tracker_config()
        self._jump = JumpBeyondRating(tracker.max_power_w, tolerance=tracker.tolerance,
                                      slack=tracker.slack)
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
        self._spans = list(state.spans)
        self._last_pt = state.grid.prev_at_ms
        newest = state.spans[-1] if state.spans else None
        if newest is not None and newest.tail_open and newest.tail_value is None:
            self._tail_ms = newest.tail_ms
        return self

    def snapshot(self) -> SeriesState:
        return SeriesState(meter_id=self._meter, channel=self._channel,
                           interval_s=self.config.interval_s, tracker=self._tracker.snapshot(),
                           grid=self._grid.snapshot(), held=self._held,
                           held_flags=self._held_flags,
                           identity=self._identity, exchange_at_ms=self._exchange_at,
                           exchange_to=self._exchange_to, vee=self._stage.snapshot(),
                           spans=tuple(self._spans))

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
        late: list[_Late] = []
        step, grid, check = self._tracker.step, self._grid.feed, self._check_reading
        gap_ms, last_pt, tail = self._gap_ms, self._last_pt, self._tail_ms
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
                if self._spans and outcome.notices[0].verdict is Verdict.STALE:
                    refused = self._late(reading, at_ms, value, flags, late)
                    if refused is None:
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
                        self._lose_tail()
                        tail = -1
                    if tail < 0:
                        for iv in grid(p_at, point.cumulative, p_flags, point.brk):
                            intervals.append(interval(iv))
                    else:
                        for iv in grid(p_at, point.cumulative, p_flags, point.brk):
                            emitted = interval(iv)
                            intervals.append(emitted)
                            if iv.start_ms == tail:
                                self._capture_tail(emitted, p_at, long=False)
                                tail = -1
                else:  # a gap: its estimates stay open to late reads
                    self._open_span(p_at, point.cumulative, p_flags, intervals, gaps)
                    tail = self._tail_ms
                last_pt = p_at
        self._last_pt = last_pt
        self._tail_ms = tail
        self._at_memo = (prev_at, prev_ms, step_td, step_ms)
        self._meter_at_memo = (prev_mt, prev_mt_ms, mstep_td, mstep_ms)
        if late:
            self._backfill(late, intervals, events, gaps)
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

    def _open_span(self, at_ms: int, cumulative: Decimal, flags: int,
                   intervals: list[IntervalReading], gaps: list[GapRun]) -> None:
        """Feed a point that ends a gap, and keep the gap open to late reads."""
        before = self._grid.snapshot()
        head = before.boundary_ms
        whole = self._inside_from(before)
        first = last = -1
        tail = self._tail_ms
        for iv in self._grid.feed(at_ms, cumulative, flags, False):
            emitted = self._interval(iv)
            intervals.append(emitted)
            if iv.start_ms == tail:
                self._capture_tail(emitted, at_ms, long=True)
            if iv.start_ms >= whole:  # wholly inside the gap
                if first < 0:
                    first = iv.start_ms
                last = iv.start_ms
        if first >= 0:
            gaps.append(GapRun(first, last))
        after = self._grid.snapshot()
        if after.boundary_ms is None or after.boundary_ms == head:
            return  # no boundary inside the gap: nothing estimated to re-derive
        spans = self._spans
        spans.append(GapSpan(grid=before, end_at_ms=at_ms, end_cumulative=cumulative,
                             end_flags=flags, tail_ms=after.boundary_ms,
                             tail_q=after.boundary_value))
        horizon = at_ms - self.config.backfill_window_s * 1000
        while spans and (len(spans) > _MAX_SPANS or spans[0].end_at_ms < horizon):
            del spans[0]
        self._tail_ms = after.boundary_ms if spans else -1

    def _inside_from(self, before: IntervalizerState) -> int:
        """The first interval start wholly inside a gap that starts at the grid's last
        point: the interval at the last boundary if that point measured it, else the
        next one (the interval before it holds measured consumption too)."""
        head = before.boundary_ms
        if head is None:
            return -1
        start_at = before.prev_at_ms
        snap_ms = round(self.config.snap_tolerance_s * 1000)
        return head if start_at is not None and head >= start_at - snap_ms else head + 1

    def _capture_tail(self, emitted: IntervalReading, at_ms: int, *, long: bool) -> None:
        """The newest gap's tail interval was emitted by the point at ``at_ms``: remember
        it as emitted."""
        span = self._spans[-1]
        self._spans[-1] = msgspec.structs.replace(
            span, tail_value=emitted.value, tail_flags=emitted.flags,
            tail_end_how=self._end_how(span.tail_ms, at_ms, long))
        self._tail_ms = -1

    def _end_how(self, tail_ms: int, at_ms: int, long: bool) -> int:
        """How the end boundary of the interval at ``tail_ms`` was derived by a step
        ending at ``at_ms``: measured when that read is within the snap tolerance."""
        if tail_ms + self._len_ms >= at_ms - round(self.config.snap_tolerance_s * 1000):
            return 0
        return _GAP_SPANNED if long else _INTERPOLATED

    def _lose_tail(self) -> None:
        """A break before the newest gap's tail interval: it will never be emitted."""
        if self._spans:
            self._spans[-1] = msgspec.structs.replace(self._spans[-1], tail_open=False)
        self._tail_ms = -1

    def _late(self, reading: Reading, at_ms: int, value: Decimal, flags: int,
              late: list[_Late]) -> str | None:
        """A read older than the last one: if it lies inside an open gap and fits the
        reads around it, queue it to re-derive the gap (None). Otherwise the reason to
        quarantine it, or "" when it is no gap's (the tracker's own verdict stands)."""
        for span in self._spans:
            start_at = span.grid.prev_at_ms
            c0 = span.grid.prev_cumulative
            if start_at is None or c0 is None or not start_at < at_ms < span.end_at_ms:
                continue
            c1 = span.end_cumulative
            where = f"the gap from {_iso_ms(start_at)} to {_iso_ms(span.end_at_ms)}"
            modulus = self.config.modulus
            if modulus is None:
                c = value
            else:  # the turn of the register that puts it between the reads around it
                turns = ((c0 - value) / modulus).to_integral_value(rounding=ROUND_CEILING)
                c = value + turns * modulus
                if c + modulus <= c1:
                    return (f"late read inside {where}: the register turned over more than "
                            "once across the gap, so where this read falls is ambiguous")
            if not c0 <= c <= c1:
                return (f"late read inside {where} does not fit the reads around it "
                        f"({c0} .. {c1} {self._base.value}): not used")
            if self._jump.check(at_ms - start_at, c - c0) or self._jump.check(
                    span.end_at_ms - at_ms, c1 - c):
                return (f"late read inside {where} implies a rate beyond the meter's "
                        "rating on one side of it: not used")
            late.append(_Late(span, at_ms, c, flags, reading))
            return None
        return ""

    def _backfill(self, late: list[_Late], intervals: list[IntervalReading],
                  events: list[SeriesEvent], gaps: list[GapRun]) -> None:
        """Re-derive each gap that late reads fell into, once per gap per batch."""
        # By the gap's end read: a span is replaced when its tail is captured or a gap
        # before it is re-derived, but its end read stays.
        by_end: dict[int, list[_Late]] = {}
        for entry in late:
            by_end.setdefault(entry.span.end_at_ms, []).append(entry)
        for end_at_ms, entries in by_end.items():
            span = next((s for s in self._spans if s.end_at_ms == end_at_ms), None)
            if span is None:  # closed by this very batch (too old, or too many gaps)
                for entry in entries:
                    events.append(SeriesEvent(
                        kind=EventKind.STALE, reading=entry.reading, flags=entry.flags,
                        reason="late read for a gap no longer open to re-derivation"))
                continue
            points: list[_Late] = []
            for entry in sorted(entries, key=lambda e: e.at_ms):
                if points and points[-1].at_ms == entry.at_ms:
                    if points[-1].cumulative != entry.cumulative:
                        events.append(SeriesEvent(
                            kind=EventKind.CONFLICT, reading=entry.reading, flags=entry.flags,
                            reason="late read at the same instant as another, other value"))
                    continue  # the same late read twice: once is enough
                points.append(entry)
            self._rederive(span, points, intervals, gaps)
            where = f"{_iso_ms(span.grid.prev_at_ms or 0)} to {_iso_ms(span.end_at_ms)}"
            for entry in points:
                events.append(SeriesEvent(
                    kind=EventKind.BACKFILL, reading=entry.reading, flags=entry.flags,
                    reason=f"late read inside the gap from {where}: the gap's estimated "
                           "intervals re-derived with it"))

    def _rederive(self, span: GapSpan, points: list[_Late], intervals: list[IntervalReading],
                  gaps: list[GapRun]) -> None:
        """Run the gap again from the grid before it, with the late reads in it. Sub-gaps
        still longer than the max gap stay open, and so does the last one (up to the
        gap's end read), where the rest of a catch-up will fall; the tail interval is
        corrected, or the live grid's boundary is, if the tail is not emitted yet."""
        cfg = self.config
        grid = Intervalizer(cfg.interval_s, snap_tolerance_s=cfg.snap_tolerance_s,
                            max_gap_s=cfg.max_gap_s, state=span.grid)
        steps = [(p.at_ms, p.cumulative, p.flags) for p in points]
        steps.append((span.end_at_ms, span.end_cumulative, span.end_flags))
        subs: list[GapSpan] = []
        awaiting = False  # subs[-1]'s tail is still to come
        prev = span.grid.prev_at_ms or 0
        for at_ms, cumulative, flags in steps:
            before = grid.snapshot()
            head = before.boundary_ms
            whole = self._inside_from(before)
            long = at_ms - prev > self._gap_ms
            first = last = -1
            for iv in grid.feed(at_ms, cumulative, flags, False):
                intervals.append(self._plain(iv))
                if awaiting and iv.start_ms == subs[-1].tail_ms:
                    subs[-1] = msgspec.structs.replace(
                        subs[-1], tail_value=iv.value, tail_flags=iv.flags,
                        tail_end_how=self._end_how(iv.start_ms, at_ms, long))
                    awaiting = False
                if long and iv.start_ms >= whole:
                    if first < 0:
                        first = iv.start_ms
                    last = iv.start_ms
            if first >= 0:
                gaps.append(GapRun(first, last))
            after = grid.snapshot()
            # The last step stays open however short it is: a catch-up in several
            # batches continues after the latest late read.
            keep = long or at_ms == span.end_at_ms
            if keep and after.boundary_ms is not None and after.boundary_ms != head:
                subs.append(GapSpan(grid=before, end_at_ms=at_ms, end_cumulative=cumulative,
                                    end_flags=flags, tail_ms=after.boundary_ms,
                                    tail_q=after.boundary_value))
                awaiting = True
            prev = at_ms
        final = grid.snapshot()
        tail_q, tail_bf = final.boundary_value, final.boundary_flags
        newest = self._spans[-1] is span
        if final.boundary_ms == span.tail_ms:
            if span.tail_value is not None:  # emitted already: re-emit it corrected
                value = span.tail_value + span.tail_q - tail_q
                flags = (span.tail_flags & ~_DERIVATION) | tail_bf | span.tail_end_how
                intervals.append(self._plain(Interval(span.tail_ms, value, flags)))
                if awaiting:
                    subs[-1] = msgspec.structs.replace(subs[-1], tail_value=value,
                                                       tail_flags=flags,
                                                       tail_end_how=span.tail_end_how)
                self._patch_next(span, tail_q, tail_bf)
            elif span.tail_open and newest and self._grid.snapshot().boundary_ms == span.tail_ms:
                live = self._grid.snapshot()  # the tail is still open: fix where it starts
                self._grid = Intervalizer(cfg.interval_s, snap_tolerance_s=cfg.snap_tolerance_s,
                                          max_gap_s=cfg.max_gap_s,
                                          state=msgspec.structs.replace(
                                              live, boundary_value=tail_q,
                                              boundary_flags=tail_bf))
            elif awaiting:
                subs[-1] = msgspec.structs.replace(subs[-1], tail_open=False)
        i = next(i for i, s in enumerate(self._spans) if s is span)
        self._spans[i:i + 1] = subs
        if newest:
            last_sub = subs[-1] if subs and subs[-1].end_at_ms == span.end_at_ms else None
            self._tail_ms = (last_sub.tail_ms if last_sub is not None and last_sub.tail_open
                             and last_sub.tail_value is None else -1)

    def _patch_next(self, span: GapSpan, tail_q: int, tail_bf: int) -> None:
        """A gap that starts where ``span`` ends begins at its corrected tail boundary."""
        for i, other in enumerate(self._spans):
            grid = other.grid
            # Its grid still starts from the tail boundary: no boundary was settled
            # between this gap's end read and its start read.
            if other is not span and grid.boundary_ms == span.tail_ms \
                    and (grid.prev_at_ms or 0) >= span.end_at_ms:
                self._spans[i] = msgspec.structs.replace(other, grid=msgspec.structs.replace(
                    grid, boundary_value=tail_q, boundary_flags=tail_bf))

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
        self._spans.clear()  # a late read of the old meter cannot be placed in the new one
        self._tail_ms = -1
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
