"""Device profiles: shipped files load, and every mistake names file, key and fix."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.errors import ConfigError
from gateway.model import SERIAL_NUMBER, Kind, Unit
from gateway.profiles import PROFILES_DIR, load_profile, load_profiles

TEST_DEVICES = Path(__file__).resolve().parent / "data" / "devices"

HEADER = """
manufacturer = "Test"
model = "T"
source = "tests"
max_power_w = 1000
"""
POINT = """
[[points]]
channel = "{channel}"
address = {address}
type = "{type}"
unit = "Wh"
kind = "cumulative"
"""


def test_shipped_profiles_load() -> None:
    profiles = load_profiles()
    assert set(profiles) >= {"eastron_sdm630", "eastron_sdm120"}
    sdm630 = profiles["eastron_sdm630"]
    assert sdm630.name == "eastron_sdm630"
    assert sdm630.max_registers_per_request == 80
    assert "Eastron" in sdm630.source
    measured = [p for p in sdm630.points if p.kind is not Kind.IDENTITY]
    assert all(p.table == "input" and p.type == "float32" for p in measured)
    energy = {p.channel: p for p in sdm630.points}["1.0.1.8.0.255"]
    assert energy.address == 30073 - 30001
    assert (energy.unit, energy.kind) == (Unit.KWH, Kind.CUMULATIVE)
    assert {p.channel for p in sdm630.points} >= {
        "1.0.32.7.0.255", "1.0.31.7.0.255", "1.0.16.7.0.255", "1.0.14.7.0.255",
        "1.0.2.8.0.255", "1.0.15.8.0.255"}
    assert profiles["eastron_sdm120"].max_power_w == 10350


@pytest.mark.parametrize("name", ["eastron_sdm630", "eastron_sdm120"])
def test_eastron_profiles_read_the_serial_number_from_holding_register_fc00(name: str) -> None:
    """Eastron documents "Serial number" at holding register FC00 hex (464513): 2 registers,
    unsigned int32, read only. It is the meter's identity (a change is an exchange)."""
    profile = load_profiles()[name]
    (serial,) = [p for p in profile.points if p.channel == SERIAL_NUMBER]
    assert (serial.address, serial.table, serial.type) == (0xFC00, "holding", "uint32")
    assert (serial.kind, serial.unit, serial.width) == (Kind.IDENTITY, Unit.COUNT, 2)
    assert (serial.scale, serial.offset, serial.rollover) == (1, 0, None)
    assert "FC00" in profile.source
    # The energy registers stay where they were, in the input table.
    energy = {p.channel: p for p in profile.points}["1.0.1.8.0.255"]
    assert (energy.table, energy.address) == ("input", 72)


def test_test_profiles_load_with_rollover_moduli() -> None:
    profiles = load_profiles(TEST_DEVICES)
    pulse = profiles["pulse16"].points[0]
    assert (pulse.table, pulse.type) == ("holding", "uint16")
    assert pulse.rollover_modulus == 65536
    scaled = profiles["scaled32"].points[0]
    assert scaled.scale == Decimal("0.01")
    assert scaled.rollover_modulus == Decimal("42949672.96")
    assert profiles["scaled32"].points[1].word_order == "little"


def test_digits_rollover_modulus(tmp_path: Path) -> None:
    path = tmp_path / "dial.toml"
    path.write_text(HEADER + POINT.format(channel="e", address=0, type="uint32")
                    + 'scale = "0.1"\nrollover = { digits = 6, decimals = 1 }\n')
    assert load_profile(path).points[0].rollover_modulus == Decimal(100000)


def test_profiles_are_frozen() -> None:
    profile = load_profiles()["eastron_sdm120"]
    with pytest.raises(ValidationError):
        profile.points[0].address = 3  # type: ignore[misc]


def test_points_inherit_top_level_defaults_but_may_override(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(HEADER + 'table = "input"\ntype = "float32"\nword_order = "little"\n'
                    + '[[points]]\nchannel = "a"\naddress = 0\nunit = "V"\nkind = "instant"\n'
                    + '[[points]]\nchannel = "b"\naddress = 2\nunit = "V"\nkind = "instant"\n'
                    + 'type = "uint16"\ntable = "holding"\nword_order = "big"\n')
    a, b = load_profile(path).points
    assert (a.table, a.type, a.word_order, a.byte_order) == ("input", "float32", "little", "big")
    assert (b.table, b.type, b.word_order) == ("holding", "uint16", "big")


def _point(address: int = 0, channel: str = "e", kind: str = "uint32", extra: str = "") -> str:
    return POINT.format(channel=channel, address=address, type=kind) + extra


ERRORS = [
    # (file body, key, words in the message, words in the fix)
    (HEADER + "max_power = 5\n" + _point(), "max_power", "unknown key", "max_power_w"),
    (HEADER + _point(extra='scael = "0.1"\n'), "points[0].scael", "unknown key", "scale"),
    (HEADER + _point(kind="float33"), "points[0].type", "float33", "float32"),
    (HEADER + _point(extra="scale = 0.1\n"), "points[0].scale", "exact", '"0.01"'),
    (HEADER + _point(extra='scale = "abc"\n'), "points[0].scale", "not a decimal", '"0.01"'),
    (HEADER + _point(extra='scale = "0"\n'), "points[0].scale", "zero", "scale"),
    (HEADER + _point(0, "a") + _point(0, "b"), "points[1].address", "same address", "register"),
    (HEADER + _point(0, "a") + _point(1, "b"), "points[1].address", "overlapping", "register"),
    (HEADER + _point(0, "a") + _point(2, "a"), "points[1].channel", "twice", "own channel"),
    (HEADER + _point(extra='unit = "kwh"\n').replace('unit = "Wh"\n', ""), "points[0].unit",
     "kwh", "kWh"),
    (HEADER + _point().replace('unit = "Wh"\n', ""), "points[0].unit", "missing", "add unit"),
    (HEADER + _point().replace('"cumulative"', '"instant"') + "rollover = { bits = 16 }\n",
     "points[0].rollover", "only cumulative", "remove rollover"),
    (HEADER + _point(kind="float32", extra="rollover = { bits = 16 }\n"),
     "points[0].rollover.bits", "unsigned", "uint16"),
    (HEADER + _point(kind="uint16", extra="rollover = { bits = 32 }\n"),
     "points[0].rollover.bits", "do not fit", "at most 16"),
    (HEADER + _point(extra="rollover = { bits = 16, digits = 5 }\n"),
     "points[0].rollover.digits", "exactly one", "digits = 6"),
    (HEADER + _point(extra="rollover = { bitz = 16 }\n"), "points[0].rollover.bitz",
     "unknown key", "bits"),
    (HEADER + _point().replace('unit = "Wh"', 'unit = "V"'), "points[0].kind",
     "cumulative", "instant"),
    (HEADER + _point(65535), "points[0].address", "runs past", "address"),
    (HEADER + "max_registers_per_request = 200\n" + _point(), "max_registers_per_request",
     "125", "max_registers_per_request"),
    (HEADER.replace('model = "T"\n', "") + _point(), "model", "missing", "add model"),
    (HEADER + 'protocol = "bacnet"\n' + _point(), "protocol", "bacnet", "modbus, dlms"),
    (HEADER + 'name = "x"\n' + _point(), "name", "unknown key", "file name"),
    (HEADER, "points", "missing", "add points"),
]


@pytest.mark.parametrize(("body", "key", "message", "fix"), ERRORS)
def test_mistakes_name_file_key_and_fix(tmp_path: Path, body: str, key: str, message: str,
                                        fix: str) -> None:
    path = tmp_path / "meter.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    error = caught.value
    assert error.file == str(path)
    assert error.key == key
    assert message in error.reason
    assert fix in error.fix
    assert str(path) in str(error) and key in str(error)


def test_several_mistakes_are_all_listed(tmp_path: Path) -> None:
    path = tmp_path / "meter.toml"
    path.write_text(HEADER + _point(kind="float33", extra='scael = "1"\nfoo = 1\n'))
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert caught.value.key == "points[0].type"
    assert "points[0].scael" in str(caught.value) and "points[0].foo" in str(caught.value)


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(HEADER + "[[points]\n")
    with pytest.raises(ConfigError, match="line 6") as caught:
        load_profile(path)
    assert caught.value.file == str(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_profiles(tmp_path / "nope")


def test_load_profiles_reports_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text((PROFILES_DIR / "eastron_sdm120.toml").read_text())
    (tmp_path / "bad.toml").write_text(HEADER + _point(kind="int99"))
    with pytest.raises(ConfigError) as caught:
        load_profiles(tmp_path)
    assert caught.value.file is not None and caught.value.file.endswith("bad.toml")
