"""Payload schema v1 of the edge uplink (pure: bytes in, structs out, no I/O, no clock).

A batch (edge -> central) is one UTF-8 JSON object in compact arrays::

    {"v": 1, "edge": "<edge_id>", "batch": "<edge_id>:<first_seq>-<last_seq>",
     "sent_at": "2026-12-02T15:00:00Z",
     "series": [["<meter_id>", "<channel>", "<unit>", <interval_s>, "<timezone>"], ...],
     "intervals": [[<series index>, <start epoch s>, <value>, <quality>, <flags>, <raw|null>]]}

Each series is written once and the intervals point at it by index, so a batch of 5,000
intervals stays near 150 kB. Every number is an integer (energy exact in the series'
base unit, Wh). An ack (central -> edge) names the same batch id::

    {"v": 1, "batch": "<same id>", "stored": <n>, "rejected": [[<index>, "<reason>"], ...]}

Decoding is strict: anything malformed raises ``DataError`` naming the field
(``intervals[3].quality``), so the central ingest can quarantine it with the reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from gateway.errors import DataError
from gateway.model import IntervalReading, Quality, Unit
from gateway.mqtt_names import check_edge_id
from gateway.store import SeriesInfo

__all__ = ["MAX_INTERVALS", "MAX_MESSAGE_BYTES", "MAX_REASON_CHARS", "SCHEMA_VERSION", "Ack",
           "Batch", "batch_id_of", "decode_ack", "decode_batch", "encode_ack", "encode_batch",
           "make_batch_id", "reject_all"]

SCHEMA_VERSION: Final = 1
#: Limits of one message (the contract's): intervals per batch and encoded bytes.
MAX_INTERVALS: Final = 10_000
MAX_MESSAGE_BYTES: Final = 1 << 20
#: A rejection reason longer than this is cut (an ack must stay small).
MAX_REASON_CHARS: Final = 500

T = TypeVar("T")
_I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_NAME = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_BATCH_ID = re.compile(r"([A-Za-z0-9_.-]{1,64}):(\d{1,19})-(\d{1,19})")
#: Epoch seconds from 1970 to 2200: a start outside is a unit mistake (ms), not a time.
_LAST_START = 7_258_118_400


class _SeriesRow(msgspec.Struct, array_like=True, frozen=True):
    meter_id: _NAME
    channel: _NAME
    unit: Unit
    interval_s: Annotated[int, msgspec.Meta(gt=0, le=86_400)]
    timezone: _NAME


class _IntervalRow(msgspec.Struct, array_like=True, frozen=True):
    series: Annotated[int, msgspec.Meta(ge=0)]
    start: Annotated[int, msgspec.Meta(ge=0, le=_LAST_START)]
    value: _I64
    quality: Quality
    flags: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    raw: _I64 | None


class _BatchWire(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    edge: str
    batch: str
    sent_at: datetime
    series: Annotated[list[_SeriesRow], msgspec.Meta(max_length=MAX_INTERVALS)]
    intervals: Annotated[list[_IntervalRow], msgspec.Meta(min_length=1,
                                                          max_length=MAX_INTERVALS)]


class _AckWire(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: int
    batch: str
    stored: Annotated[int, msgspec.Meta(ge=0, le=MAX_INTERVALS)]
    rejected: Annotated[list[tuple[Annotated[int, msgspec.Meta(ge=0, lt=MAX_INTERVALS)], str]],
                        msgspec.Meta(max_length=MAX_INTERVALS)]


class _IdOnly(msgspec.Struct):
    batch: str


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded batch: the series it covers and its intervals, in the batch's order
    (the index an ack's rejection names is the index into ``intervals``)."""

    edge: str
    batch_id: str
    sent_at: datetime
    series: list[SeriesInfo]
    intervals: list[IntervalReading]


class Ack(msgspec.Struct, frozen=True, kw_only=True):
    """The central side has durably stored ``stored`` intervals of batch ``batch_id``
    and refused ``rejected`` (interval index, reason) for good."""

    batch_id: str
    stored: int
    rejected: list[tuple[int, str]] = []


_batch_decoder = msgspec.json.Decoder(_BatchWire)
_ack_decoder = msgspec.json.Decoder(_AckWire)
_id_decoder = msgspec.json.Decoder(_IdOnly)
_encoder = msgspec.json.Encoder()

_INTERVAL_FIELDS = _IntervalRow.__struct_fields__
_SERIES_FIELDS = _SeriesRow.__struct_fields__
_PATH = re.compile(r"\$\.(intervals|series)\[(\d+)\]\[(\d+)\]")


def make_batch_id(edge_id: str, first_seq: int, last_seq: int) -> str:
    """``<edge_id>:<first_seq>-<last_seq>``: the outbox queue numbers a batch covers."""
    return f"{check_edge_id(edge_id)}:{first_seq}-{last_seq}"


def encode_batch(edge_id: str, batch_id: str, intervals: Sequence[IntervalReading],
                 timezones: Mapping[tuple[str, str], str], sent_at: datetime) -> bytes:
    """The v1 batch of ``intervals``; ``timezones`` maps (meter_id, channel) to the
    series' timezone. DataError if a limit of the contract is exceeded or a timezone
    is unknown."""
    _check_batch_id(batch_id, edge_id)
    if not intervals or len(intervals) > MAX_INTERVALS:
        raise DataError(f"a batch holds 1 to {MAX_INTERVALS} intervals, not {len(intervals)}",
                        source="intervals")
    index: dict[tuple[str, str], int] = {}
    series: list[tuple[str, str, str, int, str]] = []
    rows: list[tuple[int, int, int, int, int, int | None]] = []
    for iv in intervals:
        key = (iv.meter_id, iv.channel)
        i = index.get(key)
        if i is None:
            tz = timezones.get(key)
            if tz is None:
                raise DataError(f"no timezone known for meter {iv.meter_id} channel "
                                f"{iv.channel}", source="series")
            i = index[key] = len(series)
            series.append((iv.meter_id, iv.channel, iv.unit.value, iv.length_s, tz))
        rows.append((i, int(iv.start.timestamp()), iv.value, int(iv.quality), iv.flags, iv.raw))
    payload = _encoder.encode({
        "v": SCHEMA_VERSION, "edge": edge_id, "batch": batch_id,
        "sent_at": sent_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "series": series, "intervals": rows})
    if len(payload) > MAX_MESSAGE_BYTES:
        raise DataError(f"the batch encodes to {len(payload)} bytes; the limit is "
                        f"{MAX_MESSAGE_BYTES}: send fewer intervals per batch", source="batch")
    return payload


def decode_batch(payload: bytes, *, topic_edge: str | None = None) -> Batch:
    """Decode a v1 batch strictly; ``topic_edge`` (the edge id of the topic it came on),
    when given, must equal the batch's ``edge``. DataError names the field at fault."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise DataError(f"{len(payload)} bytes; the limit is {MAX_MESSAGE_BYTES}",
                        source="batch")
    wire = _decode(_batch_decoder, payload)
    if wire.v != SCHEMA_VERSION:
        raise DataError(f"schema version {wire.v} is not {SCHEMA_VERSION}", source="v")
    try:
        check_edge_id(wire.edge)
    except ValueError as exc:
        raise DataError(str(exc), source="edge") from exc
    if topic_edge is not None and wire.edge != topic_edge:
        raise DataError(f"edge {wire.edge!r} published on the topic of edge {topic_edge!r}",
                        source="edge")
    _check_batch_id(wire.batch, wire.edge)
    if wire.sent_at.tzinfo is None:
        raise DataError("a time without a zone: end it with Z", source="sent_at")
    series = [_series(i, row) for i, row in enumerate(wire.series)]
    intervals = []
    for i, row in enumerate(wire.intervals):
        if row.series >= len(series):
            raise DataError(f"series index {row.series} is beyond the {len(series)} series",
                            source=f"intervals[{i}].series")
        s = series[row.series]
        if row.start % s.interval_s:
            raise DataError(f"start {row.start} is not on the {s.interval_s} s grid",
                            source=f"intervals[{i}].start")
        intervals.append(IntervalReading(
            meter_id=s.meter_id, channel=s.channel, unit=s.unit, length_s=s.interval_s,
            start=datetime.fromtimestamp(row.start, UTC), value=row.value,
            quality=row.quality, flags=row.flags, raw=row.raw))
    return Batch(edge=wire.edge, batch_id=wire.batch, sent_at=wire.sent_at.astimezone(UTC),
                 series=series, intervals=intervals)


def batch_id_of(payload: bytes) -> str | None:
    """The batch id of a payload that may be malformed otherwise (None: unreadable), so
    a batch refused as a whole can still be acknowledged with every interval rejected."""
    try:
        text = _id_decoder.decode(payload).batch
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return text if _BATCH_ID.fullmatch(text) else None


def reject_all(batch_id: str, count: int, reason: str) -> Ack:
    """The ack of a batch refused as a whole: each of its ``count`` intervals rejected
    (``count`` 0 when even that is unreadable: the edge then moves on with nothing)."""
    return Ack(batch_id=batch_id, stored=0, rejected=[(i, reason) for i in range(count)])


def encode_ack(ack: Ack) -> bytes:
    return _encoder.encode({"v": SCHEMA_VERSION, "batch": ack.batch_id, "stored": ack.stored,
                            "rejected": [[i, r[:MAX_REASON_CHARS]] for i, r in ack.rejected]})


def decode_ack(payload: bytes) -> Ack:
    wire = _decode(_ack_decoder, payload)
    if wire.v != SCHEMA_VERSION:
        raise DataError(f"schema version {wire.v} is not {SCHEMA_VERSION}", source="v")
    if _BATCH_ID.fullmatch(wire.batch) is None:
        raise DataError(f"{wire.batch[:80]!r} is not <edge_id>:<first_seq>-<last_seq>",
                        source="batch")
    seen: set[int] = set()
    for i, _reason in wire.rejected:
        if i in seen:
            raise DataError(f"interval {i} is rejected twice", source="rejected")
        seen.add(i)
    return Ack(batch_id=wire.batch, stored=wire.stored, rejected=sorted(wire.rejected))


def _check_batch_id(batch_id: str, edge_id: str) -> None:
    match = _BATCH_ID.fullmatch(batch_id)
    if match is None or match.group(1) != edge_id:
        raise DataError(f"{batch_id[:80]!r} is not {edge_id}:<first_seq>-<last_seq>",
                        source="batch")
    if int(match.group(2)) > int(match.group(3)):
        raise DataError(f"{batch_id!r}: the first queue number is past the last",
                        source="batch")


def _series(i: int, row: _SeriesRow) -> SeriesInfo:
    if 86_400 % row.interval_s:
        raise DataError(f"{row.interval_s} s does not divide a day",
                        source=f"series[{i}].interval_s")
    if not _known_zone(row.timezone):
        raise DataError(f"unknown timezone {row.timezone!r}", source=f"series[{i}].timezone")
    return SeriesInfo(meter_id=row.meter_id, channel=row.channel, unit=row.unit,
                      interval_s=row.interval_s, timezone=row.timezone)


@functools.lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _decode(decoder: msgspec.json.Decoder[T], payload: bytes) -> T:
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        raise DataError(message, source=_field(path.rstrip("`")) or "batch") from exc
    except msgspec.DecodeError as exc:
        raise DataError(f"not JSON: {exc}", source="batch") from exc


def _field(path: str) -> str:
    """``$.intervals[3][3]`` -> ``intervals[3].quality``: the field by its name."""
    match = _PATH.fullmatch(path)
    if match is None:
        return path.removeprefix("$.")
    table, row, col = match.group(1), match.group(2), int(match.group(3))
    names = _INTERVAL_FIELDS if table == "intervals" else _SERIES_FIELDS
    return f"{table}[{row}].{names[col]}" if col < len(names) else f"{table}[{row}]"
