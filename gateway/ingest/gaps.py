"""The open gaps of one series: late reads inside them re-derive their estimates. Pure.

A step between two reads longer than the max gap spreads its consumption linearly
(``Flag.GAP_SPANNED``, ESPI 9). ``Gaps`` remembers each such step (a ``GapSpan``: the
grid just before it and the read that closed it) for ``backfill_window_s``, so that a
read older than the last one that falls inside it (a catch-up from the meter's memory,
a late batch) and fits the reads around it can re-derive the gap's intervals: the grid
is run again from the state before the gap, with the late reads in it.

The *tail* of a gap is the interval that starts at the last boundary before the gap's
end read. A later read emits it, so when it is, its value is captured; a re-derivation
then corrects it by how far its start boundary moved, or, while it is still open,
moves the live grid's boundary instead. Fed in time order, however batched, late reads
end exactly where the same reads fed in time would (``tests/ingest/test_backfill.py``).

``SeriesProcessor`` (``gateway.ingest.series``) owns one ``Gaps`` per series and saves
its ``spans`` in the cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

import msgspec

from gateway.ingest.intervalize import Interval, Intervalizer, IntervalizerState
from gateway.model import Flag, IntervalReading, Reading
from gateway.validation.rules import JumpBeyondRating

__all__ = ["GapRun", "GapSpan", "Gaps", "LateRead"]

#: At most this many gaps per series stay open to late reads (the oldest go first).
MAX_SPANS = 32
_GAP_SPANNED = int(Flag.GAP_SPANNED)
_INTERPOLATED = int(Flag.INTERPOLATED)
#: How a boundary was derived; an interval's own flags beside them come from its reads.
_DERIVATION = _INTERPOLATED | _GAP_SPANNED

#: Turns an interval of the grid into what the series emits.
Emit = Callable[[Interval], IntervalReading]


class GapRun(msgspec.Struct, frozen=True, gc=False):
    """Consecutive intervals wholly inside one gap: starts ``first_ms`` .. ``last_ms``."""

    first_ms: int
    last_ms: int


class GapSpan(msgspec.Struct, frozen=True, kw_only=True):
    """A step between two reads longer than the max gap, kept so that a late read inside
    it can re-derive its estimates.

    ``grid`` is the grid just before the step (its last point is the gap's start read);
    ``end_*`` is the read that closed the gap, as it was fed.
    """

    grid: IntervalizerState
    end_at_ms: int
    end_cumulative: Decimal
    end_flags: int
    tail_ms: int
    #: The tail's start boundary as derived then (quantized, base units).
    tail_q: int
    #: The tail interval once emitted: its value, flags, and how its end boundary was
    #: derived (0 measured, INTERPOLATED or GAP_SPANNED). None while it is still open.
    tail_value: int | None = None
    tail_flags: int = 0
    tail_end_how: int = 0
    #: False once a break (reset) made the tail interval impossible.
    tail_open: bool = True


class LateRead(msgspec.Struct, frozen=True, gc=False):
    """A late read placed inside an open gap, waiting for the end of the batch."""

    span: GapSpan
    at_ms: int
    cumulative: Decimal
    flags: int
    reading: Reading


#: What a re-derivation says of a late read: its event kind (``backfill``, ``stale``,
#: ``conflict``), the read, and why.
Verdicts = list[tuple[str, LateRead, str]]


def _iso_ms(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()


class Gaps:
    """The open gaps of one series; see the module doc."""

    __slots__ = ("_gap_ms", "_jump", "_len_ms", "_snap_ms", "_window_ms", "interval_s",
                 "max_gap_s", "modulus", "snap_tolerance_s", "spans", "tail_ms", "unit_name")

    def __init__(self, *, interval_s: int, snap_tolerance_s: float, max_gap_s: int,
                 backfill_window_s: int, modulus: Decimal | None, jump: JumpBeyondRating,
                 unit_name: str, spans: tuple[GapSpan, ...] = ()) -> None:
        self.interval_s = interval_s
        self.snap_tolerance_s = snap_tolerance_s
        self.max_gap_s = max_gap_s
        self.modulus = modulus
        self.unit_name = unit_name
        self._jump = jump
        self._len_ms = interval_s * 1000
        self._snap_ms = round(snap_tolerance_s * 1000)
        self._gap_ms = max_gap_s * 1000
        self._window_ms = backfill_window_s * 1000
        self.spans = list(spans)
        newest = spans[-1] if spans else None
        #: The newest gap's tail interval, awaited (-1: none).
        self.tail_ms = (newest.tail_ms if newest is not None and newest.tail_open
                        and newest.tail_value is None else -1)

    def _grid(self, state: IntervalizerState) -> Intervalizer:
        return Intervalizer(self.interval_s, snap_tolerance_s=self.snap_tolerance_s,
                            max_gap_s=self.max_gap_s, state=state)

    def clear(self) -> None:
        """Forget every gap (a meter exchange: a late read of the old meter has no place)."""
        self.spans.clear()
        self.tail_ms = -1

    # -- live: gaps opened, tails emitted --------------------------------------------

    def open(self, grid: Intervalizer, at_ms: int, cumulative: Decimal, flags: int,
             emit: Emit, intervals: list[IntervalReading], gaps: list[GapRun]) -> None:
        """Feed ``grid`` a point that ends a gap, and keep the gap open to late reads."""
        before = grid.snapshot()
        head = before.boundary_ms
        whole = self._inside_from(before)
        first = last = -1
        tail = self.tail_ms
        for iv in grid.feed(at_ms, cumulative, flags, False):
            emitted = emit(iv)
            intervals.append(emitted)
            if iv.start_ms == tail:
                self.capture_tail(emitted, at_ms, long=True)
            if iv.start_ms >= whole:  # wholly inside the gap
                if first < 0:
                    first = iv.start_ms
                last = iv.start_ms
        if first >= 0:
            gaps.append(GapRun(first, last))
        after = grid.snapshot()
        if after.boundary_ms is None or after.boundary_ms == head:
            return  # no boundary inside the gap: nothing estimated to re-derive
        spans = self.spans
        spans.append(GapSpan(grid=before, end_at_ms=at_ms, end_cumulative=cumulative,
                             end_flags=flags, tail_ms=after.boundary_ms,
                             tail_q=after.boundary_value))
        horizon = at_ms - self._window_ms
        while spans and (len(spans) > MAX_SPANS or spans[0].end_at_ms < horizon):
            del spans[0]
        self.tail_ms = after.boundary_ms if spans else -1

    def capture_tail(self, emitted: IntervalReading, at_ms: int, *, long: bool) -> None:
        """The newest gap's tail interval was emitted by the point at ``at_ms`` (a step
        longer than the max gap when ``long``): remember it as emitted."""
        span = self.spans[-1]
        self.spans[-1] = msgspec.structs.replace(
            span, tail_value=emitted.value, tail_flags=emitted.flags,
            tail_end_how=self._end_how(span.tail_ms, at_ms, long))
        self.tail_ms = -1

    def lose_tail(self) -> None:
        """A break before the newest gap's tail interval: it will never be emitted."""
        if self.spans:
            self.spans[-1] = msgspec.structs.replace(self.spans[-1], tail_open=False)
        self.tail_ms = -1

    def _inside_from(self, before: IntervalizerState) -> int:
        """The first interval start wholly inside a gap that starts at the grid's last
        point: the interval at the last boundary if that point measured it, else the
        next one (the interval before it holds measured consumption too)."""
        head = before.boundary_ms
        if head is None:
            return -1
        start_at = before.prev_at_ms
        return head if start_at is not None and head >= start_at - self._snap_ms else head + 1

    def _end_how(self, tail_ms: int, at_ms: int, long: bool) -> int:
        """How the end boundary of the interval at ``tail_ms`` was derived by a step
        ending at ``at_ms``: measured when that read is within the snap tolerance."""
        if tail_ms + self._len_ms >= at_ms - self._snap_ms:
            return 0
        return _GAP_SPANNED if long else _INTERPOLATED

    # -- late reads -------------------------------------------------------------------

    def place(self, reading: Reading, at_ms: int, value: Decimal,
              flags: int) -> LateRead | str:
        """A read older than the last one (value in base units): its place inside an open
        gap if it fits the reads around it; else the reason to quarantine it, or "" when
        it is no gap's (the tracker's own verdict stands)."""
        for span in self.spans:
            start_at = span.grid.prev_at_ms
            c0 = span.grid.prev_cumulative
            if start_at is None or c0 is None or not start_at < at_ms < span.end_at_ms:
                continue
            c1 = span.end_cumulative
            where = f"the gap from {_iso_ms(start_at)} to {_iso_ms(span.end_at_ms)}"
            modulus = self.modulus
            if modulus is None:
                c = value
            else:  # the turn of the register that puts it between the reads around it
                turns = ((c0 - value) / modulus).to_integral_value(rounding=ROUND_CEILING)
                c = value + turns * modulus
                if c + modulus <= c1:
                    return (f"late read inside {where}: the register turned over more than "
                            "once across the gap, so where this read falls is ambiguous")
            if not c0 <= c <= c1:
                return (f"late read inside {where} does not fit the reads around it "
                        f"({c0} .. {c1} {self.unit_name}): not used")
            if self._jump.check(at_ms - start_at, c - c0) or self._jump.check(
                    span.end_at_ms - at_ms, c1 - c):
                return (f"late read inside {where} implies a rate beyond the meter's "
                        "rating on one side of it: not used")
            return LateRead(span, at_ms, c, flags, reading)
        return ""

    def backfill(self, late: list[LateRead], live: Intervalizer, plain: Emit,
                 intervals: list[IntervalReading],
                 gaps: list[GapRun]) -> tuple[Verdicts, Intervalizer | None]:
        """Re-derive each gap that late reads fell into, once per gap per batch. Returns
        what to say of each late read, and the live grid to go on with when its open
        boundary moved (else None)."""
        verdicts: Verdicts = []
        # By the gap's end read: a span is replaced when its tail is captured or a gap
        # before it is re-derived, but its end read stays.
        by_end: dict[int, list[LateRead]] = {}
        for entry in late:
            by_end.setdefault(entry.span.end_at_ms, []).append(entry)
        moved: Intervalizer | None = None
        for end_at_ms, entries in by_end.items():
            span = next((s for s in self.spans if s.end_at_ms == end_at_ms), None)
            if span is None:  # closed by this very batch (too old, or too many gaps)
                verdicts += [("stale", entry, "late read for a gap no longer open to "
                              "re-derivation") for entry in entries]
                continue
            points: list[LateRead] = []
            for entry in sorted(entries, key=lambda e: e.at_ms):
                if points and points[-1].at_ms == entry.at_ms:
                    if points[-1].cumulative != entry.cumulative:
                        verdicts.append(("conflict", entry, "late read at the same instant "
                                         "as another, other value"))
                    continue  # the same late read twice: once is enough
                points.append(entry)
            moved = self._rederive(span, points, moved or live, plain, intervals,
                                   gaps) or moved
            where = f"{_iso_ms(span.grid.prev_at_ms or 0)} to {_iso_ms(span.end_at_ms)}"
            verdicts += [("backfill", entry, f"late read inside the gap from {where}: the "
                          "gap's estimated intervals re-derived with it") for entry in points]
        return verdicts, moved

    def _rederive(self, span: GapSpan, points: list[LateRead], live: Intervalizer,
                  plain: Emit, intervals: list[IntervalReading],
                  gaps: list[GapRun]) -> Intervalizer | None:
        """Run the gap again from the grid before it, with the late reads in it. Sub-gaps
        still longer than the max gap stay open, and so does the last one (up to the
        gap's end read), where the rest of a catch-up will fall; the tail interval is
        corrected, or the live grid's boundary is, if the tail is not emitted yet (the
        new live grid is returned)."""
        grid = self._grid(span.grid)
        steps = [(p.at_ms, p.cumulative, p.flags) for p in points]
        steps.append((span.end_at_ms, span.end_cumulative, span.end_flags))
        subs: list[GapSpan] = []
        awaiting = False  # subs[-1]'s tail is still to come
        prev = span.grid.prev_at_ms or 0
        for at_ms, cumulative, flags in steps:
            before = grid.snapshot()
            head = before.boundary_ms
            whole = self._inside_from(before)
            long = at_ms - prev > self._gap_ms
            first = last = -1
            for iv in grid.feed(at_ms, cumulative, flags, False):
                intervals.append(plain(iv))
                if awaiting and iv.start_ms == subs[-1].tail_ms:
                    subs[-1] = msgspec.structs.replace(
                        subs[-1], tail_value=iv.value, tail_flags=iv.flags,
                        tail_end_how=self._end_how(iv.start_ms, at_ms, long))
                    awaiting = False
                if long and iv.start_ms >= whole:
                    if first < 0:
                        first = iv.start_ms
                    last = iv.start_ms
            if first >= 0:
                gaps.append(GapRun(first, last))
            after = grid.snapshot()
            # The last step stays open however short it is: a catch-up in several
            # batches continues after the latest late read.
            keep = long or at_ms == span.end_at_ms
            if keep and after.boundary_ms is not None and after.boundary_ms != head:
                subs.append(GapSpan(grid=before, end_at_ms=at_ms, end_cumulative=cumulative,
                                    end_flags=flags, tail_ms=after.boundary_ms,
                                    tail_q=after.boundary_value))
                awaiting = True
            prev = at_ms
        final = grid.snapshot()
        tail_q, tail_bf = final.boundary_value, final.boundary_flags
        newest = self.spans[-1] is span
        moved: Intervalizer | None = None
        if final.boundary_ms == span.tail_ms:
            if span.tail_value is not None:  # emitted already: re-emit it corrected
                value = span.tail_value + span.tail_q - tail_q
                flags = (span.tail_flags & ~_DERIVATION) | tail_bf | span.tail_end_how
                intervals.append(plain(Interval(span.tail_ms, value, flags)))
                if awaiting:
                    subs[-1] = msgspec.structs.replace(subs[-1], tail_value=value,
                                                       tail_flags=flags,
                                                       tail_end_how=span.tail_end_how)
                self._patch_next(span, tail_q, tail_bf)
            elif span.tail_open and newest and live.snapshot().boundary_ms == span.tail_ms:
                # The tail is still open: the live grid goes on from the moved boundary.
                moved = self._grid(msgspec.structs.replace(
                    live.snapshot(), boundary_value=tail_q, boundary_flags=tail_bf))
            elif awaiting:
                subs[-1] = msgspec.structs.replace(subs[-1], tail_open=False)
        i = next(i for i, s in enumerate(self.spans) if s is span)
        self.spans[i:i + 1] = subs
        if newest:
            last_sub = subs[-1] if subs and subs[-1].end_at_ms == span.end_at_ms else None
            self.tail_ms = (last_sub.tail_ms if last_sub is not None and last_sub.tail_open
                            and last_sub.tail_value is None else -1)
        return moved

    def _patch_next(self, span: GapSpan, tail_q: int, tail_bf: int) -> None:
        """A gap that starts where ``span`` ends begins at its corrected tail boundary."""
        for i, other in enumerate(self.spans):
            grid = other.grid
            # Its grid still starts from the tail boundary: no boundary was settled
            # between this gap's end read and its start read.
            if other is not span and grid.boundary_ms == span.tail_ms \
                    and (grid.prev_at_ms or 0) >= span.end_at_ms:
                self.spans[i] = msgspec.structs.replace(other, grid=msgspec.structs.replace(
                    grid, boundary_value=tail_q, boundary_flags=tail_bf))
