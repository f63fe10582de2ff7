"""InfluxDB as a delivery sink (``gateway.ingest.delivery.Sink``), built from config.

An interval that cannot be encoded as line protocol (a tag value InfluxDB would mangle)
is refused like one the server refuses: quarantined with its reason, the rest of the
batch written. Credentials come from the environment or a file named by the config,
read once at start (``gateway.sinks.build`` builds every kind of sink and checks
their credentials for ``ami-gateway check``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.config_checks import read_secret
from gateway.errors import DataError
from gateway.model import IntervalReading
from gateway.settings import LoadedConfig
from gateway.settings_sinks import InfluxSinkConfig
from gateway.sinks.influx_http import InfluxAuth, InfluxWriter
from gateway.sinks.influx_line import LineEncoder

__all__ = ["InfluxSink", "build_influx", "influx_auth"]


class InfluxSink:
    def __init__(self, name: str, writer: InfluxWriter, *, create_database: bool = False
                 ) -> None:
        self.name = name
        self.writer = writer
        self._create = create_database
        self._encoder = LineEncoder()

    async def open(self) -> None:
        await self.writer.open()
        if self._create:
            await self.writer.ensure_database()

    async def close(self) -> None:
        await self.writer.close()

    async def deliver(self, batch: Sequence[IntervalReading]) -> list[tuple[int, str]]:
        lines: list[bytes] = []
        where: list[int] = []  # batch index of each line
        refused: list[tuple[int, str]] = []
        for i, interval in enumerate(batch):
            try:
                lines.append(self._encoder.encode(interval))
            except DataError as exc:
                refused.append((i, f"not writable as line protocol: {exc}"))
                continue
            where.append(i)
        if lines:
            outcome = await self.writer.write(lines)
            refused.extend((where[j], reason) for j, reason in outcome.rejected)
        return sorted(refused)


def _secret(config: LoadedConfig, where: str, name: str, env: str | None,
            file: Path | None) -> str | None:
    return read_secret(config_file=config.file, key=f"{where}.{name}", env=env, file=file,
                       what=f"the InfluxDB {name}")


def influx_auth(config: LoadedConfig, sink: InfluxSinkConfig, where: str) -> InfluxAuth | None:
    token = _secret(config, where, "token", sink.token_env, sink.token_file)
    if token is not None:
        return InfluxAuth.with_token(token)
    password = _secret(config, where, "password", sink.password_env, sink.password_file)
    if password is not None and sink.username:
        return InfluxAuth.v1(sink.username, password)
    return None


def build_influx(config: LoadedConfig, i: int, sink: InfluxSinkConfig) -> InfluxSink:
    """The InfluxDB sink of ``[[sinks]]`` entry ``i``."""
    writer = InfluxWriter(sink.url, sink.database,
                          auth=influx_auth(config, sink, f"sinks[{i}]"),
                          retention_policy=sink.retention_policy, gzip=sink.gzip,
                          batch_lines=sink.batch_lines, timeout_s=sink.timeout_s,
                          retries=sink.retries)
    return InfluxSink(sink.name, writer, create_database=sink.create_database)
