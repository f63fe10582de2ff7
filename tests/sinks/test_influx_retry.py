"""Overload, outages and refused credentials: retried, or raised with what to fix."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from gateway.errors import SinkError
from gateway.sinks.influx_http import InfluxAuth, InfluxWriter, retry_after_s
from tests.influx_server import influx_server

LINES = [b"interval,channel=c,meter_id=m,unit=Wh value=%di %d" % (i, 1772949600 + 900 * i)
         for i in range(10)]


@dataclass
class Stub:
    """A tiny HTTP/1.1 server on a real socket answering a script of (status, headers)."""

    script: list[tuple[int, dict[str, str]]]
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            first, *lines = head.decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((first, headers, body))
            status, extra = self.script.pop(0) if self.script else (204, {})
            out = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            writer.write(f"HTTP/1.1 {status} X\r\n{out}Content-Length: 0\r\n\r\n".encode())
            await writer.drain()


@asynccontextmanager
async def stub_server(script: list[tuple[int, dict[str, str]]]) -> AsyncIterator[tuple[str, Stub]]:
    stub = Stub(script)
    handlers: set[asyncio.Task[None]] = set()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await stub.handle(r, w)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection
        finally:
            w.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", stub
    finally:
        server.close()
        # The clients have closed by now: let each handler see its EOF and end.
        for _ in range(100):
            if not handlers:
                break
            await asyncio.sleep(0.01)
        await server.wait_closed()


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


async def test_429_and_503_wait_as_retry_after_says(tmp_path: Path) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    script = [(429, {"Retry-After": "2"}), (503, {"Retry-After": later}),
              (503, {"Retry-After": "86400"}), (503, {})]
    sleeps = Sleeps()
    async with stub_server(script) as (url, stub):
        w = InfluxWriter(url, "db", auth=None, sleep=sleeps)
        await w.open()
        outcome = await w.write(LINES)
        await w.close()
    assert outcome.accepted == 10 and len(stub.requests) == 5
    assert sleeps[0] == 2.0
    assert 27 <= sleeps[1] <= 30  # an HTTP date
    assert sleeps[2] == 60.0  # capped
    assert 2.0 <= sleeps[3] <= 4.0  # no Retry-After: 0.5 s x 2^3, with jitter
    first, headers, body = stub.requests[-1]
    assert first.startswith("POST /write?db=db&precision=s ")
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == b"\n".join(LINES)


async def test_overload_that_lasts_raises_retryable_after_the_retries() -> None:
    sleeps = Sleeps()
    async with stub_server([(503, {})] * 10) as (url, stub):
        w = InfluxWriter(url, "db", auth=None, retries=3, sleep=sleeps)
        await w.open()
        with pytest.raises(SinkError) as err:
            await w.write(LINES)
        await w.close()
    assert err.value.retryable and len(stub.requests) == 4
    assert "HTTP 503" in str(err.value)
    assert len(sleeps) == 3 and sleeps[2] > sleeps[0]  # exponential


async def test_a_stopped_influxd_is_a_retryable_error(tmp_path: Path) -> None:
    async with influx_server(tmp_path) as url:
        pass  # stopped: its port now refuses connections
    sleeps = Sleeps()
    w = InfluxWriter(url, "db", auth=None, retries=4, sleep=sleeps)
    await w.open()
    with pytest.raises(SinkError) as err:
        await w.write(LINES)
    await w.close()
    assert err.value.retryable and len(sleeps) == 4
    assert "5 attempts" in str(err.value) and "ConnectError" in str(err.value)


async def test_refused_credentials_are_final_and_never_printed(tmp_path: Path) -> None:
    async with influx_server(tmp_path, admin=("admin", "s3cret-pw")) as url:
        for auth in (InfluxAuth.v1("admin", "wrong-pw-123"),
                     InfluxAuth.v1("admin", "wrong-pw-123", as_params=True), None):
            w = InfluxWriter(url, "db", auth=auth, sleep=Sleeps())
            await w.open()
            with pytest.raises(SinkError) as err:
                await w.write(LINES)
            await w.close()
            assert not err.value.retryable
            assert "refused the credentials" in str(err.value)
            assert "wrong-pw-123" not in str(err.value) and "wrong-pw-123" not in repr(auth)
        for auth in (InfluxAuth.v1("admin", "s3cret-pw"),
                     InfluxAuth.v1("admin", "s3cret-pw", as_params=True)):
            w = InfluxWriter(url, "db", auth=auth)
            await w.open()
            await w.ensure_database()
            assert (await w.write(LINES)).accepted == 10
            await w.close()


async def test_a_token_goes_in_the_authorization_header() -> None:
    auth = InfluxAuth.with_token("tok-abc")
    assert "tok-abc" not in repr(auth)
    async with stub_server([(401, {})]) as (url, stub):
        w = InfluxWriter(url, "db", auth=auth)
        await w.open()
        with pytest.raises(SinkError) as err:
            await w.write(LINES)
        await w.close()
    assert stub.requests[0][1]["authorization"] == "Token tok-abc"
    assert not err.value.retryable and "tok-abc" not in str(err.value)


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_s("7", now=now) == 7.0
    assert retry_after_s("Thu, 01 Jan 2026 00:00:10 GMT", now=now) == 10.0
    assert retry_after_s("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0.0
    assert retry_after_s("soon", now=now) is None
    assert retry_after_s(None) is None
