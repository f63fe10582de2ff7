"""SIGKILL at random moments loses and duplicates nothing: an edge agent over the real
store, pipeline, outbox and InfluxDB delivery (``tests.e2e.crash_child``) is killed
again and again while it ingests and delivers, restarted each time, and finally let
finish. The store then holds exactly what one uninterrupted run of the same reads
stores, and a real influxd holds exactly the same intervals with the same values.

The default run kills 15 times; ``AMI_SOAK=1`` adds a soak of 200 kills. The kill
times are seeded: the seed is printed, and ``AMI_CRASH_SEED`` replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import sys
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.ingest.pipeline import Pipeline
from gateway.model import IntervalReading
from gateway.sinks.influx_http import InfluxHttp
from gateway.store.sqlite import SqliteStore
from tests.e2e.crash_child import CH, T0, Plan, meter_ids, readings, series
from tests.influx_server import running_influxd

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "crash-child"


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with running_influxd(tmp_path_factory.mktemp("influxd-crash")) as url:
        yield url


def write_config(tmp_path: Path, url: str, database: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join([
        "[gateway]", 'data_dir = "data"',
        "[store]", 'synchronous = "FULL"',
        "[[sinks]]", 'kind = "influxdb"', 'name = "tsdb"', f'url = "{url}"',
        f'database = "{database}"', "create_database = true", "timeout_s = 5",
        "batch_lines = 60",  # many small acknowledgements: many places to die in
    ]) + "\n")
    return path


class Child:
    """One run of the child process; its stderr goes to a file (a pipe could fill)."""

    def __init__(self, proc: asyncio.subprocess.Process, err: Path) -> None:
        self.proc = proc
        self.err = err

    @classmethod
    async def start(cls, cfg: Path, plan: Path, err: Path) -> Child:
        with err.open("ab") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.e2e.crash_child", str(cfg), str(plan),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=sink)
        return cls(proc, err)

    async def line(self, timeout_s: float = 20.0) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not raw:
            await self.proc.wait()
            raise AssertionError(f"child exited {self.proc.returncode} without a word: "
                                 f"{self.err.read_text()[-3000:]}")
        return raw.decode().strip()


async def kill_and_restart(cfg: Path, plan_file: Path, kills: int, rng: random.Random,
                           err: Path) -> int:
    """Start, let run 50-500 ms, SIGKILL; ``kills`` times (fewer if a run finishes
    first). Returns how many runs were killed."""
    killed = 0
    for _ in range(kills):
        child = await Child.start(cfg, plan_file, err)
        assert await child.line() == "READY"
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        if child.proc.returncode is not None:  # finished before its kill
            await child.proc.wait()
            break
        child.proc.kill()  # SIGKILL: no cleanup, no flush, no atexit
        await child.proc.wait()
        killed += 1
    return killed


async def finish(cfg: Path, plan_file: Path, err: Path) -> None:
    child = await Child.start(cfg, plan_file, err)
    assert await child.line() == "READY"
    last = await child.line(timeout_s=120)
    assert last.startswith("DONE"), last
    assert await child.proc.wait() == 0


async def reference(tmp_path: Path, plan: Plan) -> SqliteStore:
    """The same reads through a fresh pipeline into a second store, in one go."""
    store = SqliteStore(tmp_path / "reference.db", synchronous="OFF")
    await store.open()
    pipeline = await Pipeline.open(store, series(plan))
    await pipeline.feed([r for batch in readings(plan) for r in batch], source=SOURCE,
                        now=plan.now())
    return store


async def stored(store: SqliteStore, plan: Plan, meter: str) -> list[IntervalReading]:
    return await store.intervals(meter, CH, T0 - timedelta(days=1),
                                 plan.now() + timedelta(days=1))


async def in_influx(url: str, database: str) -> dict[str, list[tuple[object, ...]]]:
    """Per meter: (start, value, quality, flags) of every point, oldest first."""
    http = InfluxHttp(url, database)
    await http.open()
    try:
        [result] = await http.query('SELECT "value", "quality", "flags" FROM "interval" '
                                    'GROUP BY "meter_id"')
        [counts] = await http.query('SELECT count("value") FROM "interval"')
    finally:
        await http.close()
    out: dict[str, list[tuple[object, ...]]] = {
        s.tags["meter_id"]: [tuple(row) for row in s.values]
        for s in result.series if s.tags is not None}
    [[_, total]] = counts.series[0].values
    assert total == sum(len(rows) for rows in out.values())
    return out


async def crash_run(tmp_path: Path, url: str, plan: Plan, kills: int) -> None:
    seed = int(os.environ.get("AMI_CRASH_SEED", random.randrange(1 << 32)))
    print(f"AMI_CRASH_SEED={seed}")
    database = f"crash_{seed}"
    cfg = write_config(tmp_path, url, database)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(asdict(plan)))
    err = tmp_path / "child.stderr"
    began = time.perf_counter()
    try:
        killed = await kill_and_restart(cfg, plan_file, kills, random.Random(seed), err)
        await finish(cfg, plan_file, err)
        ref = await reference(tmp_path, plan)
        store = SqliteStore(tmp_path / "data" / "store.db")
        await store.open()
        try:
            influx = await in_influx(url, database)
            total = 0
            for meter in meter_ids(plan):
                want = await stored(ref, plan, meter)
                got = await stored(store, plan, meter)
                assert got == want, f"{meter}: the store differs from the reference run"
                assert influx.get(meter, []) == [
                    (int(iv.start.timestamp()), iv.value, int(iv.quality), iv.flags)
                    for iv in want], f"{meter}: InfluxDB differs from the store"
                total += len(want)
            assert set(influx) == set(meter_ids(plan))
            assert [(q.meter_id, q.reason) for q in await store.quarantined(1000)] == \
                [(q.meter_id, q.reason) for q in await ref.quarantined(1000)]
            [sink] = await store.outbox_status()
            # Every queued entry acknowledged exactly once (a batch sent again after a
            # kill between InfluxDB's answer and the acknowledgement counts once).
            with contextlib.closing(sqlite3.connect(store.path)) as conn:
                [queued] = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            assert sink.depth == 0 and sink.quarantined == 0
            assert sink.delivered_total == queued
        finally:
            await store.close()
            await ref.close()
    except BaseException as exc:
        exc.add_note(f"replay with AMI_CRASH_SEED={seed}; child stderr in {err}")
        raise
    print(f"kills={killed} intervals={total} queued={queued} "
          f"elapsed={time.perf_counter() - began:.1f}s")
    assert killed == kills, f"the run finished after {killed} kills: lengthen the plan"


async def test_kill9_at_random_loses_and_duplicates_nothing(tmp_path: Path, influx: str
                                                             ) -> None:
    # 20 meters x 400 quarter hours (~8,000 intervals); the pace spreads the feed over
    # ~6 s, more than 15 runs of 50-500 ms take, so every kill lands mid-run.
    await crash_run(tmp_path, influx, Plan(meters=20, reads=400, pace_ms=12), kills=15)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AMI_SOAK"), reason="a soak of minutes: AMI_SOAK=1")
@pytest.mark.timeout(1200)
async def test_kill9_soak(tmp_path: Path, influx: str) -> None:
    await crash_run(tmp_path, influx, Plan(meters=20, reads=5000, pace_ms=15), kills=200)
