"""The simulated meter's association server, sans-IO: what it answers to forged,
replayed and tampered APDUs, and to block requests out of order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.clock import ManualClock
from gateway.drivers.dlms.acse import Mechanism
from gateway.drivers.dlms.apdu import (
    ActionRequest,
    ActionResponse,
    ActionResult,
    DataAccessResult,
    ExceptionResponse,
    GetRequest,
    GetRequestNext,
    GetResponseWithBlock,
    InvokeId,
    ServiceError,
    decode_apdu,
)
from gateway.drivers.dlms.association import Association, AssociationSettings, Next
from gateway.drivers.dlms.cosem import (
    CURRENT_ASSOCIATION,
    LOAD_PROFILE_1,
    SERIAL_NUMBER,
    AttributeDescriptor,
    MethodDescriptor,
)
from gateway.drivers.dlms.counters import MemoryCounters
from gateway.drivers.dlms.data import OctetString
from gateway.drivers.dlms.initiate import Ciphered
from gateway.drivers.dlms.keys import SecretBytes, SuiteKeys
from gateway.drivers.dlms.security import SecurityContext
from gateway.sim.dlms_meter import DlmsMeter, DlmsMeterSpec, DlmsSession
from gateway.sim.dlms_profile import AMR_POWER_DOWN, captures

START = datetime(2026, 3, 10, 12, 7, 30, tzinfo=UTC)
KEYS = SuiteKeys(encryption=SecretBytes(bytes(range(16))),
                 authentication=SecretBytes(bytes(range(16, 32))))
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")
SERIAL = AttributeDescriptor(1, SERIAL_NUMBER, 2)


def hls_session() -> tuple[DlmsSession, Association, SecurityContext]:
    meter = DlmsMeter(DlmsMeterSpec("m", security="hls_gmac", keys=KEYS),
                      ManualClock(START))
    ctx = SecurityContext(KEYS, CLIENT_TITLE, MemoryCounters())
    a = Association(AssociationSettings(mechanism=Mechanism.HLS_GMAC, security=ctx),
                    device="m")
    return DlmsSession(meter, client_sap=1), a, ctx


def test_a_forged_hls_reply_is_refused_and_the_association_stays_closed() -> None:
    session, a, ctx = hls_session()
    aare = session.handle(a.request())
    assert aare is not None and a.on_aare(aare) is not None
    forged = ActionRequest(MethodDescriptor(15, CURRENT_ASSOCIATION, 1),
                           OctetString(ctx.hls_reply(b"not the challenge")), InvokeId(2))
    answer = session.handle(ctx.cipher(forged.to_bytes()))
    assert answer is not None
    ciphered = decode_apdu(answer)
    assert isinstance(ciphered, Ciphered)
    refusal = decode_apdu(ctx.decipher(ciphered.apdu).apdu)
    assert refusal == ActionResponse(ActionResult.OTHER_REASON, None, InvokeId(2))
    assert not session.associated and session.meter.associations == 0
    get = decode_apdu(session.handle(ctx.cipher(GetRequest(SERIAL).to_bytes())) or b"")
    assert isinstance(get, ExceptionResponse)


def test_replayed_and_tampered_requests_get_exception_responses() -> None:
    session, a, ctx = hls_session()
    aare = session.handle(a.request())
    assert aare is not None
    pass3 = a.on_aare(aare)
    assert pass3 is not None
    pass4 = session.handle(pass3)
    assert pass4 is not None
    a.on_hls_response(pass4)
    request = a.get(SERIAL)
    first = session.handle(request)
    assert first is not None and isinstance(decode_apdu(first), Ciphered)
    replayed = decode_apdu(session.handle(request) or b"")
    assert isinstance(replayed, ExceptionResponse)
    assert replayed.service_error is ServiceError.INVOCATION_COUNTER_ERROR
    tampered = bytearray(ctx.cipher(GetRequest(SERIAL).to_bytes()))
    tampered[-1] ^= 1
    answer = decode_apdu(session.handle(bytes(tampered)) or b"")
    assert isinstance(answer, ExceptionResponse)
    assert answer.service_error is ServiceError.DECIPHERING_ERROR
    plain = decode_apdu(session.handle(GetRequest(SERIAL).to_bytes()) or b"")
    assert isinstance(plain, ExceptionResponse)  # unprotected in a ciphered association


def test_block_numbers_out_of_order_end_the_transfer() -> None:
    meter = DlmsMeter(DlmsMeterSpec("m", max_pdu_size=200, profile_depth_days=1),
                      ManualClock(START))
    session = DlmsSession(meter, client_sap=16)
    a = Association(AssociationSettings(), device="m")
    aare = session.handle(a.request())
    assert aare is not None and a.on_aare(aare) is None
    first = session.handle(a.get(AttributeDescriptor(7, LOAD_PROFILE_1, 2)))
    assert first is not None and isinstance(a.on_get_response(first), Next)
    assert len(first) <= 200
    wrong = decode_apdu(session.handle(GetRequestNext(5).to_bytes()) or b"")
    assert wrong == GetResponseWithBlock(True, 5, DataAccessResult.DATA_BLOCK_NUMBER_INVALID)
    again = decode_apdu(session.handle(GetRequestNext(1).to_bytes()) or b"")
    assert again == GetResponseWithBlock(True, 1, DataAccessResult.NO_LONG_GET_IN_PROGRESS)


def test_captures_skip_outages_and_flag_power_down_on_the_meter_s_clock() -> None:
    installed = datetime(2026, 3, 10, tzinfo=UTC)
    outage = (datetime(2026, 3, 10, 1, 0, 30, tzinfo=UTC),
              datetime(2026, 3, 10, 1, 40, tzinfo=UTC))
    rows = captures(datetime(2026, 3, 10, 2, 5, tzinfo=UTC), period_s=900, depth_s=86400,
                    drift_s=60.0, installed_at=installed, outages=[outage])
    # The clock runs a minute ahead: slot 00:00 was taken at 23:59 true, before install.
    stamps = [(r.at.hour, r.at.minute, r.status) for r in rows]
    assert stamps == [(0, 15, 0), (0, 30, 0), (0, 45, 0), (1, 0, 0),
                      (1, 45, AMR_POWER_DOWN), (2, 0, 0)]
    assert rows[0].true_at == rows[0].at - timedelta(minutes=1)
