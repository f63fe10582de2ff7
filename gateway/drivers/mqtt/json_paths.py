"""Strict JSON for meter payloads, and dotted paths into it.

Python's ``json`` is lenient where a meter payload must not be: it accepts ``NaN``
and ``Infinity``, reads decimals into binary floats and keeps the last of two equal
keys. Here every number is an exact ``Decimal`` from its JSON text (integers too), the
non-standard constants, duplicate keys, text that is not UTF-8 and payloads above the
size limit are refused with a :class:`DataError` that says which.
"""

from __future__ import annotations

import json
from decimal import Decimal

from gateway.errors import ConfigError, DataError

__all__ = ["MISSING", "JsonPath", "loads_strict"]


class _Refused(ValueError):
    """A value the strict parser refuses; its text is the reason."""


def _constant(name: str) -> object:
    raise _Refused(f"{name} is not a number JSON allows")


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def loads_strict(payload: bytes, *, limit: int, source: str) -> object:
    """The JSON document of ``payload``: objects as dicts, numbers as Decimals."""
    if len(payload) > limit:
        raise DataError(f"payload of {len(payload)} bytes exceeds the limit of {limit} "
                        "bytes (max_payload_bytes)", source=source)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"payload is not UTF-8 text (byte {exc.start})",
                        source=source) from exc
    try:
        return json.loads(text, parse_float=Decimal, parse_int=Decimal,
                          parse_constant=_constant, object_pairs_hook=_pairs)
    except _Refused as exc:
        raise DataError(f"invalid JSON: {exc}", source=source) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                        source=source) from exc
    except RecursionError as exc:
        raise DataError("invalid JSON: nested too deeply", source=source) from exc


class _Missing:
    """The marker of a path that leads nowhere (distinct from JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class JsonPath:
    """A dotted path into a JSON document: ``a.b.0.c``. A segment of digits indexes a
    list (or names an object key of digits). Keys holding a dot cannot be reached."""

    __slots__ = ("segments", "text")

    def __init__(self, text: str) -> None:
        segments = tuple(text.split("."))
        if not text or any(not s for s in segments):
            raise ConfigError(f"path {text!r} has an empty segment", key="path",
                              fix="write keys separated by single dots, e.g. data.energy.0")
        self.text = text
        self.segments = segments

    def __repr__(self) -> str:
        return f"JsonPath({self.text!r})"

    def find(self, document: object) -> object:
        """The value at this path, or ``MISSING``."""
        node = document
        for segment in self.segments:
            if isinstance(node, dict):
                if segment not in node:
                    return MISSING
                node = node[segment]
            elif isinstance(node, list) and segment.isascii() and segment.isdigit():
                index = int(segment)
                if index >= len(node):
                    return MISSING
                node = node[index]
            else:
                return MISSING
        return node
