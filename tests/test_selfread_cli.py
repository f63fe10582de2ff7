"""``ami-gateway self-read`` and ``check`` with manual meters, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[gateway]
data_dir = "data"
timezone = "America/Chicago"
[store]
synchronous = "NORMAL"
[self_reads]
windows = [{ from_day = 1, to_day = 31 }]
[[meters]]
meter_id = "P1"
profile = "eastron_sdm120"
host = "127.0.0.1"
[[meters]]
meter_id = "H4"
protocol = "manual"
max_power_w = 10000
registers = [{ digits = 4 }]
"""


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_self_reads_from_the_command_line(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(CONFIG)
    done = cli("check", "--config", cfg)
    assert done.returncode == 0, done.stderr
    assert "valid: 2 meter(s) (1 manual), 4 stored series" in done.stdout
    assert ("manual meter H4: not polled, takes self-reads; max 10000 W; America/Chicago; "
            "1.0.1.8.0.255 (kWh, 4 dials)") in done.stdout
    assert "self-reads are taken on days 1 to 31 of the month, local time" in done.stdout

    done = cli("self-read", "--config", cfg, "H4", "9993", "--at", "2026-11-01T08:00-06:00",
               "--by", "dana")
    assert done.returncode == 0, done.stderr
    assert "recorded: recorded 9,993 kWh: the meter's first reading" in done.stdout
    done = cli("self-read", "--config", cfg, "H4", "0007", "--at", "2026-11-02T08:00-06:00")
    assert done.returncode == 0, done.stderr
    assert "the register rolled over since the last reading, 9,993 kWh" in done.stdout
    assert "14 kWh used" in done.stdout

    done = cli("self-read", "--config", cfg, "H4", "5", "--at", "2026-11-02T09:00-06:00")
    assert done.returncode == 1
    assert "refused (lower_than_last): 5 kWh is lower than the last reading" in done.stderr
    done = cli("self-read", "--config", cfg, "P1", "5")
    assert done.returncode == 1 and "refused (polled_meter)" in done.stderr
    done = cli("self-read", "--config", cfg, "H4", "5", "--at", "2026-11-02T09:00")
    assert done.returncode == 2 and "no UTC offset" in done.stderr

    done = cli("audit", "--config", cfg, "--meter", "H4", "--events")
    assert done.returncode == 0, done.stderr
    assert "self_read,H4,1.0.1.8.0.255" in done.stdout
    assert "self-read by dana via cli" in done.stdout
