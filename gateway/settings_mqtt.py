"""Config of the MQTT broker that meters publish to (``[mqtt]``) and how the gateway
logs in to it.

The gateway keeps one connection to this broker for all its MQTT meters (``protocol =
"mqtt"`` in ``[[meters]]``, see ``gateway.drivers.mqtt.config``). Its session is
persistent: the broker keeps the subscriptions and the QoS 1/2 messages published
while the gateway restarts for ``session_expiry_s``, under one ``client_id``. The
password comes from ``password_env`` or ``password_file`` (relative to the config
file), never from the file itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config_checks import Fixable, read_secret
from gateway.errors import ConfigError

__all__ = ["MqttLink", "MqttSection", "default_client_id", "resolve_link"]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class MqttSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    #: Unset: 8883 with tls, else 1883.
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls: bool = False
    #: The CA that signed the broker's certificate (default: the system's trust store).
    ca_file: Path | None = None
    username: Annotated[str, Field(min_length=1)] | None = None
    password_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    password_file: Path | None = None
    #: The session's name at the broker; unset: derived from the data dir, so two
    #: gateways on one broker never take each other's session.
    client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = 60
    #: How long the broker keeps the session (subscriptions, queued QoS 1 readings)
    #: while the gateway is away.
    session_expiry_s: Annotated[int, Field(ge=0, le=4_294_967_294)] = 7 * 86_400

    @model_validator(mode="after")
    def _credentials(self) -> MqttSection:
        if self.password_env is not None and self.password_file is not None:
            raise Fixable("both password_env and password_file are given", "keep one of them",
                          "password_file")
        if self.username is None and (self.password_env or self.password_file):
            raise Fixable("a password without a username", "add username = \"...\"",
                          "username")
        if self.ca_file is not None and not self.tls:
            raise Fixable("ca_file is only used with tls", "set tls = true, or remove ca_file",
                          "tls")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 8883 if self.tls else 1883


def default_client_id(data_dir: Path) -> str:
    """``ami-gateway-<8 hex digits of the data dir>``: stable across restarts of one
    gateway, distinct between gateways."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"ami-gateway-{digest}"


@dataclass(frozen=True)
class MqttLink:
    """The [mqtt] section with what it points to resolved: the broker's port, the
    password and CA file read, the client id decided."""

    section: MqttSection
    client_id: str
    password: str | None
    ca_file: Path | None

    @property
    def device(self) -> str:
        """The broker as logs and the status name it."""
        scheme = "mqtts" if self.section.tls else "mqtt"
        return f"{scheme}://{self.section.host}:{self.section.effective_port}"


def resolve_link(section: MqttSection, file: Path, data_dir: Path) -> MqttLink:
    """Read the password and check the CA file now, so a missing one is a config
    problem (``ami-gateway check``) rather than a failed connection."""
    base = file.parent
    password = read_secret(config_file=file, key="mqtt.password", env=section.password_env,
                           file=section.password_file, what="the broker password")
    ca_file = base / section.ca_file if section.ca_file is not None else None
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"no CA file {ca_file}", file=file, key="mqtt.ca_file",
                          fix="give the PEM file of the CA that signed the broker's certificate")
    return MqttLink(section=section, client_id=section.client_id or default_client_id(data_dir),
                    password=password, ca_file=ca_file)
