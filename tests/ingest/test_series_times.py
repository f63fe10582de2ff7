"""A series reads instants exactly, whatever zone or precision they come in.

An instant is the same read in UTC or in any other zone (across a DST change too), and
a sub-millisecond part is floored: the processor's output must not depend on how the
instants are written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.series import SeriesConfig, SeriesOutput, SeriesProcessor, SeriesState
from gateway.model import Kind, Reading, Unit
from gateway.validation.stage import VeeConfig

BERLIN = ZoneInfo("Europe/Berlin")
#: Half an hour before the clocks go back in Berlin (02:00-03:00 CEST happens twice).
T0 = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
NOW_MS = int((T0 + timedelta(days=30)).timestamp() * 1000)
CFG = SeriesConfig(meter_id="M1", channel="1.0.1.8.0.255", unit=Unit.KWH,
                   max_power_w=Decimal(20_000), snap_tolerance_s=5, max_gap_s=1800,
                   vee=VeeConfig(frozen_register=True, spike_factor=Decimal(3),
                                 zero_run_intervals=4))

# Steps between reads in microseconds: a regular poll, jitter, sub-ms parts, a repeat.
steps = st.lists(st.tuples(
    st.sampled_from([900_000_000, 900_000_000, 900_000_000, 899_999_500, 900_000_999,
                     60_000_000, 1, 0, 3_600_000_000, -900_000_000]),
    st.sampled_from([0, 0, 1, 120, 251, 4001]),
    st.booleans()), min_size=1, max_size=30)


def _reads(plan: list[tuple[int, int, bool]], zone: ZoneInfo | None) -> list[Reading]:
    reads, at, wh, meter_at = [], T0, 5_000_000, T0
    for step_us, step_wh, clock_moves in plan:
        at += timedelta(microseconds=step_us)
        wh += step_wh
        if clock_moves:
            meter_at = at
        reads.append(Reading(
            meter_id="M1", channel="1.0.1.8.0.255", kind=Kind.CUMULATIVE, unit=Unit.KWH,
            value=Decimal(wh).scaleb(-3),
            at=at if zone is None else at.astimezone(zone),
            meter_at=meter_at if zone is None else meter_at.astimezone(zone)))
    return reads


Facts = tuple[tuple[tuple[object, ...], ...], tuple[tuple[object, ...], ...]]


def _facts(out: SeriesOutput) -> Facts:
    # In UTC: an ambiguous local time (fold=1) never equals a time of another zone.
    return (tuple((iv.start, iv.value, iv.flags, iv.quality) for iv in out.intervals),
            tuple((e.kind, e.reading.at.astimezone(UTC), e.flags) for e in out.events))


def _state(proc: SeriesProcessor) -> SeriesState:
    """The state, with the held read's times in UTC (see ``_facts``)."""
    state = proc.snapshot()
    held = state.held
    if held is None:
        return state
    meter_at = held.meter_at.astimezone(UTC) if held.meter_at is not None else None
    return msgspec.structs.replace(state, held=msgspec.structs.replace(
        held, at=held.at.astimezone(UTC), meter_at=meter_at))


@settings(max_examples=200, deadline=None)
@given(plan=steps)
def test_zone_and_precision_change_nothing(plan: list[tuple[int, int, bool]]) -> None:
    # Times in UTC take the processor's shortcut (a repeated step between two reads);
    # the same instants written in Berlin time are converted one by one: both must agree.
    utc, berlin = SeriesProcessor(CFG), SeriesProcessor(CFG)
    assert (_facts(utc.feed_many(_reads(plan, None), NOW_MS))
            == _facts(berlin.feed_many(_reads(plan, BERLIN), NOW_MS)))
    assert _state(utc) == _state(berlin)
    # Read by read, the shortcut carries over from one call to the next.
    utc, berlin = SeriesProcessor(CFG), SeriesProcessor(CFG)
    for in_utc, in_berlin in zip(_reads(plan, None), _reads(plan, BERLIN), strict=True):
        assert _facts(utc.feed(in_utc, NOW_MS)) == _facts(berlin.feed(in_berlin, NOW_MS))
    assert _state(utc) == _state(berlin)
