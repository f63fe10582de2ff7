"""DLMS device profiles: the bundled ones load, and every mistake names file, key and fix."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.model import Kind, Unit
from gateway.profiles import DeviceProfile, load_profile, load_profiles, modbus_profiles
from gateway.profiles_dlms import DlmsProfile

HEADER = """
manufacturer = "Test"
model = "T"
source = "tests"
protocol = "dlms"
max_power_w = 1000
"""
ENERGY = """
[[points]]
obis = "{obis}"
unit = "Wh"
kind = "cumulative"
"""
POWER = """
[[points]]
obis = "1.0.1.7.0.255"
unit = "W"
kind = "instant"
"""


def energy(obis: str = "1.0.1.8.0.255", extra: str = "") -> str:
    return ENERGY.format(obis=obis) + extra


def write(tmp_path: Path, body: str, name: str = "meter") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(body)
    return path


def test_the_bundled_generic_meter_loads_with_its_load_profile() -> None:
    profiles = load_profiles()
    profile = profiles["dlms_generic_electricity"]
    assert isinstance(profile, DlmsProfile)
    assert (profile.name, profile.protocol) == ("dlms_generic_electricity", "dlms")
    assert "62056-6-1" in profile.source and "IDIS" in profile.source
    points = {p.channel: p for p in profile.points}
    cumulative = ["1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255"]
    assert [c for c, p in points.items() if p.kind is Kind.CUMULATIVE] == cumulative
    assert all(points[c].unit is Unit.WH for c in cumulative)
    assert {c: (p.unit, p.kind) for c, p in points.items() if p.kind is Kind.INSTANT} == {
        "1.0.1.7.0.255": (Unit.W, Kind.INSTANT), "1.0.2.7.0.255": (Unit.W, Kind.INSTANT),
        "1.0.32.7.0.255": (Unit.V, Kind.INSTANT)}
    assert all((p.obis, p.class_id, p.attribute, p.scaler) == (p.channel, 3, 2, None)
               for p in profile.points)
    assert profile.load_profile is not None
    assert profile.load_profile.obis == "1.0.99.1.0.255"
    assert profile.load_profile.channels == tuple(cumulative)
    assert (profile.clock_obis, profile.serial_obis, profile.logical_device_name_obis) == (
        "0.0.1.0.0.255", "0.0.96.1.0.255", "0.0.42.0.0.255")
    # Both kinds come from one folder; the Modbus view leaves the DLMS ones out.
    assert isinstance(profiles["eastron_sdm630"], DeviceProfile)
    assert "dlms_generic_electricity" not in modbus_profiles()


def test_the_bundled_polyphase_meter_adds_reactive_energy_and_phases() -> None:
    profile = load_profiles()["dlms_generic_polyphase"]
    assert isinstance(profile, DlmsProfile) and profile.load_profile is not None
    points = {p.channel: p for p in profile.points}
    assert (points["1.0.3.8.0.255"].unit, points["1.0.4.8.0.255"].kind) == (
        Unit.VARH, Kind.CUMULATIVE)
    assert {c for c, p in points.items() if p.unit is Unit.V} == {
        "1.0.32.7.0.255", "1.0.52.7.0.255", "1.0.72.7.0.255"}
    assert {c for c, p in points.items() if p.unit is Unit.A} == {
        "1.0.31.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255"}
    assert profile.load_profile.channels == tuple(
        c for c, p in points.items() if p.kind is Kind.CUMULATIVE)


def test_reduced_obis_is_stored_dotted_and_names_the_channel(tmp_path: Path) -> None:
    body = (HEADER + energy("1-0:1.8.0*255") + energy("1-0:2.8.0")
            + '[[points]]\nobis = "0.0.96.14.0.255"\nchannel = "tariff"\nclass_id = 1\n'
              'unit = "count"\nkind = "instant"\nscaler = 0\n'
            + '[load_profile]\nobis = "1-0:99.2.0*255"\nstatus_obis = "0-0:96.10.2*255"\n')
    profile = load_profile(write(tmp_path, body))
    assert isinstance(profile, DlmsProfile)
    first, second, tariff = profile.points
    assert (first.obis, first.channel) == ("1.0.1.8.0.255", "1.0.1.8.0.255")
    assert second.channel == "1.0.2.8.0.255"  # F defaults to 255
    assert (tariff.obis, tariff.channel, tariff.class_id, tariff.scaler) == (
        "0.0.96.14.0.255", "tariff", 1, 0)
    assert profile.load_profile is not None
    assert (profile.load_profile.obis, profile.load_profile.status_obis) == (
        "1.0.99.2.0.255", "0.0.96.10.2.255")
    assert profile.load_profile.channels is None  # every captured cumulative point
    assert (profile.load_profile.catch_up_days, profile.load_profile.max_entries_per_poll) \
        == (10, 960)


def test_digits_rollover_modulus_is_in_the_point_unit(tmp_path: Path) -> None:
    body = HEADER + energy(extra="rollover = { digits = 8, decimals = 2 }\n") + POWER
    point, power = load_profile(write(tmp_path, body)).points
    assert point.rollover_modulus == Decimal(1_000_000)
    assert power.rollover_modulus is None


ERRORS = [
    # (file body, key, words in the message, words in the fix)
    (HEADER + "max_power = 5\n" + energy(), "max_power", "unknown key", "max_power_w"),
    (HEADER + energy(extra="address = 3\n"), "points[0].address", "unknown key", "COSEM"),
    (HEADER + energy(extra="atribute = 3\n"), "points[0].atribute", "unknown key",
     "attribute"),
    (HEADER + energy("1.0.1.8.0"), "points[0].obis", "not an OBIS code", "1-0:1.8.0*255"),
    (HEADER + energy("1.0.1.8.0.256"), "points[0].obis", "0-255", "1.0.1.8.0.255"),
    (HEADER + energy().replace('obis = "1.0.1.8.0.255"\n', ""), "points[0].obis",
     "missing", "add obis"),
    (HEADER + energy(extra="scaler = -3\n"), "points[0].scaler", "scaler_unit",
     "remove it: the meter reports its scaler_unit"),
    (HEADER + energy(extra="class_id = 4\nscaler = 1\n"), "points[0].scaler", "class 4",
     "scaler_unit"),
    (HEADER + energy(extra="class_id = 7\n"), "points[0].class_id", "7", "3 (register)"),
    (HEADER + energy(extra="rollover = { bits = 32 }\n"), "points[0].rollover.bits",
     "not a bit field", "digits"),
    (HEADER + energy(extra="rollover = { digitz = 8 }\n"), "points[0].rollover.digitz",
     "unknown key", "digits"),
    (HEADER + POWER + "rollover = { digits = 6 }\n", "points[0].rollover", "only cumulative",
     "remove rollover"),
    (HEADER + energy().replace('"Wh"', '"V"'), "points[0].kind", "cumulative", "instant"),
    (HEADER + energy().replace('"cumulative"', '"identity"'), "points[0].kind",
     "serial number", "serial_obis"),
    (HEADER + energy() + energy("1-0:1.8.0*255"), "points[1].channel", "twice", "own channel"),
    (HEADER + energy() + POWER + '[load_profile]\nchannels = ["1.0.1.7.0.255"]\n',
     "load_profile.channels[0]", "not a cumulative point", "1.0.1.8.0.255"),
    (HEADER + energy() + '[load_profile]\nchannels = ["1.0.1.8.0.255", "1.0.1.8.0.255"]\n',
     "load_profile.channels[1]", "twice", "once"),
    (HEADER + energy() + "[load_profile]\ncatch_up_days = 0\n", "load_profile.catch_up_days",
     "greater than or equal to 1", "catch_up_days"),
    (HEADER + energy() + "[load_profile]\ncapture_period = 900\n",
     "load_profile.capture_period", "unknown key", "capture_period_s"),
    (HEADER + energy() + '[load_profile]\nstatus_obis = "C.1.0"\n', "load_profile.status_obis",
     "not an OBIS code", "status_obis"),
    (HEADER + 'clock_obis = "clock"\n' + energy(), "clock_obis", "not an OBIS code",
     "clock_obis"),
    (HEADER.replace("max_power_w = 1000\n", "") + energy(), "max_power_w", "missing",
     "add max_power_w"),
    (HEADER + 'name = "x"\n' + energy(), "name", "unknown key", "file name"),
    (HEADER, "points", "missing", "add points"),
]


@pytest.mark.parametrize(("body", "key", "message", "fix"), ERRORS)
def test_mistakes_name_file_key_and_fix(tmp_path: Path, body: str, key: str, message: str,
                                        fix: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    error = caught.value
    assert error.file == str(path)
    assert error.key == key
    assert message in error.reason
    assert fix in error.fix
    assert str(path) in str(error) and key in str(error)


def test_a_dlms_file_in_a_folder_of_modbus_profiles_loads_beside_them(tmp_path: Path) -> None:
    write(tmp_path, HEADER + energy() + POWER, "dlms_test")
    write(tmp_path, HEADER.replace('protocol = "dlms"\n', "")
          + '[[points]]\nchannel = "e"\naddress = 0\ntype = "uint32"\nunit = "Wh"\n'
            'kind = "cumulative"\n', "modbus_test")
    profiles = load_profiles(tmp_path)
    assert isinstance(profiles["dlms_test"], DlmsProfile)
    assert isinstance(profiles["modbus_test"], DeviceProfile)
    assert list(modbus_profiles(tmp_path)) == ["modbus_test"]
