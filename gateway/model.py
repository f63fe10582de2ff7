"""The data that flows through the gateway.

Conventions, fixed here once for every module:

- Instants are timezone-aware datetimes in UTC (``at``). Intervals are ``[start, end)``
  and are identified by their *start*; ``end = start + length``.
- Register readings carry their value as an exact ``Decimal`` in the channel's unit.
  Interval consumption is an ``int`` in the base unit (Wh for active energy), so sums
  and de-rollover never go through binary floats.
- Every value carries ``Flag`` bits (which rules fired) and an ESPI ``Quality`` code
  derived from them (NAESB ESPI QualityOfReading; see docs in ``quality_of``).

The structs are ``msgspec.Struct``: frozen, keyword-only, slotted and cheap to build,
which matters on the ingest hot path (hundreds of thousands of readings a second).
They hold only strings, numbers, datetimes and Decimals, so they cannot form reference
cycles and opt out of the cyclic garbage collector (``gc=False``): tracking them cost
the ingest a seventh of its time in collections.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import msgspec

__all__ = [
    "SERIAL_NUMBER",
    "UTC",
    "DailyUsage",
    "Flag",
    "IntervalReading",
    "Kind",
    "MeterStatus",
    "Quality",
    "Reading",
    "Unit",
    "quality_of",
    "require_utc",
]


class Quality(enum.IntEnum):
    """NAESB ESPI QualityOfReading codes (domain.md, "Reading quality")."""

    VALID = 0
    EDITED = 7
    ESTIMATED_REFERENCE_DAY = 8
    ESTIMATED_LINEAR = 9
    QUESTIONABLE = 10
    DERIVED = 11
    PROJECTED = 12
    MIXED = 13
    RAW = 14
    NORMALIZED = 15
    OTHER = 16
    VALIDATED = 17
    VERIFIED = 18
    REVENUE_QUALITY = 19


class Flag(enum.IntFlag):
    """Which rules fired on a value. Stored as a bit mask beside the quality code."""

    NONE = 0
    #: A boundary value was interpolated between two reads (normal poll spacing).
    INTERPOLATED = 1 << 0
    #: The interval lies inside a gap between reads longer than the channel's max gap:
    #: its consumption is spread linearly over the gap (an estimate).
    GAP_SPANNED = 1 << 1
    #: The register wrapped (rolled over) within this interval and was unwrapped.
    ROLLOVER = 1 << 2
    #: The register went back without a plausible wrap: a reset, new baseline.
    RESET = 1 << 3
    #: A read below the previous one that was not (yet) explained; held back.
    NEGATIVE_DELTA = 1 << 4
    #: Consumption beyond the meter's maximum rating over the elapsed time.
    OVER_MAX = 1 << 5
    #: The timestamp came from a clock that is not trusted (not synchronised, drifted).
    CLOCK_UNTRUSTED = 1 << 6
    #: Timestamp in the future relative to the gateway clock.
    FUTURE = 1 << 7
    #: Estimated by a VEE estimation rule (reference day or interpolation over a gap).
    ESTIMATED = 1 << 8
    #: Edited by an operator.
    EDITED = 1 << 9
    #: A meter exchange (new serial number) happened within this interval.
    METER_EXCHANGE = 1 << 10
    #: A different value already existed for this interval (for the VEE stage; the store
    #: keeps the replaced version in its history).
    CONFLICT = 1 << 11
    #: So long passed between two reads that the register could have wrapped more than
    #: once at the meter's rating: whole turns of the register may be missing.
    AMBIGUOUS_WRAPS = 1 << 12
    #: Interval consumption far above the previous intervals' (consecutive-interval
    #: tolerance).
    SPIKE = 1 << 13
    #: Zero consumption for at least the configured number of consecutive intervals.
    ZERO_RUN = 1 << 14
    #: The meter repeated a snapshot it had already given (same meter timestamp, or the
    #: same register value for longer than plausible): a frozen or stale register.
    FROZEN = 1 << 15
    #: Interval consumption above the configured demand limit (W x interval length).
    DEMAND_HIGH = 1 << 16
    #: A gap's consumption (exact: the register's change across it) was spread over its
    #: intervals by the shape of a reference day rather than evenly (ESPI code 8).
    REFERENCE_DAY = 1 << 17
    #: The meter lost power within this interval (its load profile's status said so):
    #: the consumption is what the meter measured, and it measured nothing while off.
    POWER_FAIL = 1 << 18
    #: The meter's clock was set within this interval, so it is longer or shorter than
    #: the grid says (load profile status "clock adjusted").
    CLOCK_ADJUSTED = 1 << 19
    #: The meter itself marked the value not valid (load profile status "data not
    #: valid" or "critical error").
    METER_INVALID = 1 << 20


_QUESTIONABLE = (
    Flag.RESET
    | Flag.NEGATIVE_DELTA
    | Flag.OVER_MAX
    | Flag.CLOCK_UNTRUSTED
    | Flag.FUTURE
    | Flag.CONFLICT
    | Flag.AMBIGUOUS_WRAPS
    | Flag.SPIKE
    | Flag.ZERO_RUN
    | Flag.FROZEN
    | Flag.DEMAND_HIGH
    | Flag.CLOCK_ADJUSTED
    | Flag.METER_INVALID
)


def quality_of(flags: int) -> Quality:
    """The ESPI quality code a set of fired rules implies, most severe first.

    Edited beats everything (the operator's word stands); then questionable (a rule
    says the value may be wrong); then estimated by a gap (code 8 when shaped by a
    reference day, else code 9: linear interpolation); then derived (code 11: boundary
    interpolation between reads taken at normal spacing, e.g. a poll a few seconds off
    the grid). A rollover that was
    unwrapped plausibly is still a measured value: valid.
    """
    if flags & Flag.EDITED:
        return Quality.EDITED
    if flags & _QUESTIONABLE:
        return Quality.QUESTIONABLE
    if flags & Flag.REFERENCE_DAY:
        return Quality.ESTIMATED_REFERENCE_DAY
    if flags & (Flag.GAP_SPANNED | Flag.ESTIMATED):
        return Quality.ESTIMATED_LINEAR
    if flags & Flag.INTERPOLATED:
        return Quality.DERIVED
    return Quality.VALID


class Kind(enum.StrEnum):
    """How a channel's values relate over time."""

    CUMULATIVE = "cumulative"  # a register that only rises (energy), may wrap
    INSTANT = "instant"  # a snapshot (power, voltage)
    DELTA = "delta"  # consumption since the previous value
    IDENTITY = "identity"  # the meter's serial number: a change is a meter exchange


class Unit(enum.StrEnum):
    """Units of measure. ``base`` and ``factor`` convert to the stored base unit."""

    WH = "Wh"
    KWH = "kWh"
    MWH = "MWh"
    VARH = "varh"
    KVARH = "kvarh"
    VAH = "VAh"
    KVAH = "kVAh"
    W = "W"
    KW = "kW"
    VAR = "var"
    KVAR = "kvar"
    VA = "VA"
    KVA = "kVA"
    V = "V"
    A = "A"
    HZ = "Hz"
    PF = "PF"
    DEGREE = "deg"
    COUNT = "count"

    @property
    def base(self) -> Unit:
        return _BASE[self][0]

    @property
    def factor(self) -> int:
        """How many base units one of this unit is (kWh -> 1000 Wh)."""
        return _BASE[self][1]


_BASE: dict[Unit, tuple[Unit, int]] = {
    Unit.WH: (Unit.WH, 1),
    Unit.KWH: (Unit.WH, 1000),
    Unit.MWH: (Unit.WH, 1_000_000),
    Unit.VARH: (Unit.VARH, 1),
    Unit.KVARH: (Unit.VARH, 1000),
    Unit.VAH: (Unit.VAH, 1),
    Unit.KVAH: (Unit.VAH, 1000),
    Unit.W: (Unit.W, 1),
    Unit.KW: (Unit.W, 1000),
    Unit.VAR: (Unit.VAR, 1),
    Unit.KVAR: (Unit.VAR, 1000),
    Unit.VA: (Unit.VA, 1),
    Unit.KVA: (Unit.VA, 1000),
    Unit.V: (Unit.V, 1),
    Unit.A: (Unit.A, 1),
    Unit.HZ: (Unit.HZ, 1),
    Unit.PF: (Unit.PF, 1),
    Unit.DEGREE: (Unit.DEGREE, 1),
    Unit.COUNT: (Unit.COUNT, 1),
}


#: The OBIS code of a meter's serial number: readings of it are ``Kind.IDENTITY``.
SERIAL_NUMBER = "0.0.96.1.0.255"


def require_utc(at: datetime, what: str = "timestamp") -> datetime:
    """Return ``at`` in UTC; refuse naive datetimes (their meaning is a guess)."""
    offset = at.utcoffset()
    if offset is None:
        raise ValueError(f"{what} {at.isoformat()} has no UTC offset; give one (e.g. +00:00)")
    return at if at.tzinfo is UTC else at.astimezone(UTC)


class Reading(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One value of one channel of one meter at one instant, as read."""

    meter_id: str
    channel: str
    at: datetime
    value: Decimal
    unit: Unit
    kind: Kind = Kind.CUMULATIVE
    flags: int = 0
    #: The meter's own timestamp when it gave one (DLMS clock, MQTT payload), else None.
    meter_at: datetime | None = None


class IntervalReading(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Consumption of one channel over ``[start, start + length_s)``, in base units."""

    meter_id: str
    channel: str
    start: datetime
    length_s: int
    value: int
    unit: Unit
    quality: Quality = Quality.VALID
    flags: int = 0
    #: The value as first derived from reads, when a rule or an edit changed ``value``.
    raw: int | None = None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.length_s)


class DailyUsage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Consumption over one local day of the meter's timezone (23, 24 or 25 hours)."""

    meter_id: str
    channel: str
    day: date
    value: int
    unit: Unit
    #: Intervals the local day holds (92, 96 or 100 quarter-hours on DST days).
    expected: int
    #: Intervals stored for the day.
    present: int
    estimated: int = 0
    questionable: int = 0
    edited: int = 0
    derived: int = 0

    @property
    def missing(self) -> int:
        return max(self.expected - self.present, 0)

    @property
    def complete(self) -> bool:
        return self.present >= self.expected


class MeterStatus(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the gateway knows of a meter right now."""

    meter_id: str
    timezone: str
    #: "ok", "failing" or "unknown" (never read yet).
    status: str = "unknown"
    last_read_at: datetime | None = None
    last_error: str | None = None
    protocol: str = ""
    profile: str = ""
