"""GET /api/v1/meters/{id}/greenbutton: a Download My Data file valid against ESPI 3.3
offline, or CSV, with clear refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import xmlschema

from gateway.api.app import create_app
from gateway.model import IntervalReading, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

ESPI_DIR = Path(__file__).resolve().parent.parent / "data" / "espi"
CH = "1.0.1.8.0.255"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = SqliteStore(tmp_path / "store.db", synchronous="NORMAL")
    await store.open()
    await store.register_series(SeriesInfo(meter_id="GB-2", channel=CH, unit=Unit.WH,
                                           interval_s=900, timezone="Europe/Berlin"))
    t0 = datetime(2026, 10, 24, 22, tzinfo=UTC)  # local midnight of 10-25, a 25-hour day
    await store.write_intervals([
        IntervalReading(meter_id="GB-2", channel=CH, start=t0 + timedelta(minutes=15 * i),
                        length_s=900, value=50 + i % 7, unit=Unit.WH,
                        quality=Quality.ESTIMATED_LINEAR if i == 3 else Quality.VALID)
        for i in range(100)])
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
        yield client
    await store.close()


async def test_xml_is_valid_espi_and_csv_has_every_interval(http: httpx.AsyncClient,
                                                            tmp_path: Path) -> None:
    got = await http.get("/api/v1/meters/GB-2/greenbutton",
                         params={"from": "2026-10-25", "to": "2026-10-25"})
    assert got.status_code == 200 and got.headers["content-type"] == "application/atom+xml"
    assert 'filename="greenbutton-GB-2-2026-10-25-2026-10-25.xml"' in \
        got.headers["content-disposition"]
    (tmp_path / "gb.xml").write_bytes(got.content)
    schema = xmlschema.XMLSchema([str(ESPI_DIR / "atom.xsd"), str(ESPI_DIR / "usage.xsd")],
                                 allow="local")
    schema.validate(str(tmp_path / "gb.xml"))
    assert got.text.count("<espi:IntervalReading>") == 100
    assert "http://portal/espi/1_1/resource" in got.text
    csv = await http.get("/api/v1/meters/GB-2/greenbutton",
                         params={"from": "2026-10-25", "to": "2026-10-25", "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert len([r for r in csv.text.splitlines() if r.startswith("Electric usage")]) == 100


async def test_refusals(http: httpx.AsyncClient) -> None:
    url = "/api/v1/meters/GB-2/greenbutton"
    assert (await http.get("/api/v1/meters/NOPE/greenbutton",
                           params={"from": "2026-10-25", "to": "2026-10-25"})).status_code == 404
    wrong_channel = await http.get(url, params={"from": "2026-10-25", "to": "2026-10-25",
                                                "channel": "1.0.2.8.0.255"})
    assert wrong_channel.status_code == 404 and "1.0.2.8.0.255" in wrong_channel.text
    assert (await http.get(url, params={"from": "2026-10-26", "to": "2026-10-25"})
            ).status_code == 422
    assert (await http.get(url, params={"from": "2025-01-01", "to": "2026-10-25"})
            ).status_code == 422
    assert (await http.get(url, params={"from": "2026-10-25", "to": "2026-10-25",
                                        "format": "pdf"})).status_code == 422
