"""Customer self-reads: a typed-in register reading through its series' rules into the store.

The decisions are pure (``gateway.validation.selfread``); this is the shell around them:
find the meter, restore its series from the store's saved cursor, judge the reading, and
commit an accepted one through a ``Pipeline`` (its intervals, the cursor and a
``self_read`` audit event naming who submitted it, in one transaction), or keep a refused
one in the store's quarantine (source ``self-read``) with its code and reason, for an
operator to review. The same reading submitted again (any recorded one: they are found
in the audit) is answered "already recorded". A reading stamped before the last one is
recorded when the series fits it into the gap between two readings (its backfill rule,
within the series' backfill window), and refused otherwise.

Only manual meters (protocol "manual") take self-reads. A polled meter's series is fed by
its poller, whose processor lives in the gateway process's memory: a reading written
beside it, by this process or by the CLI, would race the poller's cursor and be
overwritten by its next commit. The CLI cannot know whether a gateway is polling, so
polled meters are refused everywhere (``polled_meter``), not only in-process.

Concurrency. In one process, submissions to a series are serialised by an asyncio lock.
Against another process writing the same series (``ami-gateway self-read`` while the
gateway runs, or two of them), the commit is a compare-and-swap (``SqliteStore.guarded``):
it lands only while the series' saved cursor is still the one the reading was judged
against. Otherwise nothing is written and the reading is judged again from the new
state, up to ``ATTEMPTS`` times, then refused as ``busy``. Nothing is clobbered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

import msgspec

from edge.assembly import Assembly, ManualPlan
from gateway import log
from gateway.clock import Clock
from gateway.errors import DataError, GatewayError, SinkError
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.series import EventKind, SeriesConfig, SeriesProcessor, SeriesState
from gateway.model import Kind, MeterStatus, Quality, Reading, Unit, quality_of, require_utc
from gateway.settings import SelfReadWindow
from gateway.store import QuarantineItem, SeriesEventRecord, SeriesInfo, Store
from gateway.validation.selfread import (
    Accepted,
    Code,
    Outcome,
    Refusal,
    Register,
    Window,
    against_recorded,
    judge,
    parse_value,
)

__all__ = ["ATTEMPTS", "SOURCE", "Receipt", "SelfReadRefused", "SelfReadStore", "SelfReads",
           "windows_of"]

_log = log.get("gateway.selfread")
_decode_state = msgspec.msgpack.Decoder(SeriesState).decode

#: The quarantine's and the audit's name for this input.
SOURCE = "self-read"
#: Commits tried against another process writing the same series before giving up.
ATTEMPTS = 3
#: The audit event kept for every accepted self-read (``ami-gateway audit --events``).
EVENT_KIND = "self_read"


class SelfReadStore(Store, Protocol):
    """What self-reads need of a store beyond ``Store``: one series' cursor, and a
    compare-and-swap write (``SqliteStore`` has both)."""

    async def cursor(self, meter_id: str, channel: str) -> bytes | None: ...

    def guarded(self, expect: Mapping[tuple[str, str], bytes | None], *,
                events: Sequence[SeriesEventRecord] = ()) -> Store: ...


class SelfReadRefused(DataError):
    """A self-read that was not recorded; ``refusal`` holds the code and the message."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal
        super().__init__(refusal.message, source=f"{SOURCE} refused ({refusal.code})")


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """What an accepted self-read recorded."""

    meter_id: str
    channel: str
    at: datetime
    #: The reading as submitted, in the register's unit.
    value: Decimal
    unit: Unit
    #: False when the same reading was already recorded (nothing new written).
    recorded: bool
    outcome: Outcome
    message: str
    #: Consumption since the previous reading, in the register's unit.
    consumption: Decimal | None
    previous_at: datetime | None
    previous_value: Decimal | None
    #: The reading's rule flags and those of the intervals it completed.
    flags: int
    #: The quality of those intervals (None when it completed none: a first reading).
    quality: Quality | None
    intervals: int


class SelfReads:
    """Takes self-reads for the manual meters of one gateway config."""

    def __init__(self, assembly: Assembly, store: SelfReadStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._manual = {plan.meter.meter_id: plan for plan in assembly.manual}
        self._polled = {plan.meter.meter_id: plan.meter for plan in assembly.meters}
        self._windows = windows_of(assembly.config.settings.self_reads.windows)
        self._max_age_s = assembly.config.settings.self_reads.max_age_days * 86_400
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def meters(self) -> list[str]:
        return sorted(self._manual)

    async def open(self) -> None:
        """Declare the manual meters' series and list the meters (status "unknown" until
        their first reading), so the portal shows them before anyone submits."""
        for plan in self._manual.values():
            for cfg in plan.series:
                await self._store.register_series(SeriesInfo(
                    meter_id=cfg.meter_id, channel=cfg.channel, unit=cfg.unit.base,
                    interval_s=cfg.interval_s, timezone=plan.timezone))
            known = await self._store.meter(plan.meter.meter_id)
            await self._store.set_meter_status(MeterStatus(  # its last read time is kept
                meter_id=plan.meter.meter_id, timezone=plan.timezone, protocol="manual",
                status="unknown" if known is None or known.last_read_at is None else "ok"))

    async def submit(self, meter_id: str, value: str | int | Decimal, *,
                     channel: str | None = None, at: datetime | None = None,
                     submitted_by: str = "") -> Receipt:
        """Record one typed-in reading (``at`` defaults to now), or raise
        ``SelfReadRefused`` after keeping it in the quarantine with the reason."""
        now = self._clock.now()
        try:
            receipt = await self._submit(meter_id, value, channel, at, now, submitted_by)
        except SelfReadRefused as refused:
            # Who submitted it is kept in the store, not in the logs (it may be an email).
            _log.info("self-read refused", meter_id=meter_id, code=str(refused.refusal.code))
            await self._quarantine(refused.refusal, meter_id, channel, value, at, now,
                                   submitted_by)
            raise
        _log.info("self-read recorded" if receipt.recorded else "self-read already recorded",
                  meter_id=meter_id, channel=receipt.channel, outcome=str(receipt.outcome))
        return receipt

    async def refuse(self, meter_id: str, refusal: Refusal, payload: str) -> None:
        """Keep a submission refused before it could be read (a malformed request) in
        the quarantine, like every other refusal."""
        now = self._clock.now()
        _log.info("self-read refused", meter_id=meter_id, code=str(refusal.code))
        await self._keep(QuarantineItem(
            at=now, source=SOURCE, meter_id=meter_id[:64], payload=payload[:300],
            reason=f"{refusal.code}: {refusal.message}"), refusal, meter_id)

    async def _submit(self, meter_id: str, value: str | int | Decimal, channel: str | None,
                      at: datetime | None, now: datetime, submitted_by: str) -> Receipt:
        plan, cfg = self._series(meter_id, channel)
        register = _register(plan, cfg)
        parsed = parse_value(value, register)
        if isinstance(parsed, Refusal):
            raise SelfReadRefused(parsed)
        stamped = now if at is None else require_utc(at, "at")
        # The store and the series keep instants to the millisecond: so does the receipt.
        stamped = stamped.replace(microsecond=stamped.microsecond // 1000 * 1000)
        key = (cfg.meter_id, cfg.channel)
        async with self._locks.setdefault(key, asyncio.Lock()):
            for _ in range(ATTEMPTS):
                try:
                    return await self._record(plan, cfg, register, parsed, stamped, now,
                                              submitted_by)
                except SinkError as exc:
                    if not exc.retryable:
                        raise
                    _log.info("self-read judged again: the series changed meanwhile",
                              meter_id=meter_id, channel=cfg.channel, error=str(exc))
        raise SelfReadRefused(Refusal(code=Code.BUSY, message=(
            f"the readings of meter {meter_id} kept changing while this one was being "
            "recorded (another process is writing them): nothing was recorded; try "
            "again")))

    def _series(self, meter_id: str, channel: str | None) -> tuple[ManualPlan, SeriesConfig]:
        plan = self._manual.get(meter_id)
        if plan is None:
            polled = self._polled.get(meter_id)
            if polled is not None:
                raise SelfReadRefused(Refusal(code=Code.POLLED_METER, message=(
                    f"meter {meter_id} is read by the gateway every "
                    f"{polled.poll_interval_s:g} s ({polled.protocol}); a self-read would "
                    "race its poller's cursor: self-reads are taken for manual meters "
                    '(protocol = "manual") only')))
            raise SelfReadRefused(Refusal(code=Code.UNKNOWN_METER,
                                          message=f"no manual meter {meter_id!r}"))
        wanted = channel if channel is not None else plan.series[0].channel
        for cfg in plan.series:
            if cfg.channel == wanted:
                return plan, cfg
        have = ", ".join(s.channel for s in plan.series)
        raise SelfReadRefused(Refusal(code=Code.UNKNOWN_CHANNEL, message=(
            f"meter {meter_id} has no register {wanted!r} (registers: {have})")))

    async def _record(self, plan: ManualPlan, cfg: SeriesConfig, register: Register,
                      value: Decimal, at: datetime, now: datetime,
                      submitted_by: str) -> Receipt:
        """Judge against the saved state and commit: one attempt of the compare-and-swap."""
        key = (cfg.meter_id, cfg.channel)
        zone = ZoneInfo(plan.timezone)
        saved = await self._store.cursor(*key)
        state = None if saved is None else _decode_state(saved)
        recorded = await self._recorded(cfg, at)
        if recorded is not None:  # any earlier self-read, not only the last one
            verdict = against_recorded(register, value, recorded, at=at, tz=zone)
        else:
            verdict = judge(register, None if state is None else state.tracker, value, at=at,
                            now=now, windows=self._windows, tz=zone, max_age_s=self._max_age_s)
        if isinstance(verdict, Refusal):
            raise SelfReadRefused(verdict)
        if verdict.outcome is Outcome.DUPLICATE:
            return _receipt(cfg, register, value, at, verdict, recorded=False, flags=0,
                            intervals=0)
        reading = Reading(meter_id=cfg.meter_id, channel=cfg.channel, at=at, value=value,
                          unit=register.unit, kind=Kind.CUMULATIVE)
        # A trial on a copy of the series first: the judge and the series agree by
        # construction (the same tracker), but a reading the series would not use (or
        # would hold) must be refused before anything is committed, not after.
        now_ms = int(now.timestamp() * 1000)
        trial = _processor(cfg, state).feed(reading, now_ms)
        mine = [e for e in trial.events if e.reading.at == at]
        unused = [e.reason for e in mine if e.quarantine or e.kind is EventKind.HELD]
        if verdict.outcome is Outcome.LATE and not any(
                e.kind is EventKind.BACKFILL for e in mine):
            unused = unused or ["it falls in no gap still open to late readings"]
        if unused:
            base = verdict.unless_fitted or Refusal(code=Code.NOT_USABLE,
                                                    message="the reading cannot be used")
            raise SelfReadRefused(Refusal(code=base.code,
                                          message=f"{base.message} ({'; '.join(unused)})"))
        event = SeriesEventRecord(at=at, kind=EVENT_KIND, meter_id=cfg.meter_id,
                                  channel=cfg.channel, reason=verdict.message,
                                  payload=_payload(submitted_by, value, register.unit))
        pipeline = Pipeline(self._store.guarded({key: saved}, events=[event]),
                            {key: _processor(cfg, state)}, {key: cfg}, {key: plan.timezone})
        result = await pipeline.feed([reading], source=SOURCE, now=now)
        if verdict.outcome is not Outcome.LATE:  # a late one is not the meter's last read
            await self._seen(plan, at)
        flags = verdict.flags
        if trial.intervals:  # as stored: the pipeline may shape a gap by a reference day
            first = min(iv.start for iv in trial.intervals)
            end = max(iv.end for iv in trial.intervals)
            for iv in await self._store.intervals(*key, first, end):
                flags |= iv.flags
        return _receipt(cfg, register, value, at, verdict, recorded=True, flags=flags,
                        intervals=result.intervals)

    async def _recorded(self, cfg: SeriesConfig, at: datetime) -> Decimal | None:
        """The value of a self-read recorded for this instant, from the audit."""
        for event in await self._store.events(cfg.meter_id):
            if (event.kind, event.channel, event.at) == (EVENT_KIND, cfg.channel, at):
                return _value_of(event.payload)
        return None

    async def _seen(self, plan: ManualPlan, at: datetime) -> None:
        try:
            await self._store.set_meter_status(MeterStatus(
                meter_id=plan.meter.meter_id, timezone=plan.timezone, status="ok",
                last_read_at=at, protocol="manual"))
        except GatewayError as exc:  # the reading is committed; the status is a convenience
            _log.error("cannot record meter status", meter_id=plan.meter.meter_id,
                       error=str(exc))

    async def _quarantine(self, refusal: Refusal, meter_id: str, channel: str | None,
                          value: object, at: datetime | None, now: datetime,
                          submitted_by: str) -> None:
        stamped = "now" if at is None else at.isoformat()
        who = submitted_by.strip() or "unnamed"
        item = QuarantineItem(
            at=now, source=SOURCE, meter_id=meter_id[:64], channel=(channel or "")[:64],
            payload=f"{meter_id[:64]},{(channel or '')[:64]},{stamped},{str(value)[:64]},"
                    f"by {who[:100]}",
            reason=f"{refusal.code}: {refusal.message}")
        await self._keep(item, refusal, meter_id)

    async def _keep(self, item: QuarantineItem, refusal: Refusal, meter_id: str) -> None:
        try:
            await self._store.write_intervals([], quarantine=[item])
        except GatewayError as exc:  # the submitter is told the refusal all the same
            _log.error("refused self-read not kept in the quarantine", meter_id=meter_id,
                       code=str(refusal.code), error=str(exc))


def _payload(submitted_by: str, value: Decimal, unit: Unit) -> str:
    """The audit's record of an accepted self-read: who, and the value as typed."""
    return f"{SOURCE} by {submitted_by.strip() or 'unnamed'}: {value} {unit}"


def _value_of(payload: str) -> Decimal | None:
    """The value ``_payload`` wrote (None if the payload is not one of ours)."""
    try:
        return Decimal(payload.rsplit(" ", 2)[-2])
    except (IndexError, ArithmeticError):
        return None


def windows_of(configured: Sequence[SelfReadWindow]) -> tuple[Window, ...]:
    """The [self_reads] windows of the config, for the pure judge."""
    return tuple(Window(last_days=w.last_days, from_day=w.from_day or 1, to_day=w.to_day or 31)
                 for w in configured)


def _register(plan: ManualPlan, cfg: SeriesConfig) -> Register:
    declared = plan.register(cfg.channel)
    return Register(unit=cfg.unit, digits=declared.digits, decimals=declared.decimals,
                    tracker=cfg.tracker_config(), future_tolerance_s=cfg.future_tolerance_s)


def _processor(cfg: SeriesConfig, state: SeriesState | None) -> SeriesProcessor:
    return SeriesProcessor(cfg) if state is None else SeriesProcessor.restore(cfg, state)


def _receipt(cfg: SeriesConfig, register: Register, value: Decimal, at: datetime,
             verdict: Accepted, *, recorded: bool, flags: int, intervals: int) -> Receipt:
    return Receipt(
        meter_id=cfg.meter_id, channel=cfg.channel, at=at.astimezone(UTC), value=value,
        unit=register.unit, recorded=recorded, outcome=verdict.outcome,
        message=verdict.message, consumption=verdict.consumption,
        previous_at=verdict.previous_at, previous_value=verdict.previous_value, flags=flags,
        quality=quality_of(flags) if intervals else None, intervals=intervals)
