"""Writes to a real influxd: exact values back, batches, per-line rejection, 413 halving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gateway.errors import SinkError
from gateway.model import IntervalReading, Quality, Unit
from gateway.sinks.influx_http import InfluxWriter
from gateway.sinks.influx_line import encode_lines
from gateway.store import SeriesInfo
from gateway.store.influx import InfluxReader
from tests.influx_server import influx_server

T0 = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)


def series(meter: str = "M-1") -> SeriesInfo:
    return SeriesInfo(meter_id=meter, channel="1.0.1.8.0.255", unit=Unit.WH, interval_s=900,
                      timezone="America/Chicago")


def intervals(n: int, meter: str = "M-1", value: int = 250) -> list[IntervalReading]:
    return [IntervalReading(meter_id=meter, channel="1.0.1.8.0.255",
                            start=T0 + timedelta(minutes=15 * i), length_s=900,
                            value=value + i, unit=Unit.WH,
                            quality=Quality.ESTIMATED_LINEAR if i % 5 == 0 else Quality.VALID,
                            flags=i % 3, raw=i if i % 4 == 0 else None)
            for i in range(n)]


async def read_back(url: str, database: str, meter: str = "M-1") -> list[IntervalReading]:
    reader = InfluxReader(url, database, auth=None)
    await reader.open()
    try:
        return await reader.intervals(series(meter), T0, T0 + timedelta(days=30))
    finally:
        await reader.close()


async def test_written_intervals_read_back_exactly(writer: InfluxWriter, influx_url: str,
                                                   database: str) -> None:
    sent = intervals(40)
    sent[1] = IntervalReading(**{**{f: getattr(sent[1], f) for f in sent[1].__struct_fields__},
                                 "value": 2**62 + 7})
    outcome = await writer.write(encode_lines(sent))
    assert (outcome.accepted, outcome.rejected) == (40, [])
    assert await read_back(influx_url, database) == sent


async def test_writing_again_is_idempotent(writer: InfluxWriter, influx_url: str,
                                           database: str) -> None:
    lines = encode_lines(intervals(10))
    await writer.write(lines)
    await writer.write(lines)
    await writer.ensure_database()  # idempotent too
    assert await read_back(influx_url, database) == intervals(10)


async def test_a_write_larger_than_a_batch_goes_in_batches(influx_url: str,
                                                           database: str) -> None:
    w = InfluxWriter(influx_url, database, auth=None, batch_lines=100)
    await w.open()
    await w.ensure_database()
    outcome = await w.write(encode_lines(intervals(250)))
    await w.close()
    assert outcome.accepted == 250 and w.requests == 3
    assert await read_back(influx_url, database) == intervals(250)


async def test_a_field_type_conflict_rejects_exactly_that_line(
    writer: InfluxWriter, influx_url: str, database: str,
) -> None:
    # value is an integer field of the measurement: a float for it conflicts.
    good = intervals(60)
    assert (await writer.write(encode_lines(good[:1]))).accepted == 1
    lines = encode_lines(good)
    lines.insert(17, b"interval,channel=1.0.1.8.0.255,meter_id=M-2,unit=Wh value=1.5 1772949600")
    outcome = await writer.write(lines)
    assert outcome.accepted == 60
    assert [i for i, _ in outcome.rejected] == [17]
    assert "field type conflict" in outcome.rejected[0][1]
    assert await read_back(influx_url, database) == good
    assert writer.requests < 20  # bisected, not one request per line


async def test_a_part_refused_whole_is_not_split_line_by_line(
    writer: InfluxWriter, influx_url: str, database: str,
) -> None:
    assert (await writer.write([b"interval,meter_id=M-9 value=1.5 1772949600"])).accepted == 1
    outcome = await writer.write(encode_lines(intervals(64)))
    assert outcome.accepted == 0 and [i for i, _ in outcome.rejected] == list(range(64))
    assert writer.requests == 1
    assert "field type conflict" in outcome.rejected[63][1]


async def test_a_malformed_line_is_reported_and_the_rest_stored(
    writer: InfluxWriter, influx_url: str, database: str,
) -> None:
    good = intervals(30)
    lines = encode_lines(good)
    lines.insert(5, b"interval,meter_id=M-1 value=oops 1772949600")
    lines.append(b"not line protocol at all")
    outcome = await writer.write(lines)
    assert [i for i, _ in outcome.rejected] == [5, 31]
    assert all("unable to parse" in reason for _, reason in outcome.rejected)
    assert outcome.accepted == 30
    assert await read_back(influx_url, database) == good


async def test_over_max_body_size_is_halved_until_it_fits(tmp_path: Path) -> None:
    async with influx_server(tmp_path, max_body=4000) as url:
        w = InfluxWriter(url, "small", auth=None, gzip=False, batch_lines=1000)
        await w.open()
        await w.ensure_database()
        lines = encode_lines(intervals(200))  # ~100 bytes a line: 20 kB
        huge = (b"interval,channel=c,meter_id=" + b"x" * 5000 + b",unit=Wh value=1i 1772949600")
        outcome = await w.write([*lines, huge])
        await w.close()
        assert outcome.accepted == 200 and w.requests > 8
        assert [i for i, _ in outcome.rejected] == [200]
        assert "max-body-size" in outcome.rejected[0][1]
        assert await read_back(url, "small") == intervals(200)


async def test_a_missing_database_is_named_with_the_fix(influx_url: str) -> None:
    w = InfluxWriter(influx_url, "no_such_db", auth=None)
    await w.open()
    with pytest.raises(SinkError) as err:
        await w.write(encode_lines(intervals(1)))
    await w.close()
    assert not err.value.retryable
    assert "'no_such_db'" in str(err.value) and "CREATE DATABASE" in str(err.value)


async def test_gzip_body_is_what_the_server_decodes(influx_url: str, database: str) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.headers.get("Content-Encoding", ""))

    w = InfluxWriter(influx_url, database, auth=None)
    await w.open()
    await w.ensure_database()
    assert w._client is not None
    w._client.event_hooks["request"] = [hook]
    outcome = await w.write(encode_lines(intervals(20)))
    await w.close()
    assert outcome.accepted == 20 and seen[-1] == "gzip"
    assert await read_back(influx_url, database) == intervals(20)
