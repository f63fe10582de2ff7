"""ACSE and xDLMS APDUs: published frames both ways, round trips, garbage, blocks."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.acse import (
    Aare,
    Aarq,
    AcseProviderDiagnostic,
    AcseUserDiagnostic,
    ApplicationContext,
    AssociationResult,
    Ciphered,
    ConfirmedServiceError,
    Conformance,
    InitiateRequest,
    InitiateResponse,
    Mechanism,
    Rlre,
    Rlrq,
    decode_initiate,
)
from gateway.drivers.dlms.apdu import (
    ActionRequest,
    ActionResponse,
    ActionResult,
    Apdu,
    DataAccessResult,
    EntryDescriptor,
    ExceptionResponse,
    GetRequest,
    GetRequestNext,
    GetRequestWithList,
    GetResponse,
    GetResponseWithBlock,
    GetResponseWithList,
    InvokeId,
    OtherAccess,
    RangeDescriptor,
    ServiceError,
    SetRequest,
    SetResponse,
    StateError,
    decode_apdu,
)
from gateway.drivers.dlms.cosem import (
    CLOCK,
    AttributeDescriptor,
    CaptureObject,
    CosemClass,
    CosemDateTime,
    MethodDescriptor,
    Obis,
)
from gateway.errors import ProtocolError
from tests.dlms.test_axdr import DATA, NEXT_ENTRY, PROFILE_BLOCK_1

PUBLIC_CONFORMANCE = (
    Conformance.PRIORITY_MGMT_SUPPORTED | Conformance.ATTRIBUTE0_SUPPORTED_WITH_GET
    | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ | Conformance.BLOCK_TRANSFER_WITH_SET_OR_WRITE
    | Conformance.BLOCK_TRANSFER_WITH_ACTION | Conformance.MULTIPLE_REFERENCES | Conformance.GET
    | Conformance.SET | Conformance.SELECTIVE_ACCESS | Conformance.EVENT_NOTIFICATION
    | Conformance.ACTION)


# Green Book example encodings as published in dlms-cosem's tests
# (tests/test_asce/test_aarq.py, test_aare.py: "DLMS Green Book v10").
AARQ_PUBLIC = "601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0"
AARQ_LLS = ("6036A1090607608574050801018A0207808B0760857405080201AC0A80083132333435363738"
            "BE10040E01000000065F1F0400007E1F04B0")
AARQ_HLS = ("6036A1090607608574050801018A0207808B0760857405080205AC0A80084B35366956616759"
            "BE10040E01000000065F1F0400007E1F04B0")
AARQ_CIPHERED_LLS = (
    "6066A109060760857405080103A60A04084D4D4D0000BC614E8A0207808B0760857405080201AC0A80083132"
    "333435363738BE34043221303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD5"
    "2211BE6841DB204D39EE6FDB8E356855")
AARE_OK = "6129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F040000501F01F40007"
AARE_BAD_CONTEXT = ("6129A109060760857405080101A203020101A305A103020102BE10040E0800065F1F04000050"
                    "1F01F40007")
AARE_OLD_VERSION = "611FA109060760857405080101A203020101A305A103020101BE0604040E010601"
AARE_HLS = ("6142A109060760857405080101A203020100A305A10302010E88020780890760857405080205AA0A80"
            "08503677524A323146BE10040E0800065F1F040000501F01F40007")


def test_public_aarq() -> None:
    wire = bytes.fromhex(AARQ_PUBLIC)
    aarq = Aarq(user_information=InitiateRequest(PUBLIC_CONFORMANCE, 1200).to_bytes())
    assert aarq.to_bytes() == wire
    assert decode_apdu(wire) == aarq
    assert decode_initiate(aarq.user_information or b"") == InitiateRequest(
        PUBLIC_CONFORMANCE, 1200, dlms_version=6)


@pytest.mark.parametrize(("wire", "mechanism", "secret"), [
    (AARQ_LLS, Mechanism.LLS, b"12345678"),
    (AARQ_HLS, Mechanism.HLS_GMAC, b"K56iVagY"),
])
def test_authenticated_aarq(wire: str, mechanism: Mechanism, secret: bytes) -> None:
    aarq = Aarq(user_information=InitiateRequest(PUBLIC_CONFORMANCE, 1200).to_bytes(),
                mechanism=mechanism, calling_authentication_value=secret)
    assert aarq.to_bytes() == bytes.fromhex(wire)
    assert Aarq.from_bytes(bytes.fromhex(wire)) == aarq


def test_ciphered_aarq_carries_the_glo_initiate_opaquely() -> None:
    wire = bytes.fromhex(AARQ_CIPHERED_LLS)
    aarq = Aarq.from_bytes(wire)
    assert aarq.application_context is ApplicationContext.LN_CIPHERED
    assert aarq.calling_ap_title == bytes.fromhex("4D4D4D0000BC614E")
    assert aarq.calling_authentication_value == b"12345678"
    inner = decode_initiate(aarq.user_information or b"")
    assert isinstance(inner, Ciphered) and inner.tag == 0x21
    assert aarq.to_bytes() == wire


def test_aare_accepted() -> None:
    wire = bytes.fromhex(AARE_OK)
    conformance = (Conformance.PRIORITY_MGMT_SUPPORTED | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
                   | Conformance.GET | Conformance.SET | Conformance.SELECTIVE_ACCESS
                   | Conformance.EVENT_NOTIFICATION | Conformance.ACTION)
    aare = Aare(AssociationResult.ACCEPTED,
                user_information=InitiateResponse(conformance, 500).to_bytes())
    assert aare.to_bytes() == wire
    assert decode_apdu(wire) == aare


def test_aare_rejections_are_named() -> None:
    bad = Aare.from_bytes(bytes.fromhex(AARE_BAD_CONTEXT))
    assert bad.result is AssociationResult.REJECTED_PERMANENT
    assert bad.diagnostic is AcseUserDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED
    old = Aare.from_bytes(bytes.fromhex(AARE_OLD_VERSION))
    assert old.diagnostic is AcseUserDiagnostic.NO_REASON_GIVEN
    # initiateError (1), initiate (6), dlms-version-too-low (1)
    assert decode_initiate(old.user_information or b"") == ConfirmedServiceError(1, 6, 1)
    assert old.to_bytes() == bytes.fromhex(AARE_OLD_VERSION)
    failed = Aare(AssociationResult.REJECTED_PERMANENT, AcseUserDiagnostic.AUTHENTICATION_FAILURE)
    assert Aare.from_bytes(failed.to_bytes()).diagnostic == 13
    provider = Aare(AssociationResult.REJECTED_TRANSIENT,
                    AcseProviderDiagnostic.NO_COMMON_ACSE_VERSION)
    assert Aare.from_bytes(provider.to_bytes()) == provider


def test_aare_hls_challenge() -> None:
    wire = bytes.fromhex(AARE_HLS)
    aare = Aare.from_bytes(wire)
    assert aare.diagnostic is AcseUserDiagnostic.AUTHENTICATION_REQUIRED
    assert aare.mechanism is Mechanism.HLS_GMAC
    assert aare.responding_authentication_value == b"P6wRJ21F"
    assert aare.to_bytes() == wire


def test_unknown_acse_fields_are_kept_in_order() -> None:
    # implementation-information [29] between the title and the user-information
    aarq = Aarq(calling_ap_title=b"ABCDEFGH", user_information=b"\x01",
                other=((0xBD, b"\x04\x02hi"),))
    wire = aarq.to_bytes()
    assert wire.index(b"\xbd") < wire.index(b"\xbe") and wire.index(b"\xa6") < wire.index(b"\xbd")
    assert Aarq.from_bytes(wire) == aarq


def test_release() -> None:
    assert Rlrq().to_bytes().hex() == "6203800100"
    assert Rlre().to_bytes().hex() == "6303800100"
    assert decode_apdu(bytes.fromhex("6203800100")) == Rlrq(0)
    assert decode_apdu(bytes.fromhex("6300")) == Rlre(None)
    with_info = Rlrq(0, InitiateRequest(Conformance.GET, 512).to_bytes())
    assert decode_apdu(with_info.to_bytes()) == with_info


# --- GET ----------------------------------------------------------------------------------

def test_get_of_the_clock_and_its_response() -> None:
    # The clock's time: class 8, 0.0.1.0.0.255, attribute 2 (Green Book / Gurux examples).
    request = GetRequest(AttributeDescriptor(CosemClass.CLOCK, CLOCK, 2))
    wire = bytes.fromhex("C0 01 C1 00 08 00 00 01 00 00 FF 02 00")
    assert request.to_bytes() == wire
    assert decode_apdu(wire) == request
    # Its answer, built from the published date-time of a load profile entry.
    wire = bytes.fromhex("C401C100090C07E30C130402000000FFC400")
    response = decode_apdu(wire)
    assert isinstance(response, GetResponse) and not isinstance(response.result, int)
    assert CosemDateTime.from_data(response.result).to_datetime().isoformat() == (
        "2019-12-19T01:00:00+00:00")
    assert response.to_bytes() == wire


@pytest.mark.parametrize(("wire", "apdu"), [
    # dlms-cosem tests/test_xdlms/test_get.py
    ("c001c10001" "00002b0100ff" "0200",
     GetRequest(AttributeDescriptor(1, Obis(0, 0, 43, 1, 0), 2))),
    ("c002c100000001", GetRequestNext(1)),
    ("c003c102" "00010000" "2a0000ff0200" "000800000100" "00ff0200",
     GetRequestWithList(((AttributeDescriptor(1, Obis(0, 0, 42, 0, 0), 2), None),
                         (AttributeDescriptor(8, CLOCK, 2), None)))),
    ("c401c1000600001391", GetResponse(axdr.DoubleLongUnsigned(5009))),
    ("c401c10101", GetResponse(DataAccessResult.HARDWARE_FAULT)),
    # dlms-cosem tests/test_xdlms/test_action.py: reply_to_HLS_authentication
    ("c301c0000f0000280000ff0101" "0911" "1000001a90e6d2221fa2fd85eed61acc22",
     ActionRequest(MethodDescriptor(15, Obis(0, 0, 40, 0, 0), 1),
                   axdr.OctetString(bytes.fromhex("1000001a90e6d2221fa2fd85eed61acc22")),
                   InvokeId(0))),
    ("c301c0000f0000280000ff0100",
     ActionRequest(MethodDescriptor(15, Obis(0, 0, 40, 0, 0), 1), None, InvokeId(0))),
    ("c701c00000", ActionResponse(ActionResult.SUCCESS, None, InvokeId(0))),
    ("c701c00001000911" "1000001afde8857b728a3499106aa665d1",
     ActionResponse(ActionResult.SUCCESS, axdr.OctetString(
         bytes.fromhex("1000001afde8857b728a3499106aa665d1")), InvokeId(0))),
    ("c701c0000101fa", ActionResponse(ActionResult.SUCCESS, DataAccessResult.OTHER_REASON,
                                      InvokeId(0))),
])
def test_published_xdlms(wire: str, apdu: Apdu) -> None:
    assert decode_apdu(bytes.fromhex(wire)) == apdu
    assert apdu.to_bytes().hex() == wire


def test_range_descriptor_request() -> None:
    # dlms-cosem tests/test_xdlms/test_selective_access.py: the 15-minute profile
    # 1.0.99.1.0.255 from 2017-10-01 00:00 to 01:00, all columns.
    wire = bytes.fromhex(
        "c001c10007" "0100630100ff" "02" "01" "01" "0204" "020412000809060000010000ff0f02120000"
        "090c07e10a010700000000ffc480" "090c07e10a010701000000ffc480" "0100")
    request = decode_apdu(wire)
    assert isinstance(request, GetRequest)
    access = request.access
    assert isinstance(access, RangeDescriptor)
    assert access.restricting == CaptureObject(8, CLOCK, 2, 0)
    assert access.selected_values == ()
    start = CosemDateTime.from_data(access.from_value)
    assert (start.year, start.month, start.day, start.hour) == (2017, 10, 1, 0)
    assert request.to_bytes() == wire


def test_entry_descriptor_and_other_selectors_round_trip() -> None:
    profile = AttributeDescriptor(CosemClass.PROFILE_GENERIC, Obis(1, 0, 99, 1, 0), 2)
    for access in (EntryDescriptor(1, 96), EntryDescriptor(10, 0, 2, 3),
                   OtherAccess(5, axdr.NullData())):
        request = GetRequest(profile, access)
        assert decode_apdu(request.to_bytes()) == request
    assert GetRequest(profile, EntryDescriptor(1, 96)).to_bytes().hex().endswith(
        "0102" "0204" "0600000001" "0600000060" "120001" "120000")


def test_published_first_block_of_a_profile() -> None:
    # dlms-cosem tests/test_xdlms/test_get.py: GET-Response-With-Datablock, block 1 of a
    # load profile, not the last, 1182 bytes of raw data.
    wire = bytes.fromhex("c402c10000000001" "0082049e") + PROFILE_BLOCK_1
    block = decode_apdu(wire)
    assert block == GetResponseWithBlock(False, 1, PROFILE_BLOCK_1)
    assert block.to_bytes() == wire
    stream = axdr.ArrayStream()
    assert len(stream.feed(PROFILE_BLOCK_1)) == 77
    # the rest of entry 78 arrives with the next block
    assert len(stream.feed(NEXT_ENTRY[10:] + NEXT_ENTRY)) == 2


def test_block_transfer_reassembles_a_buffer() -> None:
    rows = tuple(axdr.Structure((axdr.OctetString(bytes(12)), axdr.DoubleLongUnsigned(i)))
                 for i in range(300))
    value = axdr.encode(axdr.Array(rows))
    blocks = [value[i:i + 200] for i in range(0, len(value), 200)]
    stream, got = axdr.ArrayStream(), []
    for number, piece in enumerate(blocks, 1):
        sent = GetResponseWithBlock(number == len(blocks), number, piece, InvokeId(3))
        received = decode_apdu(sent.to_bytes())
        assert isinstance(received, GetResponseWithBlock) and received == sent
        assert isinstance(received.raw_data, bytes)
        got += stream.feed(received.raw_data)
        assert decode_apdu(GetRequestNext(number, InvokeId(3)).to_bytes()) == GetRequestNext(
            number, InvokeId(3))
    stream.close()
    assert tuple(got) == rows
    aborted = GetResponseWithBlock(True, 4, DataAccessResult.LONG_GET_ABORTED)
    assert decode_apdu(aborted.to_bytes()) == aborted


def test_set_the_clock_and_exception_response() -> None:
    at = CosemDateTime.from_bytes(bytes.fromhex("07e30c130402000000ffc400"))
    request = SetRequest(AttributeDescriptor(8, CLOCK, 2), at.to_data())
    assert request.to_bytes().hex() == (
        "c101c1000800000100" "00ff0200" "090c07e30c130402000000ffc400")
    assert decode_apdu(request.to_bytes()) == request
    assert decode_apdu(bytes.fromhex("c501c103")) == SetResponse(DataAccessResult.READ_WRITE_DENIED)
    assert decode_apdu(bytes.fromhex("d80102")) == ExceptionResponse(
        StateError.SERVICE_NOT_ALLOWED, ServiceError.SERVICE_NOT_SUPPORTED)
    counter = ExceptionResponse(StateError.SERVICE_UNKNOWN, ServiceError.INVOCATION_COUNTER_ERROR,
                                1234)
    assert counter.to_bytes().hex() == "d8020600000" "4d2"
    assert decode_apdu(counter.to_bytes()) == counter


def test_results_are_named() -> None:
    assert DataAccessResult(3).name == "READ_WRITE_DENIED"
    assert DataAccessResult(4).name == "OBJECT_UNDEFINED"
    assert DataAccessResult(11).name == "OBJECT_UNAVAILABLE"
    assert ActionResult(250).name == "OTHER_REASON"
    assert AcseUserDiagnostic(13).name == "AUTHENTICATION_FAILURE"


@pytest.mark.parametrize("tag", [0xC8, 0xCC, 0xCB, 0xCF, 0xD0, 0xD4, 0xDB, 0x21, 0x28])
def test_ciphered_tags_are_handed_over(tag: int) -> None:
    wire = bytes([tag]) + bytes.fromhex("1030000000010203")
    assert decode_apdu(wire) == Ciphered(wire)


@pytest.mark.parametrize(("wire", "message"), [
    ("", "empty"),
    ("c0", "cut"),
    ("c004c1", "choice 4"),
    ("c001f1000800000100", "reserved bits"),
    ("c401c10105", "unknown DataAccessResult 5"),
    ("c401c1000600001391ff", "1 bytes left"),
    ("c102c1", "only normal"),
    ("0f00", "0x0F is not one"),
    ("6103a10100", "cut"),
    ("6105a103020100", "06 element"),
    ("6105a103060100", "not a DLMS UA name"),
    ("6000", "without application-context-name"),
    ("d80109", "unknown ServiceError 9"),
])
def test_malformed_apdus(wire: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_apdu(bytes.fromhex(wire))


# --- properties ---------------------------------------------------------------------------

OBIS = st.builds(Obis, *[st.integers(0, 255)] * 6)
INVOKE = st.builds(InvokeId, st.integers(0, 15), st.booleans(), st.booleans())
ATTRIBUTE = st.builds(AttributeDescriptor, st.integers(0, 0xFFFF), OBIS, st.integers(-128, 127))
CAPTURE = st.builds(CaptureObject, st.integers(0, 0xFFFF), OBIS, st.integers(-128, 127),
                    st.integers(0, 0xFFFF))
ACCESS = st.none() | st.one_of(
    st.builds(RangeDescriptor, CAPTURE, DATA, DATA, st.lists(CAPTURE, max_size=3).map(tuple)),
    st.builds(EntryDescriptor, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
              st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    st.builds(OtherAccess, st.integers(3, 255), DATA))
RESULT = DATA | st.sampled_from(DataAccessResult)
APDUS: st.SearchStrategy[Apdu] = st.one_of(
    st.builds(GetRequest, ATTRIBUTE, ACCESS, INVOKE),
    st.builds(GetRequestNext, st.integers(0, 2**32 - 1), INVOKE),
    st.builds(GetRequestWithList, st.lists(st.tuples(ATTRIBUTE, ACCESS), max_size=3).map(tuple),
              INVOKE),
    st.builds(GetResponse, RESULT, INVOKE),
    st.builds(GetResponseWithBlock, st.booleans(), st.integers(0, 2**32 - 1),
              st.binary(max_size=300) | st.sampled_from(DataAccessResult), INVOKE),
    st.builds(GetResponseWithList, st.lists(RESULT, max_size=3).map(tuple), INVOKE),
    st.builds(SetRequest, ATTRIBUTE, DATA, ACCESS, INVOKE),
    st.builds(SetResponse, st.sampled_from(DataAccessResult), INVOKE),
    st.builds(ActionRequest, st.builds(MethodDescriptor, st.integers(0, 0xFFFF), OBIS,
                                       st.integers(-128, 127)), st.none() | DATA, INVOKE),
    st.builds(ActionResponse, st.sampled_from(ActionResult), st.none() | RESULT, INVOKE),
    st.builds(ExceptionResponse, st.sampled_from(StateError),
              st.sampled_from([e for e in ServiceError
                               if e is not ServiceError.INVOCATION_COUNTER_ERROR])),
    st.builds(Aarq, st.sampled_from(ApplicationContext), st.none() | st.binary(max_size=200),
              st.none() | st.binary(min_size=8, max_size=8), st.none() | st.sampled_from(Mechanism),
              st.none() | st.binary(max_size=64)),
    st.builds(Aare, st.sampled_from(AssociationResult),
              st.sampled_from(AcseUserDiagnostic) | st.sampled_from(AcseProviderDiagnostic),
              st.sampled_from(ApplicationContext), st.none() | st.binary(max_size=200),
              st.none() | st.binary(min_size=8, max_size=8), st.none() | st.sampled_from(Mechanism),
              st.none() | st.binary(max_size=64)),
    st.builds(Rlrq, st.none() | st.sampled_from([0, 1, 30]), st.none() | st.binary(max_size=40)),
    st.builds(Rlre, st.none() | st.sampled_from([0, 1, 30]), st.none() | st.binary(max_size=40)),
)


@given(APDUS)
def test_apdu_round_trip(apdu: Apdu) -> None:
    wire = apdu.to_bytes()
    assert decode_apdu(wire) == apdu
    assert decode_apdu(wire).to_bytes() == wire


INITIATES = st.one_of(
    st.builds(InitiateRequest, st.integers(0, 2**24 - 1).map(Conformance),
              st.integers(0, 0xFFFF), st.integers(0, 255), st.none() | st.binary(max_size=32),
              st.booleans(), st.none() | st.integers(-128, 127)),
    st.builds(InitiateResponse, st.integers(0, 2**24 - 1).map(Conformance),
              st.integers(0, 0xFFFF), st.integers(0, 255), st.none() | st.integers(-128, 127),
              st.sampled_from([0x0007, 0xFA00])),
    st.builds(ConfirmedServiceError, st.integers(0, 255), st.integers(0, 255),
              st.integers(0, 255)))


@given(INITIATES)
def test_initiate_round_trip(initiate: InitiateRequest | InitiateResponse
                             | ConfirmedServiceError) -> None:
    assert decode_initiate(initiate.to_bytes()) == initiate


@given(st.binary(max_size=80) | st.sampled_from([0x60, 0x61, 0xC0, 0xC1, 0xC3, 0xC4, 0xC5, 0xC7,
                                                 0xD8]).flatmap(
    lambda tag: st.binary(max_size=60).map(lambda rest: bytes([tag]) + rest)))
def test_garbage_raises_only_protocol_error(wire: bytes) -> None:
    try:
        apdu = decode_apdu(wire)
    except ProtocolError:
        return
    assert decode_apdu(apdu.to_bytes()) == apdu


@given(st.binary(max_size=40))
def test_initiate_garbage_raises_only_protocol_error(wire: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_initiate(wire)
