"""The daily usage reply (``DailyList``) encoded straight to JSON.

A year of days is 365 ``Day`` and 365 ``DayQuality`` pydantic models, validated one by
one and then serialized: most of the time of a year's request. These msgspec structs
mirror the models field for field (names, order, types), so the bytes are the ones
``DailyList.model_dump_json()`` gives for the same reply (``tests/api/test_daily_json``
holds them to it); the route keeps ``DailyList`` as its documented response model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import msgspec

from gateway.api.schemas import kwh
from gateway.model import DailyUsage, Unit

__all__ = ["daily_list_json"]


class _Quality(msgspec.Struct, gc=False):
    expected: int
    present: int
    missing: int
    estimated: int
    questionable: int
    edited: int
    derived: int
    complete: bool


class _Day(msgspec.Struct, gc=False):
    date: date
    value: int
    value_kwh: str | None
    unit: str
    quality: _Quality
    checks: list[str]


class _DailyList(msgspec.Struct, gc=False):
    meter_id: str
    channel: str
    timezone: str
    first: date
    last: date
    unit: str
    total: int
    total_kwh: str | None
    days: list[_Day]


_encode = msgspec.json.Encoder().encode


def daily_list_json(*, meter_id: str, channel: str, timezone: str, first: date, last: date,
                    unit: str, total: int, total_kwh: str | None,
                    days: Sequence[DailyUsage],
                    checks: Mapping[date, Sequence[str]]) -> bytes:
    """``DailyList(...).model_dump_json()`` of the days, as ``day_out`` makes each one."""
    out = []
    day_unit: Unit | None = None
    name = ""
    for d in days:
        if d.unit is not day_unit:  # the days of a series share one unit
            day_unit = d.unit
            name = day_unit.value
        value, expected, present = d.value, d.expected, d.present
        out.append(_Day(
            d.day, value, kwh(value, d.unit), name,
            _Quality(expected, present, max(expected - present, 0), d.estimated,
                     d.questionable, d.edited, d.derived, present >= expected),
            list(checks.get(d.day, ()))))
    return _encode(_DailyList(meter_id, channel, timezone, first, last, unit, total,
                              total_kwh, out))
