"""One series end to end: reads in, intervals and audit events out, state across restarts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.ingest.series import (
    EventKind,
    SeriesConfig,
    SeriesOutput,
    SeriesProcessor,
    SeriesState,
)
from gateway.model import Flag, IntervalReading, Kind, Quality, Reading, Unit
from gateway.validation.rules import FutureTimestamp
from gateway.validation.stage import ValidationStage, VeeConfig

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW_MS = int((T0 + timedelta(days=30)).timestamp() * 1000)
CFG = SeriesConfig(meter_id="M1", channel="1.0.1.8.0.255", unit=Unit.KWH,
                   modulus=Decimal(10_000_000), max_power_w=Decimal(20_000))


def read(minutes: float, kwh: str | int, *, unit: Unit = Unit.KWH, flags: int = 0,
         meter_id: str = "M1", kind: Kind = Kind.CUMULATIVE) -> Reading:
    return Reading(meter_id=meter_id, channel="1.0.1.8.0.255",
                   at=T0 + timedelta(minutes=minutes), value=Decimal(kwh), unit=unit,
                   kind=kind, flags=flags)


def run(proc: SeriesProcessor, reads: Sequence[Reading]) -> SeriesOutput:
    intervals: list[IntervalReading] = []
    events = []
    for r in reads:
        out = proc.feed(r, NOW_MS)
        intervals += out.intervals
        events += out.events
    return SeriesOutput(intervals, events)


def table(out: SeriesOutput) -> list[tuple[int, int, Quality]]:
    """(start in minutes after T0, Wh, quality)."""
    return [(int((iv.start - T0).total_seconds()) // 60, iv.value, iv.quality)
            for iv in out.intervals]


def kinds(out: SeriesOutput) -> list[EventKind]:
    return [e.kind for e in out.events]


def test_reads_on_the_grid_give_valid_wh_intervals() -> None:
    out = run(SeriesProcessor(CFG), [read(0, "1234.567"), read(15, "1234.901"),
                                     read(30, "1235.000")])
    assert table(out) == [(0, 334, Quality.VALID), (15, 99, Quality.VALID)]
    first = out.intervals[0]
    assert (first.meter_id, first.channel, first.unit, first.length_s, first.flags) == (
        "M1", "1.0.1.8.0.255", Unit.WH, 900, 0)
    assert first.start == T0 and first.start.tzinfo is UTC
    assert out.intervals[1].start == T0 + timedelta(minutes=15)
    assert kinds(out) == [EventKind.BASELINE]


def test_reads_off_the_grid_give_derived_intervals() -> None:
    out = run(SeriesProcessor(CFG), [read(0.05, "100"), read(15.05, "100.3"),
                                     read(30.05, "100.6"), read(45.05, "100.9")])
    assert table(out) == [(15, 300, Quality.DERIVED), (30, 300, Quality.DERIVED)]
    assert {iv.flags for iv in out.intervals} == {Flag.INTERPOLATED}


def test_snap_tolerance_from_config() -> None:
    cfg = msgspec.structs.replace(CFG, snap_tolerance_s=5.0)
    out = run(SeriesProcessor(cfg), [read(0.05, "100"), read(15.05, "100.3"),
                                     read(30.05, "100.6")])
    assert table(out) == [(0, 300, Quality.VALID), (15, 300, Quality.VALID)]


def test_four_digit_register_rolls_over_exactly() -> None:
    out = run(SeriesProcessor(CFG), [read(0, "9993"), read(60, "7"), read(120, "21")])
    assert sum(iv.value for iv in out.intervals[:4]) == 14_000
    assert sum(iv.value for iv in out.intervals) == 28_000
    assert all(iv.flags & Flag.ROLLOVER for iv in out.intervals[:4])
    assert not any(iv.flags & Flag.ROLLOVER for iv in out.intervals[4:])
    assert {iv.quality for iv in out.intervals} == {Quality.DERIVED}  # still measured data
    assert kinds(out) == [EventKind.BASELINE, EventKind.ROLLOVER]
    assert not out.events[1].quarantine and "+14000" in out.events[1].reason


def test_a_two_hour_gap_is_estimated_and_sums_exactly() -> None:
    out = run(SeriesProcessor(CFG), [read(0, "500.000"), read(15, "500.250"),
                                     read(135, "507.001"), read(150, "507.101")])
    assert [q for _, _, q in table(out)] == (
        [Quality.VALID] + [Quality.ESTIMATED_LINEAR] * 8 + [Quality.VALID])
    gap = out.intervals[1:9]
    assert {iv.flags for iv in gap} == {Flag.GAP_SPANNED}
    assert sum(iv.value for iv in gap) == 6751  # 507.001 - 500.250 kWh, exactly
    assert sum(iv.value for iv in out.intervals) == 7101


def test_implausible_wrap_held_then_reset() -> None:
    proc = SeriesProcessor(CFG)
    out = run(proc, [read(0, "9000"), read(15, "9001"), read(30, "100"), read(45, "101"),
                     read(60, "102"), read(75, "103")])
    assert kinds(out) == [EventKind.BASELINE, EventKind.HELD, EventKind.RESET]
    held, reset = out.events[1:]
    assert not held.quarantine and held.flags & Flag.NEGATIVE_DELTA
    assert reset.reading.at == T0 + timedelta(minutes=30)  # about the held read
    assert not reset.quarantine and reset.flags & Flag.RESET
    # 00:00-00:15 before; nothing from 00:15 to the reset; then the first interval after
    # the reset is questionable, the next valid.
    assert table(out) == [(0, 1000, Quality.VALID), (30, 1000, Quality.QUESTIONABLE),
                          (45, 1000, Quality.VALID), (60, 1000, Quality.VALID)]
    assert out.intervals[1].flags == Flag.RESET


def test_implausible_wrap_held_then_glitch_loses_nothing() -> None:
    out = run(SeriesProcessor(CFG), [read(0, "9000"), read(15, "9001"), read(30, "100"),
                                     read(45, "9003"), read(60, "9004")])
    assert kinds(out) == [EventKind.BASELINE, EventKind.HELD, EventKind.GLITCH]
    glitch = out.events[2]
    assert glitch.quarantine and glitch.reading.value == Decimal(100)
    assert sum(iv.value for iv in out.intervals) == 4000  # 9000 -> 9004 kWh, all of it
    assert [iv.value for iv in out.intervals] == [1000, 1000, 1000, 1000]
    # The 00:30 boundary is interpolated over the discarded read.
    assert [iv.quality for iv in out.intervals] == [
        Quality.VALID, Quality.DERIVED, Quality.DERIVED, Quality.VALID]


def test_sixteen_bit_counter_wraps_twice_in_a_day() -> None:
    cfg = SeriesConfig(meter_id="M1", channel="1.0.1.8.0.255", unit=Unit.WH,
                       modulus=Decimal(65536), max_power_w=Decimal(6000))
    reads = [read(15 * i, (60_000 + 1300 * i) % 65536, unit=Unit.WH) for i in range(97)]
    out = run(SeriesProcessor(cfg), reads)
    assert len(out.intervals) == 96
    assert {iv.value for iv in out.intervals} == {1300}
    assert sum(bool(iv.flags & Flag.ROLLOVER) for iv in out.intervals) == 2
    assert kinds(out).count(EventKind.ROLLOVER) == 2


def test_replaying_reads_changes_nothing() -> None:
    proc = SeriesProcessor(CFG)
    reads = [read(0, "10"), read(15, "11"), read(30, "12.5"), read(40, "13")]
    run(proc, reads)
    state = proc.snapshot()
    again = run(proc, reads)
    assert again.intervals == []
    assert kinds(again) == [EventKind.STALE] * 3  # the last one is an exact duplicate
    assert all(e.quarantine for e in again.events)
    assert proc.snapshot() == state


def _encode_roundtrip(state: SeriesState) -> SeriesState:
    packed = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=SeriesState)
    assert msgspec.json.decode(msgspec.json.encode(state), type=SeriesState) == state
    return packed


@pytest.mark.parametrize("cut", range(1, 9))
def test_snapshot_and_restore_anywhere(cut: int) -> None:
    reads = [read(0.1, "10"), read(7, "10.2"), read(16, "10.5"), read(24, "2"),
             read(33, "11"), read(47, "11.4"), read(52, "11.5"), read(61, "11.9"),
             read(70, "12.5")]
    whole = run(SeriesProcessor(CFG), reads)
    first = SeriesProcessor(CFG)
    part = run(first, reads[:cut])
    restored = SeriesProcessor.restore(CFG, _encode_roundtrip(first.snapshot()))
    rest = run(restored, reads[cut:])
    assert part.intervals + rest.intervals == whole.intervals
    assert part.events + rest.events == whole.events


def test_restore_refuses_another_series_or_grid() -> None:
    state = SeriesProcessor(CFG).snapshot()
    with pytest.raises(ConfigError):
        SeriesProcessor.restore(msgspec.structs.replace(CFG, meter_id="M2"), state)
    with pytest.raises(ConfigError):
        SeriesProcessor.restore(msgspec.structs.replace(CFG, interval_s=3600), state)


def test_future_reads_are_quarantined_not_used() -> None:
    proc = SeriesProcessor(CFG)
    late = T0 + timedelta(days=400)
    out = run(proc, [read(0, "10"),
                     Reading(meter_id="M1", channel="1.0.1.8.0.255", at=late,
                             value=Decimal(99), unit=Unit.KWH),
                     read(15, "11")])
    assert kinds(out) == [EventKind.BASELINE, EventKind.FUTURE]
    assert out.events[1].quarantine and out.events[1].flags & Flag.FUTURE
    assert table(out) == [(0, 1000, Quality.VALID)]


def test_foreign_reads_are_refused_with_a_reason() -> None:
    proc = SeriesProcessor(CFG)
    naive = Reading(meter_id="M1", channel="1.0.1.8.0.255", at=datetime(2026, 3, 1),
                    value=Decimal(1), unit=Unit.KWH)
    out = run(proc, [read(0, "1", meter_id="M2"), read(0, "1", unit=Unit.KVARH),
                     read(0, "1", kind=Kind.INSTANT), naive])
    assert kinds(out) == [EventKind.FOREIGN] * 4
    assert all(e.quarantine and "not this series" in e.reason for e in out.events)
    assert proc.snapshot() == SeriesProcessor(CFG).snapshot()


def test_a_read_in_wh_counts_for_a_kwh_series() -> None:
    out = run(SeriesProcessor(CFG), [read(0, "10"), read(15, "10500", unit=Unit.WH),
                                     read(30, "11")])
    assert table(out) == [(0, 500, Quality.VALID), (15, 500, Quality.VALID)]


def test_read_flags_make_intervals_questionable_and_a_jump_is_never_stored() -> None:
    cfg = msgspec.structs.replace(CFG, max_power_w=Decimal(1000))
    out = run(SeriesProcessor(cfg), [
        read(0, "10"), read(15, "10.2"), read(30, "10.4", flags=int(Flag.CLOCK_UNTRUSTED)),
        read(45, "15"), read(60, "15.1")])
    # 10.4 -> 15 kWh in 15 minutes is beyond a 1 kW rating: held; 15.1 continues from it,
    # so the jump is confirmed and a new baseline starts at 15: the 4.6 kWh are not stored.
    assert [(m, v, q) for m, v, q in table(out)] == [
        (0, 200, Quality.VALID), (15, 200, Quality.QUESTIONABLE),
        (45, 100, Quality.QUESTIONABLE)]
    assert out.intervals[1].flags == Flag.CLOCK_UNTRUSTED
    assert out.intervals[2].flags == Flag.RESET | Flag.OVER_MAX
    assert kinds(out) == [EventKind.BASELINE, EventKind.HELD, EventKind.RESET]
    assert not any(e.quarantine for e in out.events)


def test_a_single_garbage_read_is_quarantined_and_invents_nothing() -> None:
    cfg = msgspec.structs.replace(CFG, max_power_w=Decimal(20_000))
    out = run(SeriesProcessor(cfg), [
        read(0, "1000"), read(15, "1000.5"), read(30, "1001"), read(45, "9999"),
        read(60, "1001.5"), read(75, "1002")])
    assert [v for _, v, _ in table(out)] == [500, 500, 250, 250, 500]
    assert sum(v for _, v, _ in table(out)) == 2000  # 1000 -> 1002 kWh, exactly
    [glitch] = [e for e in out.events if e.quarantine]
    assert glitch.kind is EventKind.GLITCH and glitch.reading.value == Decimal("9999")


def test_interval_rules_of_the_stage_apply() -> None:
    class Zero:
        flag = Flag.ESTIMATED

        def check(self, start_ms: int, length_s: int, value: int, flags: int) -> int:
            return int(Flag.ESTIMATED) if value == 0 else 0

    stage = ValidationStage(reading_rules=[FutureTimestamp(60)], interval_rules=[Zero()])
    out = run(SeriesProcessor(CFG, stage=stage), [read(0, "1"), read(15, "1"), read(30, "2")])
    assert [(v, f) for v, f in ((iv.value, iv.flags) for iv in out.intervals)] == [
        (0, Flag.ESTIMATED), (1000, 0)]


# -- optional VEE rules (config.vee) --------------------------------------------------

VEE = VeeConfig(demand_high_w=Decimal(6000), spike_factor=Decimal(3), spike_window=2,
                spike_floor_wh=100, zero_run_intervals=3, frozen_register=True)
# 15-minute reads (kWh): 200 Wh, 200, 0, 0, 0, 0, 900 (spike), 1600 (over 6 kW), 200
VEE_READS = [read(15 * i, kwh) for i, kwh in enumerate(
    ["100", "100.2", "100.4", "100.4", "100.4", "100.4", "100.4", "101.3", "102.9", "103.1"])]


def _flags_by_start(out: SeriesOutput) -> list[tuple[int, int, Flag]]:
    return [(int((iv.start - T0).total_seconds()) // 60, iv.value, Flag(iv.flags))
            for iv in out.intervals]


def test_vee_rules_flag_intervals_and_keep_values() -> None:
    cfg = msgspec.structs.replace(CFG, vee=VEE)
    out = run(SeriesProcessor(cfg), VEE_READS)
    assert _flags_by_start(out) == [
        (0, 200, Flag.NONE), (15, 200, Flag.NONE), (30, 0, Flag.NONE), (45, 0, Flag.NONE),
        (60, 0, Flag.ZERO_RUN), (75, 0, Flag.ZERO_RUN), (90, 900, Flag.SPIKE),
        (105, 1600, Flag.SPIKE | Flag.DEMAND_HIGH), (120, 200, Flag.NONE)]
    assert {iv.quality for iv in out.intervals if iv.flags} == {Quality.QUESTIONABLE}
    plain = run(SeriesProcessor(CFG), VEE_READS)
    assert [iv.value for iv in out.intervals] == [iv.value for iv in plain.intervals]
    assert all(iv.flags == 0 for iv in plain.intervals)
    assert out.events == plain.events


def test_all_rules_off_is_the_default_stage() -> None:
    reads = [read(0.1, "10"), read(7, "10.2"), read(16, "10.5"), read(24, "2"),
             read(33, "11"), read(47, "11.4"), read(52, "11.4"), read(61, "11.9")]
    stage = ValidationStage.default(future_tolerance_s=CFG.future_tolerance_s)
    assert run(SeriesProcessor(CFG), reads) == run(SeriesProcessor(CFG, stage=stage), reads)


def _at_meter(r: Reading, minutes: float | None, *, naive: bool = False) -> Reading:
    meter_at = None if minutes is None else T0 + timedelta(minutes=minutes)
    if naive and meter_at is not None:
        meter_at = meter_at.replace(tzinfo=None)
    return msgspec.structs.replace(r, meter_at=meter_at)


def test_a_repeated_snapshot_is_not_used_and_the_next_read_spans_the_step() -> None:
    cfg = msgspec.structs.replace(CFG, vee=VeeConfig(frozen_register=True))
    reads = [_at_meter(read(0, "10"), 0), _at_meter(read(15, "10.5"), 15),
             _at_meter(read(30, "10.5"), 15),  # the meter gave its last snapshot again
             _at_meter(read(45, "11"), 45), _at_meter(read(60, "11.5"), None),
             _at_meter(read(75, "12"), 45, naive=True)]  # naive meter time: not judged
    out = run(SeriesProcessor(cfg), reads)
    assert _flags_by_start(out) == [(0, 500, Flag.NONE), (15, 250, Flag.INTERPOLATED),
                                    (30, 250, Flag.INTERPOLATED), (45, 500, Flag.NONE),
                                    (60, 500, Flag.NONE)]
    assert [e.reading for e in out.events if e.kind is EventKind.FROZEN] == [reads[2]]
    off = run(SeriesProcessor(CFG), reads)  # meter times are not looked at when off
    assert all(iv.flags == 0 for iv in off.intervals)
    assert [iv.value for iv in off.intervals][1:3] == [0, 500]


@pytest.mark.parametrize("cut", range(1, 10))
def test_vee_state_survives_a_restart(cut: int) -> None:
    cfg = msgspec.structs.replace(CFG, vee=VEE)
    reads = [_at_meter(r, 15 * (i - (i == 4))) for i, r in enumerate(VEE_READS)]
    whole = run(SeriesProcessor(cfg), reads)
    assert [e.kind for e in whole.events].count(EventKind.FROZEN) == 1
    first = SeriesProcessor(cfg)
    part = run(first, reads[:cut])
    restored = SeriesProcessor.restore(cfg, _encode_roundtrip(first.snapshot()))
    rest = run(restored, reads[cut:])
    assert part.intervals + rest.intervals == whole.intervals
    assert [*part.events, *rest.events] == list(whole.events)


def test_a_state_saved_before_the_vee_rules_still_restores() -> None:
    cfg = msgspec.structs.replace(CFG, vee=VEE)
    proc = SeriesProcessor(cfg)
    run(proc, VEE_READS[:3])
    saved = msgspec.to_builtins(proc.snapshot())
    del saved["vee"]  # as written by the previous release
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(saved), type=SeriesState)
    restored = SeriesProcessor.restore(cfg, state)
    out = run(restored, VEE_READS[3:])
    assert [iv.value for iv in out.intervals] == [0, 0, 0, 0, 900, 1600, 200]
    assert out.intervals[2].flags & Flag.ZERO_RUN  # the rules start afresh and still fire


# -- properties -----------------------------------------------------------------------

MODULUS_KWH = 100  # a small register, to wrap often
RATING_W = 10_000


@st.composite
def plausible_reads(draw: st.DrawFn) -> list[tuple[int, int]]:
    """(ms after T0, true Wh) rising at most at the rating; wraps under the modulus."""
    at = draw(st.integers(0, 3_600_000))
    true = draw(st.integers(0, 10**6))
    reads = [(at, true)]
    for _ in range(draw(st.integers(1, 30))):
        step = draw(st.one_of(st.integers(1, 1_800_000), st.integers(1, 8 * 3_600_000),
                              st.just(900_000)))
        at += step
        true += draw(st.integers(0, min(RATING_W * step // 3_600_000, 49_000)))
        reads.append((at, true))
    return reads


def _as_reading(at_ms: int, true_wh: int) -> Reading:
    value = Decimal(true_wh % (MODULUS_KWH * 1000)) / 1000  # a kWh register, 3 decimals
    return Reading(meter_id="M1", channel="1.0.1.8.0.255",
                   at=T0 + timedelta(milliseconds=at_ms), value=value, unit=Unit.KWH)


def _cumulative_at(reads: list[tuple[int, int]], b: int, snap: int) -> Fraction:
    for i, (at, true) in enumerate(reads):
        if at >= b - snap:
            if at <= b + snap:
                return Fraction(true)
            at0, true0 = reads[i - 1]
            return true0 + Fraction((true - true0) * (b - at0), at - at0)
    raise AssertionError("boundary past the last read")


@given(plausible_reads(), st.sampled_from([0, 5]), st.integers(0, 31))
def test_sum_telescopes_and_replay_is_idempotent(reads: list[tuple[int, int]], snap_s: int,
                                                 cut: int) -> None:
    cfg = SeriesConfig(meter_id="M1", channel="1.0.1.8.0.255", unit=Unit.KWH,
                       snap_tolerance_s=snap_s, modulus=Decimal(MODULUS_KWH * 1000),
                       max_power_w=Decimal(RATING_W))
    readings = [_as_reading(at, true) for at, true in reads]
    proc = SeriesProcessor(cfg)
    first = run(proc, readings[:cut])
    proc = SeriesProcessor.restore(cfg, _encode_roundtrip(proc.snapshot()))
    out = run(proc, readings[cut:])
    intervals = first.intervals + out.intervals
    assert all(iv.value >= 0 for iv in intervals)
    assert not any(e.quarantine or e.kind is EventKind.HELD for e in first.events + out.events)
    if intervals:
        t0_ms = int(T0.timestamp() * 1000)
        starts = [int(iv.start.timestamp() * 1000) - t0_ms for iv in intervals]
        assert starts == list(range(starts[0], starts[-1] + 900_000, 900_000))
        snap = snap_s * 1000
        begin = _cumulative_at(reads, starts[0], snap)
        end = _cumulative_at(reads, starts[-1] + 900_000, snap)
        assert sum(iv.value for iv in intervals) == round(end) - round(begin)
    state = proc.snapshot()
    again = run(proc, readings)
    assert again.intervals == []
    assert proc.snapshot() == state


def test_feeding_a_batch_equals_feeding_read_by_read() -> None:
    """feed_many is the one implementation; feed is a batch of one. Same results either
    way, events and the held read's bookkeeping included."""
    cfg = msgspec.structs.replace(CFG, max_power_w=Decimal(20_000))
    reads = [read(0, "1000"), read(15, "1000.5"), read(30, "1001"), read(45, "9999"),
             read(60, "1001.5"), read(75, "1000.9"), read(90, "1002"), read(90, "1003"),
             read(105, "1002.5"), read(120, "1002.7")]
    one_by_one = SeriesProcessor(cfg)
    singles = [one_by_one.feed(r, NOW_MS) for r in reads]
    batched = SeriesProcessor(cfg)
    together = batched.feed_many(reads, NOW_MS)
    assert list(together.intervals) == [iv for out in singles for iv in out.intervals]
    assert list(together.events) == [e for out in singles for e in out.events]
    assert batched.snapshot() == one_by_one.snapshot()


def at_ms(minutes: float) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)


def test_a_meter_exchange_with_a_lower_start_read_invents_nothing() -> None:
    """The peers' pain: a new meter starts at 0.4 kWh after the old one read 5,000."""
    proc = SeriesProcessor(CFG)
    proc.observe_identity(at_ms(0), "OLD-1")
    out = run(proc, [read(0, "5000"), read(15, "5000.5"), read(30, "5001")])
    proc.observe_identity(at_ms(40), "NEW-2")  # seen at 00:40: the swap was before
    after = run(proc, [read(45, "0.4"), read(60, "0.9"), read(75, "1.5")])
    assert [(m, v) for m, v, _ in table(out)] == [(0, 500), (15, 500)]
    assert [(m, v) for m, v, _ in table(after)] == [(45, 500), (60, 600)]
    assert after.intervals[0].flags & Flag.METER_EXCHANGE
    assert after.intervals[0].quality is Quality.VALID  # both boundaries measured by the new meter
    [event] = [e for e in after.events if e.kind is EventKind.EXCHANGE]
    assert "OLD-1 -> NEW-2" in event.reason and "final read 5001000" in event.reason
    assert "start read 400" in event.reason and not event.quarantine
    # [30, 45) spans the swap: not stored, never a negative or an invented value
    assert all(v >= 0 for _, v, _ in table(after))


def test_a_pending_exchange_survives_a_restart_and_a_flap_cancels_it() -> None:
    proc = SeriesProcessor(CFG)
    proc.observe_identity(at_ms(0), "A")
    run(proc, [read(0, "10"), read(15, "11")])
    proc.observe_identity(at_ms(20), "B")
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(proc.snapshot()), type=SeriesState)
    again = SeriesProcessor.restore(CFG, state)
    out = run(again, [read(30, "0.2"), read(45, "0.7")])
    assert [e.kind for e in out.events] == [EventKind.EXCHANGE]
    flap = SeriesProcessor(CFG)
    flap.observe_identity(at_ms(0), "A")
    run(flap, [read(0, "10")])
    flap.observe_identity(at_ms(5), "B")
    flap.observe_identity(at_ms(10), "A")  # a misread serial, corrected: no exchange
    out = run(flap, [read(15, "10.5")])
    assert [v for _, v, _ in table(out)] == [500] and not out.events


def test_a_meter_serving_last_hours_snapshot_again_is_not_a_zero_hour() -> None:
    """A peer failure: the meter repeats the previous hour's registers and clock. Taken as
    a reading at the gateway's time it makes a false zero hour and a double hour next."""
    cfg = SeriesConfig(meter_id="M1", channel="1.0.1.8.0.255", unit=Unit.KWH,
                       interval_s=3600, max_gap_s=7200, max_power_w=Decimal(20_000),
                       vee=VeeConfig(frozen_register=True))

    def hourly(hour: int, kwh: str, meter_hour: int) -> Reading:
        return Reading(meter_id="M1", channel="1.0.1.8.0.255", at=T0 + timedelta(hours=hour),
                       value=Decimal(kwh), unit=Unit.KWH, kind=Kind.CUMULATIVE,
                       meter_at=T0 + timedelta(hours=meter_hour))

    reads = [hourly(0, "100", 0), hourly(1, "110", 1), hourly(2, "110", 1),
             hourly(3, "130", 3)]
    out = SeriesProcessor(cfg).feed_many(reads, NOW_MS)
    assert [(iv.value, iv.quality) for iv in out.intervals] == [
        (10_000, Quality.VALID), (10_000, Quality.DERIVED), (10_000, Quality.DERIVED)]
    [event] = [e for e in out.events if e.kind is not EventKind.BASELINE]
    assert event.kind is EventKind.FROZEN and not event.quarantine
    assert "snapshot of" in event.reason and event.reading is reads[2]
    # Without the rule the repeat is taken at face value: the peers' zero and double hour.
    plain = SeriesProcessor(msgspec.structs.replace(cfg, vee=VeeConfig()))
    assert [iv.value for iv in plain.feed_many(reads, NOW_MS).intervals] == [
        10_000, 0, 20_000]
    # A stuck clock with moving registers is not a repeat: used, flagged questionable.
    stuck = [hourly(0, "100", 0), hourly(1, "110", 0), hourly(2, "120", 0)]
    out = SeriesProcessor(cfg).feed_many(stuck, NOW_MS)
    assert [(iv.value, iv.quality) for iv in out.intervals] == [
        (10_000, Quality.QUESTIONABLE), (10_000, Quality.QUESTIONABLE)]
