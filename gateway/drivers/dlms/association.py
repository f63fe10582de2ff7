"""A client's application association with a meter, as a sans-IO state machine (pure).

It turns what a driver wants (associate, GET an attribute, release) into xDLMS APDUs and
the meter's APDUs into values or typed errors. The link below (HDLC, the TCP wrapper)
and every clock belong to the async session around it.

- Association (Green Book 9.4.2): AARQ with the xDLMS InitiateRequest; with a security
  context the LN-ciphered application context, our system title and a glo-ciphered
  initiate. The AARE says accepted or why not.
- HLS-GMAC (Green Book 9.2.7.4, mechanism 5): the AARQ carries our challenge CtoS,
  the AARE the meter's StoC; pass 3 is an ACTION reply_to_HLS_authentication on the
  current association with f(StoC), pass 4 the meter's f(CtoS), which we check. Until
  then the association is not usable.
- GET (Green Book 9.3.6): normal, with selective access, and block transfer: a reply
  with a data block is answered with GET-Request-Next until the last block, each block
  number checked, and the blocks are decoded as one Data.
- After an HLS association every APDU is ciphered both ways (the context's policy);
  a reply of weaker protection, replayed or tampered, is refused by ``security``.
"""

from __future__ import annotations

import enum
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
    Access,
    ActionRequest,
    ActionResponse,
    ActionResult,
    DataAccessResult,
    ExceptionResponse,
    GetRequest,
    GetRequestNext,
    GetResponse,
    GetResponseWithBlock,
    InvokeId,
    decode_apdu,
)
from gateway.drivers.dlms.cosem import (
    CURRENT_ASSOCIATION,
    AssociationLnMethod,
    AttributeDescriptor,
    CosemClass,
    MethodDescriptor,
)
from gateway.drivers.dlms.data import Data, OctetString
from gateway.drivers.dlms.initiate import (
    Ciphered,
    ConfirmedServiceError,
    Conformance,
    InitiateRequest,
    InitiateResponse,
    decode_initiate,
)
from gateway.drivers.dlms.keys import SecretBytes
from gateway.drivers.dlms.security import SecurityContext, new_challenge
from gateway.errors import DeviceError, ProtocolError

__all__ = ["DEFAULT_CONFORMANCE", "Association", "AssociationSettings", "Next", "State",
           "Value"]

#: What the gateway asks for: GET with selective access and block transfer, several
#: attributes in one request, ACTION (HLS pass 3) and SET (the clock).
DEFAULT_CONFORMANCE: Final = (
    Conformance.GET | Conformance.SET | Conformance.ACTION | Conformance.SELECTIVE_ACCESS
    | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ | Conformance.MULTIPLE_REFERENCES)

#: A profile of months can be megabytes: a meter that never sets last-block would
#: otherwise keep us asking forever.
MAX_BLOCKS: Final = 100_000


class State(enum.Enum):
    IDLE = "idle"
    REQUESTED = "requested"          # AARQ sent
    AUTHENTICATING = "authenticating"  # HLS pass 3 sent
    ASSOCIATED = "associated"
    RELEASING = "releasing"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class AssociationSettings:
    mechanism: Mechanism = Mechanism.NONE
    #: LLS: the password, sent as the calling-authentication-value.
    password: SecretBytes | None = None
    #: HLS-GMAC and ciphering: our keys, system title and invocation counters.
    security: SecurityContext | None = None
    conformance: Conformance = DEFAULT_CONFORMANCE
    max_pdu_size: int = 0xFFFF
    challenge_bytes: int = 16

    def __post_init__(self) -> None:
        if self.mechanism is Mechanism.LLS and self.password is None:
            raise ValueError("LLS needs a password")
        if self.mechanism is Mechanism.HLS_GMAC and self.security is None:
            raise ValueError("HLS-GMAC needs a security context (keys, system title)")
        if self.mechanism not in (Mechanism.NONE, Mechanism.LLS, Mechanism.HLS_GMAC):
            raise ValueError(f"mechanism {self.mechanism.name} is not supported")


@dataclass(frozen=True, slots=True)
class Value:
    """A GET answered: the attribute's value."""

    data: Data


@dataclass(frozen=True, slots=True)
class Next:
    """A GET answered in part: send ``request`` for the next block."""

    request: bytes


class Association:
    """One client association; ``device`` names the meter in every error."""

    def __init__(self, settings: AssociationSettings, *, device: str) -> None:
        self.settings = settings
        self.device = device
        self.state = State.IDLE
        self.negotiated: InitiateResponse | None = None
        self._challenge = b""
        self._server_challenge = b""
        self._invoke = 0
        self._pending: AttributeDescriptor | None = None
        self._blocks: list[bytes] = []

    # --- association ---------------------------------------------------------------

    def request(self) -> bytes:
        """The AARQ."""
        self._expect(State.IDLE, State.RELEASED)
        s = self.settings
        initiate = InitiateRequest(s.conformance, s.max_pdu_size).to_bytes()
        sec = s.security
        title = None
        context = ApplicationContext.LN
        if sec is not None:
            context, title = ApplicationContext.LN_CIPHERED, sec.own_title
            initiate = sec.cipher(initiate)
        auth: bytes | None = None
        if s.mechanism is Mechanism.LLS:
            assert s.password is not None
            auth = s.password.reveal()
        elif s.mechanism is Mechanism.HLS_GMAC:
            self._challenge = new_challenge(s.challenge_bytes)
            auth = self._challenge
        mechanism = None if s.mechanism is Mechanism.NONE else s.mechanism
        self.state = State.REQUESTED
        return Aarq(application_context=context, user_information=initiate,
                    calling_ap_title=title, mechanism=mechanism,
                    calling_authentication_value=auth).to_bytes()

    def on_aare(self, apdu: bytes) -> bytes | None:
        """The meter's verdict. Returns HLS pass 3 to send, or None when associated."""
        self._expect(State.REQUESTED)
        got = decode_apdu(apdu)
        if not isinstance(got, Aare):
            raise self._broken(f"expected an AARE, got {type(got).__name__}")
        initiate = self._initiate(got)
        if got.result is not AssociationResult.ACCEPTED:
            self.state = State.IDLE
            raise DeviceError(self._refusal(got, initiate), code=int(got.diagnostic),
                              device=self.device)
        if not isinstance(initiate, InitiateResponse):
            raise self._broken("an accepted AARE without an InitiateResponse")
        self.negotiated = initiate
        if self.settings.mechanism is not Mechanism.HLS_GMAC:
            self.state = State.ASSOCIATED
            return None
        sec = self.settings.security
        assert sec is not None
        if got.responding_authentication_value is None:
            raise self._broken("HLS accepted without the meter's challenge")
        self._server_challenge = got.responding_authentication_value
        self.state = State.AUTHENTICATING
        method = MethodDescriptor(CosemClass.ASSOCIATION_LN, CURRENT_ASSOCIATION,
                                  AssociationLnMethod.REPLY_TO_HLS_AUTHENTICATION)
        request = ActionRequest(method, OctetString(sec.hls_reply(self._server_challenge)),
                                self._next_invoke())
        return sec.cipher(request.to_bytes())

    def on_hls_response(self, apdu: bytes) -> None:
        """HLS pass 4: the meter's f(CtoS), checked against our challenge."""
        self._expect(State.AUTHENTICATING)
        sec = self.settings.security
        assert sec is not None
        got = self._plain(apdu)
        if not isinstance(got, ActionResponse):
            raise self._broken(f"expected the HLS action's response, "
                                f"got {type(got).__name__}")
        if got.result is not ActionResult.SUCCESS or not isinstance(got.return_value,
                                                                    OctetString):
            self.state = State.IDLE
            raise DeviceError(f"the meter refused our HLS reply "
                              f"({got.result.name.lower()}): wrong authentication key?",
                              code=int(got.result), device=self.device)
        sec.hls_check(self._challenge, got.return_value.value)
        self.state = State.ASSOCIATED

    def _initiate(self, aare: Aare) -> InitiateResponse | ConfirmedServiceError | None:
        sec = self.settings.security
        if sec is not None and aare.responding_ap_title is not None:
            sec.peer_title = aare.responding_ap_title
        if aare.user_information is None:
            return None
        got = decode_initiate(aare.user_information)
        if isinstance(got, Ciphered):
            if sec is None:
                raise self._broken("a ciphered InitiateResponse, and no keys")
            got = decode_initiate(sec.decipher(got.apdu).apdu)
        if isinstance(got, InitiateResponse | ConfirmedServiceError):
            return got
        raise self._broken(f"the AARE carries {type(got).__name__}")

    def _refusal(self, aare: Aare, initiate: object) -> str:
        why = aare.diagnostic.name.lower().replace("_", " ")
        if aare.diagnostic is AcseUserDiagnostic.AUTHENTICATION_FAILURE:
            why += f" ({self.settings.mechanism.name.replace('_', '-')}: wrong password " \
                   "or key?)"
        if isinstance(initiate, ConfirmedServiceError):
            why += f"; initiate error {initiate.code}"
        return f"association refused: {why}"

    # --- GET ------------------------------------------------------------------------

    def get(self, attribute: AttributeDescriptor, access: Access | None = None) -> bytes:
        """The GET request APDU for ``attribute``."""
        self._expect(State.ASSOCIATED)
        if self._pending is not None:
            raise RuntimeError("one GET at a time: the last one is not answered yet")
        self._pending, self._blocks = attribute, []
        return self._out(GetRequest(attribute, access, self._next_invoke()).to_bytes())

    def on_get_response(self, apdu: bytes) -> Value | Next:
        """The meter's answer: the value, or the request for the next block."""
        self._expect(State.ASSOCIATED)
        attribute = self._pending
        if attribute is None:
            raise self._broken("a GET response nobody asked for")
        try:
            got = self._plain(apdu)
        except Exception:
            self._pending = None  # refused or unreadable: this GET is over either way
            raise
        if isinstance(got, GetResponse):
            self._pending = None
            return Value(self._value(attribute, got.result))
        if not isinstance(got, GetResponseWithBlock):
            self._pending = None
            raise self._broken(f"expected a GET response, got "
                                f"{type(got).__name__}")
        if isinstance(got.raw_data, DataAccessResult):
            self._pending = None
            self._value(attribute, got.raw_data)
        expected = len(self._blocks) + 1
        if got.block_number != expected or expected > MAX_BLOCKS:
            self._pending = None
            raise self._broken(f"block {got.block_number} of "
                                f"{_name(attribute)} where block {expected} was due")
        assert isinstance(got.raw_data, bytes)
        self._blocks.append(got.raw_data)
        if not got.last_block:
            return Next(self._out(GetRequestNext(got.block_number, got.invoke).to_bytes()))
        self._pending = None
        return Value(axdr.decode(b"".join(self._blocks)))

    def _value(self, attribute: AttributeDescriptor, result: Data | DataAccessResult) -> Data:
        if isinstance(result, DataAccessResult):
            if result is DataAccessResult.SUCCESS:
                raise self._broken(f"success without data for "
                                    f"{_name(attribute)}")
            raise DeviceError(f"{_name(attribute)}: "
                              f"{result.name.lower().replace('_', ' ')}",
                              code=int(result), device=self.device)
        return result

    # --- release --------------------------------------------------------------------

    def release(self) -> bytes:
        """The RLRQ."""
        self.state = State.RELEASING
        self._pending = None
        return Rlrq().to_bytes()

    def on_release(self, apdu: bytes) -> None:
        got = decode_apdu(apdu)
        if not isinstance(got, Rlre):
            raise self._broken(f"expected an RLRE, got {type(got).__name__}")
        self.state = State.RELEASED

    def lost(self) -> None:
        """The link went down: the association is gone with it."""
        self.state, self._pending, self.negotiated = State.IDLE, None, None

    # --- common ---------------------------------------------------------------------

    def _plain(self, apdu: bytes) -> object:
        got = decode_apdu(apdu)
        sec = self.settings.security
        if isinstance(got, Ciphered):
            if sec is None:
                raise self._broken("a ciphered APDU, and no keys")
            got = decode_apdu(sec.decipher(got.apdu).apdu)
        elif sec is not None and self.settings.mechanism is Mechanism.HLS_GMAC \
                and not isinstance(got, ExceptionResponse):
            raise self._broken(f"an unprotected {type(got).__name__} "
                                "in a ciphered association")
        if isinstance(got, ExceptionResponse):
            raise DeviceError(f"exception response: "
                              f"{got.state_error.name.lower()} / "
                              f"{got.service_error.name.lower()}",
                              code=int(got.service_error), device=self.device)
        return got

    def _out(self, apdu: bytes) -> bytes:
        sec = self.settings.security
        if sec is not None and self.settings.mechanism is Mechanism.HLS_GMAC:
            return sec.cipher(apdu)
        return apdu

    def _broken(self, message: str) -> ProtocolError:
        return ProtocolError(message, device=self.device)

    def _next_invoke(self) -> InvokeId:
        self._invoke = (self._invoke + 1) % 16
        return InvokeId(self._invoke)

    def _expect(self, *states: State) -> None:
        if self.state not in states:
            raise RuntimeError(f"association is {self.state.value}, not "
                               f"{' or '.join(s.value for s in states)}")


def _name(attribute: AttributeDescriptor) -> str:
    return f"{attribute.obis} (class {attribute.class_id}, attribute {attribute.attribute_id})"
