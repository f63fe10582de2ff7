"""Checks shared by the config models: a problem that knows its fix, repeated names, and
secrets read from where the config points."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gateway.errors import ConfigError

__all__ = ["Fixable", "read_secret", "repeated"]


class Fixable(ValueError):
    """A check across keys that knows the fix and, relative to its model, the key to
    blame (``settings.problems_of`` reports both)."""

    def __init__(self, message: str, fix: str, key: str = "") -> None:
        super().__init__(message)
        self.fix = fix
        self.key = key


def repeated(names: Iterable[object]) -> list[str]:
    """The names that occur more than once, sorted (strings only)."""
    seen: set[str] = set()
    twice: set[str] = set()
    for name in names:
        if isinstance(name, str):
            (twice if name in seen else seen).add(name)
    return sorted(twice)


def read_secret(*, config_file: Path, key: str, env: str | None, file: Path | None,
                what: str) -> str | None:
    """A secret the config points to: environment variable ``env`` or ``file``
    (relative to the config file's folder), whitespace around it dropped; None when the
    config names neither. ``key`` is the key path without its ``_env``/``_file`` ending
    (``sinks[0].password``), ``what`` says what the secret is (``the broker password``).
    Every problem is a ConfigError naming the config file, the key and the fix; the
    secret itself never appears in one."""
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(f"environment variable {env} is empty or not set",
                              file=config_file, key=f"{key}_env", fix=f"export {env}=<{what}>")
        return value
    if file is None:
        return None
    path = file if file.is_absolute() else config_file.parent / file
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {path}: {reason}", file=config_file, key=f"{key}_file",
                          fix=f"point to a readable file holding {what}") from exc
    if not value:
        raise ConfigError(f"{path} is empty", file=config_file, key=f"{key}_file",
                          fix=f"write {what} into it")
    return value
