"""Response shapes of the portal feed, and their conversion from the store's structs.

Energy never leaves as a binary float: values are integers in the channel's base unit
(Wh) plus, for Wh channels, an exact decimal string in kWh.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from gateway.api.rates import TotalDay
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
    checks: list[str] = Field(
        default_factory=list,
        description="Daily usage checks that fired on this complete day: daily_high, "
        "daily_low, daily_history_high, daily_history_low (see the meter's rules); empty "
        "when none fired or the day is not judged (incomplete days never are).")


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


class Rate(_Out):
    channel: str = Field(description="The rate's register (OBIS), e.g. 1.0.1.8.1.255.")
    tariff: int = Field(description="Tariff number: 1 day rate, 2 night rate; 0 when the "
                        "meter has no tariff registers and its one rate is the channel itself.")
    label: str = Field(description="Name to show, e.g. Day rate.")
    total: int = Field(description="Sum over the returned days in the base unit.")
    total_kwh: str | None


class RateUsage(_Out):
    channel: str
    value: int = Field(description="The rate's usage over the day in the base unit (Wh); "
                       "0 when its register has no data that day (quality says so).")
    value_kwh: str | None
    quality: DayQuality
    checks: list[str] = Field(description="Daily usage checks that fired on this rate.")


class RegisterTotal(_Out):
    channel: str = Field(description="The total register, e.g. 1.0.1.8.0.255.")
    value: int = Field(description="The total register's advance over the day (Wh).")
    value_kwh: str | None
    quality: DayQuality
    mismatch: int | None = Field(description="This register's value minus the sum of the "
                                 "rates, when it and every rate are complete that day: 0 on "
                                 "a consistent meter; anything else names lost or "
                                 "double-counted energy.")


class RatesDay(_Out):
    date: dt.date = Field(description="Local day in the meter's timezone.")
    value: int = Field(description="The day's total: the sum of its rates (base unit).")
    value_kwh: str | None
    unit: str
    quality: DayQuality = Field(description="Intervals summed over the rates; complete when "
                                "every rate is.")
    checks: list[str] = Field(description="Daily usage checks that fired on the total.")
    rates: list[RateUsage] = Field(description="One entry per rate, in the order of `rates`.")
    total_register: RegisterTotal | None = Field(description="The meter's own total register, "
                                           "when it is stored beside tariff registers.")


class RatesDailyList(_Out):
    meter_id: str
    channel: str = Field(description="The total channel whose rates these are.")
    timezone: str
    first: date
    last: date
    unit: str
    rates: list[Rate]
    total: int = Field(description="Sum of the days' totals in the base unit.")
    total_kwh: str | None
    days: list[RatesDay] = Field(description="Local days that have data, oldest first.")


def kwh(value: int, unit: Unit) -> str | None:
    """Wh -> kWh as a fixed three-decimal string (exact; no float on the way)."""
    if unit is not Unit.WH:
        return None
    # As f"{Decimal(value).scaleb(-3):f}" gives it, in integers: a year's reply has
    # hundreds of these.
    whole, wh = divmod(abs(value), 1000)
    return f"{'-' if value < 0 else ''}{whole}.{wh:03d}"


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


def day_out(usage: DailyUsage, checks: Sequence[str] = ()) -> Day:
    return Day(
        date=usage.day,
        value=usage.value,
        value_kwh=kwh(usage.value, usage.unit),
        unit=usage.unit.value,
        quality=quality_out(usage),
        checks=list(checks),
    )


def quality_out(usage: DailyUsage | TotalDay) -> DayQuality:
    return DayQuality(
        expected=usage.expected,
        present=usage.present,
        missing=max(usage.expected - usage.present, 0),
        estimated=usage.estimated,
        questionable=usage.questionable,
        edited=usage.edited,
        derived=usage.derived,
        complete=usage.complete,
    )


def _no_data(expected: int) -> DayQuality:
    return DayQuality(expected=expected, present=0, missing=expected, estimated=0,
                      questionable=0, edited=0, derived=0, complete=False)


def rates_day_out(day: TotalDay, unit: Unit) -> RatesDay:
    each = day.expected // max(len(day.rates), 1)
    rates = [
        RateUsage(channel=r.channel, value=r.usage.value if r.usage else 0,
                  value_kwh=kwh(r.usage.value if r.usage else 0, unit),
                  quality=quality_out(r.usage) if r.usage else _no_data(each),
                  checks=list(r.checks))
        for r in day.rates
    ]
    register = None
    if day.register is not None:
        register = RegisterTotal(channel=day.register.channel, value=day.register.value,
                                 value_kwh=kwh(day.register.value, unit),
                                 quality=quality_out(day.register), mismatch=day.mismatch)
    return RatesDay(date=day.day, value=day.value, value_kwh=kwh(day.value, unit),
                    unit=unit.value, quality=quality_out(day), checks=list(day.checks),
                    rates=rates, total_register=register)


class SelfReadIn(_Out):
    """A register reading typed in by a customer (or by the portal on their behalf)."""

    value: StrictStr | StrictInt = Field(
        description="The register as its dials show it, in the register's unit. A string "
                    "or a JSON number, read exactly as a decimal (00030 is 30); NaN, "
                    "Infinity and exponents are refused.",
        examples=["12345.6"])
    channel: str | None = Field(
        default=None, description="Register (OBIS code); default the meter's first register.")
    at: AwareDatetime | None = Field(
        default=None, description="When the dials showed it: ISO 8601 with an offset; "
                                  "default the time of submission.")
    source: str | None = Field(default=None, max_length=100,
                               description="Where it was typed in (e.g. portal, phone).")
    submitted_by: str | None = Field(default=None, max_length=100,
                                     description="Who typed it in; kept in the audit.")


class Rollover(_Out):
    previous: str = Field(description="The previous reading, register unit.")
    value: str = Field(description="This reading, after the register wrapped.")
    consumption: str = Field(description="Used between the two, across the wrap.")


class SelfReadOut(_Out):
    meter_id: str
    channel: str
    at: datetime = Field(description="When the reading was taken, UTC.")
    value: str = Field(description="The reading as recorded (exact decimal string).")
    unit: str = Field(description="The register's unit, e.g. kWh.")
    status: Literal["recorded", "already_recorded"]
    outcome: Literal["baseline", "continued", "rollover", "duplicate", "late"] = Field(
        description="late: stamped before the last reading, fitted into the gap before it "
                    "(whose estimates are re-derived)")
    message: str
    consumption: str | None = Field(
        description="Used since the previous reading, register unit; null for the first.")
    previous_at: datetime | None
    previous_value: str | None
    rollover: Rollover | None
    flags: list[str] = Field(description="Rules that fired on the reading and the intervals "
                                         "it completed (gap_spanned: estimates between reads).")
    quality: QualityCode | None = Field(
        description="Quality of the intervals it completed; null when it completed none.")
    intervals: int = Field(description="Intervals completed and stored by this reading.")


class SelfReadProblem(_Out):
    error: str = Field(description="Stable machine code, e.g. lower_than_last.")
    message: str = Field(description="What was wrong, for a person.")
