"""Config of the sinks the outbox delivers to, and of the outbox itself.

``[[sinks]]`` entries name where stored intervals go besides the local store: InfluxDB
(``kind = "influxdb"``, the v1 ``/write`` endpoint, which InfluxDB 1.x, 2.x and 3.x
accept) or the central site over MQTT (``kind = "mqtt_uplink"``, gateway.uplink).
Credentials are never in the file: ``password_env`` / ``password_file`` for a v1 user,
``token_env`` / ``token_file`` for a 2.x/3.x token (files relative to the config).

``[outbox]`` states the policy when a sink cannot keep up (documented in the README):
nothing is ever dropped; past ``alarm_depth`` queued intervals the gateway raises an
alarm (a critical log line once, ``alarm`` in the status); past ``pause_depth`` it
stops polling the meters whose data can wait: DLMS meters (they keep their load
profile and are caught up later) and meters marked ``billing = false``. Billing
meters without a memory of their own are always read and queued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config_checks import Fixable
from gateway.mqtt_names import check_edge_id

__all__ = ["Fixable", "InfluxSinkConfig", "OutboxSection", "SinkConfig", "UplinkSinkConfig"]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InfluxSinkConfig(_Model):
    """InfluxDB through its v1 HTTP API (``/write`` with line protocol)."""

    kind: Literal["influxdb"]
    #: The sink's name in the outbox and the status (letters, digits, - and _).
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = "influxdb"
    #: http(s)://host:8086, without credentials.
    url: Annotated[str, Field(pattern=r"^https?://[^\s@/]+(:\d+)?(/[^\s]*)?$")]
    database: Annotated[str, Field(min_length=1, max_length=128)]
    retention_policy: Annotated[str, Field(min_length=1)] | None = None
    username: str | None = None
    password_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    password_file: Path | None = None
    token_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    token_file: Path | None = None
    #: Lines per request (InfluxDB's recommendation is 5,000).
    batch_lines: Annotated[int, Field(ge=1, le=100_000)] = 5000
    gzip: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    #: Tries of one request (server unavailable, 429/503) before the batch waits for
    #: the delivery's own backoff.
    retries: Annotated[int, Field(ge=0, le=20)] = 5
    #: CREATE DATABASE at start (InfluxDB 1.x; on 2.x/3.x create the bucket yourself).
    create_database: bool = False

    @model_validator(mode="after")
    def _credentials(self) -> InfluxSinkConfig:
        password = (self.password_env, self.password_file)
        token = (self.token_env, self.token_file)
        for name, pair in (("password", password), ("token", token)):
            if all(v is not None for v in pair):
                raise Fixable(f"both {name}_env and {name}_file are given", "keep one",
                               f"{name}_file")
        has_password = any(v is not None for v in password)
        has_token = any(v is not None for v in token)
        if has_password and has_token:
            raise Fixable("a password and a token are given", "use one: a v1 user "
                           "(username, password_env) or a 2.x/3.x token (token_env)",
                           "token_env")
        if has_password and not self.username:
            raise Fixable("a password without a username", "add username = \"...\"",
                           "username")
        if self.username and not has_password:
            raise Fixable("a username without a password",
                           "add password_env (an environment variable) or password_file",
                           "password_env")
        return self

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")


class UplinkSinkConfig(_Model):
    """The central site over MQTT v5 (payload schema v1, gateway.uplink.schema): a batch
    leaves the outbox only when the central ingest acknowledges having stored it."""

    kind: Literal["mqtt_uplink"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = "uplink"
    host: Annotated[str, Field(min_length=1, pattern=r"^[^\s/@:]+$")]
    #: 8883 with TLS, 1883 without, unless given.
    port: Annotated[int, Field(ge=1, le=65535)]
    #: This edge's id: its MQTT username and the level of its topics (ami/v1/<edge_id>/...).
    edge_id: str
    password_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    password_file: Path | None = None
    tls: bool = True
    #: The CA that signed the broker's certificate (PEM); the system's CAs when not given.
    ca_file: Path | None = None
    #: How long a batch waits for the central ingest's ack before it is sent again.
    ack_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    #: How long the broker keeps this edge's session (its subscription and the acks
    #: queued for it) while the edge is away.
    session_expiry_s: Annotated[int, Field(ge=0, le=4_294_967_295)] = 86_400
    keepalive_s: Annotated[int, Field(ge=5, le=65_535)] = 60
    #: Intervals per message (the contract allows at most 10,000 and 1 MiB).
    batch_intervals: Annotated[int, Field(ge=1, le=10_000)] = 5000

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "port" not in data:
            return {**data, "port": 8883 if data.get("tls", True) is not False else 1883}
        return data

    @field_validator("edge_id")
    @classmethod
    def _edge_id(cls, edge_id: str) -> str:
        try:
            return check_edge_id(edge_id)
        except ValueError as exc:
            raise Fixable(str(exc), "use 1 to 64 characters of A-Z a-z 0-9 _ . - "
                          "(the broker user of this edge)") from exc

    @model_validator(mode="after")
    def _credentials(self) -> UplinkSinkConfig:
        if self.password_env is not None and self.password_file is not None:
            raise Fixable("both password_env and password_file are given", "keep one",
                          "password_file")
        if self.password_env is None and self.password_file is None:
            raise Fixable("no password for the broker user", "add password_env (an "
                          "environment variable holding it) or password_file", "password_env")
        if self.ca_file is not None and not self.tls:
            raise Fixable("ca_file without tls", "set tls = true, or drop ca_file", "ca_file")
        return self


#: Every kind of sink, told apart by ``kind``.
SinkConfig = Annotated[InfluxSinkConfig | UplinkSinkConfig, Field(discriminator="kind")]


class OutboxSection(_Model):
    alarm_depth: Annotated[int, Field(ge=1)] = 500_000
    pause_depth: Annotated[int, Field(ge=1)] = 2_000_000

    @model_validator(mode="after")
    def _ordered(self) -> OutboxSection:
        if self.pause_depth < self.alarm_depth:
            raise Fixable("pause_depth is below alarm_depth",
                           "give pause_depth at least alarm_depth", "pause_depth")
        return self
