"""The validation stage: runs the plug-in VEE rules of one series and unions their flags.

The stage only annotates. What a flag *does* (quarantine a read, lower an interval's
quality) is decided by the caller (``gateway.ingest.series``) and by
``gateway.model.quality_of``. Register step rules (negative delta, jump beyond the
rating) are not run here: the register tracker decides with them, because their
meaning depends on its state (a drop may be a rollover, a glitch or a reset).

Rules are objects so that a later stateful rule (spike, frozen register) can keep its
own per-series history; give each series its own stage when rules hold state.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from gateway.validation.rules import FutureTimestamp, IntervalRule, ReadingRule

__all__ = ["ValidationStage"]


class ValidationStage:
    """Reading rules and interval rules for one series."""

    __slots__ = ("_interval_rules", "_reading_rules")

    def __init__(self, reading_rules: Sequence[ReadingRule] = (),
                 interval_rules: Sequence[IntervalRule] = ()) -> None:
        self._reading_rules = tuple(reading_rules)
        self._interval_rules = tuple(interval_rules)

    @classmethod
    def default(cls, *, future_tolerance_s: int = 300) -> ValidationStage:
        """The rules every series gets today: a read must not come from the future."""
        return cls(reading_rules=(FutureTimestamp(future_tolerance_s),))

    @property
    def reading_rules(self) -> tuple[ReadingRule, ...]:
        return self._reading_rules

    @property
    def interval_rules(self) -> tuple[IntervalRule, ...]:
        return self._interval_rules

    def check_reading(self, at_ms: int, value: Decimal, now_ms: int) -> int:
        """Union of the flags the reading rules fire on one read (base units)."""
        flags = 0
        for rule in self._reading_rules:
            flags |= rule.check(at_ms, value, now_ms)
        return flags

    def check_interval(self, start_ms: int, length_s: int, value: int, flags: int) -> int:
        """Union of the flags the interval rules fire on one interval."""
        fired = 0
        for rule in self._interval_rules:
            fired |= rule.check(start_ms, length_s, value, flags | fired)
        return fired

    def fired(self, flags: int) -> list[str]:
        """Names of the rules (of this stage) whose bit is set in ``flags``: for messages."""
        rules: tuple[ReadingRule | IntervalRule, ...] = self._reading_rules + self._interval_rules
        return [type(rule).__name__ for rule in rules if flags & rule.flag]

    def __repr__(self) -> str:
        names = ", ".join(type(r).__name__ for r in self._reading_rules + self._interval_rules)
        return f"ValidationStage({names})"

