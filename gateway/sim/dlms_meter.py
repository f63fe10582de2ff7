"""The simulated meter's application layer: one association per link connection.

:class:`DlmsSession` is sans-IO: :meth:`DlmsSession.handle` takes one APDU from the
link (HDLC or the TCP wrapper) and gives the APDU to send back, or None. It serves:

- AARQ -> AARE (Green Book 9.4.2): the public client (SAP 16) without authentication;
  every other client with the spec's mechanism: none, LLS (the password, else
  authentication-failure), HLS-GMAC (LN-ciphered context, a glo-ciphered initiate,
  the meter's StoC in the AARE; pass 3 checked, pass 4 answered). A ciphered context
  on a meter without keys is application-context-name-not-supported.
- After HLS every APDU is ciphered both ways; a replayed or tampered request gets an
  ExceptionResponse (invocation-counter error, deciphering error) as meters answer.
- GET normal, with list, and GET-Request-Next: a response longer than the negotiated
  PDU (the smaller of the client's proposal and the meter's ``max_pdu_size``) goes as
  blocks. SET and other ACTIONs are refused. RLRQ -> RLRE ends the association.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.acse import (
    Aare,
    Aarq,
    AcseUserDiagnostic,
    ApplicationContext,
    AssociationResult,
    Mechanism,
    Rlre,
    Rlrq,
)
from gateway.drivers.dlms.apdu import (
    ActionRequest,
    ActionResponse,
    ActionResult,
    DataAccessResult,
    ExceptionResponse,
    GetRequest,
    GetRequestNext,
    GetRequestWithList,
    GetResponse,
    GetResponseWithBlock,
    GetResponseWithList,
    InvokeId,
    ServiceError,
    SetRequest,
    SetResponse,
    StateError,
    decode_apdu,
)
from gateway.drivers.dlms.cosem import CURRENT_ASSOCIATION, AssociationLnMethod, CosemClass
from gateway.drivers.dlms.data import OctetString
from gateway.drivers.dlms.initiate import (
    Ciphered,
    Conformance,
    InitiateRequest,
    InitiateResponse,
    decode_initiate,
)
from gateway.drivers.dlms.keys import SecretBytes
from gateway.drivers.dlms.security import (
    ReplayedFrame,
    SecurityContext,
    SecurityError,
    check_lls_password,
    new_challenge,
)
from gateway.errors import ProtocolError
from gateway.sim.dlms_objects import CAPTURE_OBJECTS, DlmsMeter, DlmsMeterSpec

__all__ = ["CAPTURE_OBJECTS", "PUBLIC_CLIENT", "SERVER_CONFORMANCE", "DlmsMeter",
           "DlmsMeterSpec", "DlmsSession"]

PUBLIC_CLIENT: Final = 16
#: What the simulated meter offers: GET (with list, selective access, blocks), ACTION.
SERVER_CONFORMANCE: Final = (
    Conformance.GET | Conformance.ACTION | Conformance.SELECTIVE_ACCESS
    | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ | Conformance.MULTIPLE_REFERENCES)
#: Block header: C4 02 invoke last(1) block(4) choice(1) length(up to 3).
_BLOCK_HEADER: Final = 12
#: glo-ciphering around an APDU: tag, length (3), SC, IC (4), GCM tag (12).
_CIPHER_OVERHEAD: Final = 21


@dataclass
class _LongGet:
    raw: bytes
    chunk: int
    sent: int  # blocks sent so far
    invoke: InvokeId


class DlmsSession:
    """One association of ``meter`` with the client at SAP ``client_sap``."""

    def __init__(self, meter: DlmsMeter, client_sap: int) -> None:
        self.meter = meter
        self.client_sap = client_sap
        self.associated = False
        self._security: SecurityContext | None = None
        self._ciphered = False
        self._authenticating = False
        self._stoc = b""
        self._ctos = b""
        self._pdu = meter.spec.max_pdu_size
        self._long: _LongGet | None = None
        self._last: bytes | None = None

    @property
    def spec(self) -> DlmsMeterSpec:
        return self.meter.spec

    def handle(self, apdu: bytes) -> bytes | None:
        """The answer to one APDU (None: no answer, as for a frame the meter drops)."""
        meter = self.meter
        meter.requests += 1
        if meter.replay_next and self._last is not None:
            meter.replay_next = False
            return self._last
        answer = self._answer(apdu)
        if answer is not None:
            self._last = answer
        return answer

    def _answer(self, apdu: bytes) -> bytes | None:
        try:
            got = decode_apdu(apdu)
        except ProtocolError:
            return _exception(ServiceError.OTHER_REASON)
        if isinstance(got, Aarq):
            return self._associate(got)
        if isinstance(got, Rlrq):
            self._end()
            return Rlre().to_bytes()
        if not (self.associated or self._authenticating):
            return _exception(ServiceError.OPERATION_NOT_POSSIBLE)
        if self._ciphered:
            if not isinstance(got, Ciphered):
                return _exception(ServiceError.DECIPHERING_ERROR)
            assert self._security is not None
            try:
                got = decode_apdu(self._security.decipher(got.apdu).apdu)
            except ReplayedFrame:
                last = self._security.counters.last_received(
                    self._security.peer_title or b"", 0)
                return ExceptionResponse(StateError.SERVICE_NOT_ALLOWED,
                                         ServiceError.INVOCATION_COUNTER_ERROR,
                                         (last or 0) + 1).to_bytes()
            except (SecurityError, ProtocolError):
                return _exception(ServiceError.DECIPHERING_ERROR)
        elif isinstance(got, Ciphered):
            return _exception(ServiceError.DECIPHERING_ERROR)
        plain = self._service(got)
        if plain is None:
            return None
        return self._security.cipher(plain) if self._ciphered and self._security else plain

    def _end(self) -> None:
        self.associated = self._authenticating = self._ciphered = False
        self._long = None

    # --- association --------------------------------------------------------------------

    def _associate(self, aarq: Aarq) -> bytes:
        self._end()
        spec = self.spec
        ciphered = aarq.application_context is ApplicationContext.LN_CIPHERED
        if aarq.application_context not in (ApplicationContext.LN,
                                             ApplicationContext.LN_CIPHERED) or (
                ciphered and spec.keys is None):
            return _refuse(AcseUserDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
        mechanism = aarq.mechanism or Mechanism.NONE
        wanted = Mechanism.NONE
        if self.client_sap != PUBLIC_CLIENT:
            wanted = {"none": Mechanism.NONE, "lls": Mechanism.LLS,
                      "hls_gmac": Mechanism.HLS_GMAC}[spec.security]
        if mechanism is not wanted:
            return _refuse(AcseUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
                           if mechanism is not Mechanism.NONE
                           else AcseUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_REQUIRED)
        if mechanism is Mechanism.HLS_GMAC and not ciphered:
            return _refuse(AcseUserDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
        if mechanism is Mechanism.LLS:
            try:
                check_lls_password(SecretBytes(spec.password, label="password"),
                                   aarq.calling_authentication_value or b"")
            except SecurityError:
                return _refuse(AcseUserDiagnostic.AUTHENTICATION_FAILURE)
        security = None
        if ciphered:
            assert spec.keys is not None
            if aarq.calling_ap_title is None:
                return _refuse(AcseUserDiagnostic.CALLING_AP_TITLE_NOT_RECOGNIZED)
            # The meter's counters outlive an association: what it sends keeps rising
            # and a client's frame from an earlier association is a replay.
            security = SecurityContext(spec.keys, spec.system_title, self.meter.counters)
            security.peer_title = aarq.calling_ap_title
        initiate = self._initiate(aarq, security)
        if initiate is None:
            return _refuse(AcseUserDiagnostic.AUTHENTICATION_FAILURE if ciphered
                           else AcseUserDiagnostic.NO_REASON_GIVEN)
        self._pdu = min(initiate.client_max_receive_pdu_size or 0xFFFF, spec.max_pdu_size)
        response = InitiateResponse(initiate.proposed_conformance & SERVER_CONFORMANCE,
                                    spec.max_pdu_size).to_bytes()
        self._security = security
        stoc = None
        if security is not None:
            response = security.cipher(response)
        if mechanism is Mechanism.HLS_GMAC:
            self._stoc = stoc = new_challenge(16)
            self._ctos = aarq.calling_authentication_value or b""
            self._authenticating = self._ciphered = True
        else:
            self.associated = True
            self.meter.associations += 1
        return Aare(AssociationResult.ACCEPTED, application_context=aarq.application_context,
                    user_information=response,
                    responding_ap_title=spec.system_title if ciphered else None,
                    mechanism=None if mechanism is Mechanism.NONE else mechanism,
                    responding_authentication_value=stoc).to_bytes()

    @staticmethod
    def _initiate(aarq: Aarq, security: SecurityContext | None) -> InitiateRequest | None:
        if aarq.user_information is None:
            return None
        try:
            got = decode_initiate(aarq.user_information)
            if isinstance(got, Ciphered):
                if security is None:
                    return None
                got = decode_initiate(security.decipher(got.apdu).apdu)
        except (SecurityError, ProtocolError):
            return None
        return got if isinstance(got, InitiateRequest) else None

    # --- services -----------------------------------------------------------------------

    def _service(self, got: object) -> bytes | None:
        if self._authenticating:
            if isinstance(got, ActionRequest):
                return self._hls_pass_3(got)
            return _exception(ServiceError.OPERATION_NOT_POSSIBLE)
        meter = self.meter
        if isinstance(got, GetRequest):
            self._long = None
            result = meter.get(got.attribute, got.access)
            if isinstance(result, DataAccessResult):
                return GetResponse(result, got.invoke).to_bytes()
            return self._respond(axdr.encode(result), got.invoke)
        if isinstance(got, GetRequestNext):
            return self._next_block(got)
        if isinstance(got, GetRequestWithList):
            results = tuple(meter.get(a, access) for a, access in got.attributes)
            whole = GetResponseWithList(results, got.invoke).to_bytes()
            if len(whole) <= self._room():
                return whole
            return _exception(ServiceError.PDU_TOO_LONG)
        if isinstance(got, SetRequest):
            return SetResponse(DataAccessResult.READ_WRITE_DENIED, got.invoke).to_bytes()
        if isinstance(got, ActionRequest):
            return ActionResponse(ActionResult.OBJECT_UNAVAILABLE, None, got.invoke).to_bytes()
        return _exception(ServiceError.SERVICE_NOT_SUPPORTED)

    def _hls_pass_3(self, action: ActionRequest) -> bytes:
        method = action.method
        security = self._security
        assert security is not None
        if (method.class_id, method.obis, method.method_id) != (
                CosemClass.ASSOCIATION_LN, CURRENT_ASSOCIATION,
                AssociationLnMethod.REPLY_TO_HLS_AUTHENTICATION) or not isinstance(
                action.parameters, OctetString):
            return ActionResponse(ActionResult.OBJECT_UNAVAILABLE, None,
                                  action.invoke).to_bytes()
        try:
            security.hls_check(self._stoc, action.parameters.value)
        except SecurityError:
            # The association stays unusable; the client's next step is a new AARQ.
            self._authenticating = False
            return ActionResponse(ActionResult.OTHER_REASON, None, action.invoke).to_bytes()
        self._authenticating = False
        self.associated = True
        self.meter.associations += 1
        return ActionResponse(ActionResult.SUCCESS, OctetString(security.hls_reply(self._ctos)),
                              action.invoke).to_bytes()

    def _room(self) -> int:
        return self._pdu - (_CIPHER_OVERHEAD if self._ciphered else 0)

    def _respond(self, raw: bytes, invoke: InvokeId) -> bytes:
        whole = b"\xc4\x01" + bytes([invoke.byte()]) + b"\x00" + raw
        if len(whole) <= self._room():
            return whole
        chunk = max(1, self._room() - _BLOCK_HEADER)
        self._long = _LongGet(raw, chunk, 0, invoke)
        return self._block()

    def _block(self) -> bytes:
        long = self._long
        assert long is not None
        start = long.sent * long.chunk
        piece = long.raw[start:start + long.chunk]
        long.sent += 1
        last = start + long.chunk >= len(long.raw)
        if last:
            self._long = None
        return GetResponseWithBlock(last, long.sent, piece, long.invoke).to_bytes()

    def _next_block(self, request: GetRequestNext) -> bytes:
        long = self._long
        if long is None:
            return GetResponseWithBlock(True, request.block_number,
                                        DataAccessResult.NO_LONG_GET_IN_PROGRESS,
                                        request.invoke).to_bytes()
        if request.block_number != long.sent:
            self._long = None
            return GetResponseWithBlock(True, request.block_number,
                                        DataAccessResult.DATA_BLOCK_NUMBER_INVALID,
                                        request.invoke).to_bytes()
        long.invoke = request.invoke
        return self._block()


def _exception(service: ServiceError) -> bytes:
    return ExceptionResponse(StateError.SERVICE_NOT_ALLOWED, service).to_bytes()


def _refuse(diagnostic: AcseUserDiagnostic) -> bytes:
    return Aare(AssociationResult.REJECTED_PERMANENT, diagnostic).to_bytes()
