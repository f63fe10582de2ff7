"""MQTT payload codecs: (topic, payload bytes, reception time) in, readings out.

Pure: no broker, no clock (the shell passes ``received_at``). A payload that cannot be
used raises :class:`DataError` whose reason names the field, for quarantine.

A reading's ``at`` is the payload's own timestamp when it has one (also kept as
``meter_at``); without one it is ``received_at`` and ``meter_at`` stays None, which is
how the pipeline tells a gateway-stamped value (fine for cumulative registers). Future
timestamps are kept: validation flags them (Flag.FUTURE).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from gateway.drivers.mqtt.config import (
    ENERGY_UNITS,
    CodecOptions,
    JsonMapOptions,
    MqttInput,
    ShellyGen2EmOptions,
    SmlKey,
    TasmotaSmlOptions,
)
from gateway.drivers.mqtt.json_paths import MISSING, JsonPath, loads_strict
from gateway.drivers.mqtt.topics import TopicPattern
from gateway.drivers.mqtt.values import identity, instant, number, scaled
from gateway.errors import ConfigError, DataError
from gateway.model import SERIAL_NUMBER, Kind, Reading, Unit, require_utc

__all__ = [
    "CODECS",
    "Codec",
    "JsonMapCodec",
    "ShellyGen2EmCodec",
    "TasmotaSmlCodec",
    "build_codec",
    "cumulative_channels",
]

_METER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: Unit texts as payloads write them: exactly, or in another case (Tasmota scripts say
#: "KWh") unless the text starts with a lower-case m: "mWh" is not MWh.
_UNIT_EXACT = {unit.value: unit for unit in Unit}
_UNIT_TEXT = {unit.value.lower(): unit for unit in Unit}


class Codec(Protocol):
    """Reads one kind of payload. ``pattern`` is what to subscribe to."""

    pattern: TopicPattern

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> list[Reading]:
        """The readings of one message; DataError for anything unusable."""
        ...


@dataclass(frozen=True, slots=True)
class _Meaning:
    """What a value is, once found: channel, unit (None: from the payload), kind, scale."""

    channel: str
    unit: Unit | None
    kind: Kind
    scale: Decimal

    @classmethod
    def of(cls, key: SmlKey) -> _Meaning:
        kind = Kind.IDENTITY if key.channel == SERIAL_NUMBER else Kind(key.kind)
        return cls(key.channel, key.unit, kind, key.scale)


class _Base:
    """Topic matching, size and strict parsing, meter id: what every codec shares."""

    def __init__(self, options: CodecOptions, pattern: TopicPattern,
                 meter_id: str | None) -> None:
        self.pattern = pattern
        self._limit = options.max_payload_bytes
        source = options.meter_id
        self._id_placeholder: str | None = None
        self._id_path: JsonPath | None = None
        self._fixed_id = meter_id
        if source is not None and source.path is not None:
            self._id_path = JsonPath(source.path)
        elif source is not None:
            self._id_placeholder = source.placeholder
        elif "meter_id" in pattern.placeholders:
            self._id_placeholder = "meter_id"
        elif meter_id is None:
            raise ConfigError("no meter id: the codec has no meter_id source and the meter "
                              "gives none", key="codec_options.meter_id",
                              fix='set meter_id = { placeholder = "..." } or { path = "..." }')
        if self._id_placeholder is not None and self._id_placeholder not in \
                pattern.placeholders:
            raise ConfigError(f"the topic has no placeholder {{{self._id_placeholder}}}",
                              key="codec_options.meter_id.placeholder",
                              fix="name a placeholder of the topic")

    def _open(self, topic: str, payload: bytes) -> tuple[dict[str, str], object]:
        found = self.pattern.match(topic)
        if found is None:
            raise DataError(f"topic does not match {self.pattern.text!r}", source=topic)
        return found, loads_strict(payload, limit=self._limit, source=topic)

    def _meter_id(self, topic: str, found: Mapping[str, str], document: object) -> str:
        if self._id_placeholder is not None:
            text, field = found[self._id_placeholder], f"topic {{{self._id_placeholder}}}"
        elif self._id_path is not None:
            raw, field = self._id_path.find(document), self._id_path.text
            if raw is MISSING or raw is None:
                raise DataError(f"{field}: missing (the meter id)", source=topic)
            if isinstance(raw, Decimal) and not isinstance(raw, bool) and raw.is_finite() \
                    and raw == raw.to_integral_value() and abs(raw.adjusted()) < 64:
                raw = str(int(raw))
            if not isinstance(raw, str):
                raise DataError(f"{field}: the meter id must be text or a whole number",
                                source=topic)
            text = raw
        else:
            assert self._fixed_id is not None  # checked in __init__
            return self._fixed_id
        if not _METER_ID.match(text):
            raise DataError(f"{field}: meter id {text[:70]!r} is not 1-64 letters, digits or "
                            ". _ : -", source=topic)
        return text

    @staticmethod
    def _reading(meter_id: str, meaning: _Meaning, raw: object, field: str, topic: str,
                 at: datetime, meter_at: datetime | None, unit: Unit | None = None
                 ) -> Reading:
        if meaning.kind is Kind.IDENTITY:
            return Reading(meter_id=meter_id, channel=meaning.channel, at=at, meter_at=meter_at,
                           value=identity(raw, field, topic), unit=Unit.COUNT,
                           kind=Kind.IDENTITY)
        unit = unit or meaning.unit
        assert unit is not None
        value = scaled(number(raw, field, topic), meaning.scale)
        if meaning.kind is Kind.CUMULATIVE:
            if unit not in ENERGY_UNITS:
                raise DataError(f"{field}: a cumulative register in {unit}, not an energy "
                                "unit", source=topic)
            if value < 0:
                raise DataError(f"{field}: negative energy {value} on a cumulative register",
                                source=topic)
        return Reading(meter_id=meter_id, channel=meaning.channel, at=at, meter_at=meter_at,
                       value=value, unit=unit, kind=meaning.kind)


class JsonMapCodec(_Base):
    """Generic JSON: each configured channel's value (and unit) found by a dotted path."""

    def __init__(self, options: JsonMapOptions, pattern: TopicPattern,
                 meter_id: str | None = None) -> None:
        super().__init__(options, pattern, meter_id)
        self._channels = [(c, _Meaning.of(c), JsonPath(c.value),
                           JsonPath(c.unit_path) if c.unit_path else None)
                          for c in options.channels]
        stamp = options.timestamp
        self._time = (JsonPath(stamp.path), stamp.format) if stamp else None

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> list[Reading]:
        received_at = require_utc(received_at, "received_at")
        found, document = self._open(topic, payload)
        meter_id = self._meter_id(topic, found, document)
        at, meter_at = received_at, None
        if self._time is not None:
            path, fmt = self._time
            raw = path.find(document)
            if raw is MISSING or raw is None:
                raise DataError(f"{path.text}: missing (the timestamp)", source=topic)
            at = meter_at = instant(raw, fmt, path.text, topic)
        out: list[Reading] = []
        for spec, meaning, path, unit_path in self._channels:
            raw = path.find(document)
            if raw is MISSING:
                if spec.required:
                    raise DataError(f"{path.text}: missing ({spec.channel})", source=topic)
                continue
            unit = _unit(unit_path.find(document), unit_path.text, topic) if unit_path else None
            out.append(self._reading(meter_id, meaning, raw, path.text, topic, at, meter_at,
                                     unit))
        return out


def _unit(raw: object, field: str, topic: str) -> Unit:
    text = raw.strip() if isinstance(raw, str) else ""
    unit = _UNIT_EXACT.get(text) or (None if text.startswith("m") else
                                     _UNIT_TEXT.get(text.lower()))
    if unit is None:
        shown = repr(raw)[:40] if raw is not MISSING else "missing"
        raise DataError(f"{field}: {shown} is not a known unit", source=topic)
    return unit


#: Tasmota without time synchronisation reports 1970: a Time this early is a clock
#: that was never set, not a reading from the past.
_CLOCK_SET_AFTER = datetime(2016, 1, 1, tzinfo=UTC)


class TasmotaSmlCodec(_Base):
    """Tasmota's ``tele/<topic>/SENSOR`` from a Smart Meter Interface (SML) script.

    The payload is ``{"Time": "2026-03-01T12:00:00", "<sensor>": {"<key>": value}}``
    (https://tasmota.github.io/docs/Smart-Meter-Interface/: the script's meter line
    ``+1,3,s,16,9600,SML`` names the group, each descriptor line's fifth field names a
    key, e.g. ``1,77070100010800ff@1000,Total consumption,KWh,Total_in,4``; evcc's
    Tasmota SML page lists the common names Total_in, Total_out, Power_curr). ``Time``
    is the device's local time without offset: it is read in ``timezone``, and a time
    a DST change makes ambiguous or skips is read with zoneinfo's fold=0 (the earlier
    reading of an ambiguous hour). A Time with an offset (SetOption to add it) is used
    as given. Keys the mapping does not know are ignored: scripts report more than
    meters (temperatures, counters).
    """

    def __init__(self, options: TasmotaSmlOptions, pattern: TopicPattern,
                 meter_id: str | None = None) -> None:
        super().__init__(options, pattern, meter_id)
        self._sensor = options.sensor
        self._zone = ZoneInfo(options.timezone)
        self._device_time = options.time == "device"
        self._keys = {name: _Meaning.of(key) for name, key in options.mapping().items()}

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> list[Reading]:
        received_at = require_utc(received_at, "received_at")
        found, document = self._open(topic, payload)
        if not isinstance(document, dict):
            raise DataError("payload is not a JSON object", source=topic)
        meter_id = self._meter_id(topic, found, document)
        at, meter_at = received_at, None
        if self._device_time:
            if "Time" not in document:
                raise DataError("Time: missing (the device's local time)", source=topic)
            at = meter_at = instant(document["Time"], "iso8601", "Time", topic, self._zone)
            if at < _CLOCK_SET_AFTER:
                raise DataError(f"Time: {document['Time']} is before 2016: the device's clock "
                                "is not set (enable NTP, or time = \"gateway\")", source=topic)
        group = document.get(self._sensor, MISSING)
        if not isinstance(group, dict):
            what = "missing" if group is MISSING else "not an object"
            raise DataError(f"{self._sensor}: {what} (the SML meter's values)", source=topic)
        out: list[Reading] = []
        for key, raw in group.items():
            meaning = self._keys.get(key)
            if meaning is not None:
                out.append(self._reading(meter_id, meaning, raw, f"{self._sensor}.{key}", topic,
                                         at, meter_at))
        if not out:
            raise DataError(f"{self._sensor}: none of the mapped keys "
                            f"({', '.join(sorted(self._keys)[:6])}...) is present", source=topic)
        return out


def _energy(channel: str) -> _Meaning:
    return _Meaning(channel, Unit.WH, Kind.CUMULATIVE, Decimal(1))


def _power(channel: str) -> _Meaning:
    return _Meaning(channel, Unit.W, Kind.INSTANT, Decimal(1))


#: Shelly's status fields (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/
#: EMData#status, .../EM1Data#status, .../EM#status, .../EM1#status): energies in Wh,
#: powers in W (signed: negative is export). OBIS: 1.8/2.8 import/export energy, 16.7
#: net active power; phases L1/L2/L3 at 21/41/61 (import), 22/42/62 (export), 36/56/76.
_TOTALS: dict[str, dict[str, _Meaning]] = {
    "emdata": {"total_act": _energy("1.0.1.8.0.255"),
               "total_act_ret": _energy("1.0.2.8.0.255")},
    "em": {"total_act_power": _power("1.0.16.7.0.255")},
    "em1data": {"total_act_energy": _energy("1.0.1.8.0.255"),
                "total_act_ret_energy": _energy("1.0.2.8.0.255")},
    "em1": {"act_power": _power("1.0.16.7.0.255")},
}
_PHASES: dict[str, dict[str, _Meaning]] = {
    "emdata": {
        **{f"{p}_total_act_energy": _energy(f"1.0.{n}.8.0.255")
           for p, n in (("a", 21), ("b", 41), ("c", 61))},
        **{f"{p}_total_act_ret_energy": _energy(f"1.0.{n}.8.0.255")
           for p, n in (("a", 22), ("b", 42), ("c", 62))},
    },
    "em": {f"{p}_act_power": _power(f"1.0.{n}.7.0.255")
           for p, n in (("a", 36), ("b", 56), ("c", 76))},
}


class ShellyGen2EmCodec(_Base):
    """Shelly Pro 3EM / Pro EM (Gen2+) status over MQTT.

    With ``status_ntf`` on, the device publishes each component's whole status on
    ``<topic_prefix>/status/<component:id>`` (Shelly API docs, MQTT component): the
    last topic level says which component. ``emdata:N`` / ``em1data:N`` carry the
    energy totals, ``em:N`` / ``em1:N`` the instant power; other components (``sys``,
    ``switch:0``...) and other instances than ``component_id`` give no readings. The
    status carries no timestamp: readings are stamped on reception.
    """

    def __init__(self, options: ShellyGen2EmOptions, pattern: TopicPattern,
                 meter_id: str | None = None) -> None:
        super().__init__(options, pattern, meter_id)
        self._id = options.component_id
        self._fields = {name: {**fields, **(_PHASES.get(name, {}) if options.phases else {})}
                        for name, fields in _TOTALS.items()}

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> list[Reading]:
        received_at = require_utc(received_at, "received_at")
        component, _, instance = topic.rpartition("/")[2].partition(":")
        fields = self._fields.get(component)
        found, document = self._open(topic, payload)
        if fields is None or instance != str(self._id):
            return []
        if not isinstance(document, dict):
            raise DataError("payload is not a JSON object", source=topic)
        meter_id = self._meter_id(topic, found, document)
        out: list[Reading] = []
        for name, meaning in fields.items():
            if name not in document:
                raise DataError(f"{name}: missing ({component}:{instance} status)",
                                source=topic)
            out.append(self._reading(meter_id, meaning, document[name], name, topic,
                                     received_at, None))
        return out


_Builder = Callable[[CodecOptions, TopicPattern, "str | None"], Codec]


def _json(o: CodecOptions, p: TopicPattern, m: str | None) -> Codec:
    assert isinstance(o, JsonMapOptions)
    return JsonMapCodec(o, p, m)


def _tasmota(o: CodecOptions, p: TopicPattern, m: str | None) -> Codec:
    assert isinstance(o, TasmotaSmlOptions)
    return TasmotaSmlCodec(o, p, m)


def _shelly(o: CodecOptions, p: TopicPattern, m: str | None) -> Codec:
    assert isinstance(o, ShellyGen2EmOptions)
    return ShellyGen2EmCodec(o, p, m)


#: The codecs a meter may name, by name.
CODECS: dict[str, _Builder] = {"json": _json, "tasmota_sml": _tasmota,
                               "shelly_gen2_em": _shelly}


def build_codec(source: MqttInput, meter_id: str | None = None) -> Codec:
    """The codec a validated MQTT input names; ``meter_id`` is the meter entry's id,
    used when neither the options nor a ``{meter_id}`` placeholder give one."""
    return CODECS[source.codec](source.codec_options, source.pattern, meter_id)


def cumulative_channels(source: MqttInput) -> dict[str, Unit | None]:
    """The cumulative channels a meter's codec can give, each with its configured unit
    (None: the payload names it, ``unit_path``): what a meter may store intervals of."""
    options = source.codec_options
    if isinstance(options, JsonMapOptions):
        return {c.channel: c.unit for c in options.channels if c.kind == "cumulative"
                and c.channel != SERIAL_NUMBER}
    if isinstance(options, TasmotaSmlOptions):
        return {k.channel: k.unit for k in options.mapping().values()
                if k.kind == "cumulative" and k.channel != SERIAL_NUMBER}
    if isinstance(options, ShellyGen2EmOptions):
        fields = [*_TOTALS.values(), *(_PHASES.values() if options.phases else ())]
        return {m.channel: m.unit for group in fields for m in group.values()
                if m.kind is Kind.CUMULATIVE}
    return {}
