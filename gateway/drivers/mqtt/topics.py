"""MQTT topic patterns: subscription filters with named single-level placeholders.

``meters/{meter_id}/energy`` subscribes as ``meters/+/energy`` and hands back
``{"meter_id": "..."}`` for each topic it matches. ``+`` and ``#`` keep their MQTT
meaning (MQTT 3.1.1 section 4.7: ``+`` one level, ``#`` the rest, last only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import ConfigError

__all__ = ["TopicPattern"]

_NAME = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
#: Characters that would make a placeholder or a wildcard only part of a level.
_SPECIAL = ("+", "#", "{", "}")


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A parsed topic pattern: one entry per level, a placeholder's name or None."""

    text: str
    levels: tuple[str, ...]
    #: For each level, the placeholder it captures (None for a literal or wildcard).
    names: tuple[str | None, ...]

    @classmethod
    def parse(cls, text: str) -> TopicPattern:
        """Validate a pattern; raise ConfigError (key ``topic``) naming what is wrong."""
        if not text:
            raise _bad("the topic is empty", "give a topic such as tele/+/SENSOR")
        if "\x00" in text or len(text.encode("utf-8", "surrogatepass")) > 65535:
            raise _bad("the topic has a NUL character or is longer than 65535 bytes",
                       "give a shorter topic of printable characters")
        levels = tuple(text.split("/"))
        names: list[str | None] = []
        for index, level in enumerate(levels):
            named = _NAME.match(level)
            if named:
                name = named.group(1)
                if name in names:
                    raise _bad(f"placeholder {{{name}}} appears twice",
                               "give each placeholder its own name")
                names.append(name)
                continue
            names.append(None)
            if level == "#":
                if index != len(levels) - 1:
                    raise _bad("'#' may only be the last level",
                               "move # to the end or use + for one level")
                continue
            if level == "+":
                continue
            if any(ch in level for ch in _SPECIAL):
                raise _bad(f"level {level!r} mixes a wildcard or placeholder with text",
                           "a placeholder ({name}), + or # must be a whole level "
                           "between slashes")
        return cls(text=text, levels=levels, names=tuple(names))

    @property
    def filter(self) -> str:
        """The MQTT subscription filter: placeholders become ``+``."""
        return "/".join("+" if name else level for level, name in zip(self.levels, self.names,
                                                                       strict=True))

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(name for name in self.names if name)

    def match(self, topic: str) -> dict[str, str] | None:
        """The placeholders' values if ``topic`` matches, else None.

        As MQTT says, a wildcard at the first level does not match topics starting
        with ``$`` (the broker's own ``$SYS`` tree), and ``a/#`` also matches ``a``.
        """
        parts = topic.split("/")
        if topic.startswith("$") and (self.levels[0] in ("+", "#") or self.names[0]):
            return None
        found: dict[str, str] = {}
        for index, level in enumerate(self.levels):
            if level == "#":
                return found
            if index >= len(parts):
                return None
            name = self.names[index]
            if name is not None:
                found[name] = parts[index]
            elif level != "+" and level != parts[index]:
                return None
        if len(parts) == len(self.levels):
            return found
        return None


def _bad(message: str, fix: str) -> ConfigError:
    return ConfigError(message, key="topic", fix=fix)
