"""ACSE association APDUs (BER) and the xDLMS Initiate they carry (A-XDR); pure.

AARQ/AARE/RLRQ/RLRE are BER (IEC 62056-5-3 / Green Book 9.4 and 11.x, ISO 8650): a
sequence of context-tagged fields in tag order. Fields the gateway has no use for
(implementation-information, AE qualifiers...) are kept as ``other`` (tag, content)
pairs and written back in order, never dropped. ``user_information`` is opaque bytes
here, so a ciphered initiate (glo-initiateRequest 0x21) rides through unchanged;
:func:`decode_initiate` reads the plain ones and returns :class:`Ciphered` for the rest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, TypeVar

from gateway.drivers.dlms.reader import Reader, ber_length
from gateway.errors import ProtocolError

__all__ = [
    "Aare", "Aarq", "AcseProviderDiagnostic", "AcseUserDiagnostic", "ApplicationContext",
    "AssociationResult", "Ciphered", "ConfirmedServiceError", "Conformance",
    "InitiateRequest", "InitiateResponse", "Mechanism", "Rlre", "Rlrq", "decode_initiate",
]

_DLMS_UA: Final = (2, 16, 756, 5, 8)  # joint-iso-ccitt country(16) CH(756) identified-org
                                      # DLMS-UA(8): application-context 1, mechanism 2

#: Tags of APDUs protected by the security layer (``security``): glo-/ded- ciphered
#: xDLMS APDUs and the general-ciphering family (Green Book 9.5, the xDLMS APDU list).
CIPHERED_TAGS: Final = frozenset(
    {0x21, 0x28, 0x2E, 0x41, 0x48, 0x4E, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
     0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xDB, 0xDC, 0xDD, 0xDF})


@dataclass(frozen=True, slots=True)
class Ciphered:
    """A protected APDU, handed over whole (tag included) to ``security`` to unwrap."""

    apdu: bytes

    @property
    def tag(self) -> int:
        return self.apdu[0]

    def to_bytes(self) -> bytes:
        return self.apdu


class ApplicationContext(enum.IntEnum):
    """application-context-name 2.16.756.5.8.1.x (Green Book 9.4.2.2.2)."""

    LN = 1
    SN = 2
    LN_CIPHERED = 3
    SN_CIPHERED = 4


class Mechanism(enum.IntEnum):
    """mechanism-name 2.16.756.5.8.2.x: the authentication of the association."""

    NONE = 0
    LLS = 1
    HLS = 2
    HLS_MD5 = 3
    HLS_SHA1 = 4
    HLS_GMAC = 5
    HLS_SHA256 = 6
    HLS_ECDSA = 7


class AssociationResult(enum.IntEnum):
    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class AcseUserDiagnostic(enum.IntEnum):
    """result-source-diagnostic, acse-service-user [1] (ISO 8650 / Green Book)."""

    NULL = 0
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AP_TITLE_NOT_RECOGNIZED = 3
    CALLING_AP_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 4
    CALLING_AE_QUALIFIER_NOT_RECOGNIZED = 5
    CALLING_AE_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 6
    CALLED_AP_TITLE_NOT_RECOGNIZED = 7
    CALLED_AP_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 8
    CALLED_AE_QUALIFIER_NOT_RECOGNIZED = 9
    CALLED_AE_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 10
    AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = 11
    AUTHENTICATION_MECHANISM_NAME_REQUIRED = 12
    AUTHENTICATION_FAILURE = 13
    AUTHENTICATION_REQUIRED = 14


class AcseProviderDiagnostic(enum.IntEnum):
    """result-source-diagnostic, acse-service-provider [2]."""

    NULL = 0
    NO_REASON_GIVEN = 1
    NO_COMMON_ACSE_VERSION = 2


class Conformance(enum.IntFlag, boundary=enum.KEEP):
    """The 24-bit conformance block (Green Book 9.4.6.1). Bit n of the standard counts
    from the first byte's top bit, so bit 0 is ``1 << 23`` here."""

    NONE = 0
    GENERAL_PROTECTION = 1 << (23 - 1)
    GENERAL_BLOCK_TRANSFER = 1 << (23 - 2)
    READ = 1 << (23 - 3)
    WRITE = 1 << (23 - 4)
    UNCONFIRMED_WRITE = 1 << (23 - 5)
    DELTA_VALUE_ENCODING = 1 << (23 - 6)
    ATTRIBUTE0_SUPPORTED_WITH_SET = 1 << (23 - 8)
    PRIORITY_MGMT_SUPPORTED = 1 << (23 - 9)
    ATTRIBUTE0_SUPPORTED_WITH_GET = 1 << (23 - 10)
    BLOCK_TRANSFER_WITH_GET_OR_READ = 1 << (23 - 11)
    BLOCK_TRANSFER_WITH_SET_OR_WRITE = 1 << (23 - 12)
    BLOCK_TRANSFER_WITH_ACTION = 1 << (23 - 13)
    MULTIPLE_REFERENCES = 1 << (23 - 14)
    INFORMATION_REPORT = 1 << (23 - 15)
    DATA_NOTIFICATION = 1 << (23 - 16)
    ACCESS = 1 << (23 - 17)
    PARAMETERIZED_ACCESS = 1 << (23 - 18)
    GET = 1 << (23 - 19)
    SET = 1 << (23 - 20)
    SELECTIVE_ACCESS = 1 << (23 - 21)
    EVENT_NOTIFICATION = 1 << (23 - 22)
    ACTION = 1 << (23 - 23)


_CONFORMANCE_TAG: Final = b"\x5f\x1f\x04\x00"  # [APPLICATION 31] BIT STRING, 0 unused bits


def _conformance(r: Reader) -> Conformance:
    if r.take(4) != _CONFORMANCE_TAG:
        raise ProtocolError("conformance block must start 5F 1F 04 00")
    return Conformance(int.from_bytes(r.take(3), "big"))


def _optional_u8(r: Reader, signed: bool = False) -> int | None:
    if r.u8() == 0:
        return None
    value = r.u8()
    return value - 256 if signed and value > 127 else value


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    """xDLMS InitiateRequest (0x01), the client's proposal in the AARQ."""

    proposed_conformance: Conformance
    client_max_receive_pdu_size: int = 0xFFFF
    dlms_version: int = 6
    dedicated_key: bytes | None = None
    response_allowed: bool = True  # DEFAULT TRUE: written as "absent" when true
    proposed_quality_of_service: int | None = None
    TAG = 0x01

    def to_bytes(self) -> bytes:
        out = bytearray([self.TAG])
        out += b"\x00" if self.dedicated_key is None else (
            b"\x01" + bytes([len(self.dedicated_key)]) + self.dedicated_key)
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        qos = self.proposed_quality_of_service
        out += b"\x00" if qos is None else b"\x01" + qos.to_bytes(1, "big", signed=True)
        out.append(self.dlms_version)
        out += _CONFORMANCE_TAG + int(self.proposed_conformance).to_bytes(3, "big")
        out += self.client_max_receive_pdu_size.to_bytes(2, "big")
        return bytes(out)

    @classmethod
    def read(cls, r: Reader) -> InitiateRequest:
        key = r.take(r.length()) if r.u8() else None
        allowed = bool(r.u8()) if r.u8() else True
        qos = _optional_u8(r, signed=True)
        version = r.u8()
        return cls(_conformance(r), r.u16(), version, key, allowed, qos)


@dataclass(frozen=True, slots=True)
class InitiateResponse:
    """xDLMS InitiateResponse (0x08), the server's answer in the AARE."""

    negotiated_conformance: Conformance
    server_max_receive_pdu_size: int
    dlms_version: int = 6
    negotiated_quality_of_service: int | None = None
    vaa_name: int = 0x0007  # the association's own virtual application (LN referencing)
    TAG = 0x08

    def to_bytes(self) -> bytes:
        qos = self.negotiated_quality_of_service
        return (bytes([self.TAG]) + (b"\x00" if qos is None else b"\x01"
                                     + qos.to_bytes(1, "big", signed=True))
                + bytes([self.dlms_version]) + _CONFORMANCE_TAG
                + int(self.negotiated_conformance).to_bytes(3, "big")
                + self.server_max_receive_pdu_size.to_bytes(2, "big")
                + self.vaa_name.to_bytes(2, "big"))

    @classmethod
    def read(cls, r: Reader) -> InitiateResponse:
        qos = _optional_u8(r, signed=True)
        version = r.u8()
        conformance = _conformance(r)
        return cls(conformance, r.u16(), version, qos, r.u16())


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError:
    """ConfirmedServiceError (0x0E): ``service`` 1 is initiateError; ``kind`` 6 is the
    initiate ServiceError, whose ``code`` 1 is dlms-version-too-low, 2 incompatible-
    conformance, 3 pdu-size-too-short, 4 refused-by-the-VDE-handler, 0 other."""

    service: int
    kind: int
    code: int
    TAG = 0x0E

    def to_bytes(self) -> bytes:
        return bytes([self.TAG, self.service, self.kind, self.code])

    @classmethod
    def read(cls, r: Reader) -> ConfirmedServiceError:
        return cls(r.u8(), r.u8(), r.u8())


Initiate = InitiateRequest | InitiateResponse | ConfirmedServiceError | Ciphered


def decode_initiate(data: bytes) -> Initiate:
    """The xDLMS APDU inside an AARQ/AARE user-information; ciphered ones as
    :class:`Ciphered`, for ``security``."""
    if not data:
        raise ProtocolError("empty user-information")
    if data[0] in CIPHERED_TAGS:
        return Ciphered(data)
    r = Reader(data, 1)
    kinds: dict[int, type[InitiateRequest | InitiateResponse | ConfirmedServiceError]] = {
        0x01: InitiateRequest, 0x08: InitiateResponse, 0x0E: ConfirmedServiceError}
    kind = kinds.get(data[0])
    if kind is None:
        raise ProtocolError(f"user-information holds APDU 0x{data[0]:02X}, not an initiate")
    value = kind.read(r)
    r.end("initiate")
    return value


# --- BER -----------------------------------------------------------------------------


def _oid(arcs: tuple[int, ...]) -> bytes:
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return bytes(out)


def _dlms_name(arc: int, last: int) -> bytes:
    return _oid((*_DLMS_UA, arc, last))


def _read_dlms_name(raw: bytes, arc: int, what: str) -> int:
    prefix = _oid((*_DLMS_UA, arc))
    if len(raw) != len(prefix) + 1 or not raw.startswith(prefix):
        raise ProtocolError(f"{what} {raw.hex()} is not a DLMS UA name 2.16.756.5.8.{arc}.x")
    return raw[-1]


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + ber_length(len(content)) + content


def _fields(body: bytes, what: str) -> list[tuple[int, bytes]]:
    r, out = Reader(body), []
    while not r.at_end():
        tag = r.u8()
        if tag & 0x1F == 0x1F:
            raise ProtocolError(f"{what}: multi-byte BER tag 0x{tag:02X} is not used by ACSE")
        out.append((tag, r.take(r.ber_length())))
    return out


def _inner(content: bytes, tag: int, what: str) -> bytes:
    """The content of the one TLV inside a constructed field (e.g. A1 { 06 ... })."""
    fields = _fields(content, what)
    if len(fields) != 1 or fields[0][0] != tag:
        raise ProtocolError(f"{what} must hold one 0x{tag:02X} element: {content.hex()}")
    return fields[0][1]


def _integer(content: bytes, what: str) -> int:
    if not 1 <= len(content) <= 4:
        raise ProtocolError(f"{what}: integer of {len(content)} bytes")
    return int.from_bytes(content, "big", signed=True)


def _frame(apdu_tag: int, fields: list[tuple[int, bytes]]) -> bytes:
    fields.sort(key=lambda f: f[0] & 0x1F)  # BER sequence: fields in tag order
    return _tlv(apdu_tag, b"".join(_tlv(t, c) for t, c in fields))


_AUTH_REQUIREMENTS: Final = b"\x07\x80"  # BIT STRING, 7 unused bits, "authentication"


@dataclass(frozen=True, slots=True)
class _Auth:
    mechanism: Mechanism | None
    value: bytes | None


def _auth_fields(req_tag: int, mech_tag: int, value_tag: int, a: _Auth,
                 requirements: bool) -> list[tuple[int, bytes]]:
    out = []
    if requirements:
        out.append((req_tag, _AUTH_REQUIREMENTS))
    if a.mechanism is not None:
        out.append((mech_tag, _dlms_name(2, a.mechanism)))
    if a.value is not None:
        out.append((value_tag, _tlv(0x80, a.value)))  # charstring [0]
    return out


def _mechanism(raw: bytes) -> Mechanism:
    code = _read_dlms_name(raw, 2, "mechanism-name")
    try:
        return Mechanism(code)
    except ValueError:
        raise ProtocolError(f"unknown authentication mechanism 2.16.756.5.8.2.{code}") from None


def _context(raw: bytes) -> ApplicationContext:
    code = _read_dlms_name(_inner(raw, 0x06, "application-context-name"), 1,
                           "application-context-name")
    try:
        return ApplicationContext(code)
    except ValueError:
        raise ProtocolError(f"unknown application context 2.16.756.5.8.1.{code}") from None


def _body(data: bytes, tag: int, name: str) -> bytes:
    r = Reader(data)
    if r.u8() != tag:
        raise ProtocolError(f"not an {name}: tag 0x{data[0]:02X}")
    body = r.take(r.ber_length())
    r.end(name)
    return body


@dataclass(frozen=True, slots=True)
class Aarq:
    """AARQ (0x60): the client asks for an association."""

    application_context: ApplicationContext = ApplicationContext.LN
    user_information: bytes | None = None
    calling_ap_title: bytes | None = None  # the client's system title (HLS, ciphering)
    mechanism: Mechanism | None = None
    calling_authentication_value: bytes | None = None  # LLS password / HLS CtoS
    other: tuple[tuple[int, bytes], ...] = field(default=())
    TAG = 0x60

    def to_bytes(self) -> bytes:
        fields = [(0xA1, _tlv(0x06, _dlms_name(1, self.application_context))), *self.other]
        if self.calling_ap_title is not None:
            fields.append((0xA6, _tlv(0x04, self.calling_ap_title)))
        auth = _Auth(self.mechanism, self.calling_authentication_value)
        fields += _auth_fields(0x8A, 0x8B, 0xAC, auth, self.mechanism is not None)
        if self.user_information is not None:
            fields.append((0xBE, _tlv(0x04, self.user_information)))
        return _frame(self.TAG, fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> Aarq:
        context, info, title, mech, value, other = None, None, None, None, None, []
        for tag, content in _fields(_body(data, cls.TAG, "AARQ"), "AARQ"):
            if tag == 0xA1:
                context = _context(content)
            elif tag == 0xA6:
                title = _inner(content, 0x04, "calling-AP-title")
            elif tag == 0x8A and content == _AUTH_REQUIREMENTS:
                pass  # implied by the mechanism-name
            elif tag == 0x8B:
                mech = _mechanism(content)
            elif tag == 0xAC:
                value = _inner(content, 0x80, "calling-authentication-value")
            elif tag == 0xBE:
                info = _inner(content, 0x04, "user-information")
            else:
                other.append((tag, content))
        if context is None:
            raise ProtocolError("AARQ without application-context-name")
        return cls(context, info, title, mech, value, tuple(other))


@dataclass(frozen=True, slots=True)
class Aare:
    """AARE (0x61): the server's verdict, with its InitiateResponse (or error)."""

    result: AssociationResult
    diagnostic: AcseUserDiagnostic | AcseProviderDiagnostic = AcseUserDiagnostic.NULL
    application_context: ApplicationContext = ApplicationContext.LN
    user_information: bytes | None = None
    responding_ap_title: bytes | None = None  # the server's system title
    mechanism: Mechanism | None = None
    responding_authentication_value: bytes | None = None  # HLS StoC challenge
    other: tuple[tuple[int, bytes], ...] = field(default=())
    TAG = 0x61

    def to_bytes(self) -> bytes:
        source = 0xA1 if isinstance(self.diagnostic, AcseUserDiagnostic) else 0xA2
        fields = [(0xA1, _tlv(0x06, _dlms_name(1, self.application_context))),
                  (0xA2, _tlv(0x02, bytes([self.result]))),
                  (0xA3, _tlv(source, _tlv(0x02, bytes([self.diagnostic])))), *self.other]
        if self.responding_ap_title is not None:
            fields.append((0xA4, _tlv(0x04, self.responding_ap_title)))
        auth = _Auth(self.mechanism, self.responding_authentication_value)
        fields += _auth_fields(0x88, 0x89, 0xAA, auth, self.mechanism is not None)
        if self.user_information is not None:
            fields.append((0xBE, _tlv(0x04, self.user_information)))
        return _frame(self.TAG, fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> Aare:
        context, result, diagnostic = None, None, None
        info, title, mech, value, other = None, None, None, None, []
        for tag, content in _fields(_body(data, cls.TAG, "AARE"), "AARE"):
            if tag == 0xA1:
                context = _context(content)
            elif tag == 0xA2:
                result = _named(AssociationResult, _integer(_inner(content, 0x02, "result"),
                                                            "result"), "association result")
            elif tag == 0xA3:
                diagnostic = _diagnostic(content)
            elif tag == 0xA4:
                title = _inner(content, 0x04, "responding-AP-title")
            elif tag == 0x88 and content == _AUTH_REQUIREMENTS:
                pass  # implied by the mechanism-name
            elif tag == 0x89:
                mech = _mechanism(content)
            elif tag == 0xAA:
                value = _inner(content, 0x80, "responding-authentication-value")
            elif tag == 0xBE:
                info = _inner(content, 0x04, "user-information")
            else:
                other.append((tag, content))
        if context is None or result is None or diagnostic is None:
            raise ProtocolError("AARE lacks application-context-name, result or diagnostic")
        return cls(result, diagnostic, context, info, title, mech, value, tuple(other))


_E = TypeVar("_E", bound=enum.IntEnum)


def _named(kind: type[_E], value: int, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise ProtocolError(f"unknown {what} {value}") from None


def _diagnostic(content: bytes) -> AcseUserDiagnostic | AcseProviderDiagnostic:
    fields = _fields(content, "result-source-diagnostic")
    if len(fields) != 1 or fields[0][0] not in (0xA1, 0xA2):
        raise ProtocolError(f"result-source-diagnostic {content.hex()} is neither "
                            "acse-service-user nor acse-service-provider")
    source, inner = fields[0]
    code = _integer(_inner(inner, 0x02, "diagnostic"), "diagnostic")
    if source == 0xA1:
        return _named(AcseUserDiagnostic, code, "acse-service-user diagnostic")
    return _named(AcseProviderDiagnostic, code, "acse-service-provider diagnostic")


@dataclass(frozen=True, slots=True)
class _Release:
    """RLRQ (0x62) / RLRE (0x63): reason [0] (0 normal; RLRQ 1 urgent, RLRE 1
    not-finished; 30 user-defined) and an optional user-information."""

    reason: int | None = 0
    user_information: bytes | None = None
    TAG = 0

    def to_bytes(self) -> bytes:
        fields = [] if self.reason is None else [(0x80, bytes([self.reason]))]
        if self.user_information is not None:
            fields.append((0xBE, _tlv(0x04, self.user_information)))
        return _frame(self.TAG, fields)

    @classmethod
    def _parse(cls, data: bytes, name: str) -> tuple[int | None, bytes | None]:
        reason, info = None, None
        for tag, content in _fields(_body(data, cls.TAG, name), name):
            if tag == 0x80 and len(content) == 1:
                reason = content[0]
            elif tag == 0xBE:
                info = _inner(content, 0x04, "user-information")
            else:
                raise ProtocolError(f"{name}: unexpected field 0x{tag:02X}")
        return reason, info


class Rlrq(_Release):
    __slots__ = ()
    TAG = 0x62

    @classmethod
    def from_bytes(cls, data: bytes) -> Rlrq:
        return cls(*cls._parse(data, "RLRQ"))


class Rlre(_Release):
    __slots__ = ()
    TAG = 0x63

    @classmethod
    def from_bytes(cls, data: bytes) -> Rlre:
        return cls(*cls._parse(data, "RLRE"))
