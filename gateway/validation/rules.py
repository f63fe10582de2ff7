"""VEE rules: small pure checks that annotate values with ``Flag`` bits.

A rule never throws and never changes a value: it returns the ``Flag`` bits it fires
(0 when it has nothing to say), so the caller records *which* rule fired beside the
raw value. Three shapes, by what a rule looks at:

- ``ReadingRule``: one register read (``at_ms``, value in base units, the meter's own
  ``meter_at_ms`` when it gave one) against the gateway's ``now_ms``. Examples:
  ``FutureTimestamp``; ``FrozenRegister`` (stateful: the meter repeated its snapshot).
- ``StepRule``: the step between two consecutive reads of one register (elapsed
  milliseconds, change in base units). ``NegativeDelta`` and ``JumpBeyondRating`` are
  the two the register tracker (``gateway.validation.rollover``) decides with.
- ``IntervalRule``: one interval of consumption (start, length, value, flags so far),
  seen in order. ``DemandHighLimit`` (stateless), ``Spike`` and ``ZeroRun`` (stateful:
  they remember the previous intervals of their series).

Stateful rules (``StatefulRule``) keep a little per-series state that ``save`` writes
into a ``VeeState`` and ``load`` takes back, so a restart does not reset their windows.
"Consecutive" intervals are those whose start is the previous one's end: a hole in the
emitted series (a break, a reset) restarts a rule's window or run.

Conventions: instants are integer epoch milliseconds (UTC); energy is in base units
(Wh, varh, VAh) as ``Decimal`` for register values and ``int`` for intervals; power
ratings are in base units per hour (W for Wh channels). No clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Protocol, runtime_checkable

import msgspec

from gateway.errors import ConfigError
from gateway.model import Flag

__all__ = [
    "DemandHighLimit",
    "FrozenRegister",
    "FutureTimestamp",
    "IntervalCheck",
    "IntervalRule",
    "JumpBeyondRating",
    "NegativeDelta",
    "ReadingCheck",
    "ReadingRule",
    "Spike",
    "StatefulRule",
    "StepRule",
    "VeeState",
    "ZeroRun",
    "fuse_interval_rules",
    "fuse_reading_rules",
]

_MS_PER_HOUR = 3_600_000

# Plain ints: IntFlag arithmetic builds enum members and costs microseconds per read.
_FUTURE = int(Flag.FUTURE)
_NEGATIVE_DELTA = int(Flag.NEGATIVE_DELTA)
_OVER_MAX = int(Flag.OVER_MAX)
_SPIKE = int(Flag.SPIKE)
_DEMAND_HIGH = int(Flag.DEMAND_HIGH)
_ZERO_RUN = int(Flag.ZERO_RUN)
_FROZEN = int(Flag.FROZEN)


class ReadingRule(Protocol):
    """A check on one read by itself."""

    @property
    def flag(self) -> Flag:
        """The bit this rule fires (what it is recorded as)."""
        ...

    def check(self, at_ms: int, value: Decimal, now_ms: int,
              meter_at_ms: int | None = None) -> int:
        """Flag bits fired by the read of ``value`` (base units) at ``at_ms``.

        ``meter_at_ms`` is the meter's own timestamp of the read, when it gave one.
        """
        ...


class StepRule(Protocol):
    """A check on the change between two consecutive reads of one register."""

    @property
    def flag(self) -> Flag: ...

    def check(self, elapsed_ms: int, delta: Decimal) -> int:
        """Flag bits fired by a change of ``delta`` base units over ``elapsed_ms``."""
        ...


class IntervalRule(Protocol):
    """A check on one interval of consumption."""

    @property
    def flag(self) -> Flag: ...

    def check(self, start_ms: int, length_s: int, value: int, flags: int) -> int:
        """Flag bits fired by ``value`` base units over ``[start, start + length)``."""
        ...


class VeeState(msgspec.Struct, frozen=True, kw_only=True):
    """The stateful rules' memory for one series (part of its persisted state).

    Every field has a default, so a state saved before a rule existed still loads.
    """

    #: ``Spike``: the previous consecutive intervals' values, oldest first.
    spike_values: tuple[int, ...] = ()
    #: ``Spike``: end (epoch ms) of the last interval seen.
    spike_end_ms: int | None = None
    #: ``ZeroRun``: how many consecutive zero intervals end at ``zero_end_ms``.
    zero_run: int = 0
    zero_end_ms: int | None = None
    #: ``FrozenRegister``: gateway time and meter time (epoch ms) of the last read judged.
    frozen_at_ms: int | None = None
    frozen_meter_at_ms: int | None = None


@runtime_checkable
class StatefulRule(Protocol):
    """A rule with per-series memory, saved into and loaded from a ``VeeState``."""

    def save(self, state: VeeState) -> VeeState:
        """``state`` with this rule's fields set to what it remembers now."""
        ...

    def load(self, state: VeeState) -> None:
        """Continue from what ``state`` remembers."""
        ...


class FutureTimestamp:
    """A read stamped later than the gateway's now plus a tolerance (clock ahead).

    The tolerance absorbs honest skew between the meter's and the gateway's clocks.
    """

    flag = Flag.FUTURE

    def __init__(self, tolerance_s: int = 300) -> None:
        if tolerance_s < 0:
            raise ConfigError("must be >= 0", key="future_tolerance_s")
        self.tolerance_ms = tolerance_s * 1000

    def check(self, at_ms: int, value: Decimal, now_ms: int,
              meter_at_ms: int | None = None) -> int:
        return _FUTURE if at_ms > now_ms + self.tolerance_ms else 0


class NegativeDelta:
    """The register went back: neither consumption nor (yet) explained."""

    flag = Flag.NEGATIVE_DELTA

    def check(self, elapsed_ms: int, delta: Decimal) -> int:
        return _NEGATIVE_DELTA if delta < 0 else 0


class JumpBeyondRating:
    """More energy than the meter can pass over the elapsed time.

    The limit is ``max_power × hours × (1 + tolerance) + slack``: the tolerance covers
    a meter run slightly over its rating, the slack (base units) covers the register's
    resolution and clock jitter over short steps (a kWh register that ticks once
    between two reads a second apart). Without a rating nothing is ever beyond it.
    The comparison is done multiplied out in exact ``Decimal``, no division.
    """

    flag = Flag.OVER_MAX

    def __init__(self, max_power_w: Decimal | None, *, tolerance: Decimal = Decimal("0.1"),
                 slack: Decimal = Decimal(0)) -> None:
        if max_power_w is not None and max_power_w <= 0:
            raise ConfigError("must be > 0", key="max_power_w", fix="omit it if unknown")
        if tolerance < 0 or slack < 0:
            raise ConfigError("tolerance and slack must be >= 0", key="tolerance")
        self.max_power_w = max_power_w
        self.tolerance = tolerance
        self.slack = slack
        self._per_hour = None if max_power_w is None else max_power_w * (1 + tolerance)
        self._slack_scaled = slack * _MS_PER_HOUR
        # The last limit computed (× ms per hour, exact), keyed by its elapsed time.
        self._memo_ms = -1
        self._memo_limit = Decimal(0)

    @property
    def rated(self) -> bool:
        return self._per_hour is not None

    def reach_ms(self, energy: Decimal) -> int | None:
        """The shortest elapsed time (ms) after which ``energy`` is plausible, or None."""
        if self._per_hour is None:
            return None
        needed = energy * _MS_PER_HOUR - self._slack_scaled
        return 0 if needed <= 0 else int((needed / self._per_hour).to_integral_value(ROUND_CEILING))

    def limit(self, elapsed_ms: int) -> Decimal | None:
        """The largest plausible change over ``elapsed_ms`` (for messages), or None."""
        if self._per_hour is None:
            return None
        return (self._per_hour * elapsed_ms + self._slack_scaled) / _MS_PER_HOUR

    def scaled_limit(self, elapsed_ms: int) -> Decimal | None:
        """The largest plausible change over ``elapsed_ms`` × ms per hour (exact), or None
        without a rating: ``allows`` is ``delta × 3_600_000 <= scaled_limit``."""
        per_hour = self._per_hour
        return None if per_hour is None else per_hour * elapsed_ms + self._slack_scaled

    def allows(self, elapsed_ms: int, delta: Decimal) -> bool:
        """Whether a change of ``delta`` (>= 0) over ``elapsed_ms`` is plausible."""
        per_hour = self._per_hour
        if per_hour is None:
            return True
        if elapsed_ms != self._memo_ms:  # polls are regular: the limit repeats
            self._memo_ms = elapsed_ms
            self._memo_limit = per_hour * elapsed_ms + self._slack_scaled
        return delta * _MS_PER_HOUR <= self._memo_limit

    def check(self, elapsed_ms: int, delta: Decimal) -> int:
        return 0 if self.allows(elapsed_ms, delta) else _OVER_MAX


def _positive(value: Decimal | int, key: str, fix: str) -> None:
    if not (Decimal(value).is_finite() and value > 0):
        raise ConfigError(f"must be a number > 0, got {value}", key=key, fix=fix)


class DemandHighLimit:
    """Demand high limit: more energy in one interval than ``limit_w`` over its length.

    An interval of ``length_s`` seconds may hold ``limit_w × length_s / 3600`` Wh;
    anything above fires ``Flag.DEMAND_HIGH``. Compared multiplied out, in exact integers.
    """

    flag = Flag.DEMAND_HIGH

    def __init__(self, limit_w: Decimal) -> None:
        _positive(limit_w, "demand_high_w", "give the highest plausible demand in W, "
                  "or omit it to turn the check off")
        self.limit_w = limit_w
        self._num, self._den = Decimal(limit_w).as_integer_ratio()

    def check(self, start_ms: int, length_s: int, value: int, flags: int) -> int:
        return _DEMAND_HIGH if value * 3600 * self._den > self._num * length_s else 0


class Spike:
    """Consecutive-interval tolerance: far above the mean of the previous intervals.

    Fires ``Flag.SPIKE`` when the value is above ``factor`` × the mean of the previous
    ``window`` consecutive intervals *and* above ``floor`` base units (a jump from 1 Wh
    to 5 Wh is not a spike). Until ``window`` consecutive intervals are known (after
    the first read, a break or a hole) it says nothing. Every interval, spike or not,
    joins the window: a lasting change of level stops firing after ``window`` intervals.
    """

    flag = Flag.SPIKE

    def __init__(self, factor: Decimal, *, window: int = 4, floor: int = 0,
                 state: VeeState | None = None) -> None:
        if not (Decimal(factor).is_finite() and factor >= 1):
            raise ConfigError(f"must be a number >= 1, got {factor}", key="spike_factor",
                              fix="e.g. 3 (three times the recent mean), or omit it")
        _positive(window, "spike_window", "the number of previous intervals to average, e.g. 4")
        if floor < 0:
            raise ConfigError(f"must be >= 0, got {floor}", key="spike_floor_wh",
                              fix="the consumption below which nothing is a spike, e.g. 100")
        self.factor, self.window, self.floor = factor, window, floor
        self._num, self._den = Decimal(factor).as_integer_ratio()
        self._values: list[int] = []
        self._end_ms: int | None = None
        self.load(state or VeeState())

    def check(self, start_ms: int, length_s: int, value: int, flags: int) -> int:
        values = self._values
        if start_ms != self._end_ms:
            values.clear()
        self._end_ms = start_ms + length_s * 1000
        window = self.window
        fired = 0
        if len(values) == window and value > self.floor and (
                value * window * self._den > self._num * sum(values)):
            fired = _SPIKE
        values.append(value)
        if len(values) > window:
            del values[0]
        return fired

    def save(self, state: VeeState) -> VeeState:
        return msgspec.structs.replace(state, spike_values=tuple(self._values),
                                       spike_end_ms=self._end_ms)

    def load(self, state: VeeState) -> None:
        self._values = list(state.spike_values[-self.window:])
        self._end_ms = state.spike_end_ms


class ZeroRun:
    """Zero consumption for ``intervals`` consecutive intervals.

    The ``intervals``-th consecutive zero interval and every further one fire
    ``Flag.ZERO_RUN``; a non-zero interval or a hole in the series ends the run.
    """

    flag = Flag.ZERO_RUN

    def __init__(self, intervals: int, *, state: VeeState | None = None) -> None:
        _positive(intervals, "zero_run_intervals",
                  "the number of zero intervals in a row worth flagging, e.g. 96, or omit it")
        self.intervals = intervals
        self._run = 0
        self._end_ms: int | None = None
        self.load(state or VeeState())

    def check(self, start_ms: int, length_s: int, value: int, flags: int) -> int:
        if value != 0:
            self._run = 0
        elif start_ms == self._end_ms:
            self._run += 1
        else:
            self._run = 1
        self._end_ms = start_ms + length_s * 1000
        return _ZERO_RUN if self._run >= self.intervals else 0

    def save(self, state: VeeState) -> VeeState:
        return msgspec.structs.replace(state, zero_run=self._run, zero_end_ms=self._end_ms)

    def load(self, state: VeeState) -> None:
        self._run = state.zero_run
        self._end_ms = state.zero_end_ms


class FrozenRegister:
    """The meter repeated its previous snapshot: same meter timestamp, later gateway time.

    Fires ``Flag.FROZEN`` on a read whose ``meter_at_ms`` equals the previous judged
    read's while ``at_ms`` moved on. Reads without a meter timestamp, reads not after
    the previous one (duplicates, late reads) and reads stamped after the gateway's now
    (quarantined as future ones, they must not hide later freezes) are not judged and
    change nothing.
    """

    flag = Flag.FROZEN

    def __init__(self, *, state: VeeState | None = None) -> None:
        self._at_ms: int | None = None
        self._meter_at_ms: int | None = None
        self.load(state or VeeState())

    def check(self, at_ms: int, value: Decimal, now_ms: int,
              meter_at_ms: int | None = None) -> int:
        if meter_at_ms is None or at_ms > now_ms:
            return 0
        last_at = self._at_ms
        if last_at is not None and at_ms <= last_at:
            return 0
        fired = _FROZEN if meter_at_ms == self._meter_at_ms else 0
        self._at_ms, self._meter_at_ms = at_ms, meter_at_ms
        return fired

    def save(self, state: VeeState) -> VeeState:
        return msgspec.structs.replace(state, frozen_at_ms=self._at_ms,
                                       frozen_meter_at_ms=self._meter_at_ms)

    def load(self, state: VeeState) -> None:
        self._at_ms = state.frozen_at_ms
        self._meter_at_ms = state.frozen_meter_at_ms


# -- fused checks: one call per read or interval for a whole list of rules ----------------

class ReadingCheck(Protocol):
    """The union of the flags a list of reading rules fires on one read."""

    def __call__(self, at_ms: int, value: Decimal, now_ms: int,
                 meter_at_ms: int | None = None, /) -> int: ...


class IntervalCheck(Protocol):
    """The union of the flags a list of interval rules fires on one interval."""

    def __call__(self, start_ms: int, length_s: int, value: int, flags: int, /) -> int: ...


def fuse_reading_rules(rules: Sequence[ReadingRule]) -> ReadingCheck:
    """One function doing what calling each rule's ``check`` in turn and OR-ing the bits
    does, with the same state changes: ``FutureTimestamp`` and ``FrozenRegister`` (each at
    most once) are inlined, their state still kept on the rule objects; any other list
    gets the loop."""
    kinds = [type(rule) for rule in rules]
    if not set(kinds) <= {FutureTimestamp, FrozenRegister} or len(set(kinds)) != len(kinds):
        checks = tuple(rule.check for rule in rules)

        def loop(at_ms: int, value: Decimal, now_ms: int,
                 meter_at_ms: int | None = None, /) -> int:
            flags = 0
            for check in checks:
                flags |= check(at_ms, value, now_ms, meter_at_ms)
            return flags
        return loop
    future = next((r for r in rules if isinstance(r, FutureTimestamp)), None)
    frozen = next((r for r in rules if isinstance(r, FrozenRegister)), None)
    if frozen is None:
        if future is None:
            return _no_reading_rule
        return future.check

    def fused(at_ms: int, value: Decimal, now_ms: int, meter_at_ms: int | None = None,
              /) -> int:
        assert frozen is not None
        if meter_at_ms is None or at_ms > now_ms:
            # Not judged by the frozen rule (the future rule only fires beyond now too).
            if future is not None and at_ms > now_ms + future.tolerance_ms:
                return _FUTURE
            return 0
        last_at = frozen._at_ms
        if last_at is not None and at_ms <= last_at:
            return 0
        fired = _FROZEN if meter_at_ms == frozen._meter_at_ms else 0
        frozen._at_ms = at_ms
        frozen._meter_at_ms = meter_at_ms
        return fired
    return fused


def _no_reading_rule(at_ms: int, value: Decimal, now_ms: int,
                     meter_at_ms: int | None = None, /) -> int:
    return 0


def _no_interval_rule(start_ms: int, length_s: int, value: int, flags: int, /) -> int:
    return 0


def fuse_interval_rules(rules: Sequence[IntervalRule]) -> IntervalCheck:
    """One function doing what calling each rule's ``check`` in order does (each seeing
    the flags so far) and OR-ing the bits, with the same state changes.

    ``DemandHighLimit``, ``Spike`` and ``ZeroRun`` (each at most once; none of them looks
    at the flags, so their order does not matter) are inlined, their state still kept on
    the rule objects; any other list gets the loop.
    """
    kinds = [type(rule) for rule in rules]
    if (not set(kinds) <= {DemandHighLimit, Spike, ZeroRun}
            or len(set(kinds)) != len(kinds)):
        checks = tuple(rule.check for rule in rules)

        def loop(start_ms: int, length_s: int, value: int, flags: int, /) -> int:
            fired = 0
            for check in checks:
                fired |= check(start_ms, length_s, value, flags | fired)
            return fired
        return loop
    if not rules:
        return _no_interval_rule
    demand = next((r for r in rules if isinstance(r, DemandHighLimit)), None)
    spike = next((r for r in rules if isinstance(r, Spike)), None)
    zero = next((r for r in rules if isinstance(r, ZeroRun)), None)
    # value × 3600 × den > num × length_s, with 3600 × den multiplied out once.
    d_num, d_den = (demand._num, demand._den * 3600) if demand is not None else (0, 0)

    def fused(start_ms: int, length_s: int, value: int, flags: int, /) -> int:
        fired = 0
        if demand is not None and value * d_den > d_num * length_s:
            fired = _DEMAND_HIGH
        end_ms = start_ms + length_s * 1000
        if spike is not None:
            values = spike._values
            if start_ms != spike._end_ms:
                values.clear()
            spike._end_ms = end_ms
            window = spike.window
            if len(values) == window:
                if value > spike.floor and (
                        value * window * spike._den > spike._num * sum(values)):
                    fired |= _SPIKE
                values.append(value)
                del values[0]
            else:
                values.append(value)
                if len(values) > window:
                    del values[0]
        if zero is not None:
            if value != 0:
                run = 0
            elif start_ms == zero._end_ms:
                run = zero._run + 1
            else:
                run = 1
            zero._run = run
            zero._end_ms = end_ms
            if run >= zero.intervals:
                fired |= _ZERO_RUN
        return fired
    return fused
