"""A utility's history of a meter read by hand imports like any other meter's reads."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from gateway.ingest.importer import import_csv
from gateway.settings import load_config
from gateway.store.sqlite import SqliteStore

CONFIG = """
[gateway]
data_dir = "data"
timezone = "America/Chicago"
[store]
synchronous = "NORMAL"
[[meters]]
meter_id = "H1"
protocol = "manual"
max_power_w = 10000
registers = [{ channel = "1.0.1.8.0.255", unit = "kWh", digits = 4 }]
"""


async def test_manual_meter_history_imports_with_its_wrap(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(CONFIG)
    reads = tmp_path / "reads.csv"
    reads.write_text("meter_id,channel,at,value\n"
                     "H1,1.0.1.8.0.255,2026-10-01T00:00:00-05:00,9900\n"
                     "H1,1.0.1.8.0.255,2026-11-01T00:00:00-05:00,0007\n")
    report = await import_csv(load_config(cfg), reads)
    assert (report.readings, report.quarantined, report.errors) == (2, 0, [])
    store = SqliteStore(tmp_path / "data" / "store.db")
    await store.open()
    days = await store.daily("H1", "1.0.1.8.0.255", date(2026, 10, 1), date(2026, 10, 31))
    assert sum(d.value for d in days) == 107_000  # 9900 -> 0007 on 4 dials: 107 kWh
    await store.close()
