"""Usage markers: a customer's note on a meter's usage history ("new heat pump", "away").

A marker is a point (one local day) or a range of local days (inclusive), with a
label and a category from a fixed vocabulary, so the portal can draw and filter them
and a comparison can ask whether usage changed around them (``gateway.markers_compare``).
Days are the meter's local days, the same days as the daily usage feed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, get_args

import msgspec

from gateway.errors import DataError

__all__ = ["CATEGORIES", "FIRST_DAY", "KINDS", "LABEL_MAX", "LAST_DAY", "NOTE_MAX", "Category",
           "Kind", "Marker", "MarkerFields", "check_fields"]

Kind = Literal["point", "range"]
Category = Literal["appliance", "efficiency", "occupancy", "solar", "ev", "heating_cooling",
                   "other"]
KINDS: tuple[str, ...] = get_args(Kind)
CATEGORIES: tuple[str, ...] = get_args(Category)
LABEL_MAX = 80
NOTE_MAX = 500
#: The days a marker may name: those the store's epoch seconds can hold, with room on
#: both sides for a comparison's windows (so their arithmetic never meets the calendar's end).
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2999, 12, 31)


class MarkerFields(msgspec.Struct, frozen=True, kw_only=True):
    """What a customer sets (on creation, and all of it again on an edit)."""

    kind: Kind
    start: date
    #: Last day of a range, inclusive; ``None`` for a point.
    end: date | None = None
    label: str
    category: Category
    note: str = ""


class Marker(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    meter_id: str
    kind: Kind
    start: date
    end: date | None
    label: str
    category: Category
    note: str
    created_at: datetime
    updated_at: datetime

    @property
    def last(self) -> date:
        """The marker's last day (its start for a point)."""
        return self.end if self.end is not None else self.start


def check_fields(fields: MarkerFields) -> MarkerFields:
    """The fields as stored (label and note stripped), or a ``DataError`` naming the
    rule broken. The API checks the same rules first, to answer with a 422."""
    label, note = fields.label.strip(), fields.note.strip()
    if fields.kind not in KINDS:
        raise DataError(f"kind {fields.kind!r} is not one of {', '.join(KINDS)}", source="kind")
    if fields.category not in CATEGORIES:
        raise DataError(f"category {fields.category!r} is not one of {', '.join(CATEGORIES)}",
                        source="category")
    if not 1 <= len(label) <= LABEL_MAX:
        raise DataError(f"a label has 1 to {LABEL_MAX} characters (not {len(label)})",
                        source="label")
    if len(note) > NOTE_MAX:
        raise DataError(f"a note has at most {NOTE_MAX} characters (not {len(note)})",
                        source="note")
    for name, day in (("start", fields.start), ("end", fields.end)):
        if day is not None and not FIRST_DAY <= day <= LAST_DAY:
            raise DataError(f"{name} {day} is not between {FIRST_DAY} and {LAST_DAY}",
                            source=name)
    if fields.kind == "point" and fields.end is not None:
        raise DataError("a point marker has no end (make it a range)", source="end")
    if fields.kind == "range":
        if fields.end is None:
            raise DataError("a range marker needs an end (its last day, inclusive)",
                            source="end")
        if fields.end < fields.start:
            raise DataError(f"end ({fields.end}) is before start ({fields.start})", source="end")
    return msgspec.structs.replace(fields, label=label, note=note)
