"""COSEM values above A-XDR: OBIS codes, date-times, scaler/unit, object descriptors.

Pure (no I/O). References: IEC 62056-6-1 (OBIS), IEC 62056-6-2 / DLMS UA Blue Book
4.3.2 register scaler_unit and the unit table, 4.3-4.5 the interface classes). The
date-time (4.1.6.1) lives in ``dates`` and is re-exported here.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.dates import ClockStatus, CosemDateTime, DeviationSign
from gateway.errors import ProtocolError
from gateway.model import Unit

__all__ = [
    "CLOCK", "CURRENT_ASSOCIATION", "LOAD_PROFILE_1", "LOGICAL_DEVICE_NAME",
    "SAP_ASSIGNMENT", "SERIAL_NUMBER", "AssociationLnAttr", "AssociationLnMethod",
    "AttributeDescriptor", "CaptureObject", "ClockAttr", "ClockStatus", "CosemClass",
    "CosemDateTime", "DataAttr", "DeviationSign",
    "DlmsUnit", "ExtendedRegisterAttr", "MethodDescriptor", "Obis", "ProfileGenericAttr",
    "RegisterAttr", "SapAssignmentAttr", "ScalerUnit", "UnmappedUnit",
]

_REDUCED = re.compile(r"^(\d+)-(\d+):(\d+)\.(\d+)\.(\d+)(?:[*.](\d+))?$")


@dataclass(frozen=True, slots=True, order=True)
class Obis:
    """An OBIS code (IEC 62056-6-1): six value groups A-F, 0-255 each.

    ``str()`` is the project's channel name, dotted ("1.0.1.8.0.255"); :meth:`parse`
    also reads the reduced notation ("1-0:1.8.0*255", F defaulting to 255)."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __post_init__(self) -> None:
        if not all(0 <= g <= 255 for g in self.groups):
            raise ValueError(f"OBIS value groups are 0-255: {self.groups}")

    @property
    def groups(self) -> tuple[int, int, int, int, int, int]:
        return (self.a, self.b, self.c, self.d, self.e, self.f)

    @classmethod
    def parse(cls, text: str) -> Obis:
        text = text.strip()
        match = _REDUCED.match(text)
        if match:
            a, b, c, d, e, f = match.groups()
            return cls(int(a), int(b), int(c), int(d), int(e), 255 if f is None else int(f))
        parts = text.split(".")
        if len(parts) == 6 and all(p.isdigit() for p in parts):
            return cls(*(int(p) for p in parts))
        raise ValueError(f"not an OBIS code: {text!r} (write 1.0.1.8.0.255 or 1-0:1.8.0*255)")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Obis:
        if len(raw) != 6:
            raise ProtocolError(f"an OBIS code is 6 bytes, got {len(raw)}: {raw.hex()}")
        return cls(*raw)

    def to_bytes(self) -> bytes:
        return bytes(self.groups)

    def reduced(self) -> str:
        """The IEC 62056-6-1 reduced notation, "1-0:1.8.0*255"."""
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}*{self.f}"

    def __str__(self) -> str:
        return ".".join(str(g) for g in self.groups)


CLOCK: Final = Obis(0, 0, 1, 0, 0, 255)
CURRENT_ASSOCIATION: Final = Obis(0, 0, 40, 0, 0, 255)
SAP_ASSIGNMENT: Final = Obis(0, 0, 41, 0, 0, 255)
LOGICAL_DEVICE_NAME: Final = Obis(0, 0, 42, 0, 0, 255)
SERIAL_NUMBER: Final = Obis(0, 0, 96, 1, 0, 255)
LOAD_PROFILE_1: Final = Obis(1, 0, 99, 1, 0, 255)


class CosemClass(enum.IntEnum):
    """The interface classes (class_id) the gateway uses (Blue Book 4.3-4.5)."""

    DATA = 1
    REGISTER = 3
    EXTENDED_REGISTER = 4
    PROFILE_GENERIC = 7
    CLOCK = 8
    ASSOCIATION_LN = 15
    SAP_ASSIGNMENT = 17


class DataAttr(enum.IntEnum):
    """Data (class 1, Blue Book 4.3.1)."""

    LOGICAL_NAME = 1
    VALUE = 2


class RegisterAttr(enum.IntEnum):
    """Register (class 3, 4.3.2): ``value`` is scaled by ``scaler_unit``."""

    LOGICAL_NAME = 1
    VALUE = 2
    SCALER_UNIT = 3


class ExtendedRegisterAttr(enum.IntEnum):
    """Extended register (class 4, 4.3.3): a register with a status and capture time."""

    LOGICAL_NAME = 1
    VALUE = 2
    SCALER_UNIT = 3
    STATUS = 4
    CAPTURE_TIME = 5


class ProfileGenericAttr(enum.IntEnum):
    """Profile generic (class 7, 4.3.6): the buffer is read with selective access."""

    LOGICAL_NAME = 1
    BUFFER = 2
    CAPTURE_OBJECTS = 3
    CAPTURE_PERIOD = 4
    SORT_METHOD = 5
    SORT_OBJECT = 6
    ENTRIES_IN_USE = 7
    PROFILE_ENTRIES = 8


class ClockAttr(enum.IntEnum):
    """Clock (class 8, 4.5.1)."""

    LOGICAL_NAME = 1
    TIME = 2
    TIME_ZONE = 3
    STATUS = 4
    DAYLIGHT_SAVINGS_BEGIN = 5
    DAYLIGHT_SAVINGS_END = 6
    DAYLIGHT_SAVINGS_DEVIATION = 7
    DAYLIGHT_SAVINGS_ENABLED = 8
    CLOCK_BASE = 9


class AssociationLnAttr(enum.IntEnum):
    """Association LN (class 15, 4.4.3)."""

    LOGICAL_NAME = 1
    OBJECT_LIST = 2
    ASSOCIATED_PARTNERS_ID = 3
    APPLICATION_CONTEXT_NAME = 4
    XDLMS_CONTEXT_INFO = 5
    AUTHENTICATION_MECHANISM_NAME = 6
    SECRET = 7
    ASSOCIATION_STATUS = 8
    SECURITY_SETUP_REFERENCE = 9


class AssociationLnMethod(enum.IntEnum):
    """Association LN methods: HLS pass 3/4 goes through ``reply_to_HLS_authentication``."""

    REPLY_TO_HLS_AUTHENTICATION = 1
    CHANGE_HLS_SECRET = 2


class SapAssignmentAttr(enum.IntEnum):
    """SAP assignment (class 17, 4.4.5): the logical devices and their SAPs."""

    LOGICAL_NAME = 1
    SAP_ASSIGNMENT_LIST = 2


@dataclass(frozen=True, slots=True)
class AttributeDescriptor:
    """Cosem-Attribute-Descriptor: class-id Unsigned16, instance-id, attribute-id Integer8."""

    class_id: int
    obis: Obis
    attribute_id: int

    def to_bytes(self) -> bytes:
        return (self.class_id.to_bytes(2, "big") + self.obis.to_bytes()
                + self.attribute_id.to_bytes(1, "big", signed=True))


@dataclass(frozen=True, slots=True)
class MethodDescriptor:
    """Cosem-Method-Descriptor: class-id, instance-id, method-id Integer8."""

    class_id: int
    obis: Obis
    method_id: int

    def to_bytes(self) -> bytes:
        return (self.class_id.to_bytes(2, "big") + self.obis.to_bytes()
                + self.method_id.to_bytes(1, "big", signed=True))


@dataclass(frozen=True, slots=True)
class CaptureObject:
    """capture_object_definition (Blue Book 4.3.6): a profile column, and the restricting
    object of a range_descriptor. ``data_index`` 0 means the whole attribute."""

    class_id: int
    obis: Obis
    attribute_index: int
    data_index: int = 0

    def to_data(self) -> Data:
        return axdr.Structure((axdr.LongUnsigned(self.class_id),
                               axdr.OctetString(self.obis.to_bytes()),
                               axdr.Integer(self.attribute_index),
                               axdr.LongUnsigned(self.data_index)))

    @classmethod
    def from_data(cls, value: Data) -> CaptureObject:
        class_id, name, attribute, index = axdr.as_items(value, count=4)
        return cls(axdr.as_int(class_id), Obis.from_bytes(axdr.as_bytes(name)),
                   axdr.as_int(attribute), axdr.as_int(index))


class DlmsUnit(enum.IntEnum):
    """The unit enumeration of scaler_unit (Blue Book 4.3.2, table of units)."""

    YEAR = 1
    MONTH = 2
    WEEK = 3
    DAY = 4
    HOUR = 5
    MINUTE = 6
    SECOND = 7
    DEGREE = 8  # phase angle
    CELSIUS = 9
    CURRENCY = 10
    METRE = 11
    METRE_PER_SECOND = 12
    CUBIC_METRE = 13
    CUBIC_METRE_CORRECTED = 14
    CUBIC_METRE_PER_HOUR = 15
    CUBIC_METRE_PER_HOUR_CORRECTED = 16
    CUBIC_METRE_PER_DAY = 17
    CUBIC_METRE_PER_DAY_CORRECTED = 18
    LITRE = 19
    KILOGRAM = 20
    NEWTON = 21
    NEWTON_METRE = 22
    PASCAL = 23
    BAR = 24
    JOULE = 25
    JOULE_PER_HOUR = 26
    WATT = 27
    VOLT_AMPERE = 28
    VAR = 29
    WATT_HOUR = 30
    VOLT_AMPERE_HOUR = 31
    VAR_HOUR = 32
    AMPERE = 33
    COULOMB = 34
    VOLT = 35
    VOLT_PER_METRE = 36
    FARAD = 37
    OHM = 38
    OHM_SQUARE_METRE_PER_METRE = 39
    WEBER = 40
    TESLA = 41
    AMPERE_PER_METRE = 42
    HENRY = 43
    HERTZ = 44
    PER_WATT_HOUR = 45  # active energy meter constant
    PER_VAR_HOUR = 46
    PER_VOLT_AMPERE_HOUR = 47
    VOLT_SQUARED_HOUR = 48
    AMPERE_SQUARED_HOUR = 49
    KILOGRAM_PER_SECOND = 50
    SIEMENS = 51
    KELVIN = 52
    PER_VOLT_SQUARED_HOUR = 53
    PER_AMPERE_SQUARED_HOUR = 54
    PER_CUBIC_METRE = 55
    PERCENT = 56
    AMPERE_HOUR = 57
    WATT_HOUR_PER_CUBIC_METRE = 60
    JOULE_PER_CUBIC_METRE = 61
    MOLE_PERCENT = 62
    GRAM_PER_CUBIC_METRE = 63
    PASCAL_SECOND = 64
    JOULE_PER_KILOGRAM = 65
    DBM = 70
    DB_MICROVOLT = 71
    DB = 72
    OTHER = 254
    COUNT = 255  # no unit, a count


_TO_MODEL: Final = {
    DlmsUnit.WATT: Unit.W, DlmsUnit.VOLT_AMPERE: Unit.VA, DlmsUnit.VAR: Unit.VAR,
    DlmsUnit.WATT_HOUR: Unit.WH, DlmsUnit.VOLT_AMPERE_HOUR: Unit.VAH,
    DlmsUnit.VAR_HOUR: Unit.VARH, DlmsUnit.AMPERE: Unit.A, DlmsUnit.VOLT: Unit.V,
    DlmsUnit.HERTZ: Unit.HZ, DlmsUnit.DEGREE: Unit.DEGREE, DlmsUnit.COUNT: Unit.COUNT,
}


class UnmappedUnit(ProtocolError):
    """The meter's unit has no counterpart in ``gateway.model.Unit``."""


def _shortest(value: axdr.Float32 | axdr.Float64) -> Decimal:
    """The shortest decimal that reads back as the same float of the same width (a
    float32 0.1 is 0.1, not the 0.10000000149011612 of its double)."""
    if not math.isfinite(value.value):
        raise ProtocolError(f"register value {value.value} is not a number")
    if isinstance(value, axdr.Float64):
        return Decimal(repr(value.value))
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        text = f"{value.value:.{digits}g}"
        if axdr.Float32.of(float(text)).raw == value.raw:
            break
    return Decimal(text)


@dataclass(frozen=True, slots=True)
class ScalerUnit:
    """A register's scaler_unit: value x 10**scaler in ``unit`` (Blue Book 4.3.2)."""

    scaler: int
    unit: DlmsUnit

    @classmethod
    def from_data(cls, value: Data) -> ScalerUnit:
        scaler, unit = axdr.as_items(value, count=2)
        code = axdr.as_int(unit)
        try:
            return cls(axdr.as_int(scaler), DlmsUnit(code))
        except ValueError:
            raise ProtocolError(f"unit {code} is not in the DLMS unit table") from None

    def to_data(self) -> Data:
        return axdr.Structure((axdr.Integer(self.scaler), axdr.Enum(self.unit)))

    def apply(self, value: Data) -> Decimal:
        """The exact value: an integer scaled in decimal (12345 with -3 is 12.345), a
        float through its shortest repr (Float32 0.1 gives 0.1, not 0.100000001...)."""
        if isinstance(value, axdr.Float32 | axdr.Float64):
            number = _shortest(value)
        else:
            number = Decimal(axdr.as_int(value))
        sign, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)  # finite, checked above
        return Decimal((sign, digits, exponent + self.scaler))

    @property
    def model_unit(self) -> Unit:
        """The gateway's ``Unit`` for this unit (the scaler stays in the value)."""
        try:
            return _TO_MODEL[self.unit]
        except KeyError:
            known = ", ".join(u.name for u in _TO_MODEL)
            raise UnmappedUnit(f"DLMS unit {self.unit.value} ({self.unit.name}) has no "
                               f"gateway unit; mapped are {known}") from None
