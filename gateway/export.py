"""Intervals and daily usage as CSV or JSON, for analysts and billing systems.

Energy stays exact: integers in the base unit (Wh), never floats.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from gateway.model import DailyUsage, Flag, IntervalReading, Quality

INTERVAL_COLUMNS: tuple[str, ...] = (
    "meter_id", "channel", "start", "end", "value", "unit", "quality", "quality_name", "flags",
)
DAILY_COLUMNS: tuple[str, ...] = (
    "meter_id", "channel", "date", "value", "unit", "expected", "present", "missing",
    "estimated", "questionable", "edited", "derived",
)


def flag_names(flags: int) -> str:
    return "|".join(f.name for f in Flag if f and flags & f and f.name) if flags else ""


def interval_row(iv: IntervalReading) -> dict[str, str | int]:
    return {
        "meter_id": iv.meter_id, "channel": iv.channel, "start": iv.start.isoformat(),
        "end": iv.end.isoformat(), "value": iv.value, "unit": str(iv.unit),
        "quality": int(iv.quality), "quality_name": Quality(iv.quality).name.lower(),
        "flags": flag_names(iv.flags),
    }


def daily_row(d: DailyUsage) -> dict[str, str | int]:
    return {
        "meter_id": d.meter_id, "channel": d.channel, "date": d.day.isoformat(),
        "value": d.value, "unit": str(d.unit), "expected": d.expected, "present": d.present,
        "missing": d.missing, "estimated": d.estimated, "questionable": d.questionable,
        "edited": d.edited, "derived": d.derived,
    }


def render(rows: Sequence[IntervalReading] | Sequence[DailyUsage], fmt: str) -> str:
    if rows and isinstance(rows[0], DailyUsage):
        records = [daily_row(r) for r in rows if isinstance(r, DailyUsage)]
        columns = DAILY_COLUMNS
    else:
        records = [interval_row(r) for r in rows if isinstance(r, IntervalReading)]
        columns = INTERVAL_COLUMNS
    if fmt == "json":
        return json.dumps(records, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()
