"""xDLMS APDUs (A-XDR) and the one entry point that reads any APDU; pure, both sides.

GET (0xC0/0xC4: normal, next, with-list, with-datablock), SET normal (0xC1/0xC5),
ACTION normal (0xC3/0xC7), ExceptionResponse (0xD8), with selective access by range
or entry (Blue Book 4.3.6 profile generic; Green Book 9.5 the xDLMS ASN.1). The ACSE
APDUs are in ``acse`` and read here too. :func:`decode_apdu` returns a
:class:`~gateway.drivers.dlms.acse.Ciphered` value, never an error, for a protected
APDU (glo-/ded-/general ciphering tags): the caller hands it to ``security``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, TypeVar

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.acse import CIPHERED_TAGS, Aare, Aarq, Ciphered, Rlre, Rlrq
from gateway.drivers.dlms.cosem import AttributeDescriptor, CaptureObject, MethodDescriptor, Obis
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.reader import Reader
from gateway.errors import ProtocolError

__all__ = [
    "ActionRequest",
    "ActionResponse",
    "ActionResult",
    "Apdu",
    "Ciphered",
    "DataAccessResult",
    "EntryDescriptor",
    "ExceptionResponse",
    "GetRequest",
    "GetRequestNext",
    "GetRequestWithList",
    "GetResponse",
    "GetResponseWithBlock",
    "GetResponseWithList",
    "InvokeId",
    "OtherAccess",
    "RangeDescriptor",
    "SetRequest",
    "SetResponse",
    "decode_apdu",
]


class DataAccessResult(enum.IntEnum):
    """Data-Access-Result (Green Book 9.5)."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    LONG_SET_ABORTED = 17
    NO_LONG_SET_IN_PROGRESS = 18
    DATA_BLOCK_NUMBER_INVALID = 19
    OTHER_REASON = 250


class ActionResult(enum.IntEnum):
    """Action-Result (Green Book 9.5)."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_ACTION_ABORTED = 15
    NO_LONG_ACTION_IN_PROGRESS = 16
    OTHER_REASON = 250


class StateError(enum.IntEnum):
    SERVICE_NOT_ALLOWED = 1
    SERVICE_UNKNOWN = 2


class ServiceError(enum.IntEnum):
    OPERATION_NOT_POSSIBLE = 1
    SERVICE_NOT_SUPPORTED = 2
    OTHER_REASON = 3
    PDU_TOO_LONG = 4
    DECIPHERING_ERROR = 5
    INVOCATION_COUNTER_ERROR = 6  # followed by the expected counter, Unsigned32


_E = TypeVar("_E", bound=enum.IntEnum)


def _named(kind: type[_E], value: int) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise ProtocolError(f"unknown {kind.__name__} {value}") from None


@dataclass(frozen=True, slots=True)
class InvokeId:
    """Invoke-Id-And-Priority: bits 0-3 the id, bit 6 confirmed, bit 7 high priority."""

    invoke_id: int = 1
    confirmed: bool = True
    high_priority: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.invoke_id <= 15:
            raise ValueError(f"invoke-id is 0-15, not {self.invoke_id}")

    def byte(self) -> int:
        return self.invoke_id | self.confirmed << 6 | self.high_priority << 7

    @classmethod
    def read(cls, r: Reader) -> InvokeId:
        b = r.u8()
        if b & 0x30:
            raise ProtocolError(f"invoke-id-and-priority 0x{b:02X} sets reserved bits 4-5")
        return cls(b & 0x0F, bool(b & 0x40), bool(b & 0x80))


def _descriptor(r: Reader) -> tuple[int, Obis, int]:
    class_id, obis = r.u16(), Obis.from_bytes(r.take(6))
    member = r.u8()
    return class_id, obis, member - 256 if member > 127 else member


# --- selective access (Blue Book 4.3.6, profile generic buffer) -------------------------

@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    """Selector 1: entries whose ``restricting`` column (usually the clock) lies in
    [from_value, to_value]; ``selected_values`` the columns (empty: all)."""

    restricting: CaptureObject
    from_value: Data
    to_value: Data
    selected_values: tuple[CaptureObject, ...] = ()
    SELECTOR = 1

    def parameters(self) -> Data:
        return axdr.Structure((self.restricting.to_data(), self.from_value, self.to_value,
                               axdr.Array(tuple(c.to_data() for c in self.selected_values))))


@dataclass(frozen=True, slots=True)
class EntryDescriptor:
    """Selector 2: entries from_entry..to_entry (1-based, 0 = to the last), columns
    from_selected_value..to_selected_value (0 = to the last)."""

    from_entry: int
    to_entry: int = 0
    from_selected_value: int = 1
    to_selected_value: int = 0
    SELECTOR = 2

    def parameters(self) -> Data:
        return axdr.Structure((axdr.DoubleLongUnsigned(self.from_entry),
                               axdr.DoubleLongUnsigned(self.to_entry),
                               axdr.LongUnsigned(self.from_selected_value),
                               axdr.LongUnsigned(self.to_selected_value)))


@dataclass(frozen=True, slots=True)
class OtherAccess:
    """Any other access selector, its parameters as sent."""

    selector: int
    params: Data

    def parameters(self) -> Data:
        return self.params


Access = RangeDescriptor | EntryDescriptor | OtherAccess


def _access_bytes(access: Access | None) -> bytes:
    if access is None:
        return b"\x00"
    selector = access.selector if isinstance(access, OtherAccess) else access.SELECTOR
    return bytes([1, selector]) + axdr.encode(access.parameters())


def _read_access(r: Reader) -> Access | None:
    if not r.u8():
        return None
    selector, params = r.u8(), r.data()
    if selector == 1:
        restricting, start, stop, columns = axdr.as_items(params, count=4)
        return RangeDescriptor(CaptureObject.from_data(restricting), start, stop, tuple(
            CaptureObject.from_data(c) for c in axdr.as_items(columns)))
    if selector == 2:
        return EntryDescriptor(*(axdr.as_int(v) for v in axdr.as_items(params, count=4)))
    return OtherAccess(selector, params)


# --- results -----------------------------------------------------------------------------

GetResult = Data | DataAccessResult


def _result_bytes(result: GetResult) -> bytes:
    if isinstance(result, DataAccessResult):
        return bytes([1, result])
    return b"\x00" + axdr.encode(result)


def _read_result(r: Reader) -> GetResult:
    choice = r.u8()
    if choice == 0:
        return r.data()
    if choice == 1:
        return _named(DataAccessResult, r.u8())
    raise ProtocolError(f"Get-Data-Result choice {choice} is neither data nor an error")


# --- GET / SET / ACTION ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GetRequest:
    attribute: AttributeDescriptor
    access: Access | None = None
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        return (bytes([0xC0, 1, self.invoke.byte()]) + self.attribute.to_bytes()
                + _access_bytes(self.access))


@dataclass(frozen=True, slots=True)
class GetRequestNext:
    """Asks for the block after ``block_number`` (the last one received)."""

    block_number: int
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        return bytes([0xC0, 2, self.invoke.byte()]) + self.block_number.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class GetRequestWithList:
    attributes: tuple[tuple[AttributeDescriptor, Access | None], ...]
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        return (bytes([0xC0, 3, self.invoke.byte()]) + axdr.encode_length(len(self.attributes))
                + b"".join(a.to_bytes() + _access_bytes(s) for a, s in self.attributes))


@dataclass(frozen=True, slots=True)
class GetResponse:
    result: GetResult
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        return bytes([0xC4, 1, self.invoke.byte()]) + _result_bytes(self.result)


@dataclass(frozen=True, slots=True)
class GetResponseWithBlock:
    """One block of a long GET: ``raw_data`` is a piece of the A-XDR encoded value
    (feed it to ``axdr.ArrayStream``), or the error that ended the transfer."""

    last_block: bool
    block_number: int
    raw_data: bytes | DataAccessResult
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        head = bytes([0xC4, 2, self.invoke.byte(), self.last_block])
        head += self.block_number.to_bytes(4, "big")
        if isinstance(self.raw_data, DataAccessResult):
            return head + bytes([1, self.raw_data])
        return head + b"\x00" + axdr.encode_length(len(self.raw_data)) + self.raw_data


@dataclass(frozen=True, slots=True)
class GetResponseWithList:
    results: tuple[GetResult, ...]
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        return (bytes([0xC4, 3, self.invoke.byte()]) + axdr.encode_length(len(self.results))
                + b"".join(_result_bytes(r) for r in self.results))


@dataclass(frozen=True, slots=True)
class SetRequest:
    attribute: AttributeDescriptor
    value: Data
    access: Access | None = None
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        return (bytes([0xC1, 1, self.invoke.byte()]) + self.attribute.to_bytes()
                + _access_bytes(self.access) + axdr.encode(self.value))


@dataclass(frozen=True, slots=True)
class SetResponse:
    result: DataAccessResult
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        return bytes([0xC5, 1, self.invoke.byte(), self.result])


@dataclass(frozen=True, slots=True)
class ActionRequest:
    method: MethodDescriptor
    parameters: Data | None = None
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        params = b"\x00" if self.parameters is None else b"\x01" + axdr.encode(self.parameters)
        return bytes([0xC3, 1, self.invoke.byte()]) + self.method.to_bytes() + params


@dataclass(frozen=True, slots=True)
class ActionResponse:
    """``return_value``: the method's return parameters (data or an access error)."""

    result: ActionResult
    return_value: GetResult | None = None
    invoke: InvokeId = InvokeId()

    def to_bytes(self) -> bytes:
        ret = b"\x00" if self.return_value is None else b"\x01" + _result_bytes(self.return_value)
        return bytes([0xC7, 1, self.invoke.byte(), self.result]) + ret


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    """The server could not take the request at all (0xD8)."""

    state_error: StateError
    service_error: ServiceError
    invocation_counter: int | None = None  # with INVOCATION_COUNTER_ERROR only

    def to_bytes(self) -> bytes:
        out = bytes([0xD8, self.state_error, self.service_error])
        if self.invocation_counter is not None:
            out += self.invocation_counter.to_bytes(4, "big")
        return out


Apdu = (
    Aarq | Aare | Rlrq | Rlre | GetRequest | GetRequestNext | GetRequestWithList
    | GetResponse | GetResponseWithBlock | GetResponseWithList | SetRequest | SetResponse
    | ActionRequest | ActionResponse | ExceptionResponse | Ciphered
)


def _get_request(r: Reader, invoke: InvokeId, choice: int) -> Apdu:
    if choice == 1:
        return GetRequest(AttributeDescriptor(*_descriptor(r)), _read_access(r), invoke)
    if choice == 2:
        return GetRequestNext(r.u32(), invoke)
    if choice == 3:
        items = tuple((AttributeDescriptor(*_descriptor(r)), _read_access(r))
                      for _ in range(r.length()))
        return GetRequestWithList(items, invoke)
    raise ProtocolError(f"GET-Request choice {choice} is not normal, next or with-list")


def _get_response(r: Reader, invoke: InvokeId, choice: int) -> Apdu:
    if choice == 1:
        return GetResponse(_read_result(r), invoke)
    if choice == 2:
        last, number, kind = bool(r.u8()), r.u32(), r.u8()
        if kind == 0:
            return GetResponseWithBlock(last, number, r.take(r.length()), invoke)
        if kind == 1:
            return GetResponseWithBlock(last, number, _named(DataAccessResult, r.u8()), invoke)
        raise ProtocolError(f"DataBlock-G result choice {kind} is neither raw-data nor error")
    if choice == 3:
        return GetResponseWithList(tuple(_read_result(r) for _ in range(r.length())), invoke)
    raise ProtocolError(f"GET-Response choice {choice} is not normal, with-datablock or "
                        "with-list")


def _normal_only(name: str, choice: int) -> None:
    if choice != 1:
        raise ProtocolError(f"{name} choice {choice}: only normal (1) is supported")


def _set_request(r: Reader, invoke: InvokeId, choice: int) -> Apdu:
    _normal_only("SET-Request", choice)
    attribute, access = AttributeDescriptor(*_descriptor(r)), _read_access(r)
    return SetRequest(attribute, r.data(), access, invoke)


def _set_response(r: Reader, invoke: InvokeId, choice: int) -> Apdu:
    _normal_only("SET-Response", choice)
    return SetResponse(_named(DataAccessResult, r.u8()), invoke)


def _action_request(r: Reader, invoke: InvokeId, choice: int) -> Apdu:
    _normal_only("ACTION-Request", choice)
    method = MethodDescriptor(*_descriptor(r))
    return ActionRequest(method, r.data() if r.u8() else None, invoke)


def _action_response(r: Reader, invoke: InvokeId, choice: int) -> Apdu:
    _normal_only("ACTION-Response", choice)
    result = _named(ActionResult, r.u8())
    return ActionResponse(result, _read_result(r) if r.u8() else None, invoke)


_SERVICES: Final = {0xC0: _get_request, 0xC4: _get_response, 0xC1: _set_request,
                    0xC5: _set_response, 0xC3: _action_request, 0xC7: _action_response}


def decode_apdu(data: bytes) -> Apdu:
    """Any APDU the gateway speaks, from its tag. Bytes after it are an error."""
    if not data:
        raise ProtocolError("empty APDU")
    tag = data[0]
    if tag in CIPHERED_TAGS:
        return Ciphered(bytes(data))
    if tag == 0x60:
        return Aarq.from_bytes(data)
    if tag == 0x61:
        return Aare.from_bytes(data)
    if tag == 0x62:
        return Rlrq.from_bytes(data)
    if tag == 0x63:
        return Rlre.from_bytes(data)
    r = Reader(data, 1)
    if tag == 0xD8:
        state, service = _named(StateError, r.u8()), _named(ServiceError, r.u8())
        counter = r.u32() if service is ServiceError.INVOCATION_COUNTER_ERROR else None
        apdu: Apdu = ExceptionResponse(state, service, counter)
    elif tag in _SERVICES:
        choice, invoke = r.u8(), InvokeId.read(r)
        apdu = _SERVICES[tag](r, invoke, choice)
    else:
        raise ProtocolError(f"APDU tag 0x{tag:02X} is not one the gateway speaks")
    r.end(type(apdu).__name__)
    return apdu
