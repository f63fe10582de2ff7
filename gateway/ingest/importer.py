"""``ami-gateway import``: CSV register readings through the same pipeline as live polls."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec

from edge.assembly import assemble
from gateway.ingest import csvread
from gateway.ingest.pipeline import Pipeline
from gateway.model import SERIAL_NUMBER, Kind, Unit
from gateway.settings import LoadedConfig
from gateway.store import QuarantineItem
from gateway.store.sqlite import SqliteStore

#: Readings per transaction: large enough to amortise the commit. (The file itself is read
#: whole: its rows are sorted per series before they are fed.)
BATCH = 20_000


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    readings: int
    intervals: int
    inserted: int
    unchanged: int
    updated: int
    quarantined: int
    errors: list[csvread.RowError]


async def import_csv(cfg: LoadedConfig, path: Path) -> ImportReport:
    assembly = assemble(cfg)
    channels: dict[tuple[str, str], tuple[Unit, Kind]] = {}
    for plan in assembly.meters:
        # Every meter's serial number may be imported: a change is a meter exchange.
        channels[(plan.meter.meter_id, SERIAL_NUMBER)] = (Unit.COUNT, Kind.IDENTITY)
        for point in plan.profile.points:
            channels[(plan.meter.meter_id, point.channel)] = (point.unit, point.kind)
    for manual in assembly.manual:  # a utility's history of a meter read by hand
        channels[(manual.meter.meter_id, SERIAL_NUMBER)] = (Unit.COUNT, Kind.IDENTITY)
        for series in manual.series:
            channels[(manual.meter.meter_id, series.channel)] = (series.unit, Kind.CUMULATIVE)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        readings, errors = csvread.parse(fh, lambda m, c: channels.get((m, c)))
    # Each series must see its reads in time order; rows may come in any order.
    readings.sort(key=lambda r: (r.meter_id, r.channel, r.at))
    store = SqliteStore(cfg.store_path, synchronous=cfg.settings.store.synchronous)
    await store.open()
    try:
        # Imported intervals are queued for the config's sinks like polled ones.
        await store.use_sinks([s.name for s in cfg.settings.sinks])
        pipeline = await Pipeline.open(store, assembly.series())
        source = f"import:{path.name}"
        now = datetime.now(UTC)
        bad = [
            QuarantineItem(at=now, source=f"{source}:{e.line}", payload=e.text, reason=e.reason)
            for e in errors
        ]
        if bad:
            await store.write_intervals([], quarantine=bad)
        batches = (readings[i:i + BATCH] for i in range(0, len(readings), BATCH))
        result = await pipeline.feed_batches(batches, source=source, now=now)
    finally:
        await store.close()
    w = result.written
    return ImportReport(readings=result.readings, intervals=result.intervals,
                        inserted=w.inserted, unchanged=w.unchanged, updated=w.updated,
                        quarantined=result.quarantined + len(bad), errors=errors)
