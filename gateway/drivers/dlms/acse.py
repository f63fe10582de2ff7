"""ACSE association APDUs (BER); the xDLMS Initiate they carry is in ``initiate``; pure.

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

from gateway.drivers.dlms.initiate import (
    CIPHERED_TAGS,
    Ciphered,
    ConfirmedServiceError,
    Conformance,
    Initiate,
    InitiateRequest,
    InitiateResponse,
    decode_initiate,
)
from gateway.drivers.dlms.reader import Reader, ber_length
from gateway.errors import ProtocolError

__all__ = [
    "CIPHERED_TAGS",
    "Aare",
    "Aarq",
    "AcseProviderDiagnostic",
    "AcseUserDiagnostic",
    "ApplicationContext",
    "AssociationResult",
    "Ciphered",
    "ConfirmedServiceError",
    "Conformance",
    "Initiate",
    "InitiateRequest",
    "InitiateResponse",
    "Mechanism",
    "Rlre",
    "Rlrq",
    "decode_initiate",
]

_DLMS_UA: Final = (2, 16, 756, 5, 8)  # joint-iso-ccitt country(16) CH(756) identified-org
                                      # DLMS-UA(8): application-context 1, mechanism 2

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
