"""Checks shared by the config models: a problem that knows its fix, repeated names."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Fixable", "repeated"]


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
