"""Customer self-reads: what to make of a register reading typed in by a person.

Pure: no I/O and no clock. The caller passes the submission time (``now``), the
series' register tracker state as saved with its cursor, and the utility's windows;
``judge`` answers ``Accepted`` or a ``Refusal`` with a stable machine ``code`` and a
message a customer can act on.

A self-read goes through the same register rules as a polled read: ``judge`` runs a
copy of the series' ``RegisterTracker`` (``gateway.validation.rollover``) from its
saved state and translates its verdict. Where a poll would be *held* until the next
read decides (a drop no plausible wrap explains, a rise beyond the rating), a person
is still there to check the dials: the reading is refused instead, with the figures.

A reading stamped before the last one is ``Outcome.LATE``: the series takes it only if
it fits the gap between the readings around it (its backfill rule re-derives that gap's
estimates with it); the caller checks that on a copy of the series and otherwise answers
``Accepted.unless_fitted``. A reading for an instant already recorded is judged by
``against_recorded`` (the same value again is accepted as a duplicate).

Windows are judged on the local date of the submission in the meter's timezone, not
on the date the reading is stamped with.
"""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec

from gateway.model import Flag, Unit
from gateway.validation.rollover import (
    Notice,
    RegisterTracker,
    TrackerConfig,
    TrackerState,
    Verdict,
)

__all__ = ["Accepted", "Code", "Outcome", "Refusal", "Register", "Window", "against_recorded",
           "describe", "judge", "next_opening", "parse_value", "window_open"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC = ZoneInfo("UTC")
_MS = timedelta(milliseconds=1)
#: Beyond 10^15 of its unit no register counts (the series refuses it too).
_MAX = Decimal(10) ** 15
#: Plain decimal notation: digits with an optional point. No exponent, no separators:
#: "12,345" could be twelve thousand or twelve point three.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_POWER = {Unit.WH: "W", Unit.VARH: "var", Unit.VAH: "VA"}


class Code(enum.StrEnum):
    """Why a self-read was refused: stable codes for programs (API ``error``, CLI)."""

    NOT_A_NUMBER = "not_a_number"
    NEGATIVE = "negative"
    TOO_MANY_DIGITS = "too_many_digits"
    OUT_OF_WINDOW = "out_of_window"
    FUTURE = "future"
    TOO_OLD = "too_old"
    BEFORE_LAST_READ = "before_last_read"
    CONFLICTING_READ = "conflicting_read"
    LOWER_THAN_LAST = "lower_than_last"
    IMPLAUSIBLE_JUMP = "implausible_jump"
    #: The series' rules refused it for a reason none of the above names.
    NOT_USABLE = "not_usable"
    UNKNOWN_METER = "unknown_meter"
    UNKNOWN_CHANNEL = "unknown_channel"
    #: The meter is polled: a self-read would race its poller (see the shell).
    POLLED_METER = "polled_meter"
    #: Another process kept writing the series while this reading was being recorded.
    BUSY = "busy"
    #: The request itself is malformed (not JSON, a time without an offset, a bad key).
    INVALID_REQUEST = "invalid_request"


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    code: Code
    message: str


class Outcome(enum.StrEnum):
    BASELINE = "baseline"  # the series' first reading: consumption counts from the next
    CONTINUED = "continued"
    ROLLOVER = "rollover"  # the register wrapped past its last dial, unwrapped
    DUPLICATE = "duplicate"  # a recorded reading again (same instant and value): nothing new
    #: Stamped before the last reading: taken only if the series fits it into the gap
    #: between two readings (a backfill re-derives that gap's estimates with it).
    LATE = "late"


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Outcome
    message: str
    #: Consumption since the previous reading, in the register's unit (None: baseline).
    consumption: Decimal | None = None
    previous_at: datetime | None = None
    previous_value: Decimal | None = None
    #: Rule flags the reading itself raised (ROLLOVER, AMBIGUOUS_WRAPS, RESET).
    flags: int = 0
    #: For a LATE reading: the answer if the series does not fit it into a gap (the
    #: caller adds the series' reason).
    unless_fitted: Refusal | None = None


class Register(msgspec.Struct, frozen=True, kw_only=True):
    """One register as the person reads it, and the series' rules for it."""

    unit: Unit
    #: Dials shown, and how many of them are after the point; None: it never wraps.
    digits: int | None = None
    decimals: int = 0
    #: The series' register rules (base units: Wh for a kWh register).
    tracker: TrackerConfig
    future_tolerance_s: int = 120

    @property
    def modulus(self) -> Decimal | None:
        """Where the register wraps, in its unit."""
        return None if self.digits is None else Decimal(10) ** (self.digits - self.decimals)


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """Days of every month on which self-reads are taken (see settings.SelfReadWindow):
    the last ``last_days`` days, or ``from_day`` to ``to_day``, over the month end when
    from_day > to_day. A day past a month's end stands for its last day, so every
    window holds at least one day of every month."""

    last_days: int | None = None
    from_day: int = 1
    to_day: int = 31

    def holds(self, day: date) -> bool:
        length = calendar.monthrange(day.year, day.month)[1]
        if self.last_days is not None:
            return day.day > length - self.last_days
        lo, hi = min(self.from_day, length), min(self.to_day, length)
        if self.from_day <= self.to_day:
            return lo <= day.day <= hi
        return day.day >= lo or day.day <= hi

    def describe(self) -> str:
        if self.last_days is not None:
            return ("the last day of the month" if self.last_days == 1
                    else f"the last {self.last_days} days of the month")
        if self.from_day <= self.to_day:
            return f"days {self.from_day} to {self.to_day} of the month"
        return f"day {self.from_day} of a month to day {self.to_day} of the next"


def describe(windows: Sequence[Window]) -> str:
    return "; or ".join(w.describe() for w in windows) if windows else "any day"


def window_open(windows: Sequence[Window], day: date) -> bool:
    """Whether a submission on local ``day`` is taken (no windows: every day)."""
    return not windows or any(w.holds(day) for w in windows)


def next_opening(windows: Sequence[Window], day: date) -> date:
    """The first local date after ``day`` on which a window holds."""
    if not windows:
        return day + timedelta(days=1)
    candidate = day + timedelta(days=1)
    while not window_open(windows, candidate):  # at most two months: see Window
        candidate += timedelta(days=1)
    return candidate


def parse_value(raw: str | int | Decimal, register: Register) -> Decimal | Refusal:
    """The typed-in value, exactly, or why it is not a reading of this register."""
    if isinstance(raw, bool):  # JSON true is no reading (and bool is an int)
        return Refusal(code=Code.NOT_A_NUMBER, message=f"{raw!r} is not a number")
    if isinstance(raw, str):
        text = raw.strip()
        if not _NUMBER.fullmatch(text):
            return Refusal(code=Code.NOT_A_NUMBER, message=(
                f"{raw!r} is not a number: give the digits the register shows, with a "
                "decimal point if it has decimal dials (e.g. 12345 or 12345.6)"))
        value = Decimal(text)
    else:
        value = Decimal(raw)
    if not value.is_finite():
        return Refusal(code=Code.NOT_A_NUMBER, message=f"{raw} is not a number")
    if value < 0:
        return Refusal(code=Code.NEGATIVE,
                       message=f"{_num(value)} is negative; a register never shows that")
    modulus = register.modulus
    if modulus is not None and value >= modulus:
        top = modulus - Decimal(1).scaleb(-register.decimals)
        return Refusal(code=Code.TOO_MANY_DIGITS, message=(
            f"{_num(value)} does not fit the register's {register.digits} dials "
            f"(it shows at most {_num(top)} {register.unit})"))
    if value >= _MAX:
        return Refusal(code=Code.TOO_MANY_DIGITS,
                       message=f"{_num(value)} {register.unit} is beyond what any meter counts")
    return value


def judge(register: Register, state: TrackerState | None, value: Decimal, *,
          at: datetime, now: datetime, windows: Sequence[Window] = (),
          tz: ZoneInfo = _UTC, max_age_s: int | None = None) -> Accepted | Refusal:
    """What the series' rules make of ``value`` (a parsed reading) stamped ``at``,
    submitted at ``now``, after the reads ``state`` remembers. See the module doc."""
    today = now.astimezone(tz).date()
    if not window_open(windows, today):
        return Refusal(code=Code.OUT_OF_WINDOW, message=(
            f"self-reads are taken on {describe(windows)} ({tz.key}); today is {today} "
            f"there: the next window opens on {next_opening(windows, today)}"))
    at_ms, now_ms = (at - _EPOCH) // _MS, (now - _EPOCH) // _MS
    if at_ms > now_ms + register.future_tolerance_s * 1000:
        return Refusal(code=Code.FUTURE, message=(
            f"the reading is stamped {_local(at_ms, tz)}, later than now "
            f"({_local(now_ms, tz)} {tz.key}): a reading cannot come from the future"))
    if max_age_s is not None and now_ms - at_ms > max_age_s * 1000:
        return Refusal(code=Code.TOO_OLD, message=(
            f"the reading is stamped {_local(at_ms, tz)}, more than {_span(max_age_s * 1000)} "
            "ago: submit a current reading"))
    factor = register.unit.factor
    tracker = RegisterTracker(register.tracker, state)
    last_at = tracker.snapshot().last_at_ms
    last_v = tracker.snapshot().last_value
    previous = None if last_v is None else last_v / factor
    outcome = tracker.feed(at_ms, value * factor)
    mine = {n.verdict: n for n in outcome.notices if n.at_ms == at_ms}
    shown = f"{_num(value)} {register.unit}"
    if last_at is None or previous is None:
        if Verdict.BASELINE in mine:
            return Accepted(outcome=Outcome.BASELINE, message=(
                f"recorded {shown}: the meter's first reading; consumption counts from the "
                "next one"))
        return _unusable(outcome.notices)
    since = f"the last reading, {_num(previous)} {register.unit} on {_local(last_at, tz)}"
    elapsed_ms = at_ms - last_at
    if not outcome.points and not outcome.notices:
        return Accepted(outcome=Outcome.DUPLICATE, previous_at=_at(last_at),
                        previous_value=previous,
                        message=f"{shown} at {_local(at_ms, tz)} is already recorded")
    if Verdict.STALE in mine:
        return Accepted(
            outcome=Outcome.LATE, previous_at=_at(last_at), previous_value=previous,
            message=(f"recorded {shown} stamped {_local(at_ms, tz)}, before {since}: the "
                     "estimates between the readings around it are re-derived with it"),
            unless_fitted=Refusal(code=Code.BEFORE_LAST_READ, message=(
                f"the reading is stamped {_local(at_ms, tz)}, before {since}, and does not "
                "fit between the readings around it")))
    if Verdict.CONFLICT in mine:
        return Refusal(code=Code.CONFLICTING_READ, message=(
            f"{_num(previous)} {register.unit} is already recorded for {_local(at_ms, tz)}; "
            f"{shown} for the same instant contradicts it"))
    held = mine.get(Verdict.HELD)
    limit = _limit(register, elapsed_ms)
    if held is not None and held.flags & Flag.OVER_MAX:
        return Refusal(code=Code.IMPLAUSIBLE_JUMP, message=(
            f"{_num(value - previous)} {register.unit} in {_span(elapsed_ms)} is more than "
            f"this meter can use{limit}: {since}; check the reading"))
    if held is not None:
        modulus = register.modulus
        why = " and this register does not roll over" if modulus is None else (
            f"; a roll-over past {_num(modulus - Decimal(1).scaleb(-register.decimals))} "
            f"would mean {_num(value + modulus - previous)} {register.unit} in "
            f"{_span(elapsed_ms)}, more than this meter can use{limit}")
        return Refusal(code=Code.LOWER_THAN_LAST,
                       message=f"{shown} is lower than {since}{why}: check the reading")
    if not outcome.points or any(n.verdict is Verdict.OUT_OF_RANGE for n in mine.values()):
        return _unusable(outcome.notices)
    flags = 0
    for notice in mine.values():
        flags |= notice.flags
    reset = next((n for n in outcome.notices if n.verdict is Verdict.RESET), None)
    if reset is not None:  # a read held earlier (not a self-read: those are never held)
        return Accepted(outcome=Outcome.CONTINUED, previous_at=_at(last_at),
                        previous_value=previous, flags=flags | reset.flags, message=(
                            f"recorded {shown}; it confirms a reset of the register held "
                            f"since an earlier reading: {reset.reason}"))
    notes = "".join(f"; {n.reason}" for n in mine.values() if n.verdict is Verdict.AMBIGUOUS)
    if Verdict.ROLLOVER in mine:
        assert register.modulus is not None, "the tracker wraps only with a modulus"
        used = value + register.modulus - previous
        return Accepted(outcome=Outcome.ROLLOVER, consumption=used, previous_at=_at(last_at),
                        previous_value=previous, flags=flags, message=(
                            f"recorded {shown}: the register rolled over since {since}; "
                            f"{_num(used)} {register.unit} used{notes}"))
    used = value - previous
    return Accepted(outcome=Outcome.CONTINUED, consumption=used, previous_at=_at(last_at),
                    previous_value=previous, flags=flags, message=(
                        f"recorded {shown}: {_num(used)} {register.unit} used since "
                        f"{since}{notes}"))


def against_recorded(register: Register, value: Decimal, recorded: Decimal, *,
                     at: datetime, tz: ZoneInfo = _UTC) -> Accepted | Refusal:
    """A reading stamped at the instant of one already recorded (found by the caller in
    the audit): the same value is that reading again, another contradicts it."""
    when = _local((at - _EPOCH) // _MS, tz)
    if value == recorded:
        return Accepted(outcome=Outcome.DUPLICATE,
                        message=f"{_num(value)} {register.unit} at {when} is already recorded")
    return Refusal(code=Code.CONFLICTING_READ, message=(
        f"{_num(recorded)} {register.unit} is already recorded for {when}; "
        f"{_num(value)} {register.unit} for the same instant contradicts it"))


def _unusable(notices: Sequence[Notice]) -> Refusal:
    reasons = "; ".join(n.reason for n in notices) or "no reason given"
    return Refusal(code=Code.NOT_USABLE, message=f"the reading cannot be used: {reasons}")


def _limit(register: Register, elapsed_ms: int) -> str:
    rating = register.tracker.max_power_w
    if rating is None:
        return ""
    power = _POWER.get(register.unit.base, f"{register.unit.base}/h")
    if rating >= 1000:
        return f" (max {_num(rating / 1000)} k{power})"
    return f" (max {_num(rating)} {power})"


def _num(value: Decimal) -> str:
    """12345.6 -> '12,345.6', exactly (no float, no exponent)."""
    if value == value.to_integral_value():
        value = value.quantize(Decimal(1))
    return f"{value:,f}"


def _span(ms: int) -> str:
    hours = ms / 3_600_000
    if hours >= 48:
        return f"{hours / 24:.1f} days".replace(".0 ", " ")
    if hours >= 2:
        return f"{hours:.1f} hours".replace(".0 ", " ")
    return f"{max(round(ms / 60_000), 1)} minutes" if ms >= 90_000 else f"{ms // 1000} s"


def _at(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC)


def _local(at_ms: int, tz: ZoneInfo) -> str:
    return _at(at_ms).astimezone(tz).strftime("%Y-%m-%d %H:%M")
