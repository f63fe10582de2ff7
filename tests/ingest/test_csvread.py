"""CSV readings: every bad row reported with its line and reason, good rows kept."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.ingest.csvread import parse
from gateway.model import Kind, Unit

KNOWN = {("M1", "1.0.1.8.0.255"): (Unit.KWH, Kind.CUMULATIVE)}


def lookup(meter: str, channel: str) -> tuple[Unit, Kind] | None:
    return KNOWN.get((meter, channel))


def test_good_and_bad_rows() -> None:
    text = """meter_id,channel,at,value
M1,1.0.1.8.0.255,2026-03-08T01:45:00-06:00,9993.5
M1,1.0.1.8.0.255,2026-03-08T03:00:00-05:00,0007.25
M1,1.0.1.8.0.255,2026-03-08T03:15:00,12
M2,1.0.1.8.0.255,2026-03-08T03:15:00Z,12
M1,1.0.1.8.0.255,yesterday,12
M1,1.0.1.8.0.255,2026-03-08T03:30:00Z,twelve
M1,1.0.1.8.0.255,2026-03-08T03:30:00Z,NaN

M1,1.0.1.8.0.255
"""
    readings, errors = parse(text.splitlines(keepends=True), lookup)
    assert [(r.at, r.value) for r in readings] == [
        (datetime(2026, 3, 8, 7, 45, tzinfo=UTC), Decimal("9993.5")),
        (datetime(2026, 3, 8, 8, 0, tzinfo=UTC), Decimal("7.25")),
    ]
    assert all(r.unit is Unit.KWH for r in readings)
    assert [(e.line, e.reason.split(" ")[0]) for e in errors] == [
        (4, "'at'"), (5, "no"), (6, "'at'"), (7, "value"), (8, "value"), (10, "2"),
    ]
    assert "no UTC offset" in errors[0].reason
    assert "not a finite number" in errors[4].reason


def test_header_problems() -> None:
    _, errors = parse([], lookup)
    assert errors[0].line == 1 and "empty file" in errors[0].reason
    _, errors = parse(["meter,channel,at,value\n"], lookup)
    assert "meter_id" in errors[0].reason


def test_columns_in_any_order() -> None:
    readings, errors = parse(
        ["value,at,channel,meter_id\n", "5,2026-01-01T00:00:00+00:00,1.0.1.8.0.255,M1\n"], lookup
    )
    assert not errors and readings[0].value == Decimal(5)
