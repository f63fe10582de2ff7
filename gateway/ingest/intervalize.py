"""Continuous cumulative reads of one series -> interval consumption on a fixed UTC grid.

Pure and per series: ``Intervalizer.feed(at_ms, cumulative, flags, brk)`` takes the
points the register tracker accepted (``gateway.validation.rollover``), in time order,
and returns the intervals that became complete.

Conventions:

- The grid: boundaries at multiples of ``length_s`` since the Unix epoch (UTC), so
  every series of one length shares it. An interval is ``[start, start + length)`` and
  is identified by its start.
- A boundary's cumulative is *measured* when a read lies within ``snap_tolerance_s`` of
  it (that read's value, no flag; the first such read wins), else *interpolated*
  linearly between the reads either side: ``Flag.INTERPOLATED`` when those reads are
  at most ``max_gap_s`` apart, ``Flag.GAP_SPANNED`` (an estimate) when farther apart.
- Each boundary's cumulative is quantized once to an integer of base units, rounding
  half to even, in exact integer arithmetic; an interval's value is
  ``Q(end) - Q(start)``. Sums of intervals therefore telescope: they equal the change
  of the quantized register exactly, and stay within one base unit of the register.
- An interval is emitted once both its boundaries are known, never across a break
  (``brk``: first read, reset). Its flags are the union of its two boundaries'
  derivations, of the flags of every read step overlapping it (ROLLOVER, OVER_MAX, ...)
  and, for the first interval after a break, of the break read's flags (RESET).
  A step that ends at a measured boundary belongs wholly to the interval before it.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from gateway.errors import ConfigError
from gateway.model import Flag

__all__ = ["Interval", "Intervalizer", "IntervalizerState", "round_half_even"]

_INTERPOLATED = int(Flag.INTERPOLATED)
_GAP_SPANNED = int(Flag.GAP_SPANNED)


class Interval(msgspec.Struct, frozen=True, gc=False):
    """Consumption over ``[start_ms, start_ms + length)`` in integer base units."""

    start_ms: int
    value: int
    flags: int


class IntervalizerState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything an intervalizer remembers; enough to resume mid-interval."""

    #: The last point fed (None after construction: the next point is a break).
    prev_at_ms: int | None = None
    prev_cumulative: Decimal | None = None
    #: The latest boundary whose quantized cumulative is known (None after a break).
    boundary_ms: int | None = None
    boundary_value: int = 0
    boundary_flags: int = 0
    #: Flags of the steps inside the interval that starts at ``boundary_ms``.
    carry_flags: int = 0
    #: Flags of the last break point, owed to the first interval after it.
    pending_flags: int = 0


def round_half_even(num: int, den: int) -> int:
    """``num / den`` rounded to the nearest integer, ties to even (``den > 0``)."""
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q & 1):
        q += 1
    return q


class Intervalizer:
    """The grid state of one series; see the module doc for the conventions."""

    __slots__ = ("_b", "_bf", "_bq", "_carry", "_gap_ms", "_len_ms", "_pending", "_prev_at",
                 "_prev_c", "_prev_ratio", "_snap_ms", "length_s", "max_gap_s",
                 "snap_tolerance_s")

    def __init__(self, length_s: int = 900, *, snap_tolerance_s: float = 0, max_gap_s: int = 3600,
                 state: IntervalizerState | None = None) -> None:
        if length_s <= 0:
            raise ConfigError("interval length must be > 0 s", key="interval_s")
        if snap_tolerance_s < 0 or 2 * snap_tolerance_s >= length_s:
            raise ConfigError("snap tolerance must be >= 0 and below half the interval",
                              key="snap_tolerance_s")
        if max_gap_s < 0:
            raise ConfigError("max gap must be >= 0 s", key="max_gap_s")
        self.length_s = length_s
        self.snap_tolerance_s = snap_tolerance_s
        self.max_gap_s = max_gap_s
        self._len_ms = length_s * 1000
        self._snap_ms = round(snap_tolerance_s * 1000)
        self._gap_ms = max_gap_s * 1000
        state = state or IntervalizerState()
        if state.boundary_ms is not None and state.boundary_ms % self._len_ms:
            raise ConfigError(f"saved boundary {state.boundary_ms} ms is off a {length_s} s grid",
                              key="interval_s", fix="keep the interval length of a series")
        if (state.prev_at_ms is None) != (state.prev_cumulative is None):
            raise ValueError(f"inconsistent intervalizer state: {state!r}")
        self._prev_at = state.prev_at_ms
        self._prev_c = state.prev_cumulative if state.prev_cumulative is not None else Decimal(0)
        self._prev_ratio: tuple[int, int] | None = None
        self._b = state.boundary_ms
        self._bq = state.boundary_value
        self._bf = state.boundary_flags
        self._carry = state.carry_flags
        self._pending = state.pending_flags

    def snapshot(self) -> IntervalizerState:
        has_prev = self._prev_at is not None
        return IntervalizerState(
            prev_at_ms=self._prev_at, prev_cumulative=self._prev_c if has_prev else None,
            boundary_ms=self._b, boundary_value=self._bq, boundary_flags=self._bf,
            carry_flags=self._carry, pending_flags=self._pending)

    def feed(self, at_ms: int, cumulative: Decimal, flags: int = 0,
             brk: bool = False) -> list[Interval]:
        """Take one point (epoch ms, continuous cumulative in base units) in time order.

        ``flags`` are the flags of the step that ends at this point; ``brk`` says the
        cumulative does not continue from the previous point. Returns the intervals
        completed by it, oldest first.
        """
        prev_at = self._prev_at
        if brk or prev_at is None:
            self._restart(at_ms, cumulative, flags)
            return []
        if at_ms <= prev_at:
            raise ValueError(f"points must rise in time: {at_ms} ms after {prev_at} ms")
        length = self._len_ms
        snap = self._snap_ms
        b = self._b
        nxt = b + length if b is not None else prev_at - prev_at % length + length
        last = at_ms + snap
        if nxt > last:  # no boundary is settled by this point: the common case for fast polls
            self._carry |= flags
            self._prev_at = at_ms
            self._prev_c = cumulative
            self._prev_ratio = None
            return []
        if nxt >= at_ms - snap and nxt + length > last:
            # One boundary, measured by this very point (a poll on the grid): the loop
            # below in short. Rounding the Decimal half to even is round_half_even of its
            # ratio; the ratio itself is taken only when a later point interpolates.
            q = round(cumulative)
            carry = self._carry | flags
            self._prev_at = at_ms
            self._prev_c = cumulative
            self._prev_ratio = None
            bq, bf, pending = self._bq, self._bf, self._pending
            self._b, self._bq, self._bf, self._carry = nxt, q, 0, 0
            if b is None:
                return []
            self._pending = 0
            return [Interval(b, q - bq, bf | carry | pending)]
        n1, d1 = ratio = cumulative.as_integer_ratio()
        n0, d0 = self._prev_ratio or self._prev_c.as_integer_ratio()
        elapsed = at_ms - prev_at
        # cumulative(t) = [n0·d1·elapsed + (n1·d0 − n0·d1)·(t − prev_at)] / (d0·d1·elapsed),
        # kept as integers so the rounding below is exact.
        if d0 == d1 == 1:  # whole base units: the usual case
            base, slope, den = n0 * elapsed, n1 - n0, elapsed
        else:
            base, slope, den = n0 * d1 * elapsed, n1 * d0 - n0 * d1, d0 * d1 * elapsed
        estimated = _GAP_SPANNED if elapsed > self._gap_ms else _INTERPOLATED
        measured_from = at_ms - snap
        out: list[Interval] = []
        carry = self._carry | flags
        bq, bf, pending = self._bq, self._bf, self._pending
        while nxt <= last:
            if nxt >= measured_from:
                q = round_half_even(n1, d1) if d1 != 1 else n1
                how = 0
            else:
                # round_half_even, inlined: this runs once per interval on the hot path
                q, r = divmod(base + slope * (nxt - prev_at), den)
                r += r
                if r > den or (r == den and q & 1):
                    q += 1
                how = estimated
            if b is not None:
                out.append(Interval(b, q - bq, bf | how | carry | pending))
                pending = 0
            b, bq, bf = nxt, q, how
            carry = flags if how else 0
            nxt += length
        self._b, self._bq, self._bf, self._carry, self._pending = b, bq, bf, carry, pending
        self._prev_at = at_ms
        self._prev_c = cumulative
        self._prev_ratio = ratio
        return out

    def _restart(self, at_ms: int, cumulative: Decimal, flags: int) -> None:
        """A break: forget the grid state; the point may measure its nearest boundary."""
        self._prev_at = at_ms
        self._prev_c = cumulative
        self._prev_ratio = None
        self._b = None
        self._carry = 0
        self._pending = flags
        length = self._len_ms
        below = at_ms - at_ms % length
        nearest = below if at_ms - below <= length // 2 else below + length
        if abs(at_ms - nearest) <= self._snap_ms:
            self._b = nearest
            self._bq = round_half_even(*cumulative.as_integer_ratio())
            self._bf = 0
