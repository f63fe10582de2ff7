"""``[[sinks]] kind = "mqtt_uplink"``: keys, defaults, the secret kept out of the file,
and the sink built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import ConfigInvalid, load_config
from gateway.settings_sinks import UplinkSinkConfig
from gateway.sinks.build import batch_size, build_sinks, sink_problems
from gateway.sinks.influx_sink import InfluxSink
from gateway.sinks.mqtt_uplink import MqttUplinkSink
from gateway.store.sqlite import SqliteStore

UPLINK = '''
[[sinks]]
kind = "mqtt_uplink"
host = "central.example.net"
edge_id = "edge-a"
'''
INFLUX = '''
[[sinks]]
kind = "influxdb"
url = "http://127.0.0.1:8086"
database = "ami"
'''


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigInvalid) as err:
        load_config(path)
    return [f"{p.key}: {p}" for p in err.value.problems]


def test_defaults_tls_on_port_8883_and_a_day_of_session(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(UPLINK + 'password_env = "AMI_UPLINK_PW"\n')
    [sink] = load_config(path).settings.sinks
    assert isinstance(sink, UplinkSinkConfig)
    assert (sink.name, sink.port, sink.tls, sink.session_expiry_s, sink.ack_timeout_s) == \
        ("uplink", 8883, True, 86_400, 30.0)
    assert batch_size(sink) == 5000
    plain = UplinkSinkConfig.model_validate({"kind": "mqtt_uplink", "host": "h",
                                             "edge_id": "e", "tls": False,
                                             "password_env": "P"})
    assert plain.port == 1883


@pytest.mark.parametrize(("extra", "key", "said"), [
    ('password = "secret"\n', "sinks[0].password", "never written into the config"),
    ('password_env = "P"\nedge_id = "edge/a"\n', "sinks[0].edge_id", "'/'"),
    ("", "sinks[0].password_env", "no password"),
    ('password_env = "P"\npassword_file = "pw"\n', "sinks[0].password_file", "both"),
    ('password_env = "P"\ntls = false\nca_file = "ca.pem"\n', "sinks[0].ca_file", "tls"),
    ('password_env = "P"\nbatch_intervals = 20000\n', "sinks[0].batch_intervals", "10000"),
])
def test_bad_uplink_keys_are_named(tmp_path: Path, extra: str, key: str, said: str) -> None:
    text = UPLINK.replace('edge_id = "edge-a"\n', "") if "edge_id" in extra else UPLINK
    [problem] = problems(tmp_path, text + extra)
    assert problem.startswith(f"{key}:") and said in problem


def test_an_unknown_kind_names_the_kinds(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, UPLINK.replace("mqtt_uplink", "kafka"))
    assert problem.startswith("sinks[0].kind:") and "mqtt_uplink" in problem


def test_the_portal_backend_must_be_an_influx_sink(tmp_path: Path) -> None:
    text = '[api]\nbackend = "uplink"\n' + UPLINK + 'password_env = "P"\n'
    [problem] = problems(tmp_path, text)
    assert problem.startswith("api.backend:") and "influxdb" in problem


async def test_each_kind_is_built_in_config_order(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    (tmp_path / "pw").write_text("pw-a\n")
    path.write_text(INFLUX + UPLINK + 'password_file = "pw"\nca_file = "ca.pem"\n'
                    'ack_timeout_s = 5\n')
    config = load_config(path)
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        influx, uplink = build_sinks(config, store)
    finally:
        await store.close()
    assert isinstance(influx, InfluxSink) and isinstance(uplink, MqttUplinkSink)
    assert (uplink.client_id, uplink.port, uplink.ack_timeout_s) == ("edge-edge-a", 8883, 5.0)
    assert uplink.topic == "ami/v1/edge-a/intervals"
    assert sink_problems(config) == []


def test_an_unreadable_password_is_a_problem(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMI_UPLINK_PW", raising=False)
    path = tmp_path / "gateway.toml"
    path.write_text(UPLINK + 'password_env = "AMI_UPLINK_PW"\n')
    [problem] = sink_problems(load_config(path))
    assert isinstance(problem, ConfigError) and problem.key == "sinks[0].password_env"
