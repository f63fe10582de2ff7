"""A load profile (profile generic, class 7) as readings: columns, rows, status (pure).

The meter captures a row every capture period: the clock, a status byte, and the
registers it was told to capture (its ``capture_objects``). :class:`ProfileLayout`
finds the columns the gateway stores; :func:`rows_to_readings` turns the rows of a
buffer read into :class:`~gateway.model.Reading` values, each stamped with its capture
time (the meter's clock) and flagged from the row's status.

Two compressions meters use are undone (Blue Book 4.3.6, buffer): a null-data clock is
the previous row's time plus the capture period, and a null-data value repeats the
previous row's value in that column.

The status byte is the AMR profile status of IDIS and DSMR meters (0.0.96.10.1.255):
bit 0 critical error, 1 clock invalid, 2 data not valid, 3 daylight saving, 5 clock
adjusted, 6 recovered value, 7 power down (the same bit list is in the open smart grid
platform's AmrProfileStatusCodeFlag, GXF project).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.cosem import (
    CaptureObject,
    ClockStatus,
    CosemClass,
    CosemDateTime,
    DeviationSign,
    Obis,
    ScalerUnit,
)
from gateway.drivers.dlms.data import Data
from gateway.errors import ProtocolError
from gateway.model import Flag, Kind, Reading, Unit

__all__ = [
    "CLOCK_ADJUSTED",
    "CLOCK_INVALID",
    "CRITICAL_ERROR",
    "DATA_NOT_VALID",
    "POWER_DOWN",
    "ChannelColumn",
    "ProfileLayout",
    "WantedChannel",
    "flags_of_status",
    "rows_to_readings",
    "to_unit",
]

CRITICAL_ERROR: Final = 0x01
CLOCK_INVALID: Final = 0x02
DATA_NOT_VALID: Final = 0x04
CLOCK_ADJUSTED: Final = 0x20
POWER_DOWN: Final = 0x80

CLOCK_OBIS: Final = Obis(0, 0, 1, 0, 0, 255)
_CLOCK_UNSURE: Final = ClockStatus.INVALID | ClockStatus.DOUBTFUL


def flags_of_status(status: int) -> int:
    """The gateway flags an AMR profile status byte implies."""
    flags = 0
    if status & POWER_DOWN:
        flags |= Flag.POWER_FAIL
    if status & CLOCK_ADJUSTED:
        flags |= Flag.CLOCK_ADJUSTED
    if status & CLOCK_INVALID:
        flags |= Flag.CLOCK_UNTRUSTED
    if status & (DATA_NOT_VALID | CRITICAL_ERROR):
        flags |= Flag.METER_INVALID
    return flags


@dataclass(frozen=True, slots=True)
class WantedChannel:
    """A channel the gateway stores from a profile column: the column's object and
    attribute, and the unit and kind the channel is stored in."""

    channel: str
    obis: Obis
    attribute: int
    unit: Unit
    kind: Kind = Kind.CUMULATIVE


@dataclass(frozen=True, slots=True)
class ChannelColumn:
    wanted: WantedChannel
    index: int
    capture: CaptureObject


@dataclass(frozen=True, slots=True)
class ProfileLayout:
    """Where the clock, the status and the stored channels are among the columns."""

    clock: int
    status: int | None
    #: The clock column's object: the restricting object of a read by range.
    clock_object: CaptureObject
    columns: tuple[ChannelColumn, ...]
    width: int

    @classmethod
    def build(cls, capture_objects: Sequence[CaptureObject], wanted: Sequence[WantedChannel],
              *, status_obis: Obis | None, device: str) -> ProfileLayout:
        clock = next((i for i, c in enumerate(capture_objects)
                      if c.class_id == CosemClass.CLOCK and c.attribute_index == 2), None)
        if clock is None:
            raise ProtocolError("the load profile captures no clock: its rows have no time",
                                device=device)
        status = next((i for i, c in enumerate(capture_objects)
                       if status_obis is not None and c.obis == status_obis), None)
        columns: list[ChannelColumn] = []
        missing: list[str] = []
        for want in wanted:
            index = next((i for i, c in enumerate(capture_objects)
                          if c.obis == want.obis and c.attribute_index == want.attribute),
                         None)
            if index is None:
                missing.append(want.channel)
            else:
                columns.append(ChannelColumn(want, index, capture_objects[index]))
        if missing:
            captured = ", ".join(str(c.obis) for c in capture_objects)
            raise ProtocolError(f"the load profile does not capture {', '.join(missing)} "
                                f"(it captures {captured}); correct the device profile's "
                                "load_profile.channels", device=device)
        return cls(clock, status, capture_objects[clock], tuple(columns), len(capture_objects))


def to_unit(value: Decimal, scaler_unit: ScalerUnit, unit: Unit, *, what: str,
            device: str) -> Decimal:
    """``value`` (already scaled) from the meter's unit into ``unit``, exactly."""
    meter_unit = scaler_unit.model_unit
    if meter_unit.base is not unit.base:
        raise ProtocolError(f"{what} is in {meter_unit.value} on the meter, but the device "
                            f"profile stores it in {unit.value}; correct the profile's unit",
                            device=device)
    if meter_unit.factor == unit.factor:
        return value
    return value * meter_unit.factor / unit.factor


def rows_to_readings(buffer: Data, layout: ProfileLayout, scalers: dict[str, ScalerUnit], *,
                     meter_id: str, period_s: int, zone: ZoneInfo, device: str,
                     sign: DeviationSign = DeviationSign.BLUE_BOOK,
                     extra_flags: int = 0) -> list[Reading]:
    """The readings of a buffer (an array of row structures), row by row in order.

    ``scalers`` holds each channel's scaler_unit (read from the register's attribute 3).
    A row whose clock cannot be read is a ProtocolError: nothing of the buffer is used
    (a row time guessed would place energy in the wrong interval)."""
    rows = axdr.as_items(buffer)
    out: list[Reading] = []
    at: datetime | None = None
    previous: list[Data | None] = [None] * layout.width
    step = timedelta(seconds=period_s)
    for number, row in enumerate(rows, 1):
        items = axdr.as_items(row)
        if len(items) != layout.width:
            raise ProtocolError(f"load profile row {number} has {len(items)} values, the "
                                f"capture objects say {layout.width}", device=device)
        values = [previous[i] if isinstance(v, axdr.NullData) else v
                  for i, v in enumerate(items)]
        previous = list(values)
        flags = extra_flags
        stamp = items[layout.clock]
        if isinstance(stamp, axdr.NullData):
            if at is None:
                raise ProtocolError("load profile row 1 has no time", device=device)
            at = at + step
        else:
            when = CosemDateTime.from_data(stamp)
            try:
                at = when.to_datetime(sign=sign, zone=zone)
            except (ProtocolError, ValueError) as exc:
                raise ProtocolError(f"load profile row {number}: {exc}",
                                    device=device) from exc
            if when.status is not None and when.status & _CLOCK_UNSURE:
                flags |= Flag.CLOCK_UNTRUSTED
        if layout.status is not None:
            status = values[layout.status]
            if status is not None and not isinstance(status, axdr.NullData):
                flags |= flags_of_status(axdr.as_int(status))
        for column in layout.columns:
            raw = values[column.index]
            want = column.wanted
            if raw is None or isinstance(raw, axdr.NullData):
                continue  # nothing captured in this column for this row
            scaler = scalers[want.channel]
            value = to_unit(scaler.apply(raw), scaler, want.unit,
                            what=f"{want.channel}", device=device)
            out.append(Reading(meter_id=meter_id, channel=want.channel, at=at, value=value,
                               unit=want.unit, kind=want.kind, flags=flags, meter_at=at))
    return out
