"""DLMS meters in the gateway config: defaults, secrets only by env or file, shared ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.dlms_secrets import default_system_title, resolve_dlms_secrets
from gateway.errors import ConfigError
from gateway.settings import (
    ConfigInvalid,
    DlmsOpticalMeterConfig,
    DlmsSerialMeterConfig,
    DlmsTcpMeterConfig,
    LoadedConfig,
    load_config,
)

EK = "5ac1e0b2d47f9c3318e6a0b4c2d97f15"
AK = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
TCP = """
[[meters]]
meter_id = "D1"
profile = "dlms_generic_electricity"
protocol = "dlms_tcp"
host = "192.0.2.30"
"""
HLS_ENV = ('security = "hls_gmac"\nencryption_key_env = "AMI_TEST_EK"\n'
           'authentication_key_env = "AMI_TEST_AK"\n')


def serial(meter_id: str, port: str = "/dev/ttyUSB0", extra: str = "",
           protocol: str = "dlms_serial") -> str:
    return (f'\n[[meters]]\nmeter_id = "{meter_id}"\nprofile = "dlms_generic_electricity"\n'
            f'protocol = "{protocol}"\nport = "{port}"\n{extra}')


def load(tmp_path: Path, text: str) -> LoadedConfig:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return load_config(path)


def problems(tmp_path: Path, text: str) -> dict[str, ConfigError]:
    with pytest.raises(ConfigInvalid) as caught:
        load(tmp_path, text)
    return {p.key: p for p in caught.value.problems}


def test_each_protocol_parses_with_its_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, TCP + serial("D2") + serial("D3", "/dev/ttyUSB1", protocol="dlms_optical"))
    tcp, rs485, optical = cfg.settings.meters
    assert isinstance(tcp, DlmsTcpMeterConfig)
    assert (tcp.port, tcp.framing, tcp.timeout_s, tcp.poll_interval_s) == (4059, "wrapper", 3.0,
                                                                           60.0)
    assert (tcp.client_sap, tcp.client_address, tcp.server_logical, tcp.security) == (
        None, 16, 1, "none")
    assert (tcp.max_info_length, tcp.window, tcp.retries, tcp.catch_up_days,
            tcp.clock_drift_warn_s, tcp.system_title) == (2030, 7, 3, None, 30.0, None)
    assert isinstance(rs485, DlmsSerialMeterConfig)
    assert (rs485.port, rs485.baudrate, rs485.server_physical) == ("/dev/ttyUSB0", 9600, None)
    assert isinstance(optical, DlmsOpticalMeterConfig)
    assert (optical.max_baud, optical.device_address, optical.server_physical) == (9600, "", None)


def test_the_management_client_is_the_default_with_security(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meter = load(tmp_path, TCP + HLS_ENV).settings.meters[0]
    assert isinstance(meter, DlmsTcpMeterConfig) and meter.client_address == 1
    meter = load(tmp_path, TCP + HLS_ENV + "client_sap = 48\n").settings.meters[0]
    assert isinstance(meter, DlmsTcpMeterConfig) and meter.client_address == 48


@pytest.mark.parametrize("key", ["password", "encryption_key", "authentication_key"])
def test_a_secret_written_into_the_config_is_refused_without_repeating_it(
        tmp_path: Path, key: str) -> None:
    found = problems(tmp_path, TCP + f'{key} = "{EK}"\n')
    problem = found[f"meters[0](meter_id=D1).{key}"]
    assert problem.file == str(tmp_path / "site.toml")
    assert f"{key}_env" in problem.fix and f"{key}_file" in problem.fix
    assert EK not in str(problem) and EK[:8] not in str(problem)


@pytest.mark.parametrize(("extra", "key", "fix"), [
    ('security = "lls"\n', "password_env", "password_file"),
    ('security = "lls"\npassword_env = "A"\npassword_file = "p"\n', "password_file", "one"),
    ('security = "hls_gmac"\nencryption_key_env = "A"\n', "authentication_key_env",
     "authentication_key_file"),
    ('security = "hls_gmac"\nencryption_key_env = "A"\nencryption_key_file = "k"\n'
     'authentication_key_env = "B"\n', "encryption_key_file", "one"),
    ('password_env = "A"\n', "password_env", 'security = "lls"'),
    ('security = "lls"\npassword_env = "A"\nencryption_key_file = "k"\n',
     "encryption_key_file", 'security = "hls_gmac"'),
    ('security = "hls"\n', "security", "values listed"),
    ('password_env = "not a variable"\n', "password_env", "letters"),
    ('system_title = "4142"\n', "system_title", ""),
    ("window = 8\n", "window", "smaller"),
    ("max_info_length = 4096\n", "max_info_length", "smaller"),
    ('framing = "iec"\n', "framing", "values listed"),
])
def test_security_settings_name_their_key_and_fix(tmp_path: Path, extra: str, key: str,
                                                  fix: str) -> None:
    found = problems(tmp_path, TCP + extra)
    problem = found[f"meters[0](meter_id=D1).{key}"]
    assert problem.fix and fix in problem.fix


def test_secrets_come_from_env_and_files_relative_to_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMI_TEST_EK", EK)
    monkeypatch.setenv("AMI_TEST_AK", AK.upper())
    cfg = load(tmp_path, TCP + HLS_ENV)
    meter = cfg.settings.meters[0]
    assert isinstance(meter, DlmsTcpMeterConfig)
    secrets = resolve_dlms_secrets(cfg, meter, "meters[0](meter_id=D1)")
    assert secrets.keys is not None and secrets.password is None
    assert secrets.keys.encryption.reveal() == bytes.fromhex(EK)
    assert secrets.keys.authentication.reveal() == bytes.fromhex(AK)
    assert EK not in repr(secrets)
    assert secrets.system_title == default_system_title("D1")
    assert secrets.system_title[:3] == b"AMI" and len(secrets.system_title) == 8
    assert default_system_title("D2") != secrets.system_title

    site = tmp_path / "site"
    (site / "keys").mkdir(parents=True)
    (site / "keys" / "pw").write_text("s3cret pass\n")
    cfg = load(site, TCP + 'security = "lls"\npassword_file = "keys/pw"\n'
               'system_title = "4D4D4D0000BC614E"\n')
    meter = cfg.settings.meters[0]
    assert isinstance(meter, DlmsTcpMeterConfig)
    secrets = resolve_dlms_secrets(cfg, meter, "meters[0](meter_id=D1)")
    assert secrets.password is not None and secrets.password.reveal() == b"s3cret pass"
    assert (secrets.keys, secrets.system_title) == (None, bytes.fromhex("4D4D4D0000BC614E"))
    public = load(tmp_path, TCP).settings.meters[0]
    assert isinstance(public, DlmsTcpMeterConfig)
    nothing = resolve_dlms_secrets(cfg, public, "m")
    assert (nothing.password, nothing.keys) == (None, None)


@pytest.mark.parametrize(("ek", "message", "fix"), [
    (None, "AMI_TEST_EK: the environment variable is not set", "export AMI_TEST_EK="),
    (EK[:-2], "30 hex digits", "32 hex digits"),
    (EK[:-1] + "g", "not a hex digit", "hex digits 0-9 a-f"),
])
def test_a_bad_key_in_the_environment_names_file_key_and_fix_never_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ek: str | None, message: str,
        fix: str) -> None:
    if ek is None:
        monkeypatch.delenv("AMI_TEST_EK", raising=False)
    else:
        monkeypatch.setenv("AMI_TEST_EK", ek)
    monkeypatch.setenv("AMI_TEST_AK", AK)
    cfg = load(tmp_path, TCP + HLS_ENV)
    meter = cfg.settings.meters[0]
    assert isinstance(meter, DlmsTcpMeterConfig)
    with pytest.raises(ConfigError) as caught:
        resolve_dlms_secrets(cfg, meter, "meters[0](meter_id=D1)")
    error = caught.value
    assert error.file == str(cfg.file)
    assert error.key == "meters[0](meter_id=D1).encryption_key_env"
    assert message in error.reason and fix in error.fix
    assert EK[:-2] not in str(error) and AK not in str(error)


def test_unreadable_and_malformed_key_files_name_file_key_and_fix(tmp_path: Path) -> None:
    (tmp_path / "ak").write_text(AK + "\n")
    (tmp_path / "bad_ek").write_text("zz" + EK[2:])
    cfg = load(tmp_path, TCP + 'security = "hls_gmac"\nencryption_key_file = "missing_ek"\n'
               'authentication_key_file = "ak"\n')
    meter = cfg.settings.meters[0]
    assert isinstance(meter, DlmsTcpMeterConfig)
    with pytest.raises(ConfigError) as caught:
        resolve_dlms_secrets(cfg, meter, "meters[0](meter_id=D1)")
    assert caught.value.key == "meters[0](meter_id=D1).encryption_key_file"
    assert str(tmp_path / "missing_ek") in caught.value.reason
    assert "does not exist" in caught.value.reason and "create it" in caught.value.fix
    # Both keys wrong: both reported at once, neither key's text shown.
    cfg = load(tmp_path, TCP + 'security = "hls_gmac"\nencryption_key_file = "bad_ek"\n'
               'authentication_key_file = "nope"\n')
    meter = cfg.settings.meters[0]
    assert isinstance(meter, DlmsTcpMeterConfig)
    with pytest.raises(ConfigInvalid) as several:
        resolve_dlms_secrets(cfg, meter, "meters[0](meter_id=D1)")
    assert [p.key for p in several.value.problems] == [
        "meters[0](meter_id=D1).encryption_key_file",
        "meters[0](meter_id=D1).authentication_key_file"]
    assert "not a hex digit" in several.value.problems[0].reason
    assert EK[2:] not in str(several.value) and "zz" not in str(several.value)


def test_dlms_meters_share_an_rs485_port_by_server_physical(tmp_path: Path) -> None:
    cfg = load(tmp_path, serial("D1", extra="server_physical = 17\n")
               + serial("D2", extra="server_physical = 18\n")
               + serial("D3", "/dev/ttyUSB1", extra="baudrate = 19200\n"))
    assert [m.meter_id for m in cfg.settings.meters] == ["D1", "D2", "D3"]


@pytest.mark.parametrize(("text", "reason", "fix"), [
    (serial("D1", extra="server_physical = 17\n") + serial("D2", extra="server_physical = 17\n"),
     "server_physical 17, like meters[0]", "its own server_physical"),
    (serial("D1", extra="server_physical = 17\n") + serial("D2"),
     "has no server_physical", "set server_physical"),
    (serial("D1", extra="server_physical = 17\n")
     + serial("D2", extra="server_physical = 18\nbaudrate = 2400\n"),
     "at 2400 baud", "same baudrate"),
    (serial("D1") + '\n[[meters]]\nmeter_id = "M1"\nprofile = "eastron_sdm120"\n'
     'protocol = "modbus_rtu"\nport = "/dev/ttyUSB0"\n', "reads with dlms_serial",
     "separate ports"),
    (serial("D1", protocol="dlms_optical") + serial("D2", protocol="dlms_optical"),
     "optical probe", "its own port"),
    (serial("D1", protocol="dlms_optical") + serial("D2"), "optical probe", "its own port"),
])
def test_shared_port_mistakes_are_named(tmp_path: Path, text: str, reason: str,
                                        fix: str) -> None:
    found = problems(tmp_path, text)
    problem = found["meters"]
    assert reason in problem.reason and fix in problem.fix
    assert problem.file == str(tmp_path / "site.toml")
