"""Reading an edge's interval batch (uplink contract v1) into what the store takes.

Pure: bytes in, a ``Decoded`` batch or ``Malformed`` out. The schema is the uplink's
own (``gateway.uplink.schema``, strict, one DataError naming the field at fault). Its
strictness is per message; the contract's ack can reject single intervals, so when the
field at fault is one interval's (off the series' grid, an unknown quality code, a
float where the contract says integer), the batch is salvaged: each interval is
checked here, the faulty ones rejected with their reason, and the rest decoded by
the schema again, so what is stored has always passed the schema.

Problems of the message as a whole (not JSON, not v1, wrong edge, too large, a bad
series entry) raise ``Malformed``, carrying the batch id and interval count when they
can still be read, so the worker can ack the batch with every interval rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.errors import DataError
from gateway.model import IntervalReading, Quality
from gateway.store import SeriesInfo
from gateway.uplink import schema

__all__ = ["MAX_BYTES", "MAX_INTERVALS", "Decoded", "Malformed", "decode_batch", "encode_ack"]

MAX_BYTES = schema.MAX_MESSAGE_BYTES
MAX_INTERVALS = schema.MAX_INTERVALS
#: Larger messages are not parsed at all, not even for their batch id.
_PARSE_LIMIT = 16 * MAX_BYTES
_INT64 = 1 << 63
_QUALITIES = frozenset(int(q) for q in Quality)
#: Salvage rounds: each rejects at least one more interval or gives up on the batch.
_SALVAGE_ROUNDS = 20


class Malformed(Exception):
    """The message as a whole is unusable; ``batch`` is its id if it could be read."""

    def __init__(self, reason: str, *, batch: str | None = None, count: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.batch = batch
        self.count = count


@dataclass(slots=True)
class Decoded:
    """A batch's usable intervals (``readings``, each at position ``indices[i]`` of the
    batch as sent: what an ack names), its series table, and the rejected intervals."""

    batch: str
    edge: str
    count: int
    series: list[SeriesInfo] = field(default_factory=list)
    readings: list[IntervalReading] = field(default_factory=list)
    indices: Sequence[int] = ()
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def series_of(self, reading: IntervalReading) -> SeriesInfo:
        """The series ``reading`` belongs to, as this batch declares it."""
        return next(s for s in self.series
                    if (s.meter_id, s.channel) == (reading.meter_id, reading.channel))


class _Head(msgspec.Struct):
    intervals: Any = None


_any = msgspec.json.Decoder()
_head = msgspec.json.Decoder(_Head)
_encode = msgspec.json.Encoder().encode


def encode_ack(batch: str, stored: int, rejected: Sequence[tuple[int, str]]) -> bytes:
    """The acknowledgement of a batch (contract v1)."""
    return schema.encode_ack(schema.Ack(batch_id=batch, stored=stored, rejected=list(rejected)))


def decode_batch(payload: bytes, topic_edge: str) -> Decoded:
    """Decode one message received on ``ami/v1/<topic_edge>/intervals``."""
    if len(payload) > MAX_BYTES:
        raise _whole(payload, f"message of {len(payload)} bytes exceeds the limit of "
                              f"{MAX_BYTES}")
    try:
        batch = schema.decode_batch(payload, topic_edge=topic_edge)
    except DataError as exc:
        if not exc.source.startswith("intervals["):
            raise _whole(payload, str(exc)) from None
        return _salvage(payload, topic_edge, exc)
    return _decoded(batch, range(len(batch.intervals)), len(batch.intervals), [])


def _decoded(batch: schema.Batch, where: Sequence[int], count: int,
             rejected: list[tuple[int, str]]) -> Decoded:
    return Decoded(batch=batch.batch_id, edge=batch.edge, count=count, series=batch.series,
                   readings=batch.intervals, indices=where, rejected=rejected)


def _whole(payload: bytes, reason: str) -> Malformed:
    if len(payload) > _PARSE_LIMIT:
        return Malformed(reason)
    batch = schema.batch_id_of(payload)
    count = 0
    if batch is not None:
        try:
            items = _head.decode(payload).intervals
        except msgspec.MsgspecError:
            items = None
        count = min(len(items), MAX_INTERVALS) if isinstance(items, list) else 0
    return Malformed(reason, batch=batch, count=count)


def _salvage(payload: bytes, topic_edge: str, first: DataError) -> Decoded:
    """The schema refused one interval: reject each faulty one, decode the rest."""
    obj = _any.decode(payload)  # the schema parsed it: a JSON object with a list
    items: list[Any] = obj["intervals"]
    rejected = dict(_check_intervals(items, obj.get("series")))
    for _ in range(_SALVAGE_ROUNDS):
        keep = [i for i in range(len(items)) if i not in rejected]
        # With every interval rejected, a probe interval (start 0 is on every grid)
        # still lets the schema judge the rest of the message.
        kept = [items[i] for i in keep] if keep else [[0, 0, 0, 0, 0, None]]
        try:
            batch = schema.decode_batch(_encode({**obj, "intervals": kept}),
                                        topic_edge=topic_edge)
        except DataError as exc:
            pos = _interval_of(exc.source)
            if pos is None or pos >= len(keep):
                raise _whole(payload, str(exc)) from None
            # Named by its index in the batch as sent, not in the salvaged copy.
            where = f"intervals[{keep[pos]}]{exc.source.partition(']')[2]}"
            rejected[keep[pos]] = f"{where}: {str(exc).removeprefix(exc.source + ': ')}"
            continue
        if not keep:
            return Decoded(batch=batch.batch_id, edge=batch.edge, count=len(items),
                           rejected=sorted(rejected.items()))
        return _decoded(batch, keep, len(items), sorted(rejected.items()))
    raise _whole(payload, str(first))


def _interval_of(source: str) -> int | None:
    if not source.startswith("intervals["):
        return None
    number = source[len("intervals["):].partition("]")[0]
    return int(number) if number.isdigit() else None


def _check_intervals(items: Sequence[object], table: object) -> list[tuple[int, str]]:
    """Each interval that the schema would refuse, with the reason (a first pass: the
    schema decodes the rest and has the last word)."""
    lengths = [row[3] if isinstance(row, list) and len(row) == 5 else None
               for row in (table if isinstance(table, list) else [])]
    out = []
    for i, item in enumerate(items):
        problem = _interval_problem(item, lengths)
        if problem is not None:
            out.append((i, f"intervals[{i}]: {problem}"))
    return out


def _interval_problem(item: object, lengths: list[object]) -> str | None:
    if not isinstance(item, list) or len(item) != 6:
        return "is not [series, start, value, quality, flags, raw]"
    sx, start, value, quality, flags, raw = item
    for name, v in (("series", sx), ("start", start), ("value", value), ("quality", quality),
                    ("flags", flags)):
        if type(v) is not int:
            return f"{name} {v!r} is not an integer"
    if raw is not None and type(raw) is not int:
        return f"raw {raw!r} is not an integer or null"
    if not 0 <= sx < len(lengths):
        return f"series index {sx} is not in the series table"
    length = lengths[sx]
    if type(length) is int and length > 0 and start % length:
        return f"start {start} is off the series' {length} s grid"
    if quality not in _QUALITIES:
        return f"quality {quality} is not an ESPI quality code"
    if not 0 <= flags < 1 << 31:
        return f"flags {flags} out of range"
    if not -_INT64 <= value < _INT64 or (raw is not None and not -_INT64 <= raw < _INT64):
        return "value out of the 64-bit range"
    return None
