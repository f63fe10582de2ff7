"""DLMS security material: keys that never show themselves, and system titles.

Security suite 0 (Green Book ch. 9) uses two 128-bit keys per association: the global
unicast encryption key (EK, the AES-GCM block cipher key) and the authentication key
(AK, mixed into the additional authenticated data). They come from an environment
variable or a secret file as 32 hex digits and live in :class:`SecretBytes`, whose
``repr``/``str`` print only the length, so a key cannot reach a log line or a
traceback by accident. Errors name the variable or file and the fix, never the text.

System titles (8 bytes: the 3-letter FLAG manufacturer id, then 5 bytes the maker
assigns; Green Book 4.3.4) are not secret.
"""

from __future__ import annotations

import hmac
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.errors import ConfigError

__all__ = [
    "KEY_BYTES",
    "SYSTEM_TITLE_BYTES",
    "SecretBytes",
    "SuiteKeys",
    "check_system_title",
    "key_from_env",
    "key_from_file",
    "parse_key",
    "password_from_env",
    "password_from_file",
    "system_title",
]

KEY_BYTES: Final = 16           # AES-128: security suite 0
SYSTEM_TITLE_BYTES: Final = 8
_HEX_DIGITS: Final = frozenset(string.hexdigits)


class SecretBytes:
    """Bytes that print as ``<key: 16 bytes>``; read them with :meth:`reveal`."""

    __slots__ = ("_label", "_value")

    def __init__(self, value: bytes, *, label: str = "key") -> None:
        self._value = bytes(value)
        self._label = label

    def reveal(self) -> bytes:
        """The secret itself: pass it straight to the cipher, never to a formatter."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"<{self._label}: {len(self._value)} bytes>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBytes):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash((SecretBytes, len(self._value)))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a SecretBytes is not pickled: load the key again where it is needed")


@dataclass(frozen=True, slots=True)
class SuiteKeys:
    """The keys of one association under security suite 0."""

    encryption: SecretBytes       # EK: global unicast encryption key
    authentication: SecretBytes   # AK

    def __post_init__(self) -> None:
        for name, key in (("encryption", self.encryption),
                          ("authentication", self.authentication)):
            if len(key) != KEY_BYTES:
                raise ValueError(f"{name} key is {len(key)} bytes, suite 0 needs {KEY_BYTES}")


def parse_key(text: str, *, file: Path | str | None = None, key: str = "") -> SecretBytes:
    """32 hex digits (spaces, colons and line breaks allowed) -> a 16-byte key.

    ``file``/``key`` name where the text came from, for the error; the error never
    quotes the text, which may be a key typed into the wrong place.
    """
    digits = "".join(ch for ch in text if not ch.isspace() and ch != ":")
    for position, ch in enumerate(digits, start=1):
        if ch not in _HEX_DIGITS:
            raise ConfigError(
                f"the key has a character that is not a hex digit (at digit {position})",
                file=file, key=key,
                fix=f"write the key as {2 * KEY_BYTES} hex digits 0-9 a-f, e.g. "
                    "000102030405060708090a0b0c0d0e0f")
    if len(digits) != 2 * KEY_BYTES:
        raise ConfigError(
            f"the key has {len(digits)} hex digits, security suite 0 (AES-128) needs "
            f"{2 * KEY_BYTES}", file=file, key=key,
            fix=f"give the full {KEY_BYTES}-byte key as {2 * KEY_BYTES} hex digits")
    return SecretBytes(bytes.fromhex(digits))


def key_from_env(var: str, environ: Mapping[str, str] | None = None) -> SecretBytes:
    """The key in environment variable ``var`` (hex text)."""
    env = os.environ if environ is None else environ
    text = env.get(var)
    if text is None or not text.strip():
        raise ConfigError("the environment variable is not set or empty", key=var,
                          fix=f"export {var}=<{2 * KEY_BYTES} hex digits>, or give a key file")
    return parse_key(text, file="environment", key=var)


def key_from_file(path: Path | str) -> SecretBytes:
    """The key in a secret file (hex text; a trailing newline is fine)."""
    return parse_key(_read_secret(path), file=path)


def password_from_env(var: str, environ: Mapping[str, str] | None = None) -> SecretBytes:
    """An LLS password from environment variable ``var``, as its UTF-8 bytes."""
    env = os.environ if environ is None else environ
    text = env.get(var)
    if not text:
        raise ConfigError("the environment variable is not set or empty", key=var,
                          fix=f"export {var}=<the meter's LLS password>, or give a file")
    return SecretBytes(text.encode(), label="password")


def password_from_file(path: Path | str) -> SecretBytes:
    """An LLS password from a secret file; one trailing line break is not part of it."""
    text = _read_secret(path).removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError("the password file is empty", file=path,
                          fix="write the meter's LLS password into the file")
    return SecretBytes(text.encode(), label="password")


def _read_secret(path: Path | str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("the secret file does not exist", file=path,
                          fix="create it (mode 0600) or correct the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the secret file cannot be read ({type(exc).__name__})",
                          file=path, fix="make it a readable UTF-8 text file") from exc


def system_title(manufacturer: str, number: int) -> bytes:
    """A system title: 3 upper-case letters (FLAG id) and a 5-byte number (big-endian)."""
    if len(manufacturer) != 3 or not (manufacturer.isascii() and manufacturer.isalpha()):
        raise ValueError(f"manufacturer id {manufacturer!r} is not 3 ASCII letters")
    if not 0 <= number < 1 << 40:
        raise ValueError(f"system title number {number} does not fit in 5 bytes")
    return manufacturer.upper().encode("ascii") + number.to_bytes(5, "big")


def check_system_title(title: bytes) -> bytes:
    """``title`` itself when it is 8 bytes long (the IV needs exactly 8)."""
    if len(title) != SYSTEM_TITLE_BYTES:
        raise ValueError(f"a system title is {SYSTEM_TITLE_BYTES} bytes, got {len(title)}")
    return bytes(title)
