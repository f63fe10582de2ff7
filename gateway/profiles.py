"""Device profiles: what a meter's registers mean, as validated data.

A profile is one TOML file in ``config/devices/`` (the file stem is its name). It is
validated into frozen pydantic models here; drivers stay generic per protocol.

Addressing convention: ``address`` is the 0-based *protocol* address that goes on the
wire. Datasheets often print 1-based "reference numbers" with a table prefix: input
register 30001 is protocol address 0 of the input table, holding register 40001 is
address 0 of the holding table (address = reference number - 30001 or - 40001).

Every problem is a :class:`gateway.errors.ConfigError` that names the file, the key path
(``points[3].type``) and a fix. Unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError
from gateway.model import Kind, Unit

if TYPE_CHECKING:  # gateway.profiles_dlms builds on this module
    from gateway.profiles_dlms import AnyProfile

__all__ = [
    "PROFILES_DIR",
    "PROFILE_PROTOCOLS",
    "WIDTH",
    "ByteOrder",
    "DeviceProfile",
    "Identify",
    "PointSpec",
    "RegisterType",
    "Rollover",
    "SignatureCheck",
    "Table",
    "WordOrder",
    "load_profile",
    "load_profiles",
    "modbus_profiles",
]

#: The profiles shipped with the project (a source checkout's ``config/devices``).
#: The bundled device profiles; AMI_PROFILES_DIR overrides (an installed package, a container).
PROFILES_DIR = Path(
    os.environ.get("AMI_PROFILES_DIR")
    or Path(__file__).resolve().parent.parent / "config" / "devices"
)

Table = Literal["input", "holding"]
RegisterType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"
]
ByteOrder = Literal["big", "little"]
WordOrder = Literal["big", "little"]

#: Registers (16-bit words) each type occupies.
WIDTH: dict[str, int] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
    "int64": 4, "uint64": 4, "float32": 2, "float64": 4,
}
_UNSIGNED = {"uint16", "uint32", "uint64"}
_ENERGY_UNITS = {
    Unit.WH, Unit.KWH, Unit.MWH, Unit.VARH, Unit.KVARH, Unit.VAH, Unit.KVAH, Unit.COUNT,
}
#: Keys a point may leave out and take from the profile's top level.
_INHERITED = ("table", "type", "byte_order", "word_order")


def _exact_decimal(value: object, what: str) -> object:
    """Accept ints and strings only: a TOML float (0.1) is already binary, not exact."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number written as a string, not a boolean")
    if isinstance(value, float):
        raise ValueError(f"{what} must be written as a string so it stays exact")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{what} {value!r} is not a decimal number") from None
        if not number.is_finite():
            raise ValueError(f"{what} must be finite")
        return number
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rollover(_Strict):
    """Where a cumulative register wraps: after N decimal digits or N bits."""

    digits: int | None = Field(default=None, ge=1, le=20)
    #: Decimal places among ``digits`` (a 6-digit display with 1 decimal wraps at 99999.9).
    decimals: int = Field(default=0, ge=0, le=19)
    bits: int | None = Field(default=None, ge=1, le=64)

    @model_validator(mode="after")
    def _one_kind(self) -> Rollover:
        if (self.digits is None) == (self.bits is None):
            raise _Problem("digits", "give exactly one of digits or bits",
                           "rollover = { digits = 6 } or rollover = { bits = 16 }")
        if self.bits is not None and self.decimals:
            raise _Problem("decimals", "decimals goes with digits, not with bits",
                           "remove decimals")
        if self.digits is not None and self.decimals >= self.digits:
            raise _Problem("decimals", "decimals must be fewer than digits",
                           "count the decimals among the register's digits")
        return self


class PointSpec(_Strict):
    """One value of the device: where it lives, how it is encoded, what it means."""

    #: OBIS code where one exists (``1.0.1.8.0.255``), else a clear snake_case name.
    channel: str = Field(min_length=1)
    #: 0-based protocol address (see the module docstring for 30001-style numbers).
    address: int = Field(ge=0, le=65535)
    table: Table
    type: RegisterType
    byte_order: ByteOrder
    word_order: WordOrder
    scale: Decimal = Decimal(1)
    offset: Decimal = Decimal(0)
    unit: Unit
    kind: Kind
    rollover: Rollover | None = None

    @field_validator("scale", "offset", mode="before")
    @classmethod
    def _exact(cls, value: object, info: Any) -> object:
        return _exact_decimal(value, info.field_name)

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, value: Decimal) -> Decimal:
        if value == 0:
            raise ValueError("scale must not be zero")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> PointSpec:
        if self.address + self.width > 65536:
            raise _Problem("address", f"a {self.type} at {self.address} runs past 65535",
                           "check the address (0-based protocol address)")
        if self.kind is Kind.CUMULATIVE and self.unit not in _ENERGY_UNITS:
            raise _Problem("kind", f"a cumulative register counts energy or pulses, not "
                           f"{self.unit}", 'use kind = "instant" or an energy unit')
        if self.rollover is None:
            return self
        if self.kind is not Kind.CUMULATIVE:
            raise _Problem("rollover", "only cumulative registers roll over",
                           "remove rollover or set kind = \"cumulative\"")
        if self.offset != 0:
            raise _Problem("offset", "a register that rolls over cannot have an offset",
                           "remove offset")
        bits = self.rollover.bits
        if bits is not None and self.type not in _UNSIGNED:
            raise _Problem("rollover.bits", f"bits rollover needs an unsigned type, not "
                           f"{self.type}", "use uint16, uint32 or uint64, or digits")
        if bits is not None and bits > 16 * self.width:
            raise _Problem("rollover.bits", f"{bits} bits do not fit a {self.type}",
                           f"use at most {16 * self.width} bits or a wider type")
        return self

    @property
    def width(self) -> int:
        """Registers the value occupies."""
        return WIDTH[self.type]

    @property
    def end(self) -> int:
        """One past the last register of the value."""
        return self.address + self.width

    @property
    def rollover_modulus(self) -> Decimal | None:
        """The wrap modulus in value units (after scale), or None if it never wraps."""
        if self.rollover is None:
            return None
        if self.rollover.bits is not None:
            return Decimal(2**self.rollover.bits) * self.scale
        digits = self.rollover.digits or 0
        return Decimal(10) ** (digits - self.rollover.decimals)


class SignatureCheck(_Strict):
    """One point of the profile that must read a plausible value (in its unit) for a
    device to be taken for this model: voltage 90..270 V, frequency 45..65 Hz."""

    channel: str = Field(min_length=1)
    min: Decimal
    max: Decimal
    #: False: a passing check raises the match's rank, a failing one does not rule the
    #: model out (the other phases of a three-phase meter serving one phase).
    required: bool = True

    @field_validator("min", "max", mode="before")
    @classmethod
    def _exact(cls, value: object, info: Any) -> object:
        return _exact_decimal(value, info.field_name)

    @model_validator(mode="after")
    def _ordered(self) -> SignatureCheck:
        if self.min > self.max:
            raise _Problem("min", f"min {self.min} is above max {self.max}",
                           "swap min and max")
        return self


class Identify(_Strict):
    """How commissioning recognises the model (``[identify]``): what it answers to
    Read Device Identification (function 43/14), where the vendor documents it, else
    a signature of plausible readings at this profile's addresses."""

    #: FC 43/14 VendorName as the vendor documents it.
    vendor_name: str | None = None
    #: FC 43/14 ProductCode values (or their prefixes) that mean this model; empty:
    #: the device has no documented device identification.
    product_codes: tuple[str, ...] = ()
    #: Checks that all pass on this model (the fallback when FC 43/14 is refused).
    signature: tuple[SignatureCheck, ...] = ()


class DeviceProfile(_Strict):
    """A meter model's register map and link behaviour."""

    name: str
    manufacturer: str = Field(min_length=1)
    model: str = Field(min_length=1)
    #: Citation of the register table document this profile was written from.
    source: str = Field(min_length=1)
    protocol: Literal["modbus"] = "modbus"
    #: The device's own limit on registers per read (Modbus itself allows 125).
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    #: How long the device takes to answer once a request has arrived.
    turnaround_ms: int = Field(default=0, ge=0, le=60_000)
    #: Silence the device needs between the end of a reply and the next request.
    inter_request_ms: int = Field(default=0, ge=0, le=60_000)
    #: Quirk: False when the device rejects reads that span unmapped registers.
    allow_gap_reads: bool = True
    #: The meter's maximum rating, for rollover plausibility.
    max_power_w: int = Field(gt=0)
    #: Defaults for points that do not say otherwise.
    table: Table = "holding"
    type: RegisterType | None = None
    byte_order: ByteOrder = "big"
    word_order: WordOrder = "big"
    points: tuple[PointSpec, ...] = Field(min_length=1)
    #: How commissioning recognises the model (optional).
    identify: Identify | None = None

    @model_validator(mode="before")
    @classmethod
    def _inherit_defaults(cls, data: object) -> object:
        if not isinstance(data, dict) or not isinstance(data.get("points"), list):
            return data
        defaults = {"table": "holding", "byte_order": "big", "word_order": "big"}
        defaults |= {key: data[key] for key in _INHERITED if data.get(key) is not None}
        points = [
            {**defaults, **point} if isinstance(point, dict) else point
            for point in data["points"]
        ]
        return {**data, "points": points}

    @model_validator(mode="after")
    def _distinct(self) -> DeviceProfile:
        channels: set[str] = set()
        for index, point in enumerate(self.points):
            if point.channel in channels:
                raise _Problem(f"points[{index}].channel",
                               f"channel {point.channel!r} appears twice",
                               "give each point its own channel name")
            channels.add(point.channel)
            if point.width > self.max_registers_per_request:
                raise _Problem(f"points[{index}].type", "wider than max_registers_per_request",
                               "raise max_registers_per_request")
        for table in ("input", "holding"):
            spans = sorted(
                (p.address, p.end, i) for i, p in enumerate(self.points) if p.table == table
            )
            for (start_a, end_a, _), (start_b, _, index_b) in itertools.pairwise(spans):
                if start_b < end_a:
                    what = "the same address" if start_a == start_b else "overlapping registers"
                    raise _Problem(
                        f"points[{index_b}].address",
                        f"{table} address {start_b} is {what} as another point ({start_a})",
                        "check the register table; each register belongs to one point",
                    )
        if self.identify is not None:
            for index, check in enumerate(self.identify.signature):
                if check.channel not in channels:
                    raise _Problem(f"identify.signature[{index}].channel",
                                   f"channel {check.channel!r} is not a point of this profile",
                                   "name one of the profile's points")
        return self


class _Problem(ValueError):
    """A check across keys that knows which key to blame (relative to its model) and the fix."""

    def __init__(self, key: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.key = key
        self.fix = fix


#: The protocols a profile may name: ``modbus`` (this module) or ``dlms``
#: (:mod:`gateway.profiles_dlms`).
PROFILE_PROTOCOLS = ("modbus", "dlms")


def load_profile(path: Path | str) -> AnyProfile:
    """Read and validate one profile file; its name is the file stem. ``protocol``
    says which kind it is (``modbus`` when not given)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read profile: {exc.strerror}", file=path,
                          fix="check the path and its permissions") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=path,
                          fix="correct the TOML syntax at that line") from exc
    if "name" in raw:
        raise ConfigError("unknown key", file=path, key="name",
                          fix="remove it; a profile's name is its file name")
    protocol = raw.get("protocol", "modbus")
    if protocol not in PROFILE_PROTOCOLS:
        raise ConfigError(f"{protocol!r} is not a valid value", file=path, key="protocol",
                          fix=f"use one of: {', '.join(PROFILE_PROTOCOLS)}")
    if protocol == "dlms":
        from gateway.profiles_dlms import load_dlms_profile

        return load_dlms_profile(path, raw)
    try:
        return DeviceProfile.model_validate({**raw, "name": path.stem})
    except ValidationError as exc:
        raise _config_error(path, exc) from exc


def load_profiles(directory: Path | str = PROFILES_DIR) -> dict[str, AnyProfile]:
    """Every ``*.toml`` profile of a directory, by name, of either protocol."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError("profile directory does not exist", file=directory,
                          fix="set gateway.profiles_dir or AMI_PROFILES_DIR to a folder "
                                  "of device profiles (the repository's config/devices)")
    return {path.stem: load_profile(path) for path in sorted(directory.glob("*.toml"))}


def modbus_profiles(directory: Path | str = PROFILES_DIR) -> dict[str, DeviceProfile]:
    """The Modbus profiles of a directory, by name."""
    return {name: profile for name, profile in load_profiles(directory).items()
            if isinstance(profile, DeviceProfile)}


def _config_error(path: Path, exc: ValidationError,
                  fix_of: Callable[[Any], str] | None = None) -> ConfigError:
    """The first problem as key and fix (``fix_of`` the fix of a schema problem; the
    Modbus profile's by default); the others listed in the message."""
    problems = exc.errors(include_url=False)
    first = problems[0]
    cause = first.get("ctx", {}).get("error")
    key = _key_path(first["loc"])
    if isinstance(cause, _Problem):
        key = f"{key}.{cause.key}" if key else cause.key
        message, fix = str(cause), cause.fix
    else:
        message, fix = _reason(first), (fix_of or _fix)(first)
    if len(problems) > 1:
        others = ", ".join(_key_path(p["loc"]) or "(top level)" for p in problems[1:4])
        more = "" if len(problems) <= 4 else f" and {len(problems) - 4} more"
        message += f"; also wrong: {others}{more}"
    return ConfigError(message, file=path, key=key, fix=fix)


def _key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith("literal"):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def _reason(problem: Any) -> str:
    kind = problem["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in ("literal_error", "enum"):
        return f"{problem['input']!r} is not a valid value"
    message = str(problem["msg"])
    return message.removeprefix("Value error, ")


def _fix(problem: Any) -> str:
    kind = problem["type"]
    loc = problem["loc"]
    field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        owner: type[BaseModel] = DeviceProfile
        if "signature" in loc[:-1]:
            owner = SignatureCheck
        elif "identify" in loc[:-1]:
            owner = Identify
        elif "rollover" in loc[:-1]:
            owner = Rollover
        elif "points" in loc[:-1]:
            owner = PointSpec
        allowed = ", ".join(k for k in owner.model_fields if k != "name")
        return f"remove it or correct its spelling; allowed keys: {allowed}"
    if kind == "missing":
        return f"add {field} = ..."
    if kind in ("literal_error", "enum"):
        expected = problem.get("ctx", {}).get("expected", "")
        return f"use one of {expected}"
    if field in ("scale", "offset"):
        return f'write it as a quoted decimal, e.g. {field} = "0.01"'
    if field == "rollover" or "rollover" in loc:
        return "use [points.rollover] with digits (and decimals) or bits"
    return f"correct {field}" if field else "correct the value"
