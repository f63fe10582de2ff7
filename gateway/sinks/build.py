"""Every configured ``[[sinks]]`` entry built into its delivery sink, in config order.

The one place that knows each kind: InfluxDB (``gateway.sinks.influx_sink``) and the
MQTT uplink to the central site (``gateway.sinks.mqtt_uplink``). Secrets are read here,
once, from the environment or a file the config names (never from the config itself).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config_checks import read_secret
from gateway.errors import ConfigError
from gateway.ingest.delivery import Sink
from gateway.settings import LoadedConfig
from gateway.settings_sinks import InfluxSinkConfig, SinkConfig, UplinkSinkConfig
from gateway.sinks import influx_sink
from gateway.store.sqlite import SqliteStore

__all__ = ["batch_size", "build_sinks", "sink_problems", "uplink_password"]


def build_sinks(config: LoadedConfig, store: SqliteStore) -> list[Sink]:
    """One sink per ``[[sinks]]`` entry; ``store`` tells the uplink each series' timezone."""
    out: list[Sink] = []
    for i, sink in enumerate(config.settings.sinks):
        if isinstance(sink, InfluxSinkConfig):
            out.append(influx_sink.build_influx(config, i, sink))
        else:
            out.append(_uplink(config, i, sink, store))
    return out


def batch_size(sink: SinkConfig) -> int:
    """Outbox entries per delivery to ``sink``."""
    return sink.batch_lines if isinstance(sink, InfluxSinkConfig) else sink.batch_intervals


def sink_problems(config: LoadedConfig) -> list[ConfigError]:
    """Every sink whose secret cannot be read, for ``ami-gateway check``."""
    problems: list[ConfigError] = []
    for i, sink in enumerate(config.settings.sinks):
        try:
            if isinstance(sink, InfluxSinkConfig):
                influx_sink.influx_auth(config, sink, f"sinks[{i}]")
            else:
                uplink_password(config, sink, f"sinks[{i}]")
        except ConfigError as exc:
            problems.append(exc)
    return problems


def uplink_password(config: LoadedConfig, sink: UplinkSinkConfig, where: str) -> str:
    """The broker password of the edge, from ``password_env`` or ``password_file``."""
    value = read_secret(config_file=config.file, key=f"{where}.password",
                        env=sink.password_env, file=sink.password_file,
                        what=f"the broker password of {sink.edge_id}")
    assert value is not None  # the config model requires one of the two
    return value
    assert sink.password_file is not None  # the config model requires one of the two
    path = sink.password_file
    path = path if path.is_absolute() else config.file.parent / path
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", file=config.file,
                          key=f"{where}.password_file",
                          fix="point to a readable file holding the password") from exc
    if not value:
        raise ConfigError(f"{path} is empty", file=config.file, key=f"{where}.password_file",
                          fix="write the broker password into it")
    return value


def _uplink(config: LoadedConfig, i: int, sink: UplinkSinkConfig, store: SqliteStore
            ) -> Sink:
    from gateway.sinks.mqtt_uplink import MqttUplinkSink  # aiomqtt only when configured

    async def timezones() -> Mapping[tuple[str, str], str]:
        return {(s.meter_id, s.channel): s.timezone for s in await store.series()}

    ca_file = sink.ca_file
    if ca_file is not None and not ca_file.is_absolute():
        ca_file = config.file.parent / ca_file
    return MqttUplinkSink(
        sink.name, edge_id=sink.edge_id, host=sink.host, port=sink.port,
        password=uplink_password(config, sink, f"sinks[{i}]"), timezones=timezones,
        tls=sink.tls, ca_file=ca_file, ack_timeout_s=sink.ack_timeout_s,
        session_expiry_s=sink.session_expiry_s, keepalive_s=sink.keepalive_s)
