"""The simulated meter's load profile (1.0.99.1.0.255, profile generic class 7): which
captures exist, with which status, and which of them a selective access picks.

Nothing is stored: a capture is a slot of the meter's clock (every ``period_s`` on its
own time) inside the buffer's depth, after the meter was installed and not while it
was unpowered. Values are computed from the load model when a capture is read, so a
40-day buffer costs nothing until someone asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from gateway.drivers.dlms.apdu import EntryDescriptor, RangeDescriptor
from gateway.drivers.dlms.cosem import CLOCK, CaptureObject, ClockAttr, CosemClass

__all__ = ["AMR_CLOCK_ADJUSTED", "AMR_CLOCK_INVALID", "AMR_DATA_NOT_VALID", "AMR_POWER_DOWN",
           "Capture", "Selection", "captures", "select"]

# AMR profile status (one byte per entry; DSMR 5.0.2 P3 / IDIS "AMR profile status
# code", the bit order GXF's AmrProfileStatusCodeFlag follows: bit 0 critical error,
# 1 clock invalid, 2 data not valid, 3 daylight saving, 5 clock adjusted, 6 recovered
# value, 7 power down). Note: clock invalid is bit 1 (0x02); 0x04 is "data not valid".
AMR_POWER_DOWN: Final = 0x80
AMR_CLOCK_ADJUSTED: Final = 0x20
AMR_DATA_NOT_VALID: Final = 0x04
AMR_CLOCK_INVALID: Final = 0x02

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Capture:
    """One buffer entry: its capture time on the meter's clock, the true instant the
    meter took it at (meter time minus drift), and its AMR status byte."""

    at: datetime
    true_at: datetime
    status: int


def captures(meter_now: datetime, *, period_s: int, depth_s: int, drift_s: float,
             installed_at: datetime,
             outages: Sequence[tuple[datetime, datetime]]) -> list[Capture]:
    """The buffer, oldest first: every slot of the last ``depth_s`` up to ``meter_now``.

    A slot whose true instant falls in an outage [start, end) is missing; the first
    capture after an outage (one that overlaps the period before it) has the power-down
    bit, as a meter sets it on the first entry after power returns.
    """
    now_s = int((meter_now - _EPOCH).total_seconds())
    last = now_s - now_s % period_s
    slots = depth_s // period_s
    drift = timedelta(seconds=drift_s)
    period = timedelta(seconds=period_s)
    out: list[Capture] = []
    for k in range(slots - 1, -1, -1):
        at = _EPOCH + timedelta(seconds=last - k * period_s)
        true_at = at - drift
        if true_at < installed_at:
            continue
        if any(start <= true_at < end for start, end in outages):
            continue
        status = 0
        if any(start <= true_at and end > true_at - period for start, end in outages):
            status |= AMR_POWER_DOWN
        out.append(Capture(at, true_at, status))
    return out


@dataclass(frozen=True, slots=True)
class Selection:
    """What a buffer read returns: these captures, these columns (0-based indexes)."""

    rows: list[Capture]
    columns: tuple[int, ...]


class SelectionError(ValueError):
    """The access selector names a column or restricting object the buffer lacks."""


def select(rows: list[Capture], columns: Sequence[CaptureObject],
           access: RangeDescriptor | EntryDescriptor | None,
           range_bounds: tuple[datetime, datetime] | None = None) -> Selection:
    """Apply selective access. For a range, ``range_bounds`` are the from/to instants
    (UTC) already read from the descriptor's date-times (the caller knows the zone)."""
    every = tuple(range(len(columns)))
    if access is None:
        return Selection(rows, every)
    if isinstance(access, RangeDescriptor):
        restricting = access.restricting
        if (restricting.class_id, restricting.obis, restricting.attribute_index) != (
                CosemClass.CLOCK, CLOCK, ClockAttr.TIME):
            raise SelectionError(f"range restricted by {restricting}, not the clock")
        assert range_bounds is not None
        low, high = range_bounds
        chosen = [r for r in rows if low <= r.at <= high]
        if not access.selected_values:
            return Selection(chosen, every)
        keys = [(c.class_id, c.obis, c.attribute_index) for c in columns]
        picked: list[int] = []
        for value in access.selected_values:
            key = (value.class_id, value.obis, value.attribute_index)
            if key not in keys:
                raise SelectionError(f"column {value} is not captured")
            picked.append(keys.index(key))
        return Selection(chosen, tuple(picked))
    first = max(access.from_entry, 1)
    last = access.to_entry or len(rows)
    low_col = max(access.from_selected_value, 1)
    high_col = access.to_selected_value or len(columns)
    if high_col > len(columns) or low_col > high_col:
        raise SelectionError(f"columns {low_col}..{high_col} of {len(columns)}")
    return Selection(rows[first - 1:last], tuple(range(low_col - 1, high_col)))
