"""Config of the central ingest (``[ingest]``): the broker it reads the edges from, and
where it stores what they send.

The workers log in as one broker user (``username``, default ``ingest``; the password
from ``password_env`` or ``password_file``, never from the file) and split all edges
through the shared subscription ``$share/<share_group>/ami/v1/+/intervals``. Worker
``N`` connects as ``<client_id_prefix>-<N>`` with a persistent session
(``session_expiry_s``), so messages for a restarted worker wait for it at the broker.

``target`` is ``"sqlite"`` (the ``[store]`` file; its outbox delivers to the
``[[sinks]]``) or the name of an InfluxDB ``[[sinks]]`` entry to write straight to it
(several workers then share no SQLite writer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config_checks import Fixable

__all__ = ["IngestSection"]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class IngestSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    tls: bool = False
    #: The CA that signed the broker's certificate (default: the system's trust store).
    ca_file: Path | None = None
    username: Annotated[str, Field(min_length=1)] = "ingest"
    password_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    password_file: Path | None = None
    share_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "ingest"
    #: Worker N connects as "<prefix>-<N>": stable, so its broker session survives it.
    client_id_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,48}$")] = "ingest"
    #: How long the first message of a group waits for others before the store write.
    batch_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0
    max_batch_messages: Annotated[int, Field(ge=1, le=100_000)] = 500
    max_batch_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    #: Messages held in memory beyond which new ones are dropped unacknowledged (the
    #: edges send them again): bounds memory while the store cannot keep up.
    max_backlog_messages: Annotated[int, Field(ge=1)] = 100_000
    #: How long the broker keeps a disconnected worker's session and its share of the
    #: messages. Long enough for a restart; a worker gone for good holds its share that
    #: long (the edges resend it), unless retired with ``ami-gateway ingest --retire``.
    session_expiry_s: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 600
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    #: "sqlite" (the [store]) or the name of an InfluxDB [[sinks]] entry.
    target: str = "sqlite"

    @model_validator(mode="after")
    def _one_password(self) -> IngestSection:
        if self.password_env is not None and self.password_file is not None:
            raise Fixable("both password_env and password_file are given", "keep one",
                          "password_file")
        if self.ca_file is not None and not self.tls:
            raise Fixable("ca_file is given but tls is false", "set tls = true", "tls")
        return self
