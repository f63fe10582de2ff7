"""Validation throughput with every rule on, against a pass-through of the same data.

Per reading, timed on one core: the series processor with all VEE rules on (future
timestamp, negative delta and rating checks with de-rollover, demand high limit,
consecutive-interval spike, zero run, frozen register by the meter's own clock) and the
intervalization they feed. The baseline, in the same run: a pass-through that does
what a gateway without validation does with the same reads (each read's epoch time,
its value in Wh, the difference from the previous read as an interval).

Goal (issue 3): >= 200,000 readings/s and >= 25 % of the pass-through rate.

    .venv/bin/python benchmarks/validation.py [--series 200] [--days 14] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from gateway.ingest.series import SeriesConfig, SeriesProcessor
from gateway.model import IntervalReading, Kind, Reading, Unit
from gateway.validation import VeeConfig

CHANNEL = "1.0.1.8.0.255"
START = datetime(2026, 3, 1, tzinfo=UTC)
ALL_RULES = VeeConfig(demand_high_w=Decimal(20_000), spike_factor=Decimal(4),
                      zero_run_intervals=8, frozen_register=True)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_reads(series: int, days: int, seed: int = 3) -> dict[str, list[Reading]]:
    """Per series, 15-minute kWh register reads stamped by the meter's own clock."""
    rng = random.Random(seed)
    out: dict[str, list[Reading]] = {}
    for s in range(series):
        meter = f"M{s:05d}"
        energy = rng.randint(1_000_000, 9_000_000)
        reads = []
        for tick in range(days * 96):
            at = START + timedelta(minutes=15 * tick)
            energy += rng.choice((0, rng.randint(0, 900)))
            reads.append(Reading(meter_id=meter, channel=CHANNEL, at=at,
                                 value=Decimal(energy) / 1000, unit=Unit.KWH,
                                 kind=Kind.CUMULATIVE, meter_at=at))
        out[meter] = reads
    return out


def pass_through(data: dict[str, list[Reading]]) -> int:
    """What a gateway without validation does: differences of reads, in Wh."""
    n = 0
    for meter, reads in data.items():
        prev: int | None = None
        out = []
        for r in reads:
            wh = int(r.value * 1000)
            if prev is not None:
                out.append(IntervalReading(meter_id=meter, channel=CHANNEL, start=r.at,
                                           length_s=900, value=wh - prev, unit=Unit.WH))
            prev = wh
        n += len(out)
    return n


def validated(data: dict[str, list[Reading]], now_ms: int) -> int:
    n = 0
    for meter, reads in data.items():
        proc = SeriesProcessor(SeriesConfig(
            meter_id=meter, channel=CHANNEL, unit=Unit.KWH, interval_s=900,
            snap_tolerance_s=5, max_gap_s=1800, max_power_w=Decimal(30_000),
            future_tolerance_s=120, vee=ALL_RULES))
        n += len(proc.feed_many(reads, now_ms).intervals)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = make_reads(args.series, args.days)
    reads = sum(len(r) for r in data.values())
    now_ms = int((START + timedelta(days=400)).timestamp() * 1000)
    print(f"readings: {reads:,} ({args.series} series x {args.days} days of 15-min reads)")
    v_rates, p_rates = [], []
    for round_ in range(1, args.rounds + 1):  # alternate, so both see the same machine
        t0 = time.perf_counter()
        pass_through(data)
        p_rates.append(reads / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        intervals = validated(data, now_ms)
        v_rates.append(reads / (time.perf_counter() - t0))
        # Per round too: on a shared machine a round's own ratio is the fairest pairing.
        print(f"  round {round_}: validation {v_rates[-1]:,.0f}/s, pass-through "
              f"{p_rates[-1]:,.0f}/s, ratio {v_rates[-1] / p_rates[-1]:.1%}")
    v, p = max(v_rates), max(p_rates)
    print(f"intervals: {intervals:,}; best of {args.rounds} rounds (median in brackets)")
    print(f"validation, all rules on: {v:,.0f} readings/s on one core "
          f"({statistics.median(v_rates):,.0f})")
    print(f"pass-through of the same reads: {p:,.0f} readings/s "
          f"({statistics.median(p_rates):,.0f})")
    print(f"ratio validation/pass-through: {v / p:.1%}   (goal >= 25%)")
    print(f"throughput vs goal: {v / 200_000:.2f}x of 200,000 readings/s")


if __name__ == "__main__":
    main()
