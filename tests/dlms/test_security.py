"""Security suite 0: published vectors, tampering, replays, counters on disk, keys."""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.drivers.dlms.counters import (
    IC_MAX,
    CounterExhausted,
    CounterFileError,
    InvocationCounterStore,
    MemoryCounters,
)
from gateway.drivers.dlms.keys import (
    SecretBytes,
    SuiteKeys,
    key_from_env,
    key_from_file,
    parse_key,
    password_from_env,
    password_from_file,
    system_title,
)
from gateway.drivers.dlms.security import (
    AUTHENTICATED,
    AUTHENTICATED_ENCRYPTED,
    GLO_TAGS,
    AuthenticationFailed,
    ReplayedFrame,
    SecurityContext,
    SecurityControl,
    SecurityError,
    check_lls_password,
    cipher_apdu,
    decipher_apdu,
    hls_gmac,
    new_challenge,
    verify_hls_gmac,
)
from gateway.errors import ConfigError, ProtocolError

H = bytes.fromhex
ENCRYPTED_ONLY = SecurityControl(authenticated=False, encrypted=True)

# DLMS UA Green Book Ed. 8, 9.2.7.2 Table 40 ("Example: glo-get-request ... with the
# three security policies") and 9.2.7.4 Table 43 ("HLS example using
# authentication-mechanism 5 with GMAC"), as quoted byte for byte in the test suites of
# openmuc jDLMS (GcmModule tests), EnergyICT's DLMS SecurityContext tests and
# meterkit/cosemlib (tests of its AES-GCM layer).
EK = H("000102030405060708090A0B0C0D0E0F")
AK = H("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
SERVER_TITLE = H("4D4D4D0000BC614E")
SERVER_IC = 0x01234567
CLIENT_TITLE = H("4D4D4D0000000001")
GET_CLOCK_TIME = H("C0010000080000010000FF0200")   # GET 0.0.1.0.0.255 (clock) attr 2
TABLE_40 = {
    0x10: H("C81E1001234567C0010000080000010000FF020006725D910F9221D263877516"),
    0x20: H("C8122001234567411312FF935A47566827C467BC"),
    0x30: H("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"),
}
# The Green Book's ciphered xDLMS InitiateRequest (with a dedicated key inside), as in
# Gurux's Go library test TestCipherData (bytes used as a fact, not code).
INITIATE_REQUEST = H("01011000112233445566778899AABBCCDDEEFF0000065F1F0400007E1F04B0")
GLO_INITIATE_REQUEST = H(
    "21303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE68"
    "41DB204D39EE6FDB8E356855")
CTOS = b"K56iVagY"   # 4B35366956616759
STOC = b"P6wRJ21F"   # 503677524A323146
F_STOC = H("10000000011A52FE7DD3E72748973C1E28")     # client title, IC 00000001
F_CTOS = H("1001234567FE1466AFB3DBCD4F9389E2B7")     # server title, IC 01234567


def keys(ek: bytes = EK, ak: bytes = AK) -> SuiteKeys:
    return SuiteKeys(encryption=SecretBytes(ek), authentication=SecretBytes(ak))


# --- published vectors -------------------------------------------------------------------

@pytest.mark.parametrize("sc", sorted(TABLE_40))
def test_green_book_glo_get_request(sc: int) -> None:
    control = SecurityControl.from_byte(sc)
    assert control.byte == sc
    frame = cipher_apdu(GET_CLOCK_TIME, keys(), control, SERVER_TITLE, SERVER_IC)
    assert frame == TABLE_40[sc]
    opened = decipher_apdu(frame, keys(), SERVER_TITLE)
    assert (opened.apdu, opened.control, opened.invocation_counter, opened.system_title) == (
        GET_CLOCK_TIME, control, SERVER_IC, SERVER_TITLE)


def test_security_control_byte_round_trips() -> None:
    for sc in range(256):
        assert SecurityControl.from_byte(sc).byte == sc
    assert AUTHENTICATED_ENCRYPTED.covers(AUTHENTICATED)
    assert not AUTHENTICATED.covers(AUTHENTICATED_ENCRYPTED)
    assert not ENCRYPTED_ONLY.covers(AUTHENTICATED)


def test_green_book_glo_initiate_request() -> None:
    frame = cipher_apdu(INITIATE_REQUEST, keys(), AUTHENTICATED_ENCRYPTED, SERVER_TITLE,
                        SERVER_IC)
    assert frame == GLO_INITIATE_REQUEST
    assert decipher_apdu(frame, keys(), SERVER_TITLE).apdu == INITIATE_REQUEST


def test_green_book_hls_gmac_both_passes() -> None:
    # Pass 3: the client answers the server's challenge; pass 4 the other way round.
    assert hls_gmac(keys(), CLIENT_TITLE, 1, STOC) == F_STOC
    assert hls_gmac(keys(), SERVER_TITLE, SERVER_IC, CTOS) == F_CTOS
    assert verify_hls_gmac(keys(), CLIENT_TITLE, STOC, F_STOC) == 1
    assert verify_hls_gmac(keys(), SERVER_TITLE, CTOS, F_CTOS) == SERVER_IC


def test_hls_through_contexts() -> None:
    client = SecurityContext(keys(), CLIENT_TITLE, MemoryCounters(next_ic=1))
    server = SecurityContext(keys(), SERVER_TITLE, MemoryCounters(next_ic=SERVER_IC))
    client.peer_title, server.peer_title = SERVER_TITLE, CLIENT_TITLE
    f_stoc = client.hls_reply(STOC)
    assert f_stoc == F_STOC
    server.hls_check(STOC, f_stoc)                  # the simulator verifies the client
    f_ctos = server.hls_reply(CTOS)
    assert f_ctos == F_CTOS
    client.hls_check(CTOS, f_ctos)                  # ... and the client the meter
    with pytest.raises(AuthenticationFailed):
        client.hls_check(new_challenge(), f_ctos)   # a reply to another challenge
    with pytest.raises(AuthenticationFailed):
        verify_hls_gmac(keys(ak=bytes(16)), SERVER_TITLE, CTOS, F_CTOS)   # wrong AK
    with pytest.raises(AuthenticationFailed):
        verify_hls_gmac(keys(), SERVER_TITLE, CTOS, F_CTOS[:-1])


# --- tampering and policy ----------------------------------------------------------------

@pytest.mark.parametrize("index", range(len(TABLE_40[0x30])))
def test_every_altered_byte_is_rejected(index: int) -> None:
    frame = bytearray(TABLE_40[0x30])
    frame[index] ^= 0x01
    with pytest.raises(SecurityError):
        decipher_apdu(bytes(frame), keys(), SERVER_TITLE)


@pytest.mark.parametrize("sc", [0x10, 0x30])
@pytest.mark.parametrize("wrong", ["ek", "ak", "title"])
def test_wrong_key_or_title_fails_the_tag(sc: int, wrong: str) -> None:
    k = keys(ek=bytes(16)) if wrong == "ek" else keys(ak=bytes(16)) if wrong == "ak" else keys()
    title = CLIENT_TITLE if wrong == "title" else SERVER_TITLE
    with pytest.raises(AuthenticationFailed, match="does not verify"):
        decipher_apdu(TABLE_40[sc], k, title)


def test_policy_refuses_weaker_protection() -> None:
    ctx = SecurityContext(keys(), CLIENT_TITLE, MemoryCounters())
    ctx.peer_title = SERVER_TITLE
    for sc in (0x10, 0x20):
        with pytest.raises(SecurityError, match="requires 0x30"):
            ctx.decipher(TABLE_40[sc])
    assert ctx.decipher(TABLE_40[0x30]).apdu == GET_CLOCK_TIME


@pytest.mark.parametrize(("frame", "message"), [
    (b"", "empty"),
    (H("C0010000080000010000FF0200"), "not a glo-ciphered"),
    (H("C8"), "length byte is missing"),
    (H("C81E30"), "only 1 bytes follow"),
    (TABLE_40[0x30] + b"\x00", "1 bytes after it"),
    (H("C8053001234567"), "short of its 12-byte"),
    (H("C803300123"), "shorter than its security header"),
    (H("C8853001234567"), "bad long-form"),
    (H("C8050001234567"), "neither"),
    (H("C8055001234567"), "broadcast key"),
    (H("C805B001234567"), "compressed"),
    (H("C8053101234567"), "suite 1"),
    (H("CC1E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"),
     "carried a 0xc0 APDU"),   # the glo tag is outside the AAD: relabelling is caught here
])
def test_malformed_frames_are_named(frame: bytes, message: str) -> None:
    with pytest.raises(SecurityError, match=message):
        decipher_apdu(frame, keys(), SERVER_TITLE)


def test_glo_tag_must_match_the_apdu_inside() -> None:
    # A get-response ciphered but labelled glo-get-request: the tag verifies, the label lies.
    good = cipher_apdu(H("C40100000102"), keys(), AUTHENTICATED_ENCRYPTED, SERVER_TITLE, 7)
    with pytest.raises(SecurityError, match="carried a 0xc4 APDU, not 0xc0"):
        decipher_apdu(b"\xc8" + good[1:], keys(), SERVER_TITLE)


# --- replay protection -------------------------------------------------------------------

def test_replayed_and_older_counters_are_rejected() -> None:
    meter = SecurityContext(keys(), SERVER_TITLE, MemoryCounters(next_ic=100))
    gateway = SecurityContext(keys(), CLIENT_TITLE, MemoryCounters())
    gateway.peer_title = SERVER_TITLE
    first, second = meter.cipher(H("C4010000")), meter.cipher(H("C4010001"))
    assert gateway.decipher(second).invocation_counter == 101
    with pytest.raises(ReplayedFrame, match=r"100 .* does not rise above 101"):
        gateway.decipher(first)                     # older
    with pytest.raises(ReplayedFrame):
        gateway.decipher(second)                    # the same again
    # A forged frame with a high counter does not move the window.
    forged = bytearray(meter.cipher(H("C4010002")))
    forged[3:7] = (IC_MAX).to_bytes(4, "big")
    with pytest.raises(AuthenticationFailed):
        gateway.decipher(bytes(forged))
    assert gateway.decipher(meter.cipher(H("C4010003"))).invocation_counter == 103


def test_peer_counter_exhausted_says_keys_must_change() -> None:
    meter = SecurityContext(keys(), SERVER_TITLE, MemoryCounters(next_ic=IC_MAX))
    gateway = SecurityContext(keys(), CLIENT_TITLE, MemoryCounters())
    gateway.peer_title = SERVER_TITLE
    last = meter.cipher(H("C4010000"))
    gateway.decipher(last)
    with pytest.raises(CounterExhausted, match="change the encryption"):
        meter.cipher(H("C4010000"))
    with pytest.raises(ReplayedFrame, match="keys must be changed"):
        gateway.decipher(last)


def test_general_glo_ciphering_carries_the_title() -> None:
    meter = SecurityContext(keys(), SERVER_TITLE, MemoryCounters(), general=True)
    frame = meter.cipher(H("C4010000"))
    assert frame[:10] == b"\xdb\x08" + SERVER_TITLE
    assert decipher_apdu(frame, keys(), None).system_title == SERVER_TITLE
    with pytest.raises(SecurityError, match="the association's peer is"):
        decipher_apdu(frame, keys(), CLIENT_TITLE)


@pytest.mark.parametrize(("size", "length_bytes"), [(100, "75"), (200, "81d9"),
                                                    (1000, "8203f9")])
def test_long_lengths(size: int, length_bytes: str) -> None:
    # The length counts SC (1) + IC (4) + the APDU + the tag (12).
    apdu = b"\xc4" + bytes(size - 1)
    frame = cipher_apdu(apdu, keys(), AUTHENTICATED_ENCRYPTED, SERVER_TITLE, 5)
    assert frame[1:1 + len(length_bytes) // 2] == H(length_bytes)
    assert decipher_apdu(frame, keys(), SERVER_TITLE).apdu == apdu


def test_glo_tag_table_both_ways() -> None:
    assert {GLO_TAGS[p] for p in (0x01, 0x08, 0xC0, 0xC1, 0xC3, 0xC4, 0xC5, 0xC7)} == {
        0x21, 0x28, 0xC8, 0xC9, 0xCB, 0xCC, 0xCD, 0xCF}
    assert len(set(GLO_TAGS.values())) == len(GLO_TAGS)
    with pytest.raises(ValueError, match="general=True"):
        cipher_apdu(H("D8"), keys(), AUTHENTICATED_ENCRYPTED, SERVER_TITLE, 1)


@settings(max_examples=150, deadline=None)
@given(plain_tag=st.sampled_from(sorted(GLO_TAGS)), body=st.binary(max_size=300),
       sc=st.sampled_from([0x10, 0x20, 0x30]), ic=st.integers(0, IC_MAX),
       general=st.booleans())
def test_round_trip(plain_tag: int, body: bytes, sc: int, ic: int, general: bool) -> None:
    apdu = bytes((plain_tag,)) + body
    control = SecurityControl.from_byte(sc)
    frame = cipher_apdu(apdu, keys(), control, SERVER_TITLE, ic, general=general)
    opened = decipher_apdu(frame, keys(), SERVER_TITLE)
    assert (opened.apdu, opened.control, opened.invocation_counter) == (apdu, control, ic)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=80),
                 st.builds(lambda t, rest: bytes((t,)) + rest,
                           st.sampled_from([*GLO_TAGS.values(), 0xDB]),
                           st.binary(max_size=80))))
def test_garbage_raises_only_protocol_errors(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decipher_apdu(frame, keys(), SERVER_TITLE)


# --- LLS and challenges ------------------------------------------------------------------

def test_lls_password() -> None:
    password = SecretBytes(b"12345678", label="password")
    check_lls_password(password, b"12345678")
    with pytest.raises(AuthenticationFailed, match="LLS password"):
        check_lls_password(password, b"12345679")


def test_challenges() -> None:
    assert len(new_challenge()) == 16
    assert {len(new_challenge(n)) for n in (8, 64)} == {8, 64}
    assert new_challenge() != new_challenge()
    for bad in (7, 65):
        with pytest.raises(ValueError):
            new_challenge(bad)
    ctx = SecurityContext(keys(), CLIENT_TITLE, MemoryCounters())
    with pytest.raises(SecurityError, match="8 to 64"):
        ctx.hls_reply(b"short")


# --- the counter store -------------------------------------------------------------------

def test_store_reserves_blocks_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "meter.ic"
    with InvocationCounterStore(path, block=100) as store:
        used = [store.next_outgoing() for _ in range(250)]
        assert used == list(range(1, 251))
        assert store.writes == 3                     # once per block, not per frame
    with InvocationCounterStore(path, block=100) as store:
        assert store.next_outgoing() == 301          # the rest of the last block is skipped
        store.raise_outgoing(5000)
        assert store.next_outgoing() == 5000
        store.raise_outgoing(10)                     # never down
        assert store.next_ic == 5001


def test_store_survives_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "meter.ic"
    script = ("import os, sys\n"
              "from gateway.drivers.dlms.counters import InvocationCounterStore\n"
              "s = InvocationCounterStore(sys.argv[1], block=50)\n"
              "print(','.join(str(s.next_outgoing()) for _ in range(70)), flush=True)\n"
              "os._exit(9)\n")                       # no close, no flush: a crash
    run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, timeout=30, check=False)
    assert run.returncode == 9, run.stderr
    used = {int(n) for n in run.stdout.strip().split(",")}
    with InvocationCounterStore(path, block=50) as store:
        after = [store.next_outgoing() for _ in range(100)]
    assert not used & set(after)
    assert min(after) > max(used)


def test_store_received_counters(tmp_path: Path) -> None:
    path = tmp_path / "gw.ic"
    with InvocationCounterStore(path) as store:
        assert store.last_received(SERVER_TITLE, 0) is None
        store.record_received(SERVER_TITLE, 0, 41)
        store.record_received(SERVER_TITLE, 1, 7)
        assert store.writes == 2                     # write-through by default
    with InvocationCounterStore(path, received_sync_every=10) as store:
        assert store.last_received(SERVER_TITLE, 0) == 41
        assert store.last_received(SERVER_TITLE, 1) == 7
        assert store.last_received(CLIENT_TITLE, 0) is None
        ctx = SecurityContext(keys(), CLIENT_TITLE, store)
        ctx.peer_title = SERVER_TITLE
        with pytest.raises(ReplayedFrame):           # recorded before the restart
            ctx.decipher(cipher_apdu(H("C4"), keys(), AUTHENTICATED_ENCRYPTED,
                                     SERVER_TITLE, 41))
        ctx.decipher(cipher_apdu(H("C4"), keys(), AUTHENTICATED_ENCRYPTED, SERVER_TITLE, 42))
        assert store.writes == 0                     # batched: written at close
    with InvocationCounterStore(path) as store:
        assert store.last_received(SERVER_TITLE, 0) == 42


def test_unwritable_file_hands_out_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.ic"
    with InvocationCounterStore(path, block=10) as store:
        assert store.next_outgoing() == 1
        (tmp_path / ".x.ic.tmp").mkdir()             # the next write cannot happen
        for _ in range(9):
            store.next_outgoing()
        for _ in range(2):                           # refused each time, not just once
            with pytest.raises(CounterFileError, match="nothing is sent"):
                store.next_outgoing()
        (tmp_path / ".x.ic.tmp").rmdir()
        assert store.next_outgoing() == 11
    with InvocationCounterStore(path) as store:
        assert store.next_outgoing() == 21


def test_store_exhaustion(tmp_path: Path) -> None:
    with InvocationCounterStore(tmp_path / "x.ic", first=IC_MAX - 1) as store:
        assert [store.next_outgoing(), store.next_outgoing()] == [IC_MAX - 1, IC_MAX]
        with pytest.raises(CounterExhausted, match="change the encryption and authentication"):
            store.next_outgoing()
    with InvocationCounterStore(tmp_path / "x.ic") as store, pytest.raises(CounterExhausted):
        store.next_outgoing()


@pytest.mark.parametrize("content", ["", "{", "[]", '{"format": 2}',
                                     '{"format": 1, "outgoing_reserved": -1, "received": {}}',
                                     '{"format": 1, "outgoing_reserved": 5, "received": []}'])
def test_broken_counter_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.ic"
    path.write_text(content)
    with pytest.raises(ConfigError, match="change the keys"):
        InvocationCounterStore(path)


def test_second_process_is_locked_out(tmp_path: Path) -> None:
    with (InvocationCounterStore(tmp_path / "x.ic"),
          pytest.raises(ConfigError, match="in use by another process")):
        InvocationCounterStore(tmp_path / "x.ic")


def test_counter_file_is_private(tmp_path: Path) -> None:
    with InvocationCounterStore(tmp_path / "x.ic") as store:
        store.next_outgoing()
    assert (tmp_path / "x.ic").stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ic", "x.ic.lock"]


# --- keys --------------------------------------------------------------------------------

def test_key_parsing_tolerates_spacing() -> None:
    assert parse_key(" 00010203 04050607\n08090a0b:0c0d0e0f\n").reveal() == EK


@pytest.mark.parametrize(("text", "message"), [
    ("000102030405060708090A0B0C0D0E", "30 hex digits"),
    ("000102030405060708090A0B0C0D0E0F00", "34 hex digits"),
    ("000102030405060708090A0B0C0D0EZZ", "not a hex digit"),
])
def test_bad_keys_name_the_source_and_fix(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        key_from_env("DLMS_EK", {"DLMS_EK": text})
    assert "DLMS_EK" in str(caught.value) and caught.value.fix
    assert text not in str(caught.value)              # never echo what may be a key
    path = tmp_path / "ek.hex"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        key_from_file(path)
    assert str(path) in str(caught.value)


def test_key_sources() -> None:
    assert key_from_env("K", {"K": EK.hex()}).reveal() == EK
    with pytest.raises(ConfigError, match="DLMS_AK: the environment variable is not set"):
        key_from_env("DLMS_AK", {})
    with pytest.raises(ConfigError, match="does not exist"):
        key_from_file("/nonexistent/ak.hex")
    assert password_from_env("P", {"P": "ABCDEFGH"}).reveal() == b"ABCDEFGH"
    with pytest.raises(ConfigError):
        password_from_env("P", {})


def test_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret 1\n")
    assert password_from_file(tmp_path / "pw").reveal() == b"secret 1"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        password_from_file(tmp_path / "empty")


def test_keys_never_show_themselves() -> None:
    k = keys()
    for text in (repr(k), str(k), repr(k.encryption), f"{k.authentication}",
                 str([k.encryption])):
        assert EK.hex() not in text.lower() and AK.hex() not in text.lower()
    assert repr(k.encryption) == "<key: 16 bytes>"
    assert repr(SecretBytes(b"pw", label="password")) == "<password: 2 bytes>"
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(k.encryption)
    assert k.encryption == SecretBytes(EK) and k.encryption != k.authentication
    with pytest.raises(ValueError, match="suite 0 needs 16"):
        SuiteKeys(encryption=SecretBytes(EK[:8]), authentication=SecretBytes(AK))


def test_system_titles() -> None:
    assert system_title("MMM", 0xBC614E) == SERVER_TITLE
    for bad in (("MM", 1), ("M1M", 1), ("MMM", 1 << 40)):
        with pytest.raises(ValueError):
            system_title(*bad)
    with pytest.raises(ValueError, match="8 bytes"):
        cipher_apdu(GET_CLOCK_TIME, keys(), AUTHENTICATED, SERVER_TITLE[:7], 1)
