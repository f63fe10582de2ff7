"""Injectable clocks: real time for production, scaled time for the demo, manual for tests."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where the gateway gets "now" and how it waits. Always UTC-aware."""

    def now(self) -> datetime: ...

    async def sleep_until(self, at: datetime) -> None: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, at: datetime) -> None:
        delay = (at - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class ScaledClock:
    """Simulated time that runs ``speed`` times faster than real time from ``start``.

    The demo uses it to show a month of daily usage in minutes; the simulated meters
    share the same clock, so their energy registers advance consistently with it.
    """

    def __init__(self, start: datetime, speed: float) -> None:
        if start.utcoffset() is None:
            raise ValueError("ScaledClock start must be timezone-aware")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._start = start.astimezone(UTC)
        self._speed = speed
        self._t0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._t0) * self._speed
        return self._start + timedelta(seconds=elapsed)

    async def sleep_until(self, at: datetime) -> None:
        delay = (at - self.now()).total_seconds() / self._speed
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that moves only when told: deterministic tests."""

    def __init__(self, start: datetime) -> None:
        if start.utcoffset() is None:
            raise ValueError("ManualClock start must be timezone-aware")
        self._now = start.astimezone(UTC)
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        if at < self._now:
            raise ValueError("ManualClock does not go backwards")
        self._now = at.astimezone(UTC)
        self._changed.set()

    async def sleep_until(self, at: datetime) -> None:
        while self._now < at:
            self._changed.clear()
            await self._changed.wait()
