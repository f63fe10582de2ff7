"""An edge agent over the real components, for the crash tests: run as
``python -m tests.e2e.crash_child CONFIG PLAN`` and killed (SIGKILL) at random.

It opens the config's store (synchronous FULL) with the config's sinks, a Pipeline of
the plan's series, and a Delivery to the config's InfluxDB sink running concurrently;
then feeds the plan's deterministic register reads in small batches, as pollers would,
each batch one store transaction. After a restart it resumes from the pipeline's own
state: only reads after ``pipeline.last_read_at(meter, [channel])`` are fed. Once every
read is fed and the outbox is drained it prints DONE and exits 0.

``PLAN`` is a JSON file: {"meters": 20, "reads": 400, "batch_meters": 5,
"batch_reads": 4, "pace_ms": 2}. :func:`readings` and :func:`series` are the plan's
data, shared with the test that checks the outcome.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from gateway.ingest.delivery import Delivery
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.series import SeriesConfig
from gateway.model import Reading, Unit
from gateway.settings import load_config
from gateway.sinks.build import build_sinks
from gateway.store.sqlite import SqliteStore

CH = "1.0.1.8.0.255"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
#: Where the rollover meters' 6-digit kWh registers wrap, in Wh.
MODULUS_WH = 1_000_000_000
#: The gateway's "now" for every feed: after the last read (no read is in the future).
SOURCE = "crash-child"


@dataclass(frozen=True)
class Plan:
    meters: int = 20
    reads: int = 400
    batch_meters: int = 5
    batch_reads: int = 4
    #: A pause between batches (a poller's pace), so that kills land mid-run.
    pace_ms: float = 2.0

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text()))

    def now(self) -> datetime:
        return T0 + timedelta(minutes=15 * self.reads + 60)


def meter_ids(plan: Plan) -> list[str]:
    return [f"CRASH-{i:02d}" for i in range(plan.meters)]


def _rolls_over(index: int) -> bool:
    return index % 7 == 3


def _has_gap(index: int) -> bool:
    return index % 6 == 1


def series(plan: Plan) -> list[tuple[SeriesConfig, str]]:
    return [(SeriesConfig(meter_id=m, channel=CH, unit=Unit.KWH, interval_s=900,
                          snap_tolerance_s=10,
                          modulus=Decimal(MODULUS_WH) if _rolls_over(i) else None), "UTC")
            for i, m in enumerate(meter_ids(plan))]


def _meter_reads(plan: Plan, index: int, meter: str) -> list[Reading]:
    """One meter's reads: every 15 minutes, a few seconds late (a poller's jitter), the
    register rising 5-600 Wh a quarter hour; rollover meters start just below the wrap,
    gap meters miss three and a half hours of reads (a communication outage)."""
    rng = random.Random(f"{meter}-reads")
    wh = MODULUS_WH - 40_000 - index * 1000 if _rolls_over(index) else 1_000_000 * (index + 1)
    gap = range(plan.reads // 3, plan.reads // 3 + 14) if _has_gap(index) else range(0)
    out = []
    for i in range(plan.reads):
        wh += rng.randint(5, 600)
        if i in gap:
            continue
        at = T0 + timedelta(minutes=15 * i, seconds=rng.randint(0, 20))
        shown = wh % MODULUS_WH if _rolls_over(index) else wh
        out.append(Reading(meter_id=meter, channel=CH, at=at, value=Decimal(shown) / 1000,
                           unit=Unit.KWH))
    return out


def readings(plan: Plan) -> list[list[Reading]]:
    """Every read, in the batches the child feeds: ``batch_reads`` polls of
    ``batch_meters`` meters at a time, in time order."""
    per_meter = {m: _meter_reads(plan, i, m) for i, m in enumerate(meter_ids(plan))}
    ids = meter_ids(plan)
    batches: list[list[Reading]] = []
    for lo in range(0, plan.reads, plan.batch_reads):
        t_lo = T0 + timedelta(minutes=15 * lo)
        t_hi = T0 + timedelta(minutes=15 * (lo + plan.batch_reads))
        for g in range(0, len(ids), plan.batch_meters):
            batch = [r for m in ids[g:g + plan.batch_meters] for r in per_meter[m]
                     if t_lo <= r.at < t_hi]
            if batch:
                batches.append(batch)
    return batches


def _unfed(batches: Sequence[Sequence[Reading]], pipeline: Pipeline) -> Iterator[list[Reading]]:
    last: dict[str, datetime | None] = {}
    for batch in batches:
        for r in batch:
            if r.meter_id not in last:
                last[r.meter_id] = pipeline.last_read_at(r.meter_id, [CH])
        left = [r for r in batch if (at := last[r.meter_id]) is None or r.at > at]
        if left:
            yield left


async def run(config_path: Path, plan: Plan) -> None:
    config = load_config(config_path)
    store = SqliteStore(config.store_path, synchronous="FULL")
    await store.open()
    await store.use_sinks([s.name for s in config.settings.sinks])
    [sink] = build_sinks(config, store)
    delivery = Delivery(store, sink, batch_size=config.settings.sinks[0].batch_lines,
                        idle_s=0.02, max_backoff_s=0.2)
    pipeline = await Pipeline.open(store, series(plan))
    deliver = asyncio.create_task(delivery.run())
    print("READY", flush=True)
    fed = 0
    for batch in _unfed(readings(plan), pipeline):
        await pipeline.feed(batch, source=SOURCE, now=plan.now())
        delivery.nudge()
        fed += len(batch)
        await asyncio.sleep(plan.pace_ms / 1000)
    while any(s.depth for s in await store.outbox_status()):
        if deliver.done():
            deliver.result()  # its failure is the child's
        await asyncio.sleep(0.02)
    deliver.cancel()
    await asyncio.gather(deliver, return_exceptions=True)
    await store.close()
    print(f"DONE fed={fed}", flush=True)


def main(argv: Sequence[str]) -> int:
    config_path, plan_path = (Path(a) for a in argv)
    asyncio.run(run(config_path, Plan.load(plan_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
