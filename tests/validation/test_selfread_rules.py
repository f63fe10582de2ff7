"""Self-read decisions, pure: every refusal reason, wraps, windows, time zones and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.series import SeriesConfig
from gateway.model import Flag, Unit
from gateway.validation.rollover import RegisterTracker, TrackerState
from gateway.validation.selfread import (
    Accepted,
    Code,
    Outcome,
    Refusal,
    Register,
    Window,
    against_recorded,
    describe,
    judge,
    next_opening,
    parse_value,
    window_open,
)

CHICAGO = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)  # 12:00 in Chicago


def register(digits: int | None = 5, max_power_w: int = 10_000, decimals: int = 0,
             unit: Unit = Unit.KWH) -> Register:
    """A register with the rules its series would get (SeriesConfig's tracker config)."""
    modulus = None if digits is None else Decimal(10) ** (digits - decimals) * unit.factor
    cfg = SeriesConfig(meter_id="H1", channel="1.0.1.8.0.255", unit=unit, modulus=modulus,
                       max_power_w=Decimal(max_power_w), future_tolerance_s=120)
    return Register(unit=unit, digits=digits, decimals=decimals, tracker=cfg.tracker_config(),
                    future_tolerance_s=cfg.future_tolerance_s)


def last(value: str, days_before_now: float) -> TrackerState:
    at = NOW - timedelta(days=days_before_now)
    return TrackerState(last_at_ms=int(at.timestamp() * 1000),
                        last_value=Decimal(value) * 1000)


# -- parsing: exact, and every way a typed value can be wrong ---------------------------

@pytest.mark.parametrize(("raw", "digits", "decimals", "expected"), [
    ("12345.6", None, 0, Decimal("12345.6")),
    ("00030", 5, 0, Decimal(30)),
    (" 42 ", 5, 0, Decimal(42)),
    (42, 5, 0, Decimal(42)),
    ("99999", 5, 0, Decimal(99999)),
    ("99999.9", 6, 1, Decimal("99999.9")),
    ("0.1", None, 0, Decimal("0.1")),  # exact: not 0.1000000000000000055511151231257827
    ("abc", 5, 0, Code.NOT_A_NUMBER),
    ("", 5, 0, Code.NOT_A_NUMBER),
    ("NaN", 5, 0, Code.NOT_A_NUMBER),
    ("Infinity", 5, 0, Code.NOT_A_NUMBER),
    ("1e3", 5, 0, Code.NOT_A_NUMBER),
    ("12,345", 5, 0, Code.NOT_A_NUMBER),
    (True, 5, 0, Code.NOT_A_NUMBER),
    (Decimal("NaN"), 5, 0, Code.NOT_A_NUMBER),
    ("-5", 5, 0, Code.NEGATIVE),
    ("100000", 5, 0, Code.TOO_MANY_DIGITS),
    ("100000.0", 6, 1, Code.TOO_MANY_DIGITS),
    ("1000000000000000", None, 0, Code.TOO_MANY_DIGITS),
])
def test_parse_value(raw: str | int | Decimal, digits: int | None, decimals: int,
                     expected: Decimal | Code) -> None:
    got = parse_value(raw, register(digits=digits, decimals=decimals))
    if isinstance(expected, Code):
        assert isinstance(got, Refusal) and got.code is expected, got
    else:
        assert got == expected and str(got) == str(expected)


def test_a_value_beyond_the_dials_says_what_the_register_shows() -> None:
    got = parse_value("123456", register(digits=5))
    assert isinstance(got, Refusal)
    assert got.message == ("123,456 does not fit the register's 5 dials (it shows at most "
                           "99,999 kWh)")


# -- judging against the last read ------------------------------------------------------

Case = tuple[str, Register, TrackerState | None, str, timedelta, "Code | Outcome", str]
CASES: list[Case] = [
    ("first read", register(), None, "12345", timedelta(0), Outcome.BASELINE,
     "the meter's first reading"),
    ("a rise", register(), last("12000", 10), "12345", timedelta(0), Outcome.CONTINUED,
     "345 kWh used since the last reading, 12,000 kWh on 2026-11-10 12:00"),
    ("no consumption", register(), last("12000", 10), "12000", timedelta(0),
     Outcome.CONTINUED, "0 kWh used"),
    ("the same reading again", register(), last("12000", 0), "12000", timedelta(0),
     Outcome.DUPLICATE, "is already recorded"),
    ("another value for the same instant", register(), last("12000", 0), "12001",
     timedelta(0), Code.CONFLICTING_READ, "12,000 kWh is already recorded"),
    ("stamped before the last read", register(), last("12000", 1), "12100",
     -timedelta(days=2), Outcome.LATE, "before the last reading, 12,000 kWh"),
    ("stamped in the future", register(), last("12000", 10), "12100", timedelta(hours=1),
     Code.FUTURE, "cannot come from the future"),
    ("stamped long ago", register(), None, "12100", -timedelta(days=36), Code.TOO_OLD,
     "more than 35 days ago: submit a current reading"),
    ("a clock a minute fast is tolerated", register(), last("12000", 10), "12100",
     timedelta(minutes=1), Outcome.CONTINUED, "100 kWh used"),
    # The peers' known failure: a drop below 90 % that is a wrap, not a reset.
    ("4-digit 9993 -> 0007 is +14", register(digits=4), last("9993", 1), "0007",
     timedelta(0), Outcome.ROLLOVER, "rolled over since the last reading, 9,993 kWh"),
    ("5-digit 99950 -> 00030 is +80", register(digits=5), last("99950", 3), "00030",
     timedelta(0), Outcome.ROLLOVER, "80 kWh used"),
    ("a drop no wrap explains", register(digits=4), last("9000", 3), "8000", timedelta(0),
     Code.LOWER_THAN_LAST, "8,000 kWh is lower than the last reading, 9,000 kWh on "
     "2026-11-17 12:00; a roll-over past 9,999 would mean 9,000 kWh in 3 days, more than "
     "this meter can use (max 10 kW)"),
    ("a drop on a register that never wraps", register(digits=None), last("9000", 3),
     "8999", timedelta(0), Code.LOWER_THAN_LAST, "and this register does not roll over"),
    ("a jump beyond the rating", register(digits=6), last("1000", 12), "5200",
     timedelta(0), Code.IMPLAUSIBLE_JUMP,
     "4,200 kWh in 12 days is more than this meter can use (max 10 kW)"),
    ("a jump a 30 kW meter can make", register(digits=6, max_power_w=30_000),
     last("1000", 12), "5200", timedelta(0), Outcome.CONTINUED, "4,200 kWh used"),
    ("long enough for several wraps: kept, questionable", register(digits=4),
     last("1000", 60), "2000", timedelta(0), Outcome.CONTINUED, "could have wrapped more"),
]


@pytest.mark.parametrize(("name", "reg", "state", "value", "offset", "expected", "text"),
                         CASES, ids=[c[0] for c in CASES])
def test_judge(name: str, reg: Register, state: TrackerState | None, value: str,
               offset: timedelta, expected: Code | Outcome, text: str) -> None:
    parsed = parse_value(value, reg)
    assert isinstance(parsed, Decimal)
    got = judge(reg, state, parsed, at=NOW + offset, now=NOW, tz=CHICAGO,
                max_age_s=35 * 86_400)
    if isinstance(expected, Code):
        assert isinstance(got, Refusal) and got.code is expected, got
    else:
        assert isinstance(got, Accepted) and got.outcome is expected, got
    assert text in got.message, got.message


def test_a_late_reading_says_what_to_answer_if_no_gap_takes_it() -> None:
    got = judge(register(), last("12000", 1), Decimal(11900), at=NOW - timedelta(days=2),
                now=NOW, tz=CHICAGO)
    assert isinstance(got, Accepted) and got.unless_fitted is not None
    assert got.unless_fitted.code is Code.BEFORE_LAST_READ
    assert got.unless_fitted.message == (
        "the reading is stamped 2026-11-18 12:00, before the last reading, 12,000 kWh on "
        "2026-11-19 12:00, and does not fit between the readings around it")


@pytest.mark.parametrize(("recorded", "expected"), [
    (Decimal(500), Outcome.DUPLICATE), (Decimal(499), Code.CONFLICTING_READ)])
def test_against_a_recorded_reading(recorded: Decimal, expected: Outcome | Code) -> None:
    got = against_recorded(register(), Decimal(500), recorded, at=NOW, tz=CHICAGO)
    if isinstance(expected, Code):
        assert isinstance(got, Refusal) and got.code is expected
        assert got.message == ("499 kWh is already recorded for 2026-11-20 12:00; 500 kWh for "
                               "the same instant contradicts it")
    else:
        assert isinstance(got, Accepted) and got.outcome is expected


def test_a_wrap_reports_the_consumption_and_the_flag() -> None:
    got = judge(register(digits=4), last("9993", 1), Decimal(7), at=NOW, now=NOW)
    assert isinstance(got, Accepted)
    assert (got.consumption, got.previous_value, got.flags) == (
        Decimal(14), Decimal(9993), int(Flag.ROLLOVER))


def test_a_reading_that_confirms_a_held_reset_says_so() -> None:
    held = TrackerState(last_at_ms=last("9000", 3).last_at_ms, last_value=Decimal(9_000_000),
                        held_at_ms=last("0", 2).last_at_ms, held_value=Decimal(0))
    got = judge(register(digits=None), held, Decimal(5), at=NOW, now=NOW)
    assert isinstance(got, Accepted) and got.consumption is None
    assert got.flags & Flag.RESET and "confirms a reset" in got.message


def test_several_possible_wraps_are_flagged() -> None:
    got = judge(register(digits=4), last("1000", 60), Decimal(2000), at=NOW, now=NOW)
    assert isinstance(got, Accepted) and got.flags & Flag.AMBIGUOUS_WRAPS


# -- windows ----------------------------------------------------------------------------

LAST_WEEK = Window(last_days=7)
FIRST_DAYS = Window(from_day=1, to_day=3)
OVER_MONTH_END = Window(from_day=25, to_day=3)


@pytest.mark.parametrize(("window", "day", "holds"), [
    (LAST_WEEK, date(2026, 2, 21), False),
    (LAST_WEEK, date(2026, 2, 22), True),  # 28-day February
    (LAST_WEEK, date(2028, 2, 22), False),
    (LAST_WEEK, date(2028, 2, 23), True),  # leap year
    (LAST_WEEK, date(2026, 12, 31), True),
    (LAST_WEEK, date(2026, 1, 1), False),
    (FIRST_DAYS, date(2026, 1, 3), True),
    (FIRST_DAYS, date(2026, 1, 4), False),
    (OVER_MONTH_END, date(2026, 1, 24), False),
    (OVER_MONTH_END, date(2026, 1, 25), True),
    (OVER_MONTH_END, date(2026, 2, 3), True),
    (OVER_MONTH_END, date(2026, 2, 4), False),
    (Window(from_day=30, to_day=31), date(2026, 2, 28), True),  # past the end: its last day
    (Window(from_day=30, to_day=31), date(2026, 2, 27), False),
])
def test_window_holds(window: Window, day: date, holds: bool) -> None:
    assert window.holds(day) is holds


@pytest.mark.parametrize(("windows", "day", "opens"), [
    ([LAST_WEEK], date(2026, 11, 3), date(2026, 11, 24)),
    ([LAST_WEEK], date(2026, 2, 1), date(2026, 2, 22)),
    ([FIRST_DAYS], date(2026, 12, 4), date(2027, 1, 1)),  # over the year end
    ([LAST_WEEK, FIRST_DAYS], date(2026, 11, 3), date(2026, 11, 24)),
    ([LAST_WEEK, FIRST_DAYS], date(2026, 11, 30), date(2026, 12, 1)),
    ([], date(2026, 11, 3), date(2026, 11, 4)),
])
def test_next_opening(windows: list[Window], day: date, opens: date) -> None:
    assert next_opening(windows, day) == opens


def test_windows_describe_themselves() -> None:
    assert describe([LAST_WEEK, FIRST_DAYS, OVER_MONTH_END]) == (
        "the last 7 days of the month; or days 1 to 3 of the month; or day 25 of a month "
        "to day 3 of the next")
    assert describe([]) == "any day" and window_open([], date(2026, 1, 9))


def _window_verdict(now: datetime, tz: str, windows: list[Window]) -> Accepted | Refusal:
    return judge(register(), None, Decimal(1), at=now, now=now, windows=windows,
                 tz=ZoneInfo(tz))


@pytest.mark.parametrize(("now", "tz", "windows", "next_date"), [
    # Auckland is already in December when UTC is still on 30 November.
    (datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "UTC", [LAST_WEEK], None),
    (datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "Pacific/Auckland", [LAST_WEEK],
     "2026-12-25"),
    # Chicago on the 25-hour day: 04:59Z is 23:59 CDT on 31 Oct, 05:00Z is 1 Nov.
    (datetime(2026, 11, 1, 4, 59, tzinfo=UTC), "America/Chicago", [LAST_WEEK], None),
    (datetime(2026, 11, 1, 5, 0, tzinfo=UTC), "America/Chicago", [LAST_WEEK], "2026-11-24"),
    # ... and on the 23-hour day (8 March): midnight CST at 06:00Z, the next one CDT at 05:00Z.
    (datetime(2026, 3, 8, 5, 59, tzinfo=UTC), "America/Chicago",
     [Window(from_day=8, to_day=8)], "2026-03-08"),
    (datetime(2026, 3, 8, 6, 0, tzinfo=UTC), "America/Chicago",
     [Window(from_day=8, to_day=8)], None),
    (datetime(2026, 3, 9, 4, 59, tzinfo=UTC), "America/Chicago",
     [Window(from_day=8, to_day=8)], None),
    (datetime(2026, 3, 9, 5, 0, tzinfo=UTC), "America/Chicago",
     [Window(from_day=8, to_day=8)], "2026-04-08"),
])
def test_windows_are_judged_on_the_local_date_of_the_submission(
        now: datetime, tz: str, windows: list[Window], next_date: str | None) -> None:
    got = _window_verdict(now, tz, windows)
    if next_date is None:
        assert isinstance(got, Accepted), got
    else:
        assert isinstance(got, Refusal) and got.code is Code.OUT_OF_WINDOW
        assert f"the next window opens on {next_date}" in got.message
        assert tz in got.message


def test_the_window_is_that_of_the_submission_not_of_the_reading() -> None:
    # Read on the 28th (in the window), typed in on the 2nd of the next month: refused.
    now = datetime(2026, 12, 2, 18, tzinfo=UTC)
    got = judge(register(), None, Decimal(1), at=datetime(2026, 11, 28, 18, tzinfo=UTC),
                now=now, windows=[LAST_WEEK], tz=CHICAGO)
    assert isinstance(got, Refusal) and got.code is Code.OUT_OF_WINDOW


@settings(max_examples=60, deadline=None)
@given(digits=st.integers(min_value=3, max_value=6),
       steps=st.lists(st.tuples(st.integers(min_value=1, max_value=240),  # hours apart
                                st.integers(min_value=0, max_value=100)),  # % of the rating
                      min_size=1, max_size=12),
       start=st.integers(min_value=0, max_value=999))
def test_readings_within_the_rating_are_taken_and_sum_to_the_advance(
        digits: int, steps: list[tuple[int, int]], start: int) -> None:
    """Typed-in readings of a small register (1 kW, at least 1,000 kWh to a turn, so at
    most one turn between two readings 240 h apart), wrapping any number of times: each
    is taken, a wrap unwrapped, and the consumption reported adds up to the advance."""
    reg = register(digits=digits, max_power_w=1_000)
    modulus = 10 ** digits
    tracker = RegisterTracker(reg.tracker)
    at = NOW - timedelta(days=100)
    real = start % modulus
    assert isinstance(judge(reg, None, Decimal(real), at=at, now=NOW), Accepted)
    tracker.feed(int(at.timestamp() * 1000), Decimal(real) * 1000)
    used = Decimal(0)
    for hours, percent in steps:
        at += timedelta(hours=hours)
        advance = hours * percent // 100  # kWh: within the 1 kW rating
        real += advance
        shown = Decimal(real % modulus)
        got = judge(reg, tracker.snapshot(), shown, at=at, now=at)
        assert isinstance(got, Accepted) and got.consumption == advance, got
        wrapped = (real - advance) % modulus + advance >= modulus  # past the last dial
        assert (got.outcome is Outcome.ROLLOVER) == wrapped
        used += got.consumption
        tracker.feed(int(at.timestamp() * 1000), shown * 1000)
    assert used == real - start % modulus
