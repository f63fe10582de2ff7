"""De-rollover of one cumulative register: a pure per-series state machine.

``RegisterTracker.feed(at_ms, value)`` takes the raw register reads of one series in
time order (epoch milliseconds, value in base units) and says what each one means:

- first read: a baseline, with a *break* (nothing before it is known);
- rise (or no change) within the meter's rating: continuous;
- rise beyond the rating: *held* with ``Flag.OVER_MAX``, as a drop is (one garbage read
  must not become consumption). The next read decides: continuing plausibly from the
  last good read makes it a *glitch*; continuing from the held read confirms the jump,
  which starts a new baseline there with a break (``Flag.RESET | Flag.OVER_MAX``): the
  energy between the two reads is not plausible consumption, so it is not stored;
- drop that a wrap of the register explains (``v + modulus - v0`` plausible under the
  rating): ``Flag.ROLLOVER``, continuous and exact (4-digit 9993 -> 0007 is +14);
- any other drop: *held* with ``Flag.NEGATIVE_DELTA``, neither used nor lost. The next
  read decides: continuing from the last good read (rise or plausible wrap) makes the
  held read a *glitch* (discarded, audited); continuing from the held read makes it a
  *reset*: a new baseline at the held read with a break and ``Flag.RESET`` (what was
  consumed between the last good read and the reset is unknown: not invented, not
  counted twice); lower than both, it *supersedes* the held read (held in its place).
- same instant and value again: a duplicate, ignored (no points, no notices);
  same instant with another value, or an older instant: refused with a notice;
  a value below zero or at/above the modulus: refused (the modulus is misconfigured).

The output is the *continuous cumulative* (the unwrapped register, base units) of the
reads accepted, as ``Point``s, plus ``Notice``s for the audit. Without a rating a wrap
is plausible only if the wrapped delta is below half the modulus: a register that
moved more than half its range between two reads cannot be told from one that went
back. At most one wrap is assumed between two reads: when the time between them would
let the register wrap more than once at the rating (an outage on a small counter; a
16-bit Wh counter wraps in 6.5 hours at 10 kW), the step is kept but flagged
``Flag.AMBIGUOUS_WRAPS`` (questionable) with a notice: whole turns may be missing.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from gateway.errors import ConfigError
from gateway.model import Flag
from gateway.validation.rules import JumpBeyondRating, NegativeDelta

__all__ = ["Notice", "Outcome", "Point", "RegisterTracker", "TrackerConfig", "TrackerState",
           "Verdict"]

_ROLLOVER = int(Flag.ROLLOVER)
_RESET = int(Flag.RESET)
_NEGATIVE_DELTA = int(Flag.NEGATIVE_DELTA)
_OVER_MAX = int(Flag.OVER_MAX)
_AMBIGUOUS = int(Flag.AMBIGUOUS_WRAPS)
_ZERO = Decimal(0)
_MS_PER_HOUR = 3_600_000


class TrackerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How one register behaves. Energies in base units, power in base units per hour."""

    #: Where the register wraps (4-digit kWh register: 10_000_000 Wh), or None.
    modulus: Decimal | None = None
    #: The meter's maximum rating (W for a Wh register), or None when unknown.
    max_power_w: Decimal | None = None
    #: Fraction over the rating still plausible.
    tolerance: Decimal = Decimal("0.1")
    #: Base units always plausible on top of the rating (register resolution, jitter).
    slack: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.modulus is not None and self.modulus <= 0:
            raise ConfigError("modulus must be > 0", key="modulus",
                              fix="omit it if the register never wraps")
        if self.max_power_w is not None and self.max_power_w <= 0:
            raise ConfigError("max_power_w must be > 0", key="max_power_w",
                              fix="omit it if unknown")
        if self.tolerance < 0 or self.slack < 0:
            raise ConfigError("tolerance and slack must be >= 0", key="tolerance")


class Verdict(enum.StrEnum):
    """What the tracker made of a read (the audit's vocabulary)."""

    BASELINE = "baseline"  # first read: a new baseline, nothing before it
    ROLLOVER = "rollover"  # the register wrapped and was unwrapped
    AMBIGUOUS = "ambiguous"  # kept, but the register may have wrapped more than once
    HELD = "held"  # went back unexplained: waits for the next read
    GLITCH = "glitch"  # a held read the next read ignored: discarded
    RESET = "reset"  # a held read the next read continued from: new baseline
    SUPERSEDED = "superseded"  # a held read replaced by a still lower read
    STALE = "stale"  # older than the last read (late or replayed): refused
    CONFLICT = "conflict"  # same instant as the last read, other value: refused
    OUT_OF_RANGE = "out_of_range"  # negative, or not below the modulus: refused


class Point(msgspec.Struct, frozen=True, gc=False):
    """A read accepted into the continuous cumulative (base units)."""

    at_ms: int
    cumulative: Decimal
    flags: int
    #: True when the cumulative does not continue from the previous point.
    brk: bool


class Notice(msgspec.Struct, frozen=True, gc=False):
    """Something the audit should keep about one read (the one fed, or the held one)."""

    verdict: Verdict
    at_ms: int
    value: Decimal
    flags: int
    reason: str


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """What one ``feed`` did: points for the intervalizer (in order), notices for the audit."""

    points: tuple[Point, ...] = ()
    notices: tuple[Notice, ...] = ()


class TrackerState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a tracker remembers; enough to resume after a restart."""

    last_at_ms: int | None = None
    last_value: Decimal | None = None
    #: Added to the raw register to make it continuous (wraps × modulus since the baseline).
    offset: Decimal = _ZERO
    held_at_ms: int | None = None
    held_value: Decimal | None = None
    #: The held read rose beyond the rating (True) or went back (False).
    held_high: bool = False


_NOTHING = Outcome()


def _iso(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")


class RegisterTracker:
    """De-rollover state of one register. Feed reads in time order; see the module doc."""

    __slots__ = ("_ambiguous_ms", "_fast", "_held_at", "_held_high", "_held_v", "_jump",
                 "_last_at", "_last_v", "_limit", "_limit_ms", "_modulus", "_negative", "_offset",
                 "config")

    def __init__(self, config: TrackerConfig, state: TrackerState | None = None) -> None:
        self.config = config
        self._modulus = config.modulus
        self._jump = JumpBeyondRating(config.max_power_w, tolerance=config.tolerance,
                                      slack=config.slack)
        self._negative = NegativeDelta()
        # From this many ms between reads, the register could wrap more than once at the
        # rating: computed once, so each read pays one integer comparison.
        reach = (self._jump.reach_ms(config.modulus)
                 if config.modulus is not None and self._jump.rated else None)
        self._ambiguous_ms = reach if reach is not None else -1
        # The fast path's rating limit (× ms per hour) for the last elapsed time it saw.
        self._limit_ms = -1
        self._limit: Decimal | None = None
        state = state or TrackerState()
        if (state.last_at_ms is None) != (state.last_value is None) or (
            (state.held_at_ms is None) != (state.held_value is None)
        ) or (state.held_at_ms is not None and state.last_at_ms is None):
            raise ValueError(f"inconsistent tracker state: {state!r}")
        self._last_at = state.last_at_ms
        self._last_v = state.last_value if state.last_value is not None else _ZERO
        # Only a state written by hand can hold a negative last read: the fast path in
        # ``feed`` then stays off (the general path refuses a negative read first).
        self._fast = not self._last_v < _ZERO
        self._offset = state.offset
        self._held_at = state.held_at_ms
        self._held_high = state.held_high
        self._held_v = state.held_value if state.held_value is not None else _ZERO

    def snapshot(self) -> TrackerState:
        has_last = self._last_at is not None
        has_held = self._held_at is not None
        return TrackerState(last_at_ms=self._last_at, last_value=self._last_v if has_last else None,
                            offset=self._offset, held_at_ms=self._held_at,
                            held_value=self._held_v if has_held else None,
                            held_high=self._held_high if has_held else False)

    def feed(self, at_ms: int, value: Decimal) -> Outcome:
        """Take one read (epoch ms, base units) and say what it means."""
        # The common case first, as in ``step`` (kept the same: see there).
        last_at = self._last_at
        if last_at is not None and at_ms > last_at and self._held_at is None and self._fast:
            delta = value - self._last_v
            if delta >= _ZERO and (self._modulus is None or value < self._modulus):
                elapsed = at_ms - last_at
                if elapsed != self._limit_ms:
                    self._limit_ms = elapsed
                    self._limit = self._jump.scaled_limit(elapsed)
                limit = self._limit
                if (limit is None or delta * _MS_PER_HOUR <= limit) and not (
                        0 <= self._ambiguous_ms <= elapsed):
                    self._last_at = at_ms
                    self._last_v = value
                    return Outcome((Point(at_ms, value + self._offset, 0, False),))
        return self._feed(at_ms, value)

    def step(self, at_ms: int, value: Decimal) -> Decimal | Outcome:
        """``feed`` for a hot loop: a plain rise gives just its continuous cumulative.

        What ``feed`` would return as ``Outcome((Point(at_ms, cumulative, 0, False),))``
        (no flags, no break, no notices: a rise within the range and the rating that
        cannot hide a wrap) comes back as ``cumulative`` alone, with no objects built;
        anything else as the ``Outcome`` ``feed`` gives. The state changes are the same.
        """
        # The common case first: nothing held, later than the last read, a rise within
        # the range and the rating that cannot hide a wrap. The same tests as ``_feed``
        # makes, in the order that settles it soonest (``_fast``: the last read is >= 0,
        # as every read the tracker accepts is, so a rise is >= 0 too). ``feed`` repeats
        # these lines: a call less on the hot path.
        last_at = self._last_at
        if last_at is not None and at_ms > last_at and self._held_at is None and self._fast:
            delta = value - self._last_v
            if delta >= _ZERO and (self._modulus is None or value < self._modulus):
                elapsed = at_ms - last_at
                if elapsed != self._limit_ms:  # polls are regular: the limit repeats
                    self._limit_ms = elapsed
                    self._limit = self._jump.scaled_limit(elapsed)
                limit = self._limit
                if (limit is None or delta * _MS_PER_HOUR <= limit) and not (
                        0 <= self._ambiguous_ms <= elapsed):
                    self._last_at = at_ms
                    self._last_v = value
                    return value + self._offset
        return self._feed(at_ms, value)

    def _feed(self, at_ms: int, value: Decimal) -> Outcome:
        modulus = self._modulus
        if value < _ZERO or (modulus is not None and value >= modulus):
            return _refuse(Verdict.OUT_OF_RANGE, at_ms, value,
                           f"{value} is outside the register's range [0, {modulus or 'inf'})")
        last_at = self._last_at
        if last_at is None:
            return self._baseline(at_ms, value, 0, Verdict.BASELINE, "first read: new baseline")
        if self._held_at is not None or at_ms <= last_at:
            return self._irregular(at_ms, value)
        elapsed = at_ms - last_at
        delta = value - self._last_v
        if not self._negative.check(elapsed, delta):
            if self._jump.check(elapsed, delta):
                self._held_at, self._held_v, self._held_high = at_ms, value, True
                return Outcome((), (self._over_max(at_ms, value, elapsed, delta),))
            self._last_at = at_ms
            self._last_v = value
            if self._ambiguous(elapsed):
                return self._ambiguous_step(at_ms, value, elapsed)
            return Outcome((Point(at_ms, value + self._offset, 0, False),))
        wrapped = self._wrap(elapsed, delta)
        if wrapped is not None:
            return self._continue_wrapped(at_ms, value, wrapped)
        self._held_high = False
        self._held_at = at_ms
        self._held_v = value
        return Outcome((), (Notice(Verdict.HELD, at_ms, value, _NEGATIVE_DELTA,
                                   f"{value} is below the last read {self._last_v} "
                                   f"({_iso(last_at)}) and no plausible wrap explains it: "
                                   "held until the next read"),))

    # -- the transitions -------------------------------------------------------------

    def _baseline(self, at_ms: int, value: Decimal, flags: int, verdict: Verdict,
                  reason: str) -> Outcome:
        self._last_at = at_ms
        self._last_v = value
        self._offset = _ZERO
        self._held_at = None
        return Outcome((Point(at_ms, value, flags, True),),
                       (Notice(verdict, at_ms, value, flags, reason),))

    def _wrap(self, elapsed_ms: int, delta: Decimal) -> Decimal | None:
        """The wrapped change if a drop of ``delta`` (< 0) is a plausible wrap, else None."""
        modulus = self._modulus
        if modulus is None:
            return None
        wrapped = delta + modulus
        if wrapped < 0:
            return None
        if self._jump.rated:
            return wrapped if self._jump.allows(elapsed_ms, wrapped) else None
        return wrapped if wrapped * 2 < modulus else None

    def _continue_wrapped(self, at_ms: int, value: Decimal, wrapped: Decimal) -> Outcome:
        prev_at, prev_v = self._last_at, self._last_v
        assert self._modulus is not None and prev_at is not None
        self._offset += self._modulus
        self._last_at = at_ms
        self._last_v = value
        notice = Notice(Verdict.ROLLOVER, at_ms, value, _ROLLOVER,
                        f"register wrapped from {prev_v} ({_iso(prev_at)}) to {value}: "
                        f"+{wrapped} with modulus {self._modulus}")
        if self._ambiguous(at_ms - prev_at):
            step = self._ambiguous_step(at_ms, value, at_ms - prev_at, _ROLLOVER)
            return Outcome(step.points, (notice, *step.notices))
        return Outcome((Point(at_ms, value + self._offset, _ROLLOVER, False),), (notice,))

    def _ambiguous(self, elapsed_ms: int) -> bool:
        """Whether the register could have wrapped more than once in ``elapsed_ms``."""
        return 0 <= self._ambiguous_ms <= elapsed_ms

    def _ambiguous_step(self, at_ms: int, value: Decimal, elapsed_ms: int,
                        flags: int = 0) -> Outcome:
        notice = Notice(Verdict.AMBIGUOUS, at_ms, value, _AMBIGUOUS | flags,
                        f"{elapsed_ms / 3_600_000:.1f} h since the last read: at the rating "
                        f"the register ({self._modulus}) could have wrapped more than once; "
                        "whole turns may be missing")
        return Outcome((Point(at_ms, value + self._offset, _AMBIGUOUS | flags, False),),
                       (notice,))

    def _over_max(self, at_ms: int, value: Decimal, elapsed: int, delta: Decimal) -> Notice:
        return Notice(Verdict.HELD, at_ms, value, _OVER_MAX,
                      f"+{delta} in {elapsed / 1000:g} s is beyond the rating "
                      f"(at most {self._jump.limit(elapsed)}): held until the next read")

    def _irregular(self, at_ms: int, value: Decimal) -> Outcome:
        """A read while one is held, or not after the last read."""
        held_at = self._held_at
        latest_at, latest_v = (self._last_at, self._last_v) if held_at is None else (
            held_at, self._held_v)
        assert latest_at is not None
        if at_ms > latest_at:
            return self._resolve(at_ms, value)
        if at_ms < latest_at:
            return _refuse(Verdict.STALE, at_ms, value, f"older than the last read "
                           f"({_iso(latest_at)}): out of order or replayed")
        if value == latest_v:
            return _NOTHING  # the same read again: idempotent
        return _refuse(Verdict.CONFLICT, at_ms, value,
                       f"same instant as the last read, which gave {latest_v}")

    def _resolve(self, at_ms: int, value: Decimal) -> Outcome:
        """A read after a held one: glitch, reset, or a still lower read."""
        if self._held_high:
            return self._resolve_high(at_ms, value)
        held_at, held_v = self._held_at, self._held_v
        assert held_at is not None and self._last_at is not None
        last_at, last_v = self._last_at, self._last_v
        elapsed = at_ms - last_at
        delta = value - last_v
        held_note = f"held {held_v} ({_iso(held_at)})"
        if not self._negative.check(elapsed, delta) or self._wrap(elapsed, delta) is not None:
            self._held_at = None
            glitch = Notice(Verdict.GLITCH, held_at, held_v, _NEGATIVE_DELTA,
                            f"{held_note} was a glitch: {_iso(at_ms)} continued from the last "
                            f"good read {last_v}; not used")
            outcome = self.feed(at_ms, value)  # now an ordinary step from the last good read
            return Outcome(outcome.points, (glitch, *outcome.notices))
        # Below the held read too? (A wrap from the held read needs no test: the wrap from
        # the last good read is smaller over a longer time, and it was not plausible.)
        if self._negative.check(at_ms - held_at, value - held_v):
            self._held_at = at_ms
            self._held_v = value
            return Outcome((), (
                Notice(Verdict.SUPERSEDED, held_at, held_v, _NEGATIVE_DELTA,
                       f"{held_note} was followed by the lower {value}: not used"),
                Notice(Verdict.HELD, at_ms, value, _NEGATIVE_DELTA,
                       f"{value} is below the last read {last_v} and the held read "
                       f"{held_v}: held until the next read"),
            ))
        reset = self._baseline(
            held_at, held_v, _RESET, Verdict.RESET,
            f"register went back from {last_v} ({_iso(last_at)}) to {held_v} and the next read "
            f"continued from it: reset, new baseline; consumption between the two unknown")
        outcome = self.feed(at_ms, value)  # a rise from the new baseline
        return Outcome(reset.points + outcome.points, reset.notices + outcome.notices)


    def _resolve_high(self, at_ms: int, value: Decimal) -> Outcome:
        """A read after one held for rising beyond the rating: glitch, jump, or another."""
        held_at, held_v = self._held_at, self._held_v
        assert held_at is not None and self._last_at is not None
        last_at, last_v = self._last_at, self._last_v
        elapsed, delta = at_ms - last_at, value - last_v
        held_note = f"held {held_v} ({_iso(held_at)})"
        plausible = (delta >= 0 and self._jump.allows(elapsed, delta)) or (
            delta < 0 and self._wrap(elapsed, delta) is not None)
        if plausible:
            self._held_at, self._held_high = None, False
            glitch = Notice(Verdict.GLITCH, held_at, held_v, _OVER_MAX,
                            f"{held_note} was a glitch: {_iso(at_ms)} continued from the last "
                            f"good read {last_v}; not used")
            outcome = self.feed(at_ms, value)  # an ordinary step from the last good read
            return Outcome(outcome.points, (glitch, *outcome.notices))
        if value >= held_v:
            self._held_high = False
            jump = self._baseline(
                held_at, held_v, _RESET | _OVER_MAX, Verdict.RESET,
                f"register jumped from {last_v} ({_iso(last_at)}) to {held_v}, beyond the "
                "rating, and the next read continued from it: new baseline; the energy "
                "between the two is not plausible consumption and is not stored")
            outcome = self.feed(at_ms, value)  # a step from the new baseline
            return Outcome(jump.points + outcome.points, jump.notices + outcome.notices)
        # Neither: the newer read replaces the held one, and is judged as a fresh step.
        self._held_at, self._held_high = None, False
        superseded = Notice(Verdict.SUPERSEDED, held_at, held_v, _OVER_MAX,
                            f"{held_note} was followed by {value}, which continues from "
                            "neither it nor the last good read: not used")
        outcome = self.feed(at_ms, value)
        return Outcome(outcome.points, (superseded, *outcome.notices))


def _refuse(verdict: Verdict, at_ms: int, value: Decimal, reason: str) -> Outcome:
    return Outcome((), (Notice(verdict, at_ms, value, 0, reason),))
