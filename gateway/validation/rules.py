"""VEE rules: small pure checks that annotate values with ``Flag`` bits.

A rule never throws and never changes a value: it returns the ``Flag`` bits it fires
(0 when it has nothing to say), so the caller records *which* rule fired beside the
raw value. Three shapes, by what a rule looks at:

- ``ReadingRule``: one register read on its own (``at_ms``, value in base units) against
  the gateway's ``now_ms``. Example: ``FutureTimestamp``.
- ``StepRule``: the step between two consecutive reads of one register (elapsed
  milliseconds, change in base units). ``NegativeDelta`` and ``JumpBeyondRating`` are
  the two the register tracker (``gateway.validation.rollover``) decides with.
- ``IntervalRule``: one interval of consumption (start, length, value, flags so far).

Conventions: instants are integer epoch milliseconds (UTC); energy is in base units
(Wh, varh, VAh) as ``Decimal`` for register values and ``int`` for intervals; power
ratings are in base units per hour (W for Wh channels). No clock, no I/O.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Protocol

from gateway.errors import ConfigError
from gateway.model import Flag

__all__ = [
    "FutureTimestamp",
    "IntervalRule",
    "JumpBeyondRating",
    "NegativeDelta",
    "ReadingRule",
    "StepRule",
]

_MS_PER_HOUR = 3_600_000

# Plain ints: IntFlag arithmetic builds enum members and costs microseconds per read.
_FUTURE = int(Flag.FUTURE)
_NEGATIVE_DELTA = int(Flag.NEGATIVE_DELTA)
_OVER_MAX = int(Flag.OVER_MAX)


class ReadingRule(Protocol):
    """A check on one read by itself."""

    @property
    def flag(self) -> Flag:
        """The bit this rule fires (what it is recorded as)."""
        ...

    def check(self, at_ms: int, value: Decimal, now_ms: int) -> int:
        """Flag bits fired by the read of ``value`` (base units) at ``at_ms``."""
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


class FutureTimestamp:
    """A read stamped later than the gateway's now plus a tolerance (clock ahead).

    The tolerance absorbs honest skew between the meter's and the gateway's clocks.
    """

    flag = Flag.FUTURE

    def __init__(self, tolerance_s: int = 300) -> None:
        if tolerance_s < 0:
            raise ConfigError("must be >= 0", key="future_tolerance_s")
        self.tolerance_ms = tolerance_s * 1000

    def check(self, at_ms: int, value: Decimal, now_ms: int) -> int:
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
