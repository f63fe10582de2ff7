"""Reading intervals and daily usage back from InfluxDB (the lines of ``influx_line``).

``daily`` must give exactly what ``SqliteStore.daily`` gives: the series' local day in
its timezone (23 or 25 hours on DST days), ``expected`` = intervals that day holds,
present/estimated/questionable/edited/derived counted by quality as ``_ROLLUP_JSON``
does, and only days with data.

Query strategy, chosen by measurement (``benchmarks/influx_daily.py``: InfluxDB 1.6.7,
one meter x 1 year of 15-minute data = 35,040 points, same host, best of 5):

- InfluxQL aggregation, five statements in one request (sum+count, then one count per
  quality class), ``GROUP BY time(1d) tz('<zone>')``: 58 ms. 1.6 does align its
  buckets on local midnight on DST days (checked: 92 and 100 quarter-hours on Chicago's
  and Berlin's 2026 spring-forward and fall-back days, in the tests).
- Fetching the range's intervals (pages of 10,000) and summing them per
  ``sqlite.day_bounds`` day in Python: 192 ms (3.3x).

So ``daily`` aggregates in the server, and then checks the buckets it got: one per
local day, each starting at ``day_bounds``' local midnight, the same in every statement.
A zone whose clocks jump at midnight fails that check (America/Havana on 1.6: the
fall-back day's buckets start at different instants in different statements), as would
a server whose tz handling differs; the range is then fetched and summed in Python,
which is exact by construction (``fallbacks`` counts those). ``expected`` always comes
from ``day_bounds``: the server does not know the grid. ``aggregate=False`` forces the
Python path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from gateway.errors import SinkError
from gateway.model import DailyUsage, IntervalReading, Quality
from gateway.sinks.influx_http import InfluxAuth, InfluxHttp, quote_ident, quote_string
from gateway.sinks.influx_line import MEASUREMENT
from gateway.store import SeriesInfo
from gateway.store.sqlite import day_bounds

#: Rows per query when fetching intervals (servers may cap a response's rows).
PAGE_ROWS = 10_000
_ESTIMATED = (int(Quality.ESTIMATED_LINEAR), int(Quality.ESTIMATED_REFERENCE_DAY))
_COUNTED = {  # DailyUsage field -> the qualities it counts (as in sqlite._ROLLUP_JSON)
    "estimated": _ESTIMATED,
    "questionable": (int(Quality.QUESTIONABLE),),
    "edited": (int(Quality.EDITED),),
    "derived": (int(Quality.DERIVED),),
}
_FIELDS = "value, quality, flags, raw, length_s"


class InfluxReader:
    """Intervals and daily usage of one database's ``interval`` measurement."""

    def __init__(self, url: str, database: str, *, auth: InfluxAuth | None = None,
                 retention_policy: str | None = None, timeout_s: float = 30.0,
                 retries: int = 2, aggregate: bool = True) -> None:
        self._http = InfluxHttp(url, database, auth=auth, retention_policy=retention_policy,
                                timeout_s=timeout_s, retries=retries)
        self._aggregate = aggregate
        #: daily() calls whose server-side buckets were not the local days (summed here).
        self.fallbacks = 0
        self._from = quote_ident(MEASUREMENT)
        if retention_policy:
            self._from = f"{quote_ident(database)}.{quote_ident(retention_policy)}.{self._from}"

    async def open(self) -> None:
        await self._http.open()

    async def close(self) -> None:
        await self._http.close()

    def _where(self, series: SeriesInfo, lo: int, hi: int) -> str:
        return (f"FROM {self._from} WHERE meter_id = {quote_string(series.meter_id)} "
                f"AND channel = {quote_string(series.channel)} "
                f"AND time >= {lo}s AND time < {hi}s")

    async def intervals(self, series: SeriesInfo, start: datetime,
                        end: datetime) -> list[IntervalReading]:
        """Intervals whose start lies in ``[start, end)``, oldest first."""
        lo, hi = int(start.timestamp()), int(end.timestamp())
        out: list[IntervalReading] = []
        while lo < hi:
            rows = await self._rows(
                f"SELECT {_FIELDS} {self._where(series, lo, hi)} ORDER BY time ASC "
                f"LIMIT {PAGE_ROWS}")
            out.extend(_reading(series, row) for row in rows)
            if len(rows) < PAGE_ROWS:
                break
            lo = int(out[-1].start.timestamp()) + 1
        return out

    async def _rows(self, q: str) -> list[list[int | float | str | bool | None]]:
        results = await self._http.query(q)
        if not results or not results[0].series:
            return []
        return results[0].series[0].values

    async def daily(self, series: SeriesInfo, first: date, last: date) -> list[DailyUsage]:
        """Daily usage for each local day from ``first`` to ``last`` inclusive with data."""
        if last < first:
            return []
        tz = ZoneInfo(series.timezone)
        lo, hi = day_bounds(first, tz)[0], day_bounds(last, tz)[1]
        if self._aggregate:
            days = await self._daily_in_server(series, tz, first, last, lo, hi)
            if days is not None:
                return days
            self.fallbacks += 1
        return _sum_days(series, tz, await self.intervals(
            series, datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)))

    async def _daily_in_server(self, series: SeriesInfo, tz: ZoneInfo, first: date,
                               last: date, lo: int, hi: int) -> list[DailyUsage] | None:
        """Server-side rollup, or None when its buckets are not the local days."""
        where = self._where(series, lo, hi)
        group = f" GROUP BY time(1d) tz({quote_string(series.timezone)})"
        statements = [f"SELECT sum(value), count(value) {where}{group}"]
        for qualities in _COUNTED.values():
            cond = " OR ".join(f"quality = {q}" for q in qualities)
            statements.append(f"SELECT count(value) {where} AND ({cond}){group}")
        results = await self._http.query(";".join(statements))
        if len(results) != len(statements):
            return None
        columns = [_by_time(r.series[0].values if r.series else []) for r in results]
        totals = columns[0]
        n_days = (last - first).days + 1
        if not totals:
            return []
        if len(totals) != n_days or any(c and c.keys() != totals.keys() for c in columns):
            return None  # buckets differ between statements (seen in Havana): not days
        out: list[DailyUsage] = []
        for at, row in sorted(totals.items()):
            day = datetime.fromtimestamp(at, tz).date()
            day_lo, day_hi = day_bounds(day, tz)
            if at != day_lo:
                return None  # not the local day: let Python sum it
            count = row[2]
            if not isinstance(count, int) or count == 0:
                continue
            counts = [_int(c.get(at, [None, None])[1]) for c in columns[1:]]
            out.append(DailyUsage(
                meter_id=series.meter_id, channel=series.channel, day=day,
                value=_int(row[1]), unit=series.unit,
                expected=(day_hi - day_lo) // series.interval_s, present=count,
                **dict(zip(_COUNTED, counts, strict=True)),
            ))
        return out


Row = Sequence[int | float | str | bool | None]


def _by_time(values: list[list[int | float | str | bool | None]]) -> dict[int, Row]:
    return {int(row[0]): row for row in values if isinstance(row[0], int)}


def _int(value: int | float | str | bool | None) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise SinkError(f"InfluxDB returned {value!r} where an integer was stored; the "
                        "field was written with another type", retryable=False)
    return value


def _reading(series: SeriesInfo, row: Row) -> IntervalReading:
    at, value, quality, flags, raw, length_s = row
    return IntervalReading(
        meter_id=series.meter_id, channel=series.channel,
        start=datetime.fromtimestamp(_int(at), UTC), length_s=_int(length_s),
        value=_int(value), unit=series.unit, quality=Quality(_int(quality)),
        flags=_int(flags), raw=None if raw is None else _int(raw),
    )


def _sum_days(series: SeriesInfo, tz: ZoneInfo,
              readings: list[IntervalReading]) -> list[DailyUsage]:
    """The rollup of ``_ROLLUP_JSON``, in Python, over ``day_bounds`` days."""
    out: list[DailyUsage] = []
    day_lo = day_hi = 0
    acc: dict[str, int] = {}
    day = date.min
    for r in readings:
        at = int(r.start.timestamp())
        if not day_lo <= at < day_hi:
            if acc:
                out.append(_usage(series, day, day_lo, day_hi, acc))
            day = datetime.fromtimestamp(at, tz).date()
            day_lo, day_hi = day_bounds(day, tz)
            acc = dict.fromkeys(("value", "present", *_COUNTED), 0)
        acc["value"] += r.value
        acc["present"] += 1
        for name, qualities in _COUNTED.items():
            acc[name] += int(r.quality) in qualities
    if acc:
        out.append(_usage(series, day, day_lo, day_hi, acc))
    return out


def _usage(series: SeriesInfo, day: date, lo: int, hi: int, acc: dict[str, int]) -> DailyUsage:
    return DailyUsage(meter_id=series.meter_id, channel=series.channel, day=day,
                      unit=series.unit, expected=(hi - lo) // series.interval_s, **acc)

