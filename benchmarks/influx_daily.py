"""InfluxDB reader: daily usage of one meter x 1 year of 15-minute data (35,040 points).

Starts its own influxd (Debian's 1.x) in a temporary directory, writes the year through
``InfluxWriter`` and times ``InfluxReader.daily`` both ways: aggregated in the server
(``GROUP BY time(1d) tz(...)``, the default) and fetched and summed in Python
(``aggregate=False``). Prints the best of 5 of each, the ratio, and the write time.

    .venv/bin/python benchmarks/influx_daily.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.model import IntervalReading, Quality, Unit
from gateway.sinks.influx_http import InfluxWriter
from gateway.sinks.influx_line import encode_lines
from gateway.store import SeriesInfo
from gateway.store.influx import InfluxReader
from tests.influx_server import influx_server

SERIES = SeriesInfo(meter_id="M-1", channel="1.0.1.8.0.255", unit=Unit.WH, interval_s=900,
                    timezone="America/Chicago")


async def best_of(reader: InfluxReader, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        days = await reader.daily(SERIES, date(2026, 1, 1), date(2026, 12, 31))
        best = min(best, time.perf_counter() - t)
        assert len(days) == 365
    return best


async def main() -> None:
    start = datetime(2026, 1, 1, 6, tzinfo=UTC)  # local midnight in Chicago
    year = [IntervalReading(meter_id=SERIES.meter_id, channel=SERIES.channel,
                            start=start + timedelta(minutes=15 * i), length_s=900,
                            value=100 + i % 400, unit=Unit.WH,
                            quality=Quality.ESTIMATED_LINEAR if i % 29 == 0 else Quality.VALID)
            for i in range(35_040)]
    with tempfile.TemporaryDirectory() as tmp:
        async with influx_server(Path(tmp)) as url:
            writer = InfluxWriter(url, "bench", auth=None)
            await writer.open()
            await writer.ensure_database()
            t = time.perf_counter()
            outcome = await writer.write(encode_lines(year))
            wrote = time.perf_counter() - t
            await writer.close()
            assert outcome.accepted == len(year)
            readers = [InfluxReader(url, "bench", auth=None, aggregate=flag)
                       for flag in (True, False)]
            for r in readers:
                await r.open()
            server, python = [await best_of(r) for r in readers]
            for r in readers:
                await r.close()
    print(f"write 35,040 lines (encode excluded, gzip): {wrote * 1000:.0f} ms")
    print(f"daily, aggregated in influxd:  {server * 1000:.0f} ms")
    print(f"daily, fetched + summed here:  {python * 1000:.0f} ms")
    print(f"ratio (python / server): {python / server:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
