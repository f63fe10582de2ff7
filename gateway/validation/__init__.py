"""Validation of meter data (VEE): pure rules that annotate, and the register tracker.

- ``rules``: the rule protocols and the rules (future timestamp, negative delta, jump
  beyond the meter's rating; demand high limit, spike, zero run, frozen register) and
  ``VeeState``, what the stateful ones remember.
- ``stage``: runs a series' reading and interval rules, unions their flags; ``VeeConfig``
  says which optional rules are on (all off by default).
- ``rollover``: the per-series register state machine (wraps, glitches, resets).
"""

from gateway.validation.rollover import (
    Notice,
    Outcome,
    Point,
    RegisterTracker,
    TrackerConfig,
    TrackerState,
    Verdict,
)
from gateway.validation.rules import (
    DemandHighLimit,
    FrozenRegister,
    FutureTimestamp,
    IntervalRule,
    JumpBeyondRating,
    NegativeDelta,
    ReadingRule,
    Spike,
    StatefulRule,
    StepRule,
    VeeState,
    ZeroRun,
)
from gateway.validation.stage import ValidationStage, VeeConfig

__all__ = [
    "DemandHighLimit",
    "FrozenRegister",
    "FutureTimestamp",
    "IntervalRule",
    "JumpBeyondRating",
    "NegativeDelta",
    "Notice",
    "Outcome",
    "Point",
    "ReadingRule",
    "RegisterTracker",
    "Spike",
    "StatefulRule",
    "StepRule",
    "TrackerConfig",
    "TrackerState",
    "ValidationStage",
    "VeeConfig",
    "VeeState",
    "Verdict",
    "ZeroRun",
]
