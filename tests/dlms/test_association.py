"""The client association state machine against a meter side built from the same landed
cores (ACSE, xDLMS APDUs, suite-0 security): public, LLS and HLS-GMAC associations,
GET with block transfer, refusals and protection failures as typed errors."""

from __future__ import annotations

import pytest

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.acse import (
    Aare,
    Aarq,
    AcseUserDiagnostic,
    ApplicationContext,
    AssociationResult,
    Mechanism,
    Rlre,
)
from gateway.drivers.dlms.apdu import (
    ActionRequest,
    ActionResponse,
    ActionResult,
    DataAccessResult,
    ExceptionResponse,
    GetRequest,
    GetRequestNext,
    GetResponse,
    GetResponseWithBlock,
    ServiceError,
    StateError,
    decode_apdu,
)
from gateway.drivers.dlms.association import (
    DEFAULT_CONFORMANCE,
    Association,
    AssociationSettings,
    Next,
    State,
    Value,
)
from gateway.drivers.dlms.cosem import CLOCK, SERIAL_NUMBER, AttributeDescriptor
from gateway.drivers.dlms.counters import MemoryCounters
from gateway.drivers.dlms.data import Array, DoubleLongUnsigned, OctetString, Structure
from gateway.drivers.dlms.initiate import InitiateResponse, decode_initiate
from gateway.drivers.dlms.keys import SecretBytes, SuiteKeys
from gateway.drivers.dlms.security import (
    AuthenticationFailed,
    SecurityContext,
    SecurityError,
    new_challenge,
)
from gateway.errors import DeviceError, ProtocolError

SERIAL = AttributeDescriptor(1, SERIAL_NUMBER, 2)
TIME = AttributeDescriptor(8, CLOCK, 2)
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")
METER_TITLE = bytes.fromhex("4D4D4D0000BC614E")
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")


def keys(ek: bytes = EK) -> SuiteKeys:
    return SuiteKeys(encryption=SecretBytes(ek), authentication=SecretBytes(AK))


def accepted(**fields: object) -> bytes:
    initiate = InitiateResponse(DEFAULT_CONFORMANCE, 1024).to_bytes()
    return Aare(AssociationResult.ACCEPTED, user_information=initiate,
                **fields).to_bytes()  # type: ignore[arg-type]


def test_public_association_and_a_get() -> None:
    a = Association(AssociationSettings(), device="meter 1")
    aarq = Aarq.from_bytes(a.request())
    assert aarq.mechanism is None and aarq.application_context is ApplicationContext.LN
    assert a.on_aare(accepted()) is None and a.state is State.ASSOCIATED
    assert a.negotiated is not None and a.negotiated.server_max_receive_pdu_size == 1024
    request = decode_apdu(a.get(SERIAL))
    assert isinstance(request, GetRequest) and request.attribute == SERIAL
    answer = GetResponse(OctetString(b"12345678"), request.invoke).to_bytes()
    assert a.on_get_response(answer) == Value(OctetString(b"12345678"))


def test_lls_sends_the_password_and_a_refusal_names_the_mechanism() -> None:
    settings = AssociationSettings(mechanism=Mechanism.LLS,
                                   password=SecretBytes(b"secret", label="password"))
    a = Association(settings, device="meter 2")
    aarq = Aarq.from_bytes(a.request())
    assert aarq.mechanism is Mechanism.LLS and aarq.calling_authentication_value == b"secret"
    refused = Aare(AssociationResult.REJECTED_PERMANENT,
                   AcseUserDiagnostic.AUTHENTICATION_FAILURE).to_bytes()
    with pytest.raises(DeviceError, match=r"meter 2: association refused: authentication "
                                          r"failure \(LLS: wrong password or key\?\)"):
        a.on_aare(refused)
    assert a.state is State.IDLE


def hls_meter(a: Association,
              ek: bytes = EK) -> tuple[SecurityContext, bytes, bytes, bytes]:
    """Meter side of passes 1 and 2: (its context, its challenge StoC, the client's
    challenge CtoS, the AARE)."""
    meter = SecurityContext(keys(ek), METER_TITLE, MemoryCounters(next_ic=500))
    aarq = Aarq.from_bytes(a.request())
    assert aarq.application_context is ApplicationContext.LN_CIPHERED
    assert aarq.mechanism is Mechanism.HLS_GMAC and aarq.calling_ap_title == CLIENT_TITLE
    meter.peer_title = aarq.calling_ap_title
    assert aarq.user_information is not None
    initiate = decode_initiate(meter.decipher(aarq.user_information).apdu)
    assert initiate.__class__.__name__ == "InitiateRequest"
    stoc = new_challenge(16)
    response = meter.cipher(InitiateResponse(DEFAULT_CONFORMANCE, 1024).to_bytes())
    aare = Aare(AssociationResult.ACCEPTED, user_information=response,
                responding_ap_title=METER_TITLE, mechanism=Mechanism.HLS_GMAC,
                responding_authentication_value=stoc).to_bytes()
    assert aarq.calling_authentication_value is not None
    return meter, stoc, aarq.calling_authentication_value, aare


def hls_client() -> Association:
    ctx = SecurityContext(keys(), CLIENT_TITLE, MemoryCounters(next_ic=1))
    return Association(AssociationSettings(mechanism=Mechanism.HLS_GMAC, security=ctx),
                       device="meter 3")


def test_hls_gmac_four_passes_then_ciphered_gets() -> None:
    a = hls_client()
    meter, stoc, ctos, aare = hls_meter(a)
    pass3 = a.on_aare(aare)
    assert pass3 is not None and a.state is State.AUTHENTICATING
    action = decode_apdu(meter.decipher(pass3).apdu)
    assert isinstance(action, ActionRequest) and isinstance(action.parameters, OctetString)
    meter.hls_check(stoc, action.parameters.value)  # the meter accepts our f(StoC)
    reply = meter.hls_reply(ctos)  # the meter's f(CtoS)
    a.on_hls_response(meter.cipher(ActionResponse(ActionResult.SUCCESS, OctetString(reply),
                                                   action.invoke).to_bytes()))
    assert a.state is State.ASSOCIATED
    request = decode_apdu(meter.decipher(a.get(SERIAL)).apdu)  # ciphered on the way out
    assert isinstance(request, GetRequest)
    answer = meter.cipher(GetResponse(OctetString(b"4410002"), request.invoke).to_bytes())
    assert a.on_get_response(answer) == Value(OctetString(b"4410002"))
    # The same ciphered answer again is a replay.
    a.get(SERIAL)
    with pytest.raises(SecurityError):
        a.on_get_response(answer)
    a.get(SERIAL)  # the refused GET is over: the association can ask again


def test_hls_with_the_wrong_key_fails_on_the_meter_s_reply() -> None:
    a = hls_client()
    meter, _, ctos, aare = hls_meter(a)
    wrong = SecurityContext(SuiteKeys(encryption=SecretBytes(EK),
                                      authentication=SecretBytes(bytes(16))),
                            METER_TITLE, MemoryCounters(next_ic=900))
    wrong.peer_title = CLIENT_TITLE
    pass3 = a.on_aare(aare)
    assert pass3 is not None
    action = decode_apdu(meter.decipher(pass3).apdu)
    assert isinstance(action, ActionRequest)
    forged = wrong.hls_reply(ctos)
    with pytest.raises(AuthenticationFailed):
        a.on_hls_response(meter.cipher(ActionResponse(
            ActionResult.SUCCESS, OctetString(forged), action.invoke).to_bytes()))
    assert a.state is not State.ASSOCIATED


def test_an_unprotected_reply_in_a_ciphered_association_is_refused() -> None:
    a = hls_client()
    meter, _, _, aare = hls_meter(a)
    pass3 = a.on_aare(aare)
    assert pass3 is not None
    action = decode_apdu(meter.decipher(pass3).apdu)
    assert isinstance(action, ActionRequest)
    plain = ActionResponse(ActionResult.SUCCESS, OctetString(b"x" * 17), action.invoke)
    with pytest.raises(ProtocolError, match="unprotected"):
        a.on_hls_response(plain.to_bytes())


def associated() -> Association:
    a = Association(AssociationSettings(), device="meter 4")
    a.request()
    a.on_aare(accepted())
    return a


def test_block_transfer_reassembles_and_checks_block_numbers() -> None:
    rows = Array(tuple(Structure((OctetString(bytes(12)), DoubleLongUnsigned(i)))
                       for i in range(300)))
    raw = axdr.encode(rows)
    chunks = [raw[i:i + 200] for i in range(0, len(raw), 200)]
    a = associated()
    request = decode_apdu(a.get(TIME))
    assert isinstance(request, GetRequest)
    for number, chunk in enumerate(chunks, start=1):
        last = number == len(chunks)
        step = a.on_get_response(GetResponseWithBlock(last, number, chunk,
                                                      request.invoke).to_bytes())
        if last:
            assert step == Value(rows)
        else:
            assert isinstance(step, Next)
            ask = decode_apdu(step.request)
            assert isinstance(ask, GetRequestNext) and ask.block_number == number
    # A skipped block is a protocol error, not a silently shorter buffer.
    a.get(TIME)
    a.on_get_response(GetResponseWithBlock(False, 1, chunks[0]).to_bytes())
    with pytest.raises(ProtocolError, match=r"block 3 .* where block 2 was due"):
        a.on_get_response(GetResponseWithBlock(True, 3, chunks[1]).to_bytes())


def test_refusals_name_the_object_and_the_reason() -> None:
    a = associated()
    a.get(SERIAL)
    with pytest.raises(DeviceError, match=r"meter 4: 0\.0\.96\.1\.0\.255 \(class 1, "
                                          r"attribute 2\): object undefined"):
        a.on_get_response(GetResponse(DataAccessResult.OBJECT_UNDEFINED).to_bytes())
    a.get(SERIAL)
    with pytest.raises(DeviceError, match="exception response"):
        a.on_get_response(ExceptionResponse(StateError.SERVICE_NOT_ALLOWED,
                                            ServiceError.OPERATION_NOT_POSSIBLE).to_bytes())


def test_release_and_misuse() -> None:
    a = associated()
    with pytest.raises(RuntimeError):
        a.on_aare(accepted())
    a.release()
    a.on_release(Rlre().to_bytes())
    assert a.state is State.RELEASED
    with pytest.raises(RuntimeError):
        a.get(SERIAL)
