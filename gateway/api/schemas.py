"""Response shapes of the portal feed, and their conversion from the store's structs.

Energy never leaves as a binary float: values are integers in the channel's base unit
(Wh) plus, for Wh channels, an exact decimal string in kWh.
"""

from __future__ import annotations

import datetime as dt
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.model import DailyUsage, Flag, IntervalReading, MeterStatus, Quality, Unit
from gateway.store import SeriesInfo

MeterState = Literal["ok", "failing", "unknown"]
_STATES: dict[str, MeterState] = {"ok": "ok", "failing": "failing", "unknown": "unknown"}


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Health(_Out):
    status: Literal["ok", "unavailable"]
    detail: str | None = None


class Channel(_Out):
    channel: str = Field(description="Channel name (OBIS code where one exists).")
    unit: str = Field(description="Base unit of stored values, e.g. Wh.")
    interval_s: int = Field(description="Interval length in seconds.")


class Meter(_Out):
    meter_id: str
    timezone: str = Field(description="IANA timezone of the meter's local day.")
    last_read_at: datetime | None = Field(description="Last successful read, UTC.")
    status: MeterState
    last_error: str | None
    protocol: str
    profile: str
    channels: list[Channel]


class MeterList(_Out):
    default_channel: str = Field(description="Channel the usage routes use when none is given.")
    meters: list[Meter]


class QualityCode(_Out):
    code: int = Field(description="NAESB ESPI QualityOfReading code.")
    name: str = Field(description="Name of the code, e.g. estimated_linear.")


class Interval(_Out):
    start: datetime = Field(description="Interval start (inclusive), UTC.")
    end: datetime = Field(description="Interval end (exclusive), UTC.")
    value: int = Field(description="Consumption in the base unit (integer, exact).")
    unit: str
    quality: QualityCode
    flags: list[str] = Field(description="Names of the validation rules that fired.")


class IntervalList(_Out):
    meter_id: str
    channel: str
    timezone: str
    start: datetime = Field(description="Requested range start (inclusive), UTC.")
    end: datetime = Field(description="Requested range end (exclusive), UTC.")
    intervals: list[Interval]


class DayQuality(_Out):
    expected: int = Field(description="Intervals the local day holds (92/96/100 on 15 min).")
    present: int
    missing: int
    estimated: int
    questionable: int
    edited: int
    derived: int
    complete: bool


class Day(_Out):
    date: dt.date = Field(description="Local day in the meter's timezone.")
    value: int = Field(description="Consumption over the day in the base unit (Wh).")
    value_kwh: str | None = Field(
        description="The same value in kWh as an exact decimal string; null unless unit is Wh."
    )
    unit: str
    quality: DayQuality


class DailyList(_Out):
    meter_id: str
    channel: str
    timezone: str
    first: date
    last: date
    unit: str
    total: int = Field(description="Sum over the returned days in the base unit.")
    total_kwh: str | None
    days: list[Day] = Field(description="Local days that have data, oldest first.")


def kwh(value: int, unit: Unit) -> str | None:
    """Wh -> kWh as a fixed three-decimal string (exact; no float on the way)."""
    if unit is not Unit.WH:
        return None
    return f"{Decimal(value).scaleb(-3):f}"


def flag_names(flags: int) -> list[str]:
    names = [f.name.lower() for f in Flag if flags & f and f.name]
    known = 0
    for f in Flag:
        known |= f
    # Bits a newer ingest may set that this version has no name for stay visible.
    names += [f"bit_{i}" for i in range(flags.bit_length()) if flags & ~known & (1 << i)]
    return names


def quality_code(code: int) -> QualityCode:
    try:
        name = Quality(code).name.lower()
    except ValueError:
        name = "unknown"
    return QualityCode(code=code, name=name)


def meter_out(status: MeterStatus, series: list[SeriesInfo]) -> Meter:
    last = status.last_read_at.astimezone(UTC) if status.last_read_at else None
    return Meter(
        meter_id=status.meter_id,
        timezone=status.timezone,
        last_read_at=last,
        # The contract names three states; anything else is reported as not known.
        status=_STATES.get(status.status, "unknown"),
        last_error=status.last_error,
        protocol=status.protocol,
        profile=status.profile,
        channels=[
            Channel(channel=s.channel, unit=s.unit.value, interval_s=s.interval_s)
            for s in series
        ],
    )


def interval_out(reading: IntervalReading) -> Interval:
    return Interval(
        start=reading.start.astimezone(UTC),
        end=reading.end.astimezone(UTC),
        value=reading.value,
        unit=reading.unit.value,
        quality=quality_code(reading.quality),
        flags=flag_names(reading.flags),
    )


def day_out(usage: DailyUsage) -> Day:
    return Day(
        date=usage.day,
        value=usage.value,
        value_kwh=kwh(usage.value, usage.unit),
        unit=usage.unit.value,
        quality=DayQuality(
            expected=usage.expected,
            present=usage.present,
            missing=usage.missing,
            estimated=usage.estimated,
            questionable=usage.questionable,
            edited=usage.edited,
            derived=usage.derived,
            complete=usage.complete,
        ),
    )
