"""The secrets of a DLMS meter's association, read from where its config points.

A meter's ``[[meters]]`` entry names an environment variable (``*_env``) or a file
(``*_file``, relative to the config file) for its LLS password or its security suite 0
keys, never the secret itself. They are read here, once, at assembly: so
``ami-gateway check`` reports a variable that is not set, a file that cannot be read
or a key of the wrong length with the config file, the meter's key path and the fix,
and never the secret's text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.drivers.dlms.keys import (
    SecretBytes,
    SuiteKeys,
    key_from_env,
    key_from_file,
    password_from_env,
    password_from_file,
    system_title,
)
from gateway.errors import ConfigError
from gateway.settings import ConfigInvalid, DlmsMeterConfig, LoadedConfig

__all__ = ["SYSTEM_TITLE_MAKER", "DlmsSecrets", "default_system_title", "resolve_dlms_secrets"]

#: The manufacturer part of the system titles the gateway derives for itself.
SYSTEM_TITLE_MAKER = "AMI"


@dataclass(frozen=True, slots=True)
class DlmsSecrets:
    """What a DLMS meter's association needs beyond its config keys."""

    #: The LLS password (security "lls"), else None.
    password: SecretBytes | None
    #: The security suite 0 keys (security "hls_gmac"), else None.
    keys: SuiteKeys | None
    #: Our own system title (8 bytes), sent in the AARQ and used in every ciphered APDU.
    system_title: bytes


def default_system_title(meter_id: str) -> bytes:
    """The gateway's system title towards one meter: "AMI" and 5 bytes of the meter id's
    SHA-256, so it stays the same across restarts and differs between meters."""
    number = int.from_bytes(hashlib.sha256(meter_id.encode()).digest()[:5], "big")
    return system_title(SYSTEM_TITLE_MAKER, number)


def resolve_dlms_secrets(config: LoadedConfig, meter: DlmsMeterConfig, where: str, *,
                         environ: Mapping[str, str] | None = None) -> DlmsSecrets:
    """Read the meter's password or keys. ``where`` is the meter's key path
    (``meters[2](meter_id=M1)``). Raises one ConfigError per problem (ConfigInvalid when
    there are several); no message holds a secret."""
    problems: list[ConfigError] = []

    def read(name: str, *, password: bool = False) -> SecretBytes | None:
        env: str | None = getattr(meter, f"{name}_env")
        file: Path | None = getattr(meter, f"{name}_file")
        try:
            if env is not None:
                return (password_from_env if password else key_from_env)(env, environ)
            if file is not None:
                path = config.file.parent / file
                return (password_from_file if password else key_from_file)(path)
        except ConfigError as exc:
            problems.append(_blamed(config, exc, f"{where}.{name}_{'env' if env else 'file'}",
                                    env, file))
        return None

    password = read("password", password=True) if meter.security == "lls" else None
    keys = None
    if meter.security == "hls_gmac":
        encryption, authentication = read("encryption_key"), read("authentication_key")
        if encryption is not None and authentication is not None:
            keys = SuiteKeys(encryption=encryption, authentication=authentication)
    if problems:
        raise problems[0] if len(problems) == 1 else ConfigInvalid(problems)
    title = bytes.fromhex(meter.system_title) if meter.system_title is not None \
        else default_system_title(meter.meter_id)
    return DlmsSecrets(password=password, keys=keys, system_title=title)


def _blamed(config: LoadedConfig, exc: ConfigError, key: str, env: str | None,
            file: Path | None) -> ConfigError:
    """``exc`` (which names a variable or secret file) as a problem of the config file."""
    if env is not None:
        source = f"environment variable {env}"
    else:
        source = f"{config.file.parent / file}" if file is not None else "the secret"
    return ConfigError(f"{source}: {exc.reason}", file=config.file, key=key, fix=exc.fix)
