"""DLMS/COSEM device profiles: which COSEM objects a meter is read for, as validated data.

A DLMS profile is a TOML file in ``config/devices/`` with ``protocol = "dlms"``;
:func:`gateway.profiles.load_profile` dispatches it here. Points name COSEM objects by
OBIS code (IEC 62056-6-1), written dotted ("1.0.1.8.0.255") or reduced ("1-0:1.8.0*255")
and stored dotted; a point's channel is its OBIS code unless it says otherwise, as the
Modbus profiles name their channels.

A point's ``unit`` is the unit its channel is stored in: registers (class 3) and
extended registers (class 4) report their own scaler_unit and the driver converts it to
``unit`` exactly. Data objects (class 1) have none: ``scaler`` says what power of ten
the raw value carries.

Every problem is a :class:`gateway.errors.ConfigError` naming the file, the key path and
the fix; unknown keys are errors, as in the Modbus profiles.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from gateway.drivers.dlms.cosem import Obis
from gateway.model import Kind, Unit
from gateway.profiles import (
    _ENERGY_UNITS,
    DeviceProfile,
    Rollover,
    _config_error,
    _Problem,
    _Strict,
)

__all__ = [
    "AnyProfile",
    "CosemClassId",
    "DlmsPointSpec",
    "DlmsProfile",
    "LoadProfileSpec",
    "load_dlms_profile",
]

#: Data (1), register (3), extended register (4): the classes a point may read.
CosemClassId = Literal[1, 3, 4]


def _dotted(value: object) -> object:
    """An OBIS code in either notation -> the dotted form ("1.0.1.8.0.255")."""
    if not isinstance(value, str):
        return value
    return str(Obis.parse(value))


class DlmsPointSpec(_Strict):
    """One COSEM attribute of the meter and the channel it feeds."""

    #: The object's logical name, stored dotted.
    obis: str
    #: The stored channel; the dotted OBIS code when not given.
    channel: str = Field(min_length=1)
    class_id: CosemClassId = 3
    #: The attribute holding the value (2 for data, register and extended register).
    attribute: int = Field(default=2, ge=1, le=127)
    #: The unit the channel is stored in.
    unit: Unit
    #: Power of ten of a class 1 value (value x 10**scaler in ``unit``); class 3 and 4
    #: objects report their scaler_unit instead.
    scaler: int | None = Field(default=None, ge=-128, le=127)
    kind: Kind
    #: Where a cumulative register wraps: its display digits (and decimals).
    rollover: Rollover | None = None

    _obis = field_validator("obis", mode="before")(_dotted)

    @model_validator(mode="before")
    @classmethod
    def _channel_is_the_obis(cls, data: object) -> object:
        if not isinstance(data, dict) or "channel" in data or not isinstance(data.get("obis"), str):
            return data
        try:
            channel = str(Obis.parse(data["obis"]))
        except ValueError:
            channel = data["obis"]  # the obis key reports the problem
        return {**data, "channel": channel}

    @model_validator(mode="after")
    def _coherent(self) -> DlmsPointSpec:
        if self.scaler is not None and self.class_id != 1:
            raise _Problem("scaler", f"a class {self.class_id} object has its own "
                           "scaler_unit", "remove it: the meter reports its scaler_unit")
        if self.kind is Kind.IDENTITY:
            raise _Problem("kind", "the serial number is not a point of a DLMS profile",
                           "remove the point: serial_obis and read_identity read it")
        if self.kind is Kind.CUMULATIVE and self.unit not in _ENERGY_UNITS:
            raise _Problem("kind", f"a cumulative register counts energy or pulses, not "
                           f"{self.unit}", 'use kind = "instant" or an energy unit')
        if self.rollover is None:
            return self
        if self.kind is not Kind.CUMULATIVE:
            raise _Problem("rollover", "only cumulative registers roll over",
                           'remove rollover or set kind = "cumulative"')
        if self.rollover.bits is not None:
            raise _Problem("rollover.bits", "a DLMS register is a number, not a bit field",
                           "use rollover = { digits = 8 } (the display's digits)")
        return self

    @property
    def rollover_modulus(self) -> Decimal | None:
        """Where the register wraps, in ``unit``; None when it never does."""
        if self.rollover is None:
            return None
        digits = self.rollover.digits or 0
        return Decimal(10) ** (digits - self.rollover.decimals)


class LoadProfileSpec(_Strict):
    """A profile generic object (class 7) whose buffer holds the meter's interval history."""

    obis: str = "1.0.99.1.0.255"
    #: Channels whose values come from the buffer's capture columns (matched by the
    #: point's obis and attribute); None: every cumulative point the meter captures.
    channels: tuple[str, ...] | None = None
    #: The status column (AMR profile status) that flags each entry.
    status_obis: str = "0.0.96.10.1.255"
    #: The capture period the meter must have, if given (the driver checks it).
    capture_period_s: int | None = Field(default=None, ge=1, le=86_400)
    #: How far back the first read after install or a long outage looks.
    catch_up_days: int = Field(default=10, ge=1, le=400)
    #: Entries read per poll at most, so a catch-up is spread over polls.
    max_entries_per_poll: int = Field(default=960, ge=1, le=100_000)

    _obis = field_validator("obis", "status_obis", mode="before")(_dotted)


class DlmsProfile(_Strict):
    """A DLMS meter model: the objects read at each poll, its clock, identity and history."""

    name: str
    manufacturer: str = Field(min_length=1)
    model: str = Field(min_length=1)
    #: Citation of the document the object list was written from.
    source: str = Field(min_length=1)
    protocol: Literal["dlms"]
    #: The meter's maximum rating, for rollover plausibility.
    max_power_w: int = Field(gt=0)
    points: tuple[DlmsPointSpec, ...] = Field(min_length=1)
    load_profile: LoadProfileSpec | None = None
    clock_obis: str = "0.0.1.0.0.255"
    serial_obis: str = "0.0.96.1.0.255"
    logical_device_name_obis: str = "0.0.42.0.0.255"
    #: Read the serial number (and logical device name) at each association.
    read_identity: bool = True

    _obis = field_validator("clock_obis", "serial_obis", "logical_device_name_obis",
                            mode="before")(_dotted)

    @model_validator(mode="after")
    def _consistent(self) -> DlmsProfile:
        channels: set[str] = set()
        for index, point in enumerate(self.points):
            if point.channel in channels:
                raise _Problem(f"points[{index}].channel",
                               f"channel {point.channel!r} appears twice",
                               "give each point its own channel name")
            channels.add(point.channel)
        if self.load_profile is None or self.load_profile.channels is None:
            return self
        cumulative = [p.channel for p in self.points if p.kind is Kind.CUMULATIVE]
        listed: set[str] = set()
        for index, channel in enumerate(self.load_profile.channels):
            key = f"load_profile.channels[{index}]"
            if channel not in cumulative:
                raise _Problem(key, f"{channel!r} is not a cumulative point of this profile",
                               f"use one of: {', '.join(cumulative) or 'none'}")
            if channel in listed:
                raise _Problem(key, f"channel {channel!r} appears twice",
                               "list each channel once")
            listed.add(channel)
        return self

    def point(self, channel: str) -> DlmsPointSpec:
        return next(p for p in self.points if p.channel == channel)


#: A device profile of either protocol.
AnyProfile = DeviceProfile | DlmsProfile


def load_dlms_profile(path: Path, raw: dict[str, Any]) -> DlmsProfile:
    """Validate the parsed TOML of a ``protocol = "dlms"`` file (``name`` is the stem)."""
    try:
        return DlmsProfile.model_validate({**raw, "name": path.stem})
    except ValidationError as exc:
        raise _config_error(path, exc, _fix) from exc


def _fix(problem: Any) -> str:
    kind = problem["type"]
    loc = problem["loc"]
    field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        owner: type[BaseModel] = DlmsProfile
        if "rollover" in loc[:-1]:
            owner = Rollover
        elif "points" in loc[:-1]:
            owner = DlmsPointSpec
        elif "load_profile" in loc[:-1]:
            owner = LoadProfileSpec
        if field in ("address", "table", "type", "scale", "offset", "byte_order",
                     "word_order"):
            return ("remove it: DLMS points name a COSEM object (obis, class_id, attribute); "
                    "the meter reports its scaler_unit")
        allowed = ", ".join(k for k in owner.model_fields if k != "name")
        return f"remove it or correct its spelling; allowed keys: {allowed}"
    if kind == "missing":
        return f"add {field} = ..."
    if kind in ("literal_error", "enum"):
        expected = problem.get("ctx", {}).get("expected", "")
        if field == "class_id":
            return "use 1 (data), 3 (register) or 4 (extended register)"
        return f"use one of {expected}"
    if "obis" in field:
        return f'write {field} as 1.0.1.8.0.255 or 1-0:1.8.0*255'
    if field == "rollover" or "rollover" in loc:
        return "use rollover = { digits = 8 } (and decimals)"
    return f"correct {field}" if field else "correct the value"
