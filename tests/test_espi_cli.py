"""`ami-gateway export --format espi-xml|espi-csv`: Green Button from the command line,
valid against the ESPI 3.3 schema offline, and a clear error for an unknown meter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import xmlschema

from gateway.model import IntervalReading, Unit
from gateway.settings import load_config
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from tests.test_cli import cli

ESPI_DIR = Path(__file__).resolve().parent / "data" / "espi"
CH = "1.0.1.8.0.255"


async def stored(tmp_path: Path) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\ndata_dir = "data"\ntimezone = "America/Chicago"\n')
    cfg = load_config(config)
    store = SqliteStore(cfg.store_path, synchronous="NORMAL")
    await store.open()
    await store.register_series(SeriesInfo(meter_id="GB-1", channel=CH, unit=Unit.WH,
                                           interval_s=900, timezone="America/Chicago"))
    t0 = datetime(2026, 3, 8, 6, tzinfo=UTC)  # local midnight, the spring-forward day
    await store.write_intervals([
        IntervalReading(meter_id="GB-1", channel=CH, start=t0 + timedelta(minutes=15 * i),
                        length_s=900, value=100 + i, unit=Unit.WH) for i in range(92 + 96)])
    await store.close()
    return config


async def test_espi_xml_and_csv_from_the_command_line(tmp_path: Path) -> None:
    config = await stored(tmp_path)
    xml = await asyncio.to_thread(cli, "export", "--config", config, "--meter", "GB-1",
                                  "--from", "2026-03-08", "--to", "2026-03-09",
                                  "--format", "espi-xml", "--output", tmp_path / "gb.xml")
    assert xml.returncode == 0, xml.stderr
    schema = xmlschema.XMLSchema([str(ESPI_DIR / "atom.xsd"), str(ESPI_DIR / "usage.xsd")],
                                 allow="local")
    schema.validate(str(tmp_path / "gb.xml"))
    text = (tmp_path / "gb.xml").read_text()
    assert text.count("<espi:IntervalReading>") == 92 + 96
    csv = await asyncio.to_thread(cli, "export", "--config", config, "--meter", "GB-1",
                                  "--from", "2026-03-08", "--to", "2026-03-08",
                                  "--format", "espi-csv")
    assert csv.returncode == 0, csv.stderr
    rows = [line for line in csv.stdout.splitlines() if line.startswith("Electric usage")]
    assert len(rows) == 92
    missing = await asyncio.to_thread(cli, "export", "--config", config, "--meter", "NOPE",
                                      "--from", "2026-03-08", "--to", "2026-03-08",
                                      "--format", "espi-xml")
    assert missing.returncode == 1 and "NOPE" in missing.stderr
