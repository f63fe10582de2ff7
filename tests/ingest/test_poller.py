"""The poll schedule and its backoff (a poller surviving a defect: tests/e2e/test_day.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from gateway.ingest.poller import backoff_s, next_tick


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
