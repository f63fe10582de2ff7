"""Polls one device on a grid and feeds its readings to the pipeline.

Polls are aligned to multiples of the poll interval (as Telegraf's ``round_interval``),
so a 15-minute poll lands on the interval boundary and its read is a measured value.
A failing device is retried with jittered exponential backoff (so many gateways do not
retry in step) and logged once on failure, once on recovery. Readings whose commit
failed stay pending and are fed again first, in order.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway import log
from gateway.clock import Clock
from gateway.drivers import KeepsHistory, PolledDriver
from gateway.errors import DataError, DriverError, GatewayError, SinkError
from gateway.ingest.pipeline import Pipeline
from gateway.model import MeterStatus, Reading
from gateway.store import Store

_log = log.get("gateway.poller")

#: Readings kept in memory while the store refuses writes (about a day of 1-minute polls
#: of a 10-channel meter). Beyond it the oldest are logged as lost, loudly.
MAX_PENDING = 15_000


#: How often an unchanged status is written again (to move last_read_at forward).
STATUS_REFRESH = timedelta(seconds=60)


@dataclass
class PollStats:
    """Runtime counters of one poller, for the live view and the status API."""

    meter_id: str
    device: str
    polls: int = 0
    #: Consecutive failed polls (0 while the device answers), and all failed polls.
    failures: int = 0
    failed_polls: int = 0
    readings: int = 0
    intervals: int = 0
    quarantined: int = 0
    last_read_at: datetime | None = None
    last_values: dict[str, str] = field(default_factory=dict)
    last_error: str | None = None
    failing: bool = False
    #: Not polled for now (the outbox is past its pause depth).
    paused: bool = False


def next_tick(now: datetime, interval_s: float) -> datetime:
    """The first multiple of ``interval_s`` since the epoch strictly after ``now``."""
    t = now.timestamp()
    return datetime.fromtimestamp((math.floor(t / interval_s) + 1) * interval_s, UTC)


def backoff_s(failures: int, *, base_s: float = 2.0, cap_s: float = 300.0,
              rng: random.Random | None = None) -> float:
    """Exponential backoff with ±25 % jitter: 2, 4, 8 ... seconds, at most ``cap_s``."""
    delay = min(base_s * 2.0 ** max(failures - 1, 0), cap_s)
    draw = rng.random() if rng is not None else random.random()
    return delay * (0.75 + 0.5 * draw)


def _stop_if_cancelled() -> None:
    """Raise the cancellation a poll swallowed, so a stop request is never lost.

    Python 3.11's ``asyncio.wait_for`` returns the result instead of raising when the
    awaited future completes in the same loop turn as the cancellation (fixed in 3.12);
    pymodbus awaits every reply through it, so a gateway told to stop as a reply came
    in polled on forever, its task marked "cancelling". The pending request is still
    counted on the task: honour it here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Poller:
    def __init__(self, *, meter_id: str, timezone: str, protocol: str, profile: str,
                 driver: PolledDriver, pipeline: Pipeline, store: Store, clock: Clock,
                 interval_s: float, transitions: log.Transitions,
                 paused: Callable[[], bool] | None = None) -> None:
        self.meter_id = meter_id
        #: Polls are skipped while this says so (the outbox past its pause depth, for a
        #: meter whose data can wait: see gateway.settings_sinks).
        self._paused = paused
        self._tz = timezone
        self._protocol = protocol
        self._profile = profile
        self._driver = driver
        self._pipeline = pipeline
        self._store = store
        self._clock = clock
        self._interval_s = interval_s
        self._transitions = transitions
        self._pending: list[Reading] = []
        self._connected = False
        self._status_at: datetime | None = None
        self._status_written = ""
        self.stats = PollStats(meter_id=meter_id, device=driver.device)

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            at = next_tick(self._clock.now(), self._interval_s)
            while True:
                await self._clock.sleep_until(at)
                if self._paused is not None and self._paused():
                    self.stats.paused = True
                    at = next_tick(self._clock.now(), self._interval_s)
                    continue
                self.stats.paused = False
                try:
                    ok = await self.poll_once()
                except Exception as exc:  # a defect must not stop the other meters' polls
                    if not self._transitions.is_failing(self._driver.device):
                        _log.exception("poll failed unexpectedly", meter_id=self.meter_id,
                                       error=f"{type(exc).__name__}: {exc}")
                    await self._failed(exc)
                    ok = False
                _stop_if_cancelled()
                at = next_tick(self._clock.now(), self._interval_s)
                if not ok:
                    retry = self._clock.now() + timedelta(seconds=backoff_s(self.stats.failures))
                    at = max(at, retry)
        finally:
            await self._driver.close()

    async def poll_once(self) -> bool:
        """One poll: read, feed, record status. True when the device answered."""
        self.stats.polls += 1
        try:
            if not self._connected:
                await self._driver.connect()
                self._connected = True
            readings = await self._driver.read()
        except (DriverError, DataError) as exc:  # DataError: a NaN or garbage register
            await self._failed(exc)
            return False
        self.stats.failures = 0
        self.stats.readings += len(readings)
        if readings:
            self.stats.last_read_at = readings[-1].at
            self.stats.last_values = {r.channel: f"{r.value} {r.unit}" for r in readings}
        await self._commit(readings)
        self._transitions.ok(self._driver.device, meter_id=self.meter_id)
        self.stats.failing = False
        self.stats.last_error = None
        await self._status("ok", None)
        return True

    async def _commit(self, readings: list[Reading]) -> None:
        self._pending.extend(readings)
        try:
            result = await self._pipeline.feed(self._pending, source=f"poll:{self.meter_id}",
                                               now=self._clock.now())
        except SinkError as exc:
            _log.error("store write failed; readings kept to retry", meter_id=self.meter_id,
                       pending=len(self._pending), error=str(exc), retryable=exc.retryable)
            return
        finally:
            self._bound_pending()
        self._pending.clear()
        self.stats.intervals += result.intervals
        self.stats.quarantined += result.quarantined

    def _bound_pending(self) -> None:
        if len(self._pending) > MAX_PENDING and isinstance(self._driver, KeepsHistory):
            # The device keeps them: drop them all and read them again from what the
            # store holds, once it takes writes.
            _log.warning("store refuses writes: pending readings dropped, to be read again "
                         "from the meter's memory", meter_id=self.meter_id,
                         dropped=len(self._pending))
            self._pending.clear()
            self._driver.rewind()
            return
        if len(self._pending) > MAX_PENDING:
            lost = self._pending[: len(self._pending) - MAX_PENDING]
            del self._pending[: len(lost)]
            _log.critical("pending readings over the limit: oldest lost", meter_id=self.meter_id,
                          lost=len(lost), first=lost[0].at.isoformat(),
                          last=lost[-1].at.isoformat())

    async def _failed(self, exc: Exception) -> None:
        self.stats.failures += 1
        self.stats.failed_polls += 1
        self.stats.failing = True
        self.stats.last_error = str(exc)
        if self._connected:
            # A failed exchange may leave a half-read reply on the connection: start clean.
            self._connected = False
            await self._driver.close()
        if self._transitions.failed(self._driver.device, exc, meter_id=self.meter_id):
            await self._status("failing", str(exc))

    async def _status(self, status: str, error: str | None) -> None:
        # A change is written at once; an unchanged "ok" (only last_read_at moves) at
        # most once a minute: each write is a commit, and with synchronous=FULL an fsync.
        now = self._clock.now()
        if status == self._status_written and self._status_at is not None and \
                now - self._status_at < STATUS_REFRESH:
            return
        self._status_written, self._status_at = status, now
        try:
            await self._store.set_meter_status(MeterStatus(
                meter_id=self.meter_id, timezone=self._tz, status=status,
                last_read_at=self.stats.last_read_at if status == "ok" else None,
                last_error=error, protocol=self._protocol, profile=self._profile,
            ))
        except GatewayError as exc:
            _log.error("cannot record meter status", meter_id=self.meter_id, error=str(exc))
