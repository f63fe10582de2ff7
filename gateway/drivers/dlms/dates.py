"""The COSEM date-time (Blue Book 4.1.6.1): 12 bytes, to and from aware UTC datetimes.

Layout: year Unsigned16, month, day of month, day of week (1 = Monday), hour, minute,
second, hundredths, deviation Integer16 (minutes), clock status. 0xFF (0xFFFF for the
year) is "not specified" and reads as ``None``; deviation 0x8000 likewise. Month 0xFD /
0xFE are "end / begin of daylight saving", day 0xFD / 0xFE "second last / last day of
the month": kept as numbers, they make a pattern, not an instant.

The deviation's sign: the Blue Book defines it as minutes from local time to UTC, so
UTC = local + deviation and Central European Time (UTC+01:00) is -60. Some meters send
the ISO 8601 offset instead (+60 for CET); Gurux calls its switch for them
``UseUtc2NormalTime``. Which one a meter uses is a fact about the meter, so it is an
explicit parameter (:class:`DeviationSign`), the Blue Book's by default.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.data import Data
from gateway.errors import ProtocolError

__all__ = ["ClockStatus", "CosemDateTime", "DeviationSign"]

_LAYOUT: Final = struct.Struct(">HBBBBBBBhB")
DEVIATION_UNSPECIFIED: Final = -0x8000


class ClockStatus(enum.IntFlag, boundary=enum.KEEP):
    """clock_status bits (Blue Book 4.1.6.1); reserved bits 0x10-0x40 are kept as sent."""

    NONE = 0
    INVALID = 0x01
    DOUBTFUL = 0x02
    DIFFERENT_CLOCK_BASE = 0x04
    INVALID_STATUS = 0x08
    DAYLIGHT_SAVING = 0x80


class DeviationSign(enum.Enum):
    """How a meter signs the deviation."""

    #: Blue Book: deviation = UTC - local, in minutes (CET -60, CEST -120).
    BLUE_BOOK = "blue_book"
    #: ISO 8601 offset: deviation = local - UTC (CET +60); Gurux ``UseUtc2NormalTime``.
    ISO = "iso"


# (field, smallest, largest, special values allowed besides the range)
_RANGES: Final = (
    ("year", 0, 0xFFFE, ()),
    ("month", 1, 12, (0xFD, 0xFE)),
    ("day", 1, 31, (0xFD, 0xFE)),
    ("weekday", 1, 7, ()),
    ("hour", 0, 23, ()),
    ("minute", 0, 59, ()),
    ("second", 0, 59, ()),
    ("hundredths", 0, 99, ()),
    ("deviation", -720, 720, ()),
)


@dataclass(frozen=True, slots=True)
class CosemDateTime:
    """A date-time as the meter sent it; ``None`` where it said "not specified"."""

    year: int | None
    month: int | None
    day: int | None
    weekday: int | None
    hour: int | None
    minute: int | None
    second: int | None
    hundredths: int | None
    deviation: int | None
    status: ClockStatus | None

    def __post_init__(self) -> None:
        for name, low, high, special in _RANGES:
            value = getattr(self, name)
            if value is not None and not (low <= value <= high or value in special):
                raise ValueError(f"date-time {name} {value} is out of range {low}-{high}")

    @classmethod
    def from_bytes(cls, raw: bytes) -> CosemDateTime:
        if len(raw) != 12:
            raise ProtocolError(f"a date-time is 12 bytes, got {len(raw)}: {raw.hex()}")
        year, month, day, weekday, hour, minute, second, cs, deviation, status = (
            _LAYOUT.unpack(raw))

        def field(v: int) -> int | None:
            return None if v == 0xFF else v

        try:
            return cls(None if year == 0xFFFF else year, field(month), field(day),
                       field(weekday), field(hour), field(minute), field(second), field(cs),
                       None if deviation == DEVIATION_UNSPECIFIED else deviation,
                       None if status == 0xFF else ClockStatus(status))
        except ValueError as exc:
            raise ProtocolError(f"{exc}: {raw.hex()}") from None

    def to_bytes(self) -> bytes:
        def byte(v: int | None) -> int:
            return 0xFF if v is None else v

        return _LAYOUT.pack(
            0xFFFF if self.year is None else self.year, byte(self.month), byte(self.day),
            byte(self.weekday), byte(self.hour), byte(self.minute), byte(self.second),
            byte(self.hundredths),
            DEVIATION_UNSPECIFIED if self.deviation is None else self.deviation,
            0xFF if self.status is None else int(self.status))

    @classmethod
    def from_data(cls, value: Data) -> CosemDateTime:
        """From a date-time (tag 25) or the 12-byte octet-string most meters send."""
        if isinstance(value, axdr.DateTimeData):
            return cls.from_bytes(value.raw)
        return cls.from_bytes(axdr.as_bytes(value))

    def to_data(self) -> axdr.OctetString:
        """As an octet-string: what the clock's time attribute and profile buffers use."""
        return axdr.OctetString(self.to_bytes())

    def to_datetime(self, *, sign: DeviationSign = DeviationSign.BLUE_BOOK,
                    zone: tzinfo | None = None) -> datetime:
        """The instant, in UTC. Without a deviation the wall time is read in ``zone``
        (the meter's time zone), the DST flag choosing between a repeated hour's two."""
        fields = (self.year, self.month, self.day, self.hour, self.minute, self.second)
        if any(v is None for v in fields) or (self.month or 0) > 12 or (self.day or 0) > 31:
            raise ProtocolError(f"date-time {self.to_bytes().hex()} is not an instant: "
                                "a field is unspecified or a DST/last-day pattern")
        year, month, day, hour, minute, second = (v or 0 for v in fields)
        micro = (self.hundredths or 0) * 10_000
        try:
            if self.deviation is None:
                if zone is None:
                    raise ProtocolError(f"date-time {self.to_bytes().hex()} has no deviation;"
                                        " give the meter's time zone")
                dst = self.status is not None and ClockStatus.DAYLIGHT_SAVING in self.status
                local = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone,
                                 fold=0 if dst else 1)
                return local.astimezone(UTC)
            naive = datetime(year, month, day, hour, minute, second, micro)
        except ValueError as exc:
            raise ProtocolError(f"date-time {self.to_bytes().hex()}: {exc}") from None
        shift = self.deviation if sign is DeviationSign.BLUE_BOOK else -self.deviation
        return (naive + timedelta(minutes=shift)).replace(tzinfo=UTC)

    @classmethod
    def from_datetime(cls, at: datetime, *, sign: DeviationSign = DeviationSign.BLUE_BOOK,
                      status: ClockStatus | None = None) -> CosemDateTime:
        """The wall time of aware ``at`` with its offset as deviation; ``status`` defaults
        to the DST flag of ``at``'s zone."""
        offset = at.utcoffset()
        if offset is None:
            raise ValueError(f"{at.isoformat()} has no UTC offset")
        minutes, rest = divmod(offset, timedelta(minutes=1))
        if rest:
            raise ValueError(f"offset {offset} of {at.isoformat()} is not whole minutes")
        if status is None:
            status = ClockStatus.DAYLIGHT_SAVING if at.dst() else ClockStatus.NONE
        return cls(at.year, at.month, at.day, at.isoweekday(), at.hour, at.minute, at.second,
                   at.microsecond // 10_000,
                   -minutes if sign is DeviationSign.BLUE_BOOK else minutes, status)
