"""JSON values to what a Reading holds: exact numbers, identities and UTC instants.

Every refusal is a :class:`DataError` whose reason starts with the field it concerns.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.errors import DataError

__all__ = ["TimeFormat", "identity", "instant", "number", "scaled"]

TimeFormat = Literal["iso8601", "epoch_s", "epoch_ms"]

#: Significant digits and decimal exponent a meter value may have: far beyond any
#: register, small enough that scaling stays exact and nothing overflows downstream.
_MAX_DIGITS = 30
_MAX_EXPONENT = 24
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: 9999-12-31T23:59:59Z, the last second a datetime holds.
_LAST_S = 253_402_300_799
_MAX_TEXT = 64


def _kind_of(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return f"a boolean ({str(raw).lower()})"
    if isinstance(raw, str):
        shown = raw if len(raw) <= 24 else raw[:24] + "..."
        return f"a string ({shown!r})"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, dict):
        return "an object"
    if isinstance(raw, Decimal):
        return f"a number ({raw})"
    return type(raw).__name__


def number(raw: object, field: str, source: str) -> Decimal:
    """A JSON number as an exact Decimal; booleans, strings and null are refused."""
    if not isinstance(raw, Decimal) or isinstance(raw, bool):
        raise DataError(f"{field}: {_kind_of(raw)} where a number is due", source=source)
    if not raw.is_finite():
        raise DataError(f"{field}: not a finite number", source=source)
    digits = len(raw.as_tuple().digits)
    if digits > _MAX_DIGITS or (raw != 0 and abs(raw.adjusted()) > _MAX_EXPONENT):
        raise DataError(f"{field}: {raw} is out of range for a meter value", source=source)
    return raw


def scaled(value: Decimal, scale: Decimal) -> Decimal:
    """``value * scale`` exactly (both are bounded, so the product fits)."""
    if scale == 1:
        return value
    with localcontext() as context:
        context.prec = 2 * _MAX_DIGITS + 10
        return value * scale


def identity(raw: object, field: str, source: str) -> Decimal:
    """A serial number as a number, as the DLMS driver does: its digits if it is all
    digits, else its UTF-8 bytes read as one big-endian integer (stable per serial)."""
    if isinstance(raw, Decimal) and not isinstance(raw, bool):
        if raw.is_finite() and raw == raw.to_integral_value() and raw >= 0 \
                and len(raw.as_tuple().digits) <= _MAX_TEXT:
            return Decimal(int(raw))
        raise DataError(f"{field}: a serial number must be a whole number or text, not {raw}",
                        source=source)
    if not isinstance(raw, str):
        raise DataError(f"{field}: {_kind_of(raw)} where a serial number is due", source=source)
    text = raw.strip("\x00 ")
    if not text or len(text) > _MAX_TEXT:
        raise DataError(f"{field}: a serial number of {len(text)} characters (1 to "
                        f"{_MAX_TEXT} expected)", source=source)
    if text.isascii() and text.isdigit():
        return Decimal(int(text))
    return Decimal(int.from_bytes(text.encode("utf-8", "surrogatepass"), "big"))


def instant(raw: object, fmt: TimeFormat, field: str, source: str,
            local: ZoneInfo | None = None) -> datetime:
    """A payload timestamp in UTC.

    ``iso8601`` needs a UTC offset unless ``local`` names the device's timezone; a local
    time that a DST change makes ambiguous or skips is read with ``fold=0`` (the first
    of two, or the offset before the change), as :mod:`zoneinfo` does by default.
    ``epoch_s`` / ``epoch_ms`` are numbers of seconds / milliseconds since 1970 UTC.
    """
    if fmt == "iso8601":
        return _iso(raw, field, source, local)
    if not isinstance(raw, Decimal) or isinstance(raw, bool):
        raise DataError(f"{field}: {_kind_of(raw)} where a number of "
                        f"{'seconds' if fmt == 'epoch_s' else 'milliseconds'} since 1970 is due",
                        source=source)
    value = number(raw, field, source)
    seconds = value if fmt == "epoch_s" else value.scaleb(-3)
    if not 0 <= seconds <= _LAST_S:
        raise DataError(f"{field}: {raw} is outside 1970..9999 as {fmt}", source=source)
    micros = int((seconds * 1_000_000).to_integral_value())
    return _EPOCH + timedelta(microseconds=micros)


def _iso(raw: object, field: str, source: str, local: ZoneInfo | None) -> datetime:
    if not isinstance(raw, str):
        raise DataError(f"{field}: {_kind_of(raw)} where an ISO 8601 timestamp is due",
                        source=source)
    try:
        at = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise DataError(f"{field}: {_kind_of(raw)} is not an ISO 8601 timestamp",
                        source=source) from exc
    if at.tzinfo is None:
        if local is None:
            raise DataError(f"{field}: timestamp {raw!r} has no UTC offset (give one, e.g. "
                            "+00:00 or Z)", source=source)
        at = at.replace(tzinfo=local, fold=0)
    try:
        return at.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise DataError(f"{field}: timestamp {raw!r} is out of range", source=source) from exc
