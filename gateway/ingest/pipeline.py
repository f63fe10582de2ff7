"""The ingest pipeline: readings in; validated intervals, cursors and quarantine out.

One ``feed`` is one store transaction. The series processors' state is snapshotted
before a feed and put back if the write fails, so a reading is either fully accounted
for (its intervals and the cursor that follows from it committed together) or not at
all and can be fed again. Nothing is half-applied, nothing counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import msgspec

from gateway.errors import ConfigError
from gateway.ingest.series import SeriesConfig, SeriesProcessor, SeriesState
from gateway.model import IntervalReading, Kind, Reading
from gateway.store import QuarantineItem, SeriesInfo, Store, WriteResult

_encode = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(SeriesState).decode


class FeedResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one feed did."""

    readings: int
    intervals: int
    written: WriteResult
    #: Readings of channels that are not stored as intervals (instant values).
    skipped: int = 0
    quarantined: int = 0


class Pipeline:
    """Routes each reading to its series processor and commits what comes out."""

    def __init__(self, store: Store, processors: dict[tuple[str, str], SeriesProcessor],
                 configs: dict[tuple[str, str], SeriesConfig]) -> None:
        self._store = store
        self._procs = processors
        self._configs = configs

    @classmethod
    async def open(cls, store: Store, series: Iterable[tuple[SeriesConfig, str]]) -> Pipeline:
        """Register every (config, timezone) series and resume each from its saved cursor."""
        configs: dict[tuple[str, str], SeriesConfig] = {}
        for cfg, tz in series:
            key = (cfg.meter_id, cfg.channel)
            if key in configs:
                raise ConfigError(f"meter {cfg.meter_id} channel {cfg.channel} is configured twice",
                                  key=f"meters.{cfg.meter_id}", fix="configure each meter once")
            configs[key] = cfg
            await store.register_series(SeriesInfo(
                meter_id=cfg.meter_id, channel=cfg.channel, unit=cfg.unit.base,
                interval_s=cfg.interval_s, timezone=tz,
            ))
        saved = await store.cursors()
        procs = {
            key: SeriesProcessor.restore(cfg, _decode_state(saved[key]))
            if key in saved else SeriesProcessor(cfg)
            for key, cfg in configs.items()
        }
        return cls(store, procs, configs)

    def stores(self, meter_id: str, channel: str) -> bool:
        return (meter_id, channel) in self._procs

    async def feed(self, readings: Sequence[Reading], *, source: str,
                   now: datetime | None = None) -> FeedResult:
        """Process readings in order and commit the result in one transaction.

        On a store failure the processors are rewound and the error propagates: the
        caller may feed the same readings again later.
        """
        now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
        procs = self._procs
        touched: dict[tuple[str, str], SeriesProcessor] = {}
        before: dict[tuple[str, str], SeriesState] = {}
        intervals: list[IntervalReading] = []
        quarantine: list[QuarantineItem] = []
        skipped = 0
        for reading in readings:
            key = (reading.meter_id, reading.channel)
            proc = procs.get(key)
            if proc is None:
                if reading.kind is Kind.CUMULATIVE:
                    quarantine.append(_unknown_series(reading, source, now_ms))
                else:
                    skipped += 1
                continue
            if key not in touched:
                touched[key] = proc
                before[key] = proc.snapshot()
            out = proc.feed(reading, now_ms)
            intervals.extend(out.intervals)
            for event in out.events:
                if event.quarantine:
                    quarantine.append(QuarantineItem(
                        at=datetime.fromtimestamp(now_ms / 1000, UTC), source=source,
                        meter_id=reading.meter_id, channel=reading.channel,
                        payload=_describe(event.reading), reason=event.reason,
                    ))
        cursors = {key: _encode(proc.snapshot()) for key, proc in touched.items()}
        try:
            written = await self._store.write_intervals(
                intervals, cursors=cursors, quarantine=quarantine
            )
        except BaseException:
            for key, state in before.items():
                procs[key] = SeriesProcessor.restore(self._configs[key], state)
            raise
        return FeedResult(readings=len(readings), intervals=len(intervals), written=written,
                          skipped=skipped, quarantined=len(quarantine))


def _describe(reading: Reading) -> str:
    return f"{reading.meter_id},{reading.channel},{reading.at.isoformat()},{reading.value}"


def _unknown_series(reading: Reading, source: str, now_ms: int) -> QuarantineItem:
    return QuarantineItem(
        at=datetime.fromtimestamp(now_ms / 1000, UTC), source=source,
        meter_id=reading.meter_id, channel=reading.channel, payload=_describe(reading),
        reason=f"no configured meter {reading.meter_id!r} with cumulative channel "
               f"{reading.channel!r}",
    )
