"""``--write``: found devices land in the config only when it still loads with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.commission.model import DeviceIdentity, FoundDevice, Line
from gateway.commission.report import DeviceRecord, Report, config_snippet
from gateway.commission.write import write_snippet
from gateway.errors import ConfigError
from gateway.settings import load_config

SITE = """# The site's own words stay as they are.
[gateway]
data_dir = "data"

[[meters]]
meter_id = "OLD-1"
profile = "eastron_sdm120"
protocol = "modbus_tcp"
host = "10.0.0.5"
"""


def found(unit: int, profile: str | None = "eastron_sdm630") -> FoundDevice:
    return FoundDevice(protocol="modbus_rtu", address="/dev/ttyUSB0", unit_id=unit,
                       line=Line(baudrate=19200, parity="N", stopbits=2),
                       identity=DeviceIdentity(source="signature"), profile=profile)


def report(*records: DeviceRecord) -> Report:
    return Report(gateway_version="0.1.0", created_at="2026-12-02T11:00:00Z", host="h",
                  site=None, installer=None, scans=(), devices=records, interrupted=False,
                  snippet=config_snippet(records))


def test_new_devices_are_appended_and_the_file_kept(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(SITE)
    r = report(DeviceRecord(device=found(1), meter_id="OLD-1"),  # already configured
               DeviceRecord(device=found(7), meter_id="M-7"),
               DeviceRecord(device=found(9, profile=None), meter_id="NEW-9"))  # no profile
    assert write_snippet(config, r, "commission-x.json") == 1
    text = config.read_text()
    assert text.startswith(SITE.rstrip("\n"))
    assert "commission-x.json" in text and 'meter_id = "M-7"' in text and "NEW-9" not in text
    assert (tmp_path / "gateway.toml.bak").read_text() == SITE
    meters = load_config(config).settings.meters
    assert [m.meter_id for m in meters] == ["OLD-1", "M-7"]
    assert write_snippet(config, r, "again.json") == 0  # nothing new the second time


def test_a_config_that_would_not_load_is_left_untouched(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(SITE)
    r = report(DeviceRecord(device=found(7, profile="no_such_profile"), meter_id="M-7"))
    with pytest.raises(ConfigError, match="would not load") as caught:
        write_snippet(config, r, "r.json")
    assert caught.value.key == "meters" and "by hand" in caught.value.fix
    assert config.read_text() == SITE
    assert not (tmp_path / "gateway.toml.bak").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["gateway.toml"]
