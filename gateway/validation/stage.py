"""The validation stage: runs the plug-in VEE rules of one series and unions their flags.

The stage only annotates. What a flag *does* (quarantine a read, lower an interval's
quality) is decided by the caller (``gateway.ingest.series``) and by
``gateway.model.quality_of``. Register step rules (negative delta, jump beyond the
rating) are not run here: the register tracker decides with them, because their
meaning depends on its state (a drop may be a rollover, a glitch or a reset).

Rules are objects so that a stateful rule (spike, zero run, frozen register) keeps its
own per-series history: give each series its own stage (``from_config`` builds one from
a ``VeeConfig``), and carry ``snapshot()`` / ``restore()`` over a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import msgspec

from gateway.errors import ConfigError
from gateway.validation.rules import (
    DemandHighLimit,
    FrozenRegister,
    FutureTimestamp,
    IntervalCheck,
    IntervalRule,
    ReadingCheck,
    ReadingRule,
    Spike,
    StatefulRule,
    VeeState,
    ZeroRun,
    fuse_interval_rules,
    fuse_reading_rules,
)

__all__ = ["ValidationStage", "VeeConfig"]

_NO_STATE = VeeState()


class VeeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Which optional VEE rules a series runs. Every rule is off by default (None/False).

    Energies in base units (Wh for a kWh register), demand in W.
    """

    #: Demand high limit: an interval above this many W × its length fires DEMAND_HIGH.
    demand_high_w: Decimal | None = None
    #: Spike: an interval above this factor × the mean of the previous ``spike_window``
    #: intervals (and above ``spike_floor_wh``) fires SPIKE.
    spike_factor: Decimal | None = None
    spike_window: int = 4
    spike_floor_wh: int = 100
    #: Zero run: the Nth consecutive zero interval and every further one fire ZERO_RUN.
    zero_run_intervals: int | None = None
    #: Frozen register: a read repeating the previous read's meter timestamp fires FROZEN.
    frozen_register: bool = False

    def __post_init__(self) -> None:
        # Built once to validate: the rules know their keys and fixes.
        ValidationStage.from_config(self)
        if self.spike_factor is None and (self.spike_window, self.spike_floor_wh) != (4, 100):
            raise ConfigError("spike_window and spike_floor_wh need spike_factor",
                              key="spike_factor", fix="set spike_factor (e.g. 3) to turn "
                              "the spike check on, or drop the other spike keys")


class ValidationStage:
    """Reading rules and interval rules for one series.

    ``check_reading(at_ms, value, now_ms, meter_at_ms=None)``: the union of the flags
    the reading rules fire on one read (base units). ``check_interval(start_ms,
    length_s, value, flags)``: the union of the flags the interval rules fire on one
    interval, each rule seeing ``flags`` and what the rules before it fired. Both are
    functions built once per stage (``rules.fuse_reading_rules`` and
    ``fuse_interval_rules``): the rules' loop is unrolled and the built-in rules inlined.
    """

    __slots__ = ("_interval_rules", "_reading_rules", "_stateful", "check_interval",
                 "check_reading", "uses_meter_at")

    check_reading: ReadingCheck
    check_interval: IntervalCheck

    def __init__(self, reading_rules: Sequence[ReadingRule] = (),
                 interval_rules: Sequence[IntervalRule] = ()) -> None:
        self._reading_rules = tuple(reading_rules)
        self._interval_rules = tuple(interval_rules)
        rules = (*self._reading_rules, *self._interval_rules)
        self._stateful = tuple(rule for rule in rules if isinstance(rule, StatefulRule))
        #: Whether a reading rule looks at the meter's own timestamp (else pass None).
        self.uses_meter_at = any(isinstance(rule, FrozenRegister) for rule in rules)
        self.check_reading = fuse_reading_rules(self._reading_rules)
        self.check_interval = fuse_interval_rules(self._interval_rules)

    @classmethod
    def default(cls, *, future_tolerance_s: int = 300) -> ValidationStage:
        """The rules every series gets today: a read must not come from the future."""
        return cls(reading_rules=(FutureTimestamp(future_tolerance_s),))

    @classmethod
    def from_config(cls, vee: VeeConfig, *, future_tolerance_s: int = 300,
                    state: VeeState | None = None) -> ValidationStage:
        """The default rules plus the optional ones ``vee`` turns on, from ``state``."""
        reading: list[ReadingRule] = [FutureTimestamp(future_tolerance_s)]
        if vee.frozen_register:
            reading.append(FrozenRegister(state=state))
        interval: list[IntervalRule] = []
        if vee.demand_high_w is not None:
            interval.append(DemandHighLimit(vee.demand_high_w))
        if vee.spike_factor is not None:
            interval.append(Spike(vee.spike_factor, window=vee.spike_window,
                                  floor=vee.spike_floor_wh, state=state))
        if vee.zero_run_intervals is not None:
            interval.append(ZeroRun(vee.zero_run_intervals, state=state))
        return cls(reading, interval)

    def snapshot(self) -> VeeState:
        """What the stateful rules remember (an empty state when there are none)."""
        state = _NO_STATE
        for rule in self._stateful:
            state = rule.save(state)
        return state

    def restore(self, state: VeeState) -> None:
        """Let the stateful rules continue from ``state`` (taken by ``snapshot``)."""
        for rule in self._stateful:
            rule.load(state)

    @property
    def reading_rules(self) -> tuple[ReadingRule, ...]:
        return self._reading_rules

    @property
    def interval_rules(self) -> tuple[IntervalRule, ...]:
        return self._interval_rules

    def fired(self, flags: int) -> list[str]:
        """Names of the rules (of this stage) whose bit is set in ``flags``: for messages."""
        rules: tuple[ReadingRule | IntervalRule, ...] = self._reading_rules + self._interval_rules
        return [type(rule).__name__ for rule in rules if flags & rule.flag]

    def __repr__(self) -> str:
        names = ", ".join(type(r).__name__ for r in self._reading_rules + self._interval_rules)
        return f"ValidationStage({names})"

