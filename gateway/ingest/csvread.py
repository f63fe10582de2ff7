"""Register readings from CSV (``meter_id,channel,at,value``): migrations, manual reads.

Pure: lines in, readings and row errors out. A bad row never stops the good ones; each
is reported with its line number and the reason, and kept for the quarantine.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation

import msgspec

from gateway.model import Kind, Reading, Unit, require_utc

COLUMNS = ("meter_id", "channel", "at", "value")


class RowError(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    text: str
    reason: str


#: Looks up the unit and kind of a configured (meter, channel), or None if unknown.
ChannelLookup = Callable[[str, str], "tuple[Unit, Kind] | None"]


def parse(lines: Iterable[str], lookup: ChannelLookup) -> tuple[list[Reading], list[RowError]]:
    """Parse CSV text with a header row naming at least the four columns."""
    readings: list[Reading] = []
    errors: list[RowError] = []
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None:
        errors.append(RowError(line=1, text="", reason="empty file: expected a header row "
                                                         "meter_id,channel,at,value"))
        return readings, errors
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        errors.append(RowError(line=1, text=",".join(header),
                               reason=f"header lacks column(s) {', '.join(missing)}; "
                                      f"expected meter_id,channel,at,value"))
        return readings, errors
    idx = [names.index(c) for c in COLUMNS]
    for row in rows:
        line = rows.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        text = ",".join(row)
        try:
            readings.append(_reading(row, idx, lookup))
        except ValueError as exc:
            errors.append(RowError(line=line, text=text, reason=str(exc)))
    return readings, errors


def _reading(row: list[str], idx: list[int], lookup: ChannelLookup) -> Reading:
    if len(row) <= max(idx):
        raise ValueError(f"{len(row)} columns, expected at least {max(idx) + 1}")
    meter_id, channel, at_text, value_text = (row[i].strip() for i in idx)
    known = lookup(meter_id, channel)
    if known is None:
        raise ValueError(f"no configured meter {meter_id!r} with channel {channel!r}")
    unit, kind = known
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:
        raise ValueError(f"'at' {at_text!r} is not an ISO 8601 time "
                         f"(e.g. 2026-03-08T01:45:00-06:00)") from None
    at = require_utc(at, "'at'")
    try:
        value = Decimal(value_text)
    except InvalidOperation:
        raise ValueError(f"value {value_text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"value {value_text!r} is not a finite number")
    if value.adjusted() >= 15:
        raise ValueError(f"value {value_text!r} is beyond what any meter register counts")
    return Reading(meter_id=meter_id, channel=channel, at=at, value=value, unit=unit, kind=kind)
