"""DLMS meters at assembly: profile kinds match protocols, series, secrets, catch-up depth."""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from edge.assembly import assemble
from gateway.dlms_secrets import default_system_title
from gateway.model import Unit
from gateway.profiles import PROFILES_DIR
from gateway.profiles_dlms import DlmsProfile
from gateway.settings import ConfigInvalid, load_config

DLMS_METER = """
[[meters]]
meter_id = "D1"
profile = "dlms_generic_electricity"
protocol = "dlms_tcp"
host = "192.0.2.30"
"""
MODBUS_METER = """
[[meters]]
meter_id = "M1"
profile = "eastron_sdm120"
host = "192.0.2.10"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_series_come_from_the_dlms_profile_and_the_plan_holds_its_secrets(
        tmp_path: Path) -> None:
    assembly = assemble(load_config(write(tmp_path, DLMS_METER + MODBUS_METER)))
    dlms, modbus = assembly.meters
    assert isinstance(dlms.profile, DlmsProfile)
    assert [(s.channel, s.unit, s.modulus, s.max_power_w) for s in dlms.series] == [
        (channel, Unit.WH, None, Decimal(69000))
        for channel in ("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255")]
    assert dlms.dlms is not None
    assert (dlms.dlms.password, dlms.dlms.keys) == (None, None)
    assert dlms.dlms.system_title == default_system_title("D1")
    assert dlms.catch_up_days == 10
    assert (modbus.dlms, modbus.catch_up_days) == (None, None)


def test_rollover_digits_and_the_meter_s_catch_up_and_channels(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.mkdir()
    generic = (PROFILES_DIR / "dlms_generic_electricity.toml").read_text()
    rolling = generic.replace('obis = "1.0.1.8.0.255"\nunit = "Wh"\n',
                              'obis = "1.0.1.8.0.255"\nunit = "kWh"\n'
                              "rollover = { digits = 8, decimals = 2 }\n", 1)
    assert rolling != generic
    (devices / "dial.toml").write_text(rolling)
    text = ('[gateway]\nprofiles_dir = "devices"\n'
            + DLMS_METER.replace("dlms_generic_electricity", "dial")
            + 'channels = ["1.0.1.8.0.255"]\ncatch_up_days = 35\n')
    (plan,) = assemble(load_config(write(tmp_path, text))).meters
    (series,) = plan.series
    assert (series.channel, series.unit) == ("1.0.1.8.0.255", Unit.KWH)
    assert series.modulus == Decimal(1_000_000) * 1000  # 999999.99 kWh wraps, in Wh
    assert plan.catch_up_days == 35


@pytest.mark.parametrize(("meter", "profile", "listed", "not_listed"), [
    (DLMS_METER, "eastron_sdm630", "dlms_generic_electricity", "eastron_sdm630"),
    (MODBUS_METER, "dlms_generic_electricity", "eastron_sdm630", "dlms_generic_electricity"),
])
def test_a_meter_names_a_profile_of_its_protocol(tmp_path: Path, meter: str, profile: str,
                                                 listed: str, not_listed: str) -> None:
    text = meter.replace('profile = "eastron_sdm120"', f'profile = "{profile}"').replace(
        'profile = "dlms_generic_electricity"', f'profile = "{profile}"')
    with pytest.raises(ConfigInvalid) as caught:
        assemble(load_config(write(tmp_path, text)))
    (problem,) = caught.value.problems
    assert problem.key.endswith(").profile") and problem.file == str(tmp_path / "site.toml")
    assert f"{profile} is a" in problem.reason
    assert listed in problem.fix and not_listed not in problem.fix


def test_catch_up_days_without_a_load_profile_is_a_problem(tmp_path: Path) -> None:
    devices = tmp_path / "devices"
    devices.mkdir()
    generic = (PROFILES_DIR / "dlms_generic_electricity.toml").read_text()
    (devices / "flat.toml").write_text(generic[:generic.index("[load_profile]")])
    text = ('[gateway]\nprofiles_dir = "devices"\n'
            + DLMS_METER.replace("dlms_generic_electricity", "flat") + "catch_up_days = 5\n")
    with pytest.raises(ConfigInvalid) as caught:
        assemble(load_config(write(tmp_path, text)))
    (problem,) = caught.value.problems
    assert problem.key == "meters[0](meter_id=D1).catch_up_days"
    assert "no load profile" in problem.reason and "[load_profile]" in problem.fix
    (plan,) = assemble(load_config(write(tmp_path, text.replace("catch_up_days = 5\n", "")))
                       ).meters
    assert plan.catch_up_days is None


def test_check_reports_a_missing_key_with_file_key_and_fix(tmp_path: Path) -> None:
    (tmp_path / "ak").write_text("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf\n")
    config = write(tmp_path, DLMS_METER + 'security = "hls_gmac"\n'
                   'encryption_key_env = "AMI_TEST_UNSET_EK"\nauthentication_key_file = "ak"\n'
                   + MODBUS_METER)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stdout
    err = " ".join(done.stderr.split())
    assert (f"{config}: meters[0](meter_id=D1).encryption_key_env: environment variable "
            "AMI_TEST_UNSET_EK: the environment variable is not set") in err
    assert "fix: export AMI_TEST_UNSET_EK=" in err
    assert "d0d1d2d3" not in err


def test_the_example_s_commented_dlms_meters_are_valid_when_uncommented(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = (Path(__file__).resolve().parent.parent / "config" / "gateway.example.toml"
               ).read_text()
    block = example[example.index('# meter_id = "ACME-0401"') - len("# [[meters]]\n"):
                    example.index('\n[[meters]]\nmeter_id = "ACME-0101"')]
    lines = [line[2:] for line in block.splitlines()
             if re.match(r"^# (\[\[meters\]\]|[a-z_]+ = )", line)]
    assert sum(line == "[[meters]]" for line in lines) == 3
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "acme-0401.ak").write_text("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf\n")
    (tmp_path / "keys" / "acme-0501.password").write_text("12345678\n")
    monkeypatch.setenv("ACME_0401_EK", "5ac1e0b2d47f9c3318e6a0b4c2d97f15")
    plans = assemble(load_config(write(tmp_path, "\n".join(lines)))).meters
    assert [(p.meter.protocol, p.meter.security) for p in plans] == [
        ("dlms_tcp", "hls_gmac"), ("dlms_serial", "lls"), ("dlms_optical", "none")]
    tcp, rs485, _ = plans
    assert tcp.dlms is not None and tcp.dlms.keys is not None
    assert tcp.dlms.system_title == bytes.fromhex("414D490000000401")
    assert rs485.dlms is not None and rs485.dlms.password is not None


def test_the_deviation_sign_reaches_the_read_plan(tmp_path: Path) -> None:
    from edge.dlms_driver import read_plan
    from gateway.drivers.dlms.cosem import DeviationSign
    from gateway.settings import DlmsTcpMeterConfig

    iso = DLMS_METER + 'deviation_sign = "iso"\ntimezone = "Europe/Berlin"\n'
    for text, sign in ((DLMS_METER, DeviationSign.BLUE_BOOK), (iso, DeviationSign.ISO)):
        [plan] = assemble(load_config(write(tmp_path, text))).meters
        assert isinstance(plan.meter, DlmsTcpMeterConfig)
        assert isinstance(plan.profile, DlmsProfile)
        got = read_plan(plan.meter, plan.profile, [s.channel for s in plan.series],
                        plan.timezone, plan.catch_up_days)
        assert got.sign is sign
