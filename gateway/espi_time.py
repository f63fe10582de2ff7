"""ESPI LocalTimeParameters: a zone's UTC offset and DST rules as the standard encodes them.

NAESB ESPI 3.3 ``TimeConfiguration`` (usage.xsd, element ``LocalTimeParameters``) holds
``tzOffset`` (seconds east of UTC, without DST), ``dstOffset`` (seconds DST adds) and
``dstStartRule``/``dstEndRule``: each a 32-bit ``DstRuleType`` written as 8 hex digits:

    bits  0-11 seconds (0-3599)      bits 12-16 hour (0-23)
    bits 17-19 day of week (1 = Monday .. 7 = Sunday, 0 = n/a)
    bits 20-24 day of month (0 = n/a)   bits 25-27 operator   bits 28-31 month (1-12)

Operators: 0 on the day of month; 1 the weekday on or after the day of month; 2-6 the
first..fifth such weekday of the month; 7 the last. ``FFFFFFFF`` disables DST.

What we encode: the zone's two transitions in the export's year (found in the tz
database through ``zoneinfo``), each as the local wall-clock time *before* the change
(America/Chicago: 02:00 on the second Sunday of March, 02:00 on the first Sunday of
November, which is the OpenESPI samples' ``360E2000``/``B40E2000``). The operator is
the first of "nth weekday", "last weekday", "day of month" that also reproduces the
neighbouring years' transitions, so a rule stays right beyond the export's year where
the zone's rules allow it; else the day of month, exact for the export's year.
A zone without DST in that year gets ``FFFFFFFF`` and ``dstOffset`` 0.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

DST_DISABLED = "FFFFFFFF"


class LocalTime(msgspec.Struct, frozen=True, kw_only=True):
    tz_offset_s: int
    dst_offset_s: int
    dst_start_rule: str
    dst_end_rule: str


class _Rule(msgspec.Struct, frozen=True):
    month: int
    operator: int
    weekday: int  # 1 = Monday .. 7 = Sunday, 0 = not applicable
    day: int  # day of month, 0 = not applicable

    def date_in(self, year: int) -> date:
        days = calendar.monthrange(year, self.month)[1]
        if self.operator == 0:
            return date(year, self.month, self.day)
        if self.operator == 1:
            first = date(year, self.month, self.day)
            return first + timedelta(days=(self.weekday - first.isoweekday()) % 7)
        if self.operator == 7:
            last = date(year, self.month, days)
            return last - timedelta(days=(last.isoweekday() - self.weekday) % 7)
        first = date(year, self.month, 1)
        nth = first + timedelta(days=(self.weekday - first.isoweekday()) % 7)
        return nth + timedelta(weeks=self.operator - 2)


def encode_rule(month: int, operator: int, weekday: int, day: int, hour: int,
                seconds: int) -> str:
    """The 8 hex digits of one ``DstRuleType``."""
    bits = (month << 28) | (operator << 25) | (day << 20) | (weekday << 17) | (hour << 12)
    return f"{bits | seconds:08X}"


def _transitions(tz: ZoneInfo, year: int) -> list[datetime]:
    """UTC instants in ``year`` at which the zone's UTC offset changes, to the second."""
    found: list[datetime] = []
    at = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(hours=12)
    while at < end:
        nxt = min(at + step, end)
        if at.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = at, nxt  # offset(lo) != offset(hi): bisect to the changing second
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi.replace(microsecond=0))
        at = nxt
    return found


def _candidates(day: date) -> list[_Rule]:
    nth = (day.day - 1) // 7 + 1
    rules = [_Rule(day.month, nth + 1, day.isoweekday(), 0)]
    if day.day + 7 > calendar.monthrange(day.year, day.month)[1]:
        rules.append(_Rule(day.month, 7, day.isoweekday(), 0))
    rules.append(_Rule(day.month, 0, 0, day.day))
    return rules


def _rule_for(tz: ZoneInfo, change: datetime, index: int, year: int) -> str:
    """Encode the ``index``-th transition of ``year``; ``change`` is its UTC instant."""
    before = (change - timedelta(seconds=1)).astimezone(tz) + timedelta(seconds=1)
    wall = before.replace(tzinfo=None)  # wall clock before the change (02:00, not 01:59:59)
    neighbours = {y: _transitions(tz, y) for y in (year - 1, year + 1)}
    chosen = _candidates(wall.date())[-1]
    for rule in _candidates(wall.date()):
        if all(len(ts) > index and (ts[index] - timedelta(seconds=1)).astimezone(tz).date()
               == rule.date_in(y) for y, ts in neighbours.items()):
            chosen = rule
            break
    return encode_rule(chosen.month, chosen.operator, chosen.weekday, chosen.day,
                       wall.hour, wall.minute * 60 + wall.second)


def local_time(timezone: str, year: int) -> LocalTime:
    """The zone's ``LocalTimeParameters`` for ``year`` (see the module docs)."""
    tz = ZoneInfo(timezone)
    changes = _transitions(tz, year)
    jan = datetime(year, 1, 1, tzinfo=UTC).astimezone(tz)
    std = (jan.utcoffset() or timedelta()) - (jan.dst() or timedelta())
    if len(changes) != 2:  # no DST (or a one-off change of standard time): rules off
        return LocalTime(tz_offset_s=int(std.total_seconds()), dst_offset_s=0,
                         dst_start_rule=DST_DISABLED, dst_end_rule=DST_DISABLED)
    into_dst = [bool(c.astimezone(tz).dst()) for c in changes]
    start_i, end_i = (0, 1) if into_dst[0] else (1, 0)
    dst = changes[start_i].astimezone(tz).dst() or timedelta()
    return LocalTime(
        tz_offset_s=int(std.total_seconds()), dst_offset_s=int(dst.total_seconds()),
        dst_start_rule=_rule_for(tz, changes[start_i], start_i, year),
        dst_end_rule=_rule_for(tz, changes[end_i], end_i, year))
