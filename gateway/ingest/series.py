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
  foreign. ``event.quarantine`` is true when that read will never be used (glitch,
  superseded, stale, conflict, out_of_range, future, foreign); the others are for the
  audit log. An exact duplicate of the last read gives nothing at all.
- A read stamped in the future (``Flag.FUTURE``) is quarantined, not used: taken in, a
  clock far ahead would make every later honest read look out of order.
- The optional VEE rules (``config.vee``, all off by default) only add flags: a read
  repeating the previous read's meter timestamp gets ``Flag.FROZEN`` (joining the
  flags of its step, like any read flag); each emitted interval is judged in order by
  the demand limit and spike rules (``Flag.SPIKE``) and the zero-run rule
  (``Flag.ZERO_RUN``). Values are never changed by them.
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
from gateway.ingest.intervalize import Interval, Intervalizer, IntervalizerState
from gateway.model import Flag, IntervalReading, Kind, Quality, Reading, Unit, quality_of
from gateway.validation.rollover import (
    Notice,
    RegisterTracker,
    TrackerConfig,
    TrackerState,
    Verdict,
)
from gateway.validation.rules import VeeState
from gateway.validation.stage import ValidationStage, VeeConfig

__all__ = ["EventKind", "SeriesConfig", "SeriesEvent", "SeriesOutput", "SeriesProcessor",
           "SeriesState"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_FUTURE = int(Flag.FUTURE)
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
    FOREIGN = "foreign"  # not this series (meter, channel, kind, unit or naive time)


#: Register values are refused beyond 10^15 of their unit (a trillion kWh), and beyond a
#: 64-bit integer in base units: the store keeps energy as SQLite integers.
_MAX_DIGITS = 15
_INT64 = Decimal(2**63)
_NO_EVENTS: tuple[SeriesEvent, ...] = ()
_EXCHANGE = int(Flag.METER_EXCHANGE)


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


class SeriesProcessor:
    """Tracker + rules + grid for one series. See the module doc."""

    __slots__ = ("_base", "_channel", "_check_interval", "_check_reading", "_exchange_at",
                 "_exchange_to", "_factor", "_grid", "_held", "_held_flags", "_identity",
                 "_len_ms", "_len_td", "_length_s", "_meter", "_next_dt", "_next_ms", "_stage",
                 "_tracker", "_unit", "config")

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
        return self

    def snapshot(self) -> SeriesState:
        return SeriesState(meter_id=self._meter, channel=self._channel,
                           interval_s=self.config.interval_s, tracker=self._tracker.snapshot(),
                           grid=self._grid.snapshot(), held=self._held,
                           held_flags=self._held_flags,
                           identity=self._identity, exchange_at_ms=self._exchange_at,
                           exchange_to=self._exchange_to, vee=self._stage.snapshot())

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
        track, grid, check = self._tracker.feed, self._grid.feed, self._check_reading
        interval = self._interval
        meter_time = self._stage.uses_meter_at
        # Only observe_identity (between calls) sets an exchange; here it is only applied.
        pending = self._exchange_at
        for reading in readings:
            at = reading.at
            unit = reading.unit
            if unit is not self._unit:  # another unit of the same base (Wh for a kWh series)
                if unit.base is not self._base:
                    events.append(self._foreign(reading))
                    continue
                self._unit, self._factor = unit, unit.factor
            if (reading.meter_id != self._meter or reading.channel != self._channel
                    or reading.kind is not Kind.CUMULATIVE or at.tzinfo is None):
                events.append(self._foreign(reading))
                continue
            raw = reading.value
            if not raw.is_finite() or raw.adjusted() > _MAX_DIGITS:
                events.append(self._unusable(reading))
                continue
            at_ms = (at - _EPOCH) // _MS
            factor = self._factor
            value = raw * factor if factor != 1 else raw
            if value >= _INT64 or value <= -_INT64:
                events.append(self._unusable(reading))
                continue
            exchange = None
            if pending is not None and at_ms >= pending:
                exchange = self._exchange(at_ms, value, events)
                track = self._tracker.feed  # the new meter's tracker from here on
                pending = None
            meter_at = reading.meter_at if meter_time else None
            if meter_at is not None and meter_at.tzinfo is not None:
                flags = check(at_ms, value, now_ms, (meter_at - _EPOCH) // _MS) | reading.flags
            else:  # no rule looks at the meter's time, or it gave none (or a naive one)
                flags = check(at_ms, value, now_ms) | reading.flags
            if flags & _FUTURE:
                reason = (f"stamped {at.isoformat()}, ahead of the gateway clock by more than "
                          "the tolerance: not used")
                events.append(SeriesEvent(kind=EventKind.FUTURE, reading=reading, flags=flags,
                                          reason=reason))
                continue
            outcome = track(at_ms, value)
            held_flags = self._held_flags  # before _events may take the held read's place
            if exchange is not None:  # the new meter's first read: its baseline is the swap
                flags |= _EXCHANGE
                events.append(SeriesEvent(kind=EventKind.EXCHANGE, reading=reading,
                                          flags=flags, reason=exchange))
            elif outcome.notices:
                events.extend(self._events(outcome.notices, reading, flags))
            for point in outcome.points:
                extra = flags if point.at_ms == at_ms else held_flags
                for iv in grid(point.at_ms, point.cumulative, point.flags | extra, point.brk):
                    intervals.append(interval(iv))
        # Most batches raise no event: share one empty tuple rather than keep a list
        # (every container built on this path is work for the cyclic collector).
        return SeriesOutput(intervals, events or _NO_EVENTS)

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
