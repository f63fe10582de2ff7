"""Validated options of the MQTT codecs (frozen pydantic models, unknown keys refused).

A ``[[meters]]`` entry read over MQTT says where its payloads arrive and how to read
them::

    [[meters]]
    meter_id = "house-1"
    protocol = "mqtt"
    topic = "tele/{device}/SENSOR"      # MQTT filter; {name} captures one level
    codec = "tasmota_sml"               # json | tasmota_sml | shelly_gen2_em
    [meters.codec_options]
    sensor = "SML"
    timezone = "Europe/Berlin"

:class:`MqttInput` holds those three keys (and ``qos``); a meter model that subclasses
it gets them validated, with ``codec_options`` checked against the chosen codec's
model. Every problem raises :class:`gateway.settings_sinks.Fixable` (a ``ValueError``
carrying the key to blame and the fix), which ``gateway.settings.problems_of`` turns
into a ConfigError naming file, key and fix.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config_checks import Fixable, repeated
from gateway.drivers.mqtt.json_paths import JsonPath
from gateway.drivers.mqtt.topics import TopicPattern
from gateway.drivers.mqtt.values import TimeFormat
from gateway.errors import ConfigError
from gateway.model import SERIAL_NUMBER, Unit

__all__ = [
    "CODEC_OPTIONS",
    "DEFAULT_SML_KEYS",
    "ENERGY_UNITS",
    "ChannelMap",
    "CodecName",
    "CodecOptions",
    "JsonMapOptions",
    "MeterIdSource",
    "MqttInput",
    "ShellyGen2EmOptions",
    "SmlKey",
    "TasmotaSmlOptions",
    "TimestampSpec",
]

#: Units a cumulative register may count in.
ENERGY_UNITS = frozenset({Unit.WH, Unit.KWH, Unit.MWH, Unit.VARH, Unit.KVARH, Unit.VAH,
                          Unit.KVAH, Unit.COUNT})
_PLACEHOLDER = r"^[A-Za-z_][A-Za-z0-9_]*$"
_MAX_SCALE_DIGITS = 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _path(text: str) -> str:
    try:
        JsonPath(text)
    except ConfigError as exc:
        raise Fixable(exc.reason, exc.fix) from exc
    return text


def _scale(value: object) -> object:
    """Exact decimals only: a TOML float (0.1) is already binary, not exact."""
    if isinstance(value, bool | float):
        raise Fixable("scale must be written as a quoted decimal so it stays exact",
                      'write it as a string, e.g. scale = "0.001"')
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return value
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise Fixable(f"scale {value!r} is not a decimal number",
                      'write it as a string, e.g. scale = "0.001"') from None
    if not number.is_finite() or number == 0 or len(number.as_tuple().digits) > \
            _MAX_SCALE_DIGITS or abs(number.adjusted()) > _MAX_SCALE_DIGITS:
        raise Fixable(f"scale {value!r} must be a finite, non-zero decimal of at most "
                      f"{_MAX_SCALE_DIGITS} digits", 'e.g. scale = "0.001"')
    return number


class MeterIdSource(_Model):
    """Where a payload's meter id comes from: a topic placeholder or a payload path.
    Unset, a placeholder named ``meter_id`` is used if the topic has one, else the
    meter entry's own ``meter_id``."""

    placeholder: Annotated[str, Field(pattern=_PLACEHOLDER)] | None = None
    path: str | None = None

    _p = field_validator("path")(lambda v: None if v is None else _path(v))

    @model_validator(mode="after")
    def _one(self) -> MeterIdSource:
        if (self.placeholder is None) == (self.path is None):
            raise Fixable("give exactly one of placeholder or path",
                          'meter_id = { placeholder = "device" } or '
                          'meter_id = { path = "device.id" }')
        return self


class TimestampSpec(_Model):
    """Where the payload's timestamp is and how it is written."""

    path: str
    #: iso8601 (with a UTC offset), epoch_s or epoch_ms (numbers since 1970 UTC).
    format: TimeFormat = "iso8601"

    _p = field_validator("path")(_path)


class SmlKey(_Model):
    """What one value of a Tasmota SML script is."""

    #: OBIS code (``1.0.1.8.0.255``); ``0.0.96.1.0.255`` makes it the meter's identity.
    channel: Annotated[str, Field(min_length=1, max_length=64)]
    #: The unit after scaling; not given for the identity channel.
    unit: Unit | None = None
    kind: Literal["cumulative", "instant"] = "cumulative"
    #: Multiplies the payload's value, as an exact quoted decimal ("0.001": Wh to kWh).
    scale: Decimal = Decimal(1)

    _s = field_validator("scale", mode="before")(_scale)

    @model_validator(mode="after")
    def _coherent(self) -> SmlKey:
        _check_unit(self.channel, self.unit, None, self.kind, self.scale)
        return self


def _check_unit(channel: str, unit: Unit | None, unit_path: str | None, kind: str,
                scale: Decimal) -> None:
    if channel == SERIAL_NUMBER:
        if unit is not None or unit_path is not None or scale != 1:
            raise Fixable("the serial number channel has no unit or scale",
                          "remove unit, unit_path and scale", "unit")
        return
    if (unit is None) == (unit_path is None):
        raise Fixable("give exactly one of unit or unit_path",
                      'e.g. unit = "kWh", or unit_path = "data.unit"', "unit")
    if kind == "cumulative" and unit is not None and unit not in ENERGY_UNITS:
        raise Fixable(f"a cumulative register counts energy or pulses, not {unit}",
                      'use kind = "instant" or an energy unit', "kind")
    if kind == "cumulative" and scale < 0:
        raise Fixable("a cumulative register cannot have a negative scale",
                      "give a positive scale (a negative one only suits instant values)",
                      "scale")


class ChannelMap(SmlKey):
    """One reading of a generic JSON payload: where its value (and unit) is."""

    #: Dotted path of the value (``data.energy.0.value``).
    value: str
    #: Dotted path of a unit text in the payload, instead of a fixed ``unit``.
    unit_path: str | None = None
    #: False: a payload without this value gives the other readings, not an error.
    required: bool = True

    _v = field_validator("value", "unit_path")(lambda v: None if v is None else _path(v))

    @model_validator(mode="after")
    def _coherent(self) -> ChannelMap:
        _check_unit(self.channel, self.unit, self.unit_path, self.kind, self.scale)
        return self


class CodecOptions(_Model):
    """What every codec accepts."""

    #: Payloads above this many bytes are refused before parsing.
    max_payload_bytes: Annotated[int, Field(ge=64, le=1_048_576)] = 65_536
    meter_id: MeterIdSource | None = None


class JsonMapOptions(CodecOptions):
    """Generic JSON: each channel's value found by a dotted path."""

    channels: Annotated[list[ChannelMap], Field(min_length=1)]
    #: Unset: readings are stamped when the gateway received them.
    timestamp: TimestampSpec | None = None

    @field_validator("channels")
    @classmethod
    def _distinct(cls, channels: list[ChannelMap]) -> list[ChannelMap]:
        _distinct_channels([c.channel for c in channels])
        return channels


def _distinct_channels(channels: list[str]) -> None:
    twice = repeated(channels)
    if twice:
        raise Fixable(f"channel {twice[0]!r} appears twice",
                      "give each mapping its own channel")


def _key(channel: str, unit: Unit | None, kind: Literal["cumulative", "instant"] = "cumulative"
         ) -> SmlKey:
    return SmlKey(channel=channel, unit=unit, kind=kind)


#: The names most SML scripts use (Tasmota's Smart Meter Interface examples and the
#: scripts evcc asks for): energy in kWh, power in W, the meter number as identity.
DEFAULT_SML_KEYS: dict[str, SmlKey] = {
    "Total_in": _key("1.0.1.8.0.255", Unit.KWH),
    "Total_out": _key("1.0.2.8.0.255", Unit.KWH),
    "Power_curr": _key("1.0.16.7.0.255", Unit.W, "instant"),
    "Meter_Number": _key(SERIAL_NUMBER, None),
    "Meter_number": _key(SERIAL_NUMBER, None),
    "Meter_Id": _key(SERIAL_NUMBER, None),
    "Meter_id": _key(SERIAL_NUMBER, None),
    **{f"power_l{n}": _key(f"1.0.{16 + 20 * n}.7.0.255", Unit.W, "instant")
       for n in (1, 2, 3)},
    **{f"voltage_l{n}": _key(f"1.0.{12 + 20 * n}.7.0.255", Unit.V, "instant")
       for n in (1, 2, 3)},
    **{f"current_l{n}": _key(f"1.0.{11 + 20 * n}.7.0.255", Unit.A, "instant")
       for n in (1, 2, 3)},
}


class TasmotaSmlOptions(CodecOptions):
    """Tasmota's ``tele/<topic>/SENSOR`` JSON from a Smart Meter Interface script."""

    #: The meter's name in the script's ``+1,...,<name>`` line: its JSON group.
    sensor: Annotated[str, Field(min_length=1, max_length=64)] = "SML"
    #: The device's timezone: Tasmota's ``Time`` is its local time without an offset.
    timezone: str = "UTC"
    #: "device": readings at the payload's Time; "gateway": at reception (a device
    #: whose clock is not synchronised).
    time: Literal["device", "gateway"] = "device"
    #: False: only ``keys`` are read, not the common names of DEFAULT_SML_KEYS.
    defaults: bool = True
    #: Script value names (the JSON keys) to what they are; override the defaults.
    keys: dict[str, SmlKey] = {}

    @field_validator("timezone")
    @classmethod
    def _tz(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise Fixable(f"unknown timezone {name!r}",
                          "use an IANA name such as 'Europe/Berlin'") from exc
        return name

    @model_validator(mode="after")
    def _distinct(self) -> TasmotaSmlOptions:
        mapping = self.mapping()
        channels = [k.channel for k in mapping.values() if k.channel != SERIAL_NUMBER]
        try:
            _distinct_channels(channels)
        except Fixable as exc:
            raise Fixable(str(exc), "map each script value to its own channel (set "
                          "defaults = false to drop the common names)", "keys") from None
        return self

    def mapping(self) -> dict[str, SmlKey]:
        """The keys in force: the defaults (if on) overridden by ``keys``."""
        return {**(DEFAULT_SML_KEYS if self.defaults else {}), **self.keys}


class ShellyGen2EmOptions(CodecOptions):
    """Shelly Gen2+ energy meters' ``<prefix>/status/<component>`` JSON."""

    #: Which ``em``/``emdata`` (Pro 3EM) or ``em1``/``em1data`` (Pro EM channel) instance
    #: this meter is; other instances' payloads are ignored.
    component_id: Annotated[int, Field(ge=0, le=9)] = 0
    #: Per-phase energies and powers of a three-phase EM besides the totals.
    phases: bool = False


CodecName = Literal["json", "tasmota_sml", "shelly_gen2_em"]
CODEC_OPTIONS: dict[str, type[CodecOptions]] = {
    "json": JsonMapOptions,
    "tasmota_sml": TasmotaSmlOptions,
    "shelly_gen2_em": ShellyGen2EmOptions,
}


class MqttInput(_Model):
    """Where a meter's payloads arrive and which codec reads them."""

    #: An MQTT topic filter (+, # as usual) with named placeholders: meters/{meter_id}/data.
    topic: Annotated[str, Field(min_length=1)]
    codec: CodecName
    #: The codec's options (the model of CODEC_OPTIONS[codec]).
    codec_options: CodecOptions = CodecOptions()
    qos: Literal[0, 1, 2] = 1

    @model_validator(mode="before")
    @classmethod
    def _options_of_codec(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        model = CODEC_OPTIONS.get(data.get("codec"))  # type: ignore[arg-type]
        raw = data.get("codec_options", {})
        if model is None or isinstance(raw, CodecOptions):
            return {**data, "codec_options": raw if model else CodecOptions()}
        try:
            options = model.model_validate(raw)
        except ValidationError as exc:
            raise _problem(exc, model) from None
        return {**data, "codec_options": options}

    @field_validator("topic")
    @classmethod
    def _topic(cls, text: str) -> str:
        try:
            TopicPattern.parse(text)
        except ConfigError as exc:
            raise Fixable(exc.reason, exc.fix) from exc
        return text

    @model_validator(mode="after")
    def _placeholder_exists(self) -> MqttInput:
        source = self.codec_options.meter_id
        names = self.pattern.placeholders
        if source is not None and source.placeholder is not None \
                and source.placeholder not in names:
            raise Fixable(f"the topic has no placeholder {{{source.placeholder}}}",
                          f"use one of: {', '.join(names) or 'none (add one to topic)'}",
                          "codec_options.meter_id.placeholder")
        return self

    @property
    def pattern(self) -> TopicPattern:
        return TopicPattern.parse(self.topic)


def _problem(exc: ValidationError, model: type[CodecOptions]) -> Fixable:
    """The first problem of codec_options as a Fixable naming its key."""
    problems = exc.errors(include_url=False)
    first = problems[0]
    loc = [str(p) if not isinstance(p, int) else p for p in first["loc"]
           if not str(p).startswith(("function-", "literal"))]
    key = "codec_options"
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, Fixable):
        message, fix = str(cause), cause.fix
        if cause.key:
            key += f".{cause.key}"
    elif first["type"] == "extra_forbidden":
        message = "unknown key"
        fix = (f"remove it or correct its spelling; {model.__name__} takes: "
               + ", ".join(model.model_fields) if len(loc) == 1 else
               "remove it or correct its spelling")
    elif first["type"] == "missing":
        message, fix = "required key is missing", f"add {loc[-1] if loc else 'it'} = ..."
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
        fix = f"correct {loc[-1]}" if loc else "correct codec_options"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem(s) in codec_options)"
    return Fixable(message, fix, key)
