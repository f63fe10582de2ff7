"""Reference-day estimation: the shape of a known day spread over a gap. Pure.

A gap between two register reads has an exact total: the register's change across it.
What is unknown is *when* that energy was used. Linear interpolation (the default,
ESPI code 9) spreads it evenly; for a longer gap, a flat line through the night and the
evening peak alike is a poor picture, so the intervals inside the gap may instead take
the shape of a *reference day* (ESPI code 8): the same local clock times on the same
weekday a week earlier (``same_weekday``) or on the day before (``previous_day``).

The total is never changed: the reference only gives the weights, and ``spread`` splits
the gap's total in proportion to them in exact integers (largest remainder), so the
sum of the estimated intervals is exactly what the register says was used. A reference
is only taken when every one of its intervals is there and measured (valid, derived or
edited): an estimate is never shaped by another estimate. Without one, the gap stays
linear.

Clock times are matched on the local wall clock of the series' timezone, so a gap on
the Monday after a DST change is shaped by the previous Monday's 07:00, not by its
06:00 or 08:00. A local time that does not exist on the reference day (the spring-
forward hour) takes the interval an hour later; one that exists twice (the fall-back
hour) takes the first of the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.model import Quality

__all__ = ["REFERENCE_QUALITIES", "ReferenceDay", "candidate_offsets", "reference_starts",
           "reference_weights", "spread"]

ReferenceDay = Literal["same_weekday", "previous_day"]

#: Qualities a reference interval may have: measured, or an operator's correction.
REFERENCE_QUALITIES = frozenset({Quality.VALID, Quality.DERIVED, Quality.EDITED})


def candidate_offsets(kind: ReferenceDay, candidates: int) -> list[int]:
    """Days back to try, nearest first: 7, 14, 21... or 1, 2, 3..."""
    step = 7 if kind == "same_weekday" else 1
    return [step * k for k in range(1, candidates + 1)]


def reference_starts(starts_s: Sequence[int], tz: ZoneInfo, days_back: int,
                     interval_s: int) -> list[int]:
    """For each interval start (UTC epoch seconds), the start of the interval at the same
    local wall-clock time ``days_back`` days earlier, on the series' grid."""
    out = []
    back = timedelta(days=days_back)
    for start in starts_s:
        local = datetime.fromtimestamp(start, UTC).astimezone(tz)
        wall = (local.replace(tzinfo=None) - back).replace(tzinfo=tz, fold=0)
        # A wall time in the spring-forward hour maps (fold=0) onto the hour after it;
        # normalising through UTC lands it on the grid either way.
        ref = int(wall.astimezone(UTC).timestamp())
        out.append(ref - ref % interval_s)
    return out


def reference_weights(ref_starts: Sequence[int],
                      stored: Mapping[int, tuple[int, Quality]]) -> list[int] | None:
    """The reference intervals' values as weights, or None when any is missing, not
    measured, negative, or when they sum to zero (nothing to shape by)."""
    weights = []
    for start in ref_starts:
        found = stored.get(start)
        if found is None:
            return None
        value, quality = found
        if quality not in REFERENCE_QUALITIES or value < 0:
            return None
        weights.append(value)
    return weights if sum(weights) > 0 else None


def spread(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` in integers that sum to ``total``.

    Largest remainder: each share is floored, and the units left over go to the
    largest remainders (the earliest first on a tie). ``weights`` must sum to > 0;
    ``total`` may be any integer (a negative one spreads the same way, mirrored).
    """
    whole = sum(weights)
    if whole <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0 and sum to > 0: {list(weights)}")
    sign = -1 if total < 0 else 1
    magnitude = abs(total)
    shares = []
    remainders = []
    for i, w in enumerate(weights):
        q, r = divmod(magnitude * w, whole)
        shares.append(q)
        remainders.append((-r, i))
    left = magnitude - sum(shares)
    for _, i in sorted(remainders)[:left]:
        shares[i] += 1
    return [sign * s for s in shares]
