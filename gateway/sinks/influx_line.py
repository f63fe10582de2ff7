"""Intervals as InfluxDB line protocol, and back (pure: bytes in, bytes out).

One line per interval::

    interval,channel=1.0.1.8.0.255,meter_id=M-1,unit=Wh \\
        flags=0i,length_s=900i,quality=0i,value=250i 1772949600   (one line)

- measurement ``interval``; tags ``channel``, ``meter_id``, ``unit`` in sorted order
  (InfluxDB's own order, so it does no sorting work on ingest);
- integer fields (``i`` suffix): energy is exact, never a float; ``raw`` only when set;
- the timestamp is the interval start in whole seconds: write with ``precision=s``.

Tag values escape commas, spaces and equals signs with a backslash. What InfluxDB would
refuse or silently mangle is refused here, naming the meter and channel: an empty tag
value, a newline (it ends the line), a backslash (1.x keeps ``\\\\`` doubled, so a
value holding one does not come back as written), a start that is not a whole second,
and an integer outside int64.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from gateway.errors import DataError
from gateway.model import IntervalReading, Quality, Unit

MEASUREMENT = "interval"
_INT64 = (-(1 << 63), (1 << 63) - 1)
_TAG_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\="})
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})


def escape_tag(text: str) -> str:
    """A tag key or value (or field key) in line protocol."""
    return text.translate(_TAG_ESCAPES)


def escape_measurement(text: str) -> str:
    return text.translate(_MEASUREMENT_ESCAPES)


def _where(r: IntervalReading) -> str:
    return f"meter {r.meter_id!r} channel {r.channel!r}"


def _check_tag(r: IntervalReading, key: str, value: str) -> None:
    if not value:
        raise DataError(f"empty {key}: InfluxDB refuses an empty tag value", source=_where(r))
    if "\n" in value or "\r" in value:
        raise DataError(f"{key} holds a line break, which ends a line of line protocol",
                        source=_where(r))
    if "\\" in value:
        raise DataError(f"{key} holds a backslash, which line protocol does not carry "
                        "unchanged", source=_where(r))


def _int(r: IntervalReading, name: str, value: int) -> str:
    if not _INT64[0] <= value <= _INT64[1]:
        raise DataError(f"{name}={value} does not fit InfluxDB's 64-bit integer",
                        source=_where(r))
    return f"{name}={value}i"


class LineEncoder:
    """Encodes intervals; the escaped tag set of each series is built once and kept."""

    def __init__(self, measurement: str = MEASUREMENT) -> None:
        self._measurement = escape_measurement(measurement)
        self._prefix: dict[tuple[str, str, Unit], str] = {}

    def _series_prefix(self, r: IntervalReading) -> str:
        key = (r.meter_id, r.channel, r.unit)
        prefix = self._prefix.get(key)
        if prefix is None:
            tags = {"channel": r.channel, "meter_id": r.meter_id, "unit": str(r.unit)}
            for name, value in tags.items():
                _check_tag(r, name, value)
            prefix = self._measurement + "".join(
                f",{name}={escape_tag(value)}" for name, value in sorted(tags.items())
            )
            self._prefix[key] = prefix
        return prefix

    def encode(self, r: IntervalReading) -> bytes:
        # Every delivered interval passes here: the common case (a whole-second UTC
        # start, every integer inside int64) is one test and one f-string; anything
        # else takes the careful path, which names the problem.
        start, value, raw, flags, length = r.start, r.value, r.raw, r.flags, r.length_s
        if (start.microsecond or start.tzinfo is None or not _INT64[0] <= value <= _INT64[1]
                or not _INT64[0] <= flags <= _INT64[1] or not 0 <= length <= _INT64[1]
                or (raw is not None and not _INT64[0] <= raw <= _INT64[1])):
            return self._encode_checked(r)
        prefix = self._prefix.get((r.meter_id, r.channel, r.unit)) or self._series_prefix(r)
        raw_field = "" if raw is None else f"raw={raw}i,"
        return (f"{prefix} flags={flags}i,length_s={length}i,quality={int(r.quality)}i,"
                f"{raw_field}value={value}i {int(start.timestamp())}").encode()

    def _encode_checked(self, r: IntervalReading) -> bytes:
        if r.start.tzinfo is None:
            raise DataError("start has no UTC offset", source=_where(r))
        if r.start.microsecond:
            raise DataError(f"start {r.start.isoformat()} is not a whole second",
                            source=_where(r))
        fields = [_int(r, "flags", r.flags), _int(r, "length_s", r.length_s),
                  _int(r, "quality", int(r.quality))]
        if r.raw is not None:
            fields.append(_int(r, "raw", r.raw))
        fields.append(_int(r, "value", r.value))
        line = f"{self._series_prefix(r)} {','.join(fields)} {int(r.start.timestamp())}"
        return line.encode()

    def encode_all(self, readings: Iterable[IntervalReading]) -> list[bytes]:
        return [self.encode(r) for r in readings]


def encode_lines(readings: Iterable[IntervalReading]) -> list[bytes]:
    """One line (without a newline) per interval."""
    return LineEncoder().encode_all(readings)


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped; unescape the parts."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _split_raw(text: str, sep: str) -> list[str]:
    """Split on unescaped ``sep``, keeping escapes (for a second split inside)."""
    parts: list[str] = []
    start = i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def decode_line(line: bytes) -> IntervalReading:
    """The interval a line of ``LineEncoder`` describes (integer fields, seconds)."""
    text = line.decode().rstrip("\n")
    try:
        series, fields_text, ts = _split_raw(text, " ")
        _measurement, *tag_parts = _split_raw(series, ",")
        tags: dict[str, str] = {}
        for part in tag_parts:
            key, value = _split(part, "=")
            tags[key] = value
        fields: dict[str, int] = {}
        for part in _split_raw(fields_text, ","):
            name, value = _split(part, "=")
            if not value.endswith("i"):
                raise ValueError(f"field {name} is not an integer: {value}")
            fields[name] = int(value[:-1])
        return IntervalReading(
            meter_id=tags["meter_id"], channel=tags["channel"],
            start=datetime.fromtimestamp(int(ts), UTC), length_s=fields["length_s"],
            value=fields["value"], unit=Unit(tags["unit"]), quality=Quality(fields["quality"]),
            flags=fields["flags"], raw=fields.get("raw"),
        )
    except (ValueError, KeyError) as exc:
        raise DataError(f"not an interval line: {exc}", source=text[:200]) from exc
