"""Validation of meter data (VEE): pure rules that annotate, and the register tracker.

- ``rules``: the rule protocols and the first rules (future timestamp, negative delta,
  jump beyond the meter's rating).
- ``stage``: runs a series' reading and interval rules, unions their flags.
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
    FutureTimestamp,
    IntervalRule,
    JumpBeyondRating,
    NegativeDelta,
    ReadingRule,
    StepRule,
)
from gateway.validation.stage import ValidationStage

__all__ = [
    "FutureTimestamp",
    "IntervalRule",
    "JumpBeyondRating",
    "NegativeDelta",
    "Notice",
    "Outcome",
    "Point",
    "ReadingRule",
    "RegisterTracker",
    "StepRule",
    "TrackerConfig",
    "TrackerState",
    "ValidationStage",
    "Verdict",
]
