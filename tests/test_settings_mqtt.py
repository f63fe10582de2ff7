"""MQTT meters and the [mqtt] broker in the config: problems named by file, key and fix
(through load_config, assemble and `ami-gateway check`); series from codec mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.assembly import assemble
from gateway.errors import ConfigError
from gateway.model import Unit
from gateway.settings import ConfigInvalid, MqttMeterConfig, load_config
from gateway.settings_mqtt import default_client_id
from tests.test_cli import cli

BROKER = '[mqtt]\nhost = "broker.local"\nusername = "gw"\npassword_env = "AMI_MQTT_PW"\n'
TASMOTA = """
[[meters]]
meter_id = "T1"
protocol = "mqtt"
topic = "tele/{device}/SENSOR"
codec = "tasmota_sml"
max_power_w = 20000
codec_options = { sensor = "MT631", timezone = "Europe/Berlin" }
"""
JSON_UNIT_PATH = """
[[meters]]
meter_id = "J1"
protocol = "mqtt"
topic = "site/J1"
codec = "json"
max_power_w = 20000
[meters.codec_options]
channels = [{ channel = "1.0.1.8.0.255", value = "e.v", unit_path = "e.u" }]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text('[gateway]\ndata_dir = "data"\n' + text)
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, tuple[str, str]]:
    found = exc.value.problems if isinstance(exc.value, ConfigInvalid) else [exc.value]
    return {p.key: (p.reason, p.fix) for p in found}


def test_an_mqtt_meter_loads_with_its_codec_and_broker(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMI_MQTT_PW", "s3cret")
    cfg = load_config(write(tmp_path, BROKER + TASMOTA))
    [meter] = cfg.settings.meters
    assert isinstance(meter, MqttMeterConfig) and meter.codec == "tasmota_sml"
    assert cfg.settings.mqtt is not None and cfg.settings.mqtt.effective_port == 1883
    assembly = assemble(cfg)
    [plan] = assembly.mqtt
    # Every cumulative channel of the mapping (Total_in, Total_out), in kWh.
    assert [(s.channel, s.unit) for s in plan.series] == [
        ("1.0.1.8.0.255", Unit.KWH), ("1.0.2.8.0.255", Unit.KWH)]
    assert plan.timezone == "UTC" and plan.codec.pattern.filter == "tele/+/SENSOR"
    assert [s for s, _ in assembly.pushed_series()] == list(plan.series)
    assert len(assembly.series()) == 2 and assembly.polled_series() == []
    link = assembly.mqtt_link
    assert link is not None and link.password == "s3cret"
    assert link.client_id == default_client_id(cfg.data_dir) == default_client_id(cfg.data_dir)
    assert link.client_id != default_client_id(tmp_path / "elsewhere")


def test_mqtt_meters_without_a_broker(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid) as exc:
        load_config(write(tmp_path, TASMOTA))
    reason, fix = problems(exc)["mqtt"]
    assert "no broker" in reason and fix.startswith("add an [mqtt] section")


@pytest.mark.parametrize(("text", "key", "fix"), [
    (BROKER + TASMOTA.replace("max_power_w = 20000\n", ""), "meters[0](meter_id=T1).max_power_w",
     "set max_power_w to the meter's maximum rating"),
    (BROKER + TASMOTA.replace('codec = "tasmota_sml"', 'codec = "tasmota_sml"\nhost = "x"'),
     "meters[0](meter_id=T1).host", "an MQTT meter is not polled"),
    (BROKER + TASMOTA.replace("Europe/Berlin", "Mars/Olympus"),
     "meters[0](meter_id=T1).codec_options.timezone", "use an IANA name"),
    (BROKER + TASMOTA.replace('sensor = "MT631"', 'sensr = "MT631"'),
     "meters[0](meter_id=T1).codec_options.sensr", "remove it or correct its spelling"),
    (BROKER + TASMOTA.replace("tele/{device}/SENSOR", "tele/#/SENSOR"),
     "meters[0](meter_id=T1).topic", ""),
    (BROKER.replace('password_env = "AMI_MQTT_PW"', 'password = "x"') + TASMOTA,
     "mqtt.password", "give password_env"),
    (BROKER + 'password_file = "pw"\n' + TASMOTA, "mqtt.password_file", "keep one of them"),
    (BROKER + 'ca_file = "ca.pem"\n' + TASMOTA, "mqtt.tls", "set tls = true"),
])
def test_config_problems_name_the_key_and_fix(tmp_path: Path, text: str, key: str,
                                              fix: str) -> None:
    with pytest.raises(ConfigInvalid) as exc:
        load_config(write(tmp_path, text))
    found = problems(exc)
    assert key in found, found
    assert fix in found[key][1]
    assert all(str(tmp_path) in str(p) for p in exc.value.problems)


def test_assembly_problems_name_the_key_and_fix(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMI_MQTT_PW", raising=False)
    text = (BROKER + TASMOTA.replace("max_power_w", 'channels = ["1.0.1.8.0.255", "1.0.16.7.0.255"]'
                                     "\nmax_power_w") + JSON_UNIT_PATH)
    with pytest.raises(ConfigInvalid) as exc:
        assemble(load_config(write(tmp_path, text)))
    found = problems(exc)
    assert set(found) == {"meters[0](meter_id=T1).channels[1]", "meters[1](meter_id=J1).units",
                          "mqtt.password_env"}
    assert "1.0.1.8.0.255, 1.0.2.8.0.255" in found["meters[0](meter_id=T1).channels[1]"][1]
    assert "unit_path" in found["meters[1](meter_id=J1).units"][0]
    assert 'units = { "1.0.1.8.0.255" = "kWh" }' in found["meters[1](meter_id=J1).units"][1]
    assert found["mqtt.password_env"][1] == "export AMI_MQTT_PW=<the broker password>"


def test_a_declared_unit_stores_a_channel_whose_unit_the_payload_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMI_MQTT_PW", "s3cret")
    text = BROKER + JSON_UNIT_PATH.replace(
        "[meters.codec_options]", 'units = { "1.0.1.8.0.255" = "Wh" }\n[meters.codec_options]')
    [plan] = assemble(load_config(write(tmp_path, text))).mqtt
    [series] = plan.series
    assert series.unit is Unit.WH and series.max_power_w == 20000


def test_shelly_series_follow_its_phases_option(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMI_MQTT_PW", "s3cret")
    shelly = ('[[meters]]\nmeter_id = "S1"\nprotocol = "mqtt"\ncodec = "shelly_gen2_em"\n'
              'topic = "pro3em/status/+"\nmax_power_w = 30000\n')
    [plan] = assemble(load_config(write(tmp_path, BROKER + shelly))).mqtt
    assert [s.channel for s in plan.series] == ["1.0.1.8.0.255", "1.0.2.8.0.255"]
    phased = shelly + "codec_options = { phases = true }\n"
    [plan] = assemble(load_config(write(tmp_path, BROKER + phased))).mqtt
    assert len(plan.series) == 8 and {s.unit for s in plan.series} == {Unit.WH}


def test_check_reports_codec_option_problems(tmp_path: Path) -> None:
    bad = write(tmp_path, BROKER + TASMOTA.replace('sensor = "MT631"', 'sensor = ""'))
    done = cli("check", "--config", bad)
    assert done.returncode == 2
    err = " ".join(done.stderr.split())
    assert f"{bad}: meters[0](meter_id=T1).codec_options.sensor" in err and "fix:" in err


def test_check_lists_mqtt_meters(tmp_path: Path) -> None:
    path = write(tmp_path, BROKER.replace('password_env = "AMI_MQTT_PW"\n', "") + TASMOTA)
    done = cli("check", "--config", path)
    assert done.returncode == 0, done.stderr
    assert "valid: 1 meter(s)" in done.stdout
    assert "MQTT meter T1: tasmota_sml on tele/{device}/SENSOR (qos 1); stores " \
           "1.0.1.8.0.255 (kWh), 1.0.2.8.0.255 (kWh)" in done.stdout
    assert "MQTT broker mqtt://broker.local:1883 as ami-gateway-" in done.stdout
