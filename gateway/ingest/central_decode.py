"""Reading an edge's interval batch (uplink contract v1) into what the store takes.

Pure: bytes in, a ``Decoded`` batch or ``Malformed`` out. Whole-message problems
(not JSON, not v1, wrong edge, too large, no interval list) raise ``Malformed``,
carrying the batch id and the interval count when they could still be read, so the
worker can acknowledge the batch with every interval rejected. Problems of single
intervals (off the series' grid, an unknown quality code, a float where the contract
says integer, a bad series entry) reject only those intervals, each with its reason.

The common case, a well-formed batch, is decoded by one typed msgspec pass; only a
batch that fails it is walked value by value to find what exactly is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from gateway.model import IntervalReading, Quality, Unit
from gateway.store import SeriesInfo

__all__ = ["MAX_BYTES", "MAX_INTERVALS", "Accepted", "Decoded", "Malformed", "decode_batch",
           "encode_ack"]

MAX_BYTES = 1024 * 1024
MAX_INTERVALS = 10_000
#: Larger messages are not parsed at all, not even for their batch id.
_PARSE_LIMIT = 16 * MAX_BYTES
_INT64 = 1 << 63
_START_MIN, _START_MAX = 946_684_800, 4_102_444_800  # 2000-01-01 .. 2100-01-01 UTC
_QUALITIES = frozenset(int(q) for q in Quality)
_UNITS = frozenset(str(u) for u in Unit)
_MAX_ID = 128


class Malformed(Exception):
    """The message as a whole is unusable; ``batch`` is its id if it could be read."""

    def __init__(self, reason: str, *, batch: str | None = None, count: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.batch = batch
        self.count = count


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int  # the interval's position in the batch (what the ack names)
    series: int  # its index in the batch's series table
    reading: IntervalReading


@dataclass(slots=True)
class Decoded:
    batch: str
    edge: str
    count: int
    series: dict[int, SeriesInfo] = field(default_factory=dict)
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


class _Wire(msgspec.Struct):
    v: int
    edge: str
    batch: str
    sent_at: str
    series: list[tuple[str, str, str, int, str]]
    intervals: list[tuple[int, int, int, int, int, int | None]]


class _Head(msgspec.Struct):
    batch: Any = None
    intervals: list[msgspec.Raw] | None = None


_Item = tuple[int, int, int, int, int, int | None]
_wire = msgspec.json.Decoder(_Wire)
_any = msgspec.json.Decoder()
_head = msgspec.json.Decoder(_Head)
_ack = msgspec.json.Encoder()


def encode_ack(batch: str, stored: int, rejected: Sequence[tuple[int, str]]) -> bytes:
    """The acknowledgement of a batch (contract v1)."""
    return _ack.encode({"v": 1, "batch": batch, "stored": stored,
                        "rejected": [[i, r] for i, r in rejected]})


def decode_batch(payload: bytes, topic_edge: str) -> Decoded:
    """Decode one message received on ``ami/v1/<topic_edge>/intervals``."""
    if len(payload) > MAX_BYTES:
        batch, count = _head_of(payload) if len(payload) <= _PARSE_LIMIT else (None, 0)
        raise Malformed(f"message of {len(payload)} bytes exceeds the limit of {MAX_BYTES}",
                        batch=batch, count=count)
    try:
        wire = _wire.decode(payload)
    except msgspec.ValidationError:
        return _slow(payload, topic_edge)
    except msgspec.DecodeError as exc:
        raise Malformed(f"not JSON: {exc}") from None
    _check_head(wire.v, wire.edge, wire.batch, len(wire.intervals), topic_edge)
    out = Decoded(batch=wire.batch, edge=wire.edge, count=len(wire.intervals))
    bad_series = _series_table(wire.series, out)
    _intervals(wire.intervals, out, bad_series)
    return out


def _head_of(payload: bytes) -> tuple[str | None, int]:
    try:
        head = _head.decode(payload)
    except msgspec.MsgspecError:
        return None, 0
    batch = head.batch if _usable_id(head.batch) else None
    return batch, len(head.intervals or ())


def _usable_id(batch: object) -> bool:
    return isinstance(batch, str) and 0 < len(batch) <= 256


def _check_head(v: object, edge: object, batch: object, count: int, topic_edge: str) -> None:
    bid = batch if isinstance(batch, str) and _usable_id(batch) else None
    if bid is None:
        raise Malformed("batch id missing or not a string of 1..256 characters", count=count)
    if type(v) is not int or v != 1:
        raise Malformed(f"schema version {v!r} is not 1", batch=bid, count=count)
    if edge != topic_edge:
        raise Malformed(f"edge {edge!r} in the payload differs from the topic's {topic_edge!r}",
                        batch=bid, count=count)
    if count > MAX_INTERVALS:
        raise Malformed(f"{count} intervals exceed the limit of {MAX_INTERVALS}", batch=bid,
                        count=count)


def _slow(payload: bytes, topic_edge: str) -> Decoded:
    """The batch failed the typed decode: find out whether as a whole or item by item."""
    try:
        obj = _any.decode(payload)
    except msgspec.DecodeError as exc:
        raise Malformed(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Malformed(f"payload is a JSON {type(obj).__name__}, not an object")
    intervals, series = obj.get("intervals"), obj.get("series")
    count = len(intervals) if isinstance(intervals, list) else 0
    _check_head(obj.get("v"), obj.get("edge"), obj.get("batch"), count, topic_edge)
    batch = str(obj["batch"])
    if not isinstance(intervals, list):
        raise Malformed("intervals is not a list", batch=batch)
    if not isinstance(series, list):
        raise Malformed("series is not a list", batch=batch, count=count)
    if not isinstance(obj.get("sent_at"), str):
        raise Malformed("sent_at is not a string", batch=batch, count=count)
    out = Decoded(batch=batch, edge=topic_edge, count=count)
    bad_series = _series_table(series, out)
    _intervals(intervals, out, bad_series)
    return out


@lru_cache(maxsize=1024)
def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _series_problem(entry: object) -> str | None:
    if not isinstance(entry, list | tuple) or len(entry) != 5:
        return "is not [meter_id, channel, unit, interval_s, timezone]"
    meter, channel, unit, length, tz = entry
    for name, text in (("meter_id", meter), ("channel", channel)):
        if not isinstance(text, str) or not 0 < len(text) <= _MAX_ID:
            return f"{name} is not a string of 1..{_MAX_ID} characters"
    if unit not in _UNITS:
        return f"unit {unit!r} is not known"
    if type(length) is not int or length <= 0 or 86400 % length:
        return f"interval_s {length!r} does not divide a day"
    if not isinstance(tz, str) or not _zone_ok(tz):
        return f"timezone {tz!r} is not known"
    return None


def _series_table(table: Sequence[object], out: Decoded) -> dict[int, str]:
    bad: dict[int, str] = {}
    for i, entry in enumerate(table):
        problem = _series_problem(entry)
        if problem is not None:
            bad[i] = f"series {i} {problem}"
            continue
        meter, channel, unit, length, tz = cast("tuple[str, str, str, int, str]", entry)
        out.series[i] = SeriesInfo(meter_id=meter, channel=channel, unit=Unit(unit),
                                   interval_s=length, timezone=tz)
    return bad


def _interval_problem(item: object, series: dict[int, SeriesInfo], bad: dict[int, str]
                      ) -> str | None:
    if not isinstance(item, list | tuple) or len(item) != 6:
        return "is not [series, start, value, quality, flags, raw]"
    sx, start, value, quality, flags, raw = item
    for name, v in (("series", sx), ("start", start), ("value", value), ("quality", quality),
                    ("flags", flags)):
        if type(v) is not int:
            return f"{name} {v!r} is not an integer"
    if raw is not None and type(raw) is not int:
        return f"raw {raw!r} is not an integer or null"
    if sx in bad:
        return bad[sx]
    info = series.get(sx)
    if info is None:
        return f"series index {sx} is not in the series table"
    if not _START_MIN <= start < _START_MAX:
        return f"start {start} is outside 2000..2100"
    if start % info.interval_s:
        return f"start {start} is off the series' {info.interval_s} s grid"
    if quality not in _QUALITIES:
        return f"quality {quality} is not an ESPI quality code"
    if not 0 <= flags < 1 << 31:
        return f"flags {flags} out of range"
    if not -_INT64 <= value < _INT64 or (raw is not None and not -_INT64 <= raw < _INT64):
        return "value out of the 64-bit range"
    return None


def _intervals(items: Sequence[object], out: Decoded, bad: dict[int, str]) -> None:
    series = out.series
    accepted, rejected = out.accepted, out.rejected
    fromts = datetime.fromtimestamp
    for i, item in enumerate(items):
        problem = _interval_problem(item, series, bad)
        if problem is not None:
            rejected.append((i, problem))
            continue
        sx, start, value, quality, flags, raw = cast(_Item, item)
        info = series[sx]
        reading = IntervalReading(
            meter_id=info.meter_id, channel=info.channel, start=fromts(start, UTC),
            length_s=info.interval_s, value=value, unit=info.unit, quality=Quality(quality),
            flags=flags, raw=raw)
        accepted.append(Accepted(i, sx, reading))
