"""The poll schedule, its backoff and its stop (a poller surviving a defect:
tests/e2e/test_day.py)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from pathlib import Path

from gateway import log
from gateway.clock import SystemClock
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.poller import Poller, backoff_s, next_tick
from gateway.model import Reading
from gateway.store.sqlite import SqliteStore


def test_ticks_are_aligned_to_the_interval() -> None:
    at = datetime(2026, 11, 1, 6, 59, 59, 900_000, tzinfo=UTC)
    assert next_tick(at, 900) == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    assert next_tick(datetime(2026, 11, 1, 7, 0, tzinfo=UTC), 900) == \
        datetime(2026, 11, 1, 7, 15, tzinfo=UTC)  # strictly after: no double poll
    assert next_tick(at, 0.5) == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(5)
    for failures, nominal in [(1, 2), (2, 4), (5, 32), (20, 300)]:
        delays = [backoff_s(failures, rng=rng) for _ in range(200)]
        assert min(delays) >= 0.75 * nominal and max(delays) <= 1.25 * nominal
        assert max(delays) - min(delays) > 0.2 * nominal  # jittered, not in lock-step


class _SwallowsCancel:
    """A driver whose read absorbs a cancellation and returns, as Python 3.11's
    ``asyncio.wait_for`` (under pymodbus) does when a reply lands in the same loop turn
    as the cancel: the race behind gateways that ignored Ctrl-C under load."""

    device = "stub:1"

    def __init__(self) -> None:
        self.reads = 0
        self.reading = asyncio.Event()

    async def connect(self) -> None:
        return None

    async def read(self) -> list[Reading]:
        self.reads += 1
        self.reading.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return []

    async def close(self) -> None:
        return None


async def test_a_cancellation_swallowed_inside_a_poll_still_stops_the_poller(
        tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    try:
        driver = _SwallowsCancel()
        poller = Poller(meter_id="M1", timezone="UTC", protocol="modbus_tcp", profile="p",
                        driver=driver, pipeline=await Pipeline.open(store, []),
                        store=store, clock=SystemClock(), interval_s=0.01,
                        transitions=log.Transitions(log.get("test")))
        task = asyncio.create_task(poller.run())
        await asyncio.wait_for(driver.reading.wait(), 5)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert task in done and task.cancelled(), "the poller went on polling after a stop"
        assert driver.reads == 1
    finally:
        await store.close()
