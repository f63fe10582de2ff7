"""Late reads inside a gap (a catch-up) replace the gap's estimates with what the reads
say, exactly as if they had come in time; reference-day shaping keeps a gap's total."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.series import EventKind, GapRun, SeriesConfig, SeriesProcessor, SeriesState
from gateway.model import Flag, IntervalReading, Kind, Quality, Reading, Unit

T0 = datetime(2026, 3, 2, tzinfo=UTC)
NOW_MS = int((T0 + timedelta(days=30)).timestamp() * 1000)
CFG = SeriesConfig(meter_id="M1", channel="1.0.1.8.0.255", unit=Unit.WH, interval_s=900,
                   max_gap_s=1800, modulus=Decimal(1_000_000), max_power_w=Decimal(20_000))


def read(minutes: float, wh: int) -> Reading:
    return Reading(meter_id="M1", channel="1.0.1.8.0.255", at=T0 + timedelta(minutes=minutes),
                   value=Decimal(wh % 1_000_000), unit=Unit.WH, kind=Kind.CUMULATIVE)


class Store:
    """What the store keeps: the last version of each interval, plus the audit."""

    def __init__(self) -> None:
        self.rows: dict[datetime, tuple[int, Quality, int]] = {}
        self.events: list[EventKind] = []
        self.gaps: list[GapRun] = []

    def feed(self, proc: SeriesProcessor, reads: Sequence[Reading]) -> None:
        out = proc.feed_many(reads, NOW_MS)
        for iv in out.intervals:
            self.rows[iv.start] = (iv.value, iv.quality, iv.flags)
        self.events += [e.kind for e in out.events]
        self.gaps += out.gaps

    def values(self) -> dict[int, tuple[int, Quality]]:
        return {int((at - T0).total_seconds()) // 60: (v, q)
                for at, (v, q, _) in sorted(self.rows.items())}


def restarted(proc: SeriesProcessor, config: SeriesConfig = CFG) -> SeriesProcessor:
    """The processor after a restart: its state through the cursor's encoding."""
    raw = msgspec.msgpack.encode(proc.snapshot())
    return SeriesProcessor.restore(config, msgspec.msgpack.decode(raw, type=SeriesState))


def test_a_catch_up_replaces_linear_estimates_with_the_measured_shape() -> None:
    # Every 5 minutes, but 10:00-16:00 comes late; heavy use 12:00-13:00 only.
    def wh(minute: int) -> int:
        return 50_000 + minute * 2 + max(0, min(minute, 780) - 720) * 100

    reads = [read(m, wh(m)) for m in range(0, 24 * 60, 5)]
    live = [r for r in reads if not 600 < (r.at - T0).total_seconds() / 60 < 960]
    late = [r for r in reads if r not in live]
    store = Store()
    proc = SeriesProcessor(CFG)
    store.feed(proc, live)
    before = store.values()
    assert before[720][1] is Quality.ESTIMATED_LINEAR  # noon: an even share of the gap
    assert before[720][0] == before[630][0]
    store.feed(restarted(proc), late)
    after = store.values()
    truth = Store()
    truth.feed(SeriesProcessor(CFG), reads)
    assert after == truth.values()
    assert after[720] == (30 + 1500, Quality.VALID)  # the measured peak
    assert store.events.count(EventKind.BACKFILL) == len(late)
    # the total never moved: the gap's energy was known all along
    assert sum(v for v, _ in after.values()) == sum(v for v, _ in before.values())


def test_a_single_late_read_splits_a_gap_and_the_open_tail_follows_it() -> None:
    store = Store()
    proc = SeriesProcessor(CFG)
    store.feed(proc, [read(0, 1000), read(360, 1600)])  # 6 hours, tail not yet emitted
    assert store.values()[0] == (25, Quality.ESTIMATED_LINEAR)
    store.feed(proc, [read(60, 1400)])  # late: most of it was used in the first hour
    store.feed(proc, [read(375, 1700)])
    values = store.values()
    assert [values[m][0] for m in (0, 15, 30, 45)] == [100, 100, 100, 100]
    assert values[60] == (10, Quality.ESTIMATED_LINEAR)  # 200 Wh over 20 intervals
    assert sum(v for v, _ in values.values()) == 700
    assert values[360] == (100, Quality.VALID)


def test_out_of_range_and_implausible_late_reads_are_quarantined_not_used() -> None:
    store = Store()
    proc = SeriesProcessor(CFG)
    store.feed(proc, [read(0, 1000), read(360, 1600), read(375, 1700)])
    before = store.values()
    out = proc.feed_many([read(60, 1700)], NOW_MS)  # above the gap's end read
    assert [e.kind for e in out.events] == [EventKind.STALE]
    assert out.events[0].quarantine and "does not fit" in out.events[0].reason
    out = proc.feed_many([read(370, 1650)], NOW_MS)  # after the gap: an ordinary stale read
    assert [e.kind for e in out.events] == [EventKind.STALE]
    slow = SeriesConfig(**{**msgspec.structs.asdict(CFG), "max_power_w": Decimal(100)})
    proc = SeriesProcessor(slow)
    proc.feed_many([read(0, 1000), read(360, 1600)], NOW_MS)
    out = proc.feed_many([read(1, 1500)], NOW_MS)  # 500 Wh in a minute at 100 W: no
    assert "beyond the meter's rating" in out.events[0].reason
    assert store.values() == before


def test_a_late_read_across_a_wrap_takes_the_turn_that_fits() -> None:
    store = Store()
    proc = SeriesProcessor(CFG)
    store.feed(proc, [read(0, 999_000), read(360, 1_001_000), read(375, 1_001_100)])
    store.feed(proc, [read(180, 1_000_500)])  # the register shows 000500
    assert EventKind.BACKFILL in store.events
    truth = Store()
    truth.feed(SeriesProcessor(CFG), [read(0, 999_000), read(180, 1_000_500), read(360, 1_001_000),
                                      read(375, 1_001_100)])
    assert store.values() == truth.values()


@settings(max_examples=80, deadline=None)
@given(
    steps=st.lists(st.integers(0, 500), min_size=30, max_size=150),
    gaps=st.lists(st.tuples(st.integers(1, 140), st.integers(7, 60)), min_size=1, max_size=3),
    cuts=st.lists(st.integers(1, 30), max_size=5),
    restart=st.booleans(),
    start=st.integers(0, 999_999),
    jitter_s=st.integers(0, 200),
)
def test_late_reads_in_time_order_end_where_reads_in_time_would(
        steps: list[int], gaps: list[tuple[int, int]], cuts: list[int], restart: bool,
        start: int, jitter_s: int) -> None:
    """Whatever the gaps, wraps and poll jitter, however the catch-up is batched, and
    across a restart: the same intervals as the reads fed in time. (Steps stay within
    the rating even between jittered reads, 500 Wh in 100 s at 20 kW; gaps are at least 7
    reads, longer than the max gap.)"""
    total, reads = start, []
    for i, step in enumerate(steps):
        total += step
        reads.append(read(i * 5 + (jitter_s / 60 if i % 3 == 0 else 0), total))
    hidden_at: set[int] = set()
    for lo, n in gaps:
        hidden_at |= set(range(lo, min(lo + n, len(reads))))
    hidden = [r for i, r in enumerate(reads) if i in hidden_at]
    shown = [r for i, r in enumerate(reads) if i not in hidden_at]
    store = Store()
    proc = SeriesProcessor(CFG)
    store.feed(proc, shown)
    if restart:
        proc = restarted(proc)
    i = 0
    for cut in [*cuts, len(hidden)]:
        store.feed(proc, hidden[i:i + cut])
        i += cut
    truth = Store()
    truth.feed(SeriesProcessor(CFG), reads)
    assert store.values() == truth.values()


def test_reshape_keeps_the_total_and_flags_reference_day() -> None:
    proc = SeriesProcessor(CFG)
    run = [IntervalReading(meter_id="M1", channel="1.0.1.8.0.255",
                           start=T0 + timedelta(minutes=15 * i), length_s=900, value=25,
                           unit=Unit.WH, quality=Quality.ESTIMATED_LINEAR,
                           flags=int(Flag.GAP_SPANNED)) for i in range(4)]
    shaped = proc.reshape(run, [1, 0, 2, 1])
    assert [iv.value for iv in shaped] == [25, 0, 50, 25]
    assert {iv.quality for iv in shaped} == {Quality.ESTIMATED_REFERENCE_DAY}
    assert all(iv.flags & Flag.REFERENCE_DAY and iv.flags & Flag.GAP_SPANNED for iv in shaped)
