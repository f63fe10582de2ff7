"""One real influxd for the session (skipped when not installed), a fresh database per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.sinks.influx_http import InfluxWriter
from tests.influx_server import running_influxd


@pytest.fixture(scope="session")
def influx_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_influxd(tmp_path_factory.mktemp("influxd")) as url:
        yield url


@pytest.fixture
def database() -> str:
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
async def writer(influx_url: str, database: str) -> AsyncIterator[InfluxWriter]:
    w = InfluxWriter(influx_url, database, auth=None)
    await w.open()
    await w.ensure_database()
    yield w
    await w.close()
