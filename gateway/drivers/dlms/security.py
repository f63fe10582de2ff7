"""Security suite 0 (AES-GCM-128): ciphered xDLMS APDUs, HLS-GMAC, LLS, replay checks.

Pure: bytes in, bytes out; the counters come in through ``counters.InvocationCounters``
(``InvocationCounterStore`` persists them, ``MemoryCounters`` does not).
Client and server use the same code: the meter simulator is the server side.

Green Book (DLMS UA 1000-2 Ed. 8) 9.2.7.2: a secured APDU carries the security header
SH = SC || IC and then the ciphertext (or, authenticated only, the plaintext) and a
12-byte tag T. SC is the security control byte (bits 0-3 suite id, 4 authentication,
5 encryption, 6 key set: 0 unicast / 1 broadcast, 7 compression); IC the 4-byte
invocation counter. AES-GCM runs with EK and IV = sender's system title || IC; the
additional authenticated data is SC || AK, and with authentication only
SC || AK || plaintext. 9.2.7.4: HLS mechanism 5 answers a challenge with
f(C) = SC(0x10) || IC || GMAC(SC || AK || C).

Replay protection (9.2.7.2): the IV must never repeat under one key, so our own
IC only rises, and a received IC must be greater than the last one accepted from
that system title and key set, or the frame is a replay. A frame whose tag does not
verify is rejected before its IC is recorded, so a forgery cannot push the window.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.drivers.dlms.acse import Mechanism
from gateway.drivers.dlms.axdr import encode_length
from gateway.drivers.dlms.counters import IC_MAX, InvocationCounters
from gateway.drivers.dlms.keys import SecretBytes, SuiteKeys, check_system_title
from gateway.errors import ProtocolError

__all__ = [
    "AUTHENTICATED", "AUTHENTICATED_ENCRYPTED", "GENERAL_GLO_CIPHERING", "GLO_TAGS",
    "HLS_ASSOCIATION_CLASS_ID", "HLS_ASSOCIATION_LN", "HLS_REPLY_METHOD", "TAG_BYTES",
    "AuthenticationFailed", "AuthenticationMechanism", "Deciphered", "ReplayedFrame",
    "SecurityContext", "SecurityControl", "SecurityError", "check_lls_password", "cipher_apdu",
    "decipher_apdu", "hls_gmac", "new_challenge", "protect", "unprotect", "verify_hls_gmac",
]

TAG_BYTES: Final = 12            # suite 0 truncates the GCM tag to 96 bits
GENERAL_GLO_CIPHERING: Final = 0xDB

# Plain xDLMS APDU tag -> its glo-ciphered tag (the Green Book's COSEMpdu ASN.1).
GLO_TAGS: Final[dict[int, int]] = {
    0x01: 0x21,  # initiateRequest
    0x08: 0x28,  # initiateResponse
    0x0E: 0x2E,  # confirmedServiceError
    0xC0: 0xC8,  # get-request
    0xC1: 0xC9,  # set-request
    0xC2: 0xCA,  # event-notification-request
    0xC3: 0xCB,  # action-request
    0xC4: 0xCC,  # get-response
    0xC5: 0xCD,  # set-response
    0xC7: 0xCF,  # action-response
}
_PLAIN_TAGS: Final = {glo: plain for plain, glo in GLO_TAGS.items()}

# Association LN (Blue Book class 15), method 1 reply_to_HLS_authentication.
HLS_ASSOCIATION_LN: Final = bytes((0, 0, 40, 0, 0, 255))
HLS_ASSOCIATION_CLASS_ID: Final = 15
HLS_REPLY_METHOD: Final = 1
_CHALLENGE_BYTES: Final = range(8, 65)   # 9.2.7.4: challenges are 8 to 64 octets


#: The mechanism-name ids, written down once in ``acse`` (kept here under this name).
AuthenticationMechanism = Mechanism


class SecurityError(ProtocolError):
    """A secured APDU could not be accepted (malformed header, policy, unsupported)."""


class AuthenticationFailed(SecurityError):
    """A tag, an HLS reply or an LLS password did not verify: wrong key or tampering."""


class ReplayedFrame(SecurityError):
    """A received invocation counter did not rise above the last one accepted."""


@dataclass(frozen=True, slots=True)
class SecurityControl:
    """The security control byte SC (Green Book 9.2.7.2.4.2, suite 0 only)."""

    authenticated: bool
    encrypted: bool
    broadcast_key: bool = False
    compressed: bool = False
    suite: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.suite <= 15:
            raise ValueError(f"security suite {self.suite} is not 0..15")

    @property
    def byte(self) -> int:
        return (self.suite | self.authenticated << 4 | self.encrypted << 5
                | self.broadcast_key << 6 | self.compressed << 7)

    @classmethod
    def from_byte(cls, sc: int) -> SecurityControl:
        return cls(authenticated=bool(sc & 0x10), encrypted=bool(sc & 0x20),
                   broadcast_key=bool(sc & 0x40), compressed=bool(sc & 0x80), suite=sc & 0x0F)

    def covers(self, required: SecurityControl) -> bool:
        """At least the protection ``required`` asks for."""
        return ((self.authenticated or not required.authenticated)
                and (self.encrypted or not required.encrypted))


AUTHENTICATED: Final = SecurityControl(authenticated=True, encrypted=False)
AUTHENTICATED_ENCRYPTED: Final = SecurityControl(authenticated=True, encrypted=True)
_HLS_SC: Final = AUTHENTICATED.byte   # 0x10
_CTR_START: Final = (2).to_bytes(4, "big")


def _gcm(keys: SuiteKeys, iv: bytes, tag: bytes | None = None) -> Cipher[modes.GCM]:
    mode = modes.GCM(iv) if tag is None else modes.GCM(iv, tag, min_tag_length=TAG_BYTES)
    return Cipher(algorithms.AES(keys.encryption.reveal()), mode)


def _header(sc: SecurityControl, ic: int) -> bytes:
    if not 0 <= ic <= IC_MAX:
        raise ValueError(f"invocation counter {ic} is outside 0..{IC_MAX}")
    return bytes((sc.byte,)) + ic.to_bytes(4, "big")


def protect(keys: SuiteKeys, sc: SecurityControl, system_title: bytes, ic: int,
            plaintext: bytes) -> bytes:
    """SC || IC || (ciphertext or plaintext) || T: the secured content of an APDU."""
    _check_supported(sc)
    header = _header(sc, ic)
    encryptor = _gcm(keys, check_system_title(system_title) + header[1:]).encryptor()
    if sc.authenticated:
        encryptor.authenticate_additional_data(header[:1] + keys.authentication.reveal())
    if sc.encrypted:
        body = encryptor.update(plaintext) + encryptor.finalize()
    else:
        encryptor.authenticate_additional_data(plaintext)
        encryptor.finalize()
        body = plaintext
    return header + body + (encryptor.tag[:TAG_BYTES] if sc.authenticated else b"")


def unprotect(keys: SuiteKeys, system_title: bytes, content: bytes
              ) -> tuple[SecurityControl, int, bytes]:
    """Check and open SC || IC || ... || T: (SC, IC, plaintext). No replay check here."""
    if len(content) < 5:
        raise SecurityError(f"secured content of {len(content)} bytes is shorter than "
                            "its security header (SC + 4-byte invocation counter)")
    sc = SecurityControl.from_byte(content[0])
    _check_supported(sc)
    ic = int.from_bytes(content[1:5], "big")
    body = content[5:]
    tag = b""
    if sc.authenticated:
        if len(body) < TAG_BYTES:
            raise SecurityError(f"secured content ends {TAG_BYTES - len(body)} bytes short "
                                f"of its {TAG_BYTES}-byte authentication tag")
        body, tag = body[:-TAG_BYTES], body[-TAG_BYTES:]
    iv = check_system_title(system_title) + content[1:5]
    if not sc.authenticated:
        # Encryption only: GCM's keystream is AES-CTR from IV || 00000002 (inc32 of
        # J0 = IV || 00000001); with no tag nothing can be verified, so policies that
        # matter require authentication.
        ctr = Cipher(algorithms.AES(keys.encryption.reveal()), modes.CTR(iv + _CTR_START))
        return sc, ic, ctr.decryptor().update(body)
    decryptor = _gcm(keys, iv, tag).decryptor()
    decryptor.authenticate_additional_data(content[:1] + keys.authentication.reveal())
    if sc.encrypted:
        plaintext = decryptor.update(body)
    else:
        decryptor.authenticate_additional_data(body)
        plaintext = body
    try:
        decryptor.finalize()
    except InvalidTag:
        raise AuthenticationFailed(
            f"authentication tag does not verify (SC {sc.byte:#04x}, IC {ic}): wrong "
            "keys or system title, or the frame was altered") from None
    return sc, ic, plaintext


def _check_supported(sc: SecurityControl) -> None:
    if sc.suite != 0:
        raise SecurityError(f"security suite {sc.suite} is not supported (only suite 0)")
    if sc.compressed:
        raise SecurityError("compressed secured APDUs (SC bit 7) are not supported")
    if sc.broadcast_key:
        raise SecurityError("the broadcast key set (SC bit 6) is not configured")
    if not (sc.authenticated or sc.encrypted):
        raise SecurityError(f"security control {sc.byte:#04x} asks for neither "
                            "authentication nor encryption")



def _decode_length(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """(length, position after it); the length must fit the bytes that follow."""
    if pos >= len(data):
        raise SecurityError(f"{what}: the length byte is missing")
    first = data[pos]
    pos += 1
    if first & 0x80:
        size = first & 0x7F
        if not 1 <= size <= 4 or pos + size > len(data):
            raise SecurityError(f"{what}: bad long-form length byte {first:#04x}")
        n = int.from_bytes(data[pos:pos + size], "big")
        pos += size
    else:
        n = first
    if pos + n > len(data):
        raise SecurityError(f"{what}: length {n} but only {len(data) - pos} bytes follow")
    return n, pos


@dataclass(frozen=True, slots=True)
class Deciphered:
    """A received ciphered APDU opened: the plain APDU and what secured it."""

    apdu: bytes
    control: SecurityControl
    invocation_counter: int
    system_title: bytes


def cipher_apdu(apdu: bytes, keys: SuiteKeys, sc: SecurityControl, system_title: bytes,
                ic: int, *, general: bool = False) -> bytes:
    """A plain xDLMS APDU as glo-<service> (or general-glo-ciphering with the title)."""
    if not apdu:
        raise ValueError("an empty APDU cannot be ciphered")
    content = protect(keys, sc, system_title, ic, apdu)
    if general:
        return (bytes((GENERAL_GLO_CIPHERING, len(system_title))) + system_title
                + encode_length(len(content)) + content)
    glo = GLO_TAGS.get(apdu[0])
    if glo is None:
        raise ValueError(f"APDU tag {apdu[0]:#04x} has no glo-ciphered form; use general=True")
    return bytes((glo,)) + encode_length(len(content)) + content


def decipher_apdu(frame: bytes, keys: SuiteKeys, peer_title: bytes | None) -> Deciphered:
    """Open a glo-<service> or general-glo-ciphering APDU (no replay check here).

    ``peer_title`` is the sender's system title from the association (AARQ/AARE);
    general-glo-ciphering carries its own, which must match it when one is given.
    """
    if not frame:
        raise SecurityError("empty ciphered APDU")
    tag = frame[0]
    pos = 1
    title = peer_title
    if tag == GENERAL_GLO_CIPHERING:
        n, pos = _decode_length(frame, pos, "general-glo-ciphering system-title")
        title = frame[pos:pos + n]
        pos += n
        if len(title) != 8:
            raise SecurityError(f"general-glo-ciphering system title of {len(title)} bytes")
        if peer_title is not None and not hmac.compare_digest(title, peer_title):
            raise SecurityError(f"general-glo-ciphering from system title {title.hex()}, "
                                f"the association's peer is {peer_title.hex()}")
    elif tag not in _PLAIN_TAGS:
        raise SecurityError(f"tag {tag:#04x} is not a glo-ciphered APDU")
    if title is None:
        raise SecurityError("no system title of the peer to decipher with (AARE/AARQ first)")
    n, pos = _decode_length(frame, pos, f"ciphered APDU {tag:#04x}")
    if pos + n != len(frame):
        raise SecurityError(f"ciphered APDU {tag:#04x} of length {n} has "
                            f"{len(frame) - pos - n} bytes after it")
    sc, ic, apdu = unprotect(keys, title, frame[pos:])
    expected = _PLAIN_TAGS.get(tag)
    if not apdu:
        raise SecurityError(f"ciphered APDU {tag:#04x} carried an empty APDU")
    if expected is not None and apdu[0] != expected:
        raise SecurityError(f"glo APDU {tag:#04x} carried a {apdu[0]:#04x} APDU, "
                            f"not {expected:#04x}")
    return Deciphered(apdu=apdu, control=sc, invocation_counter=ic, system_title=title)


def new_challenge(length: int = 16) -> bytes:
    """A random HLS challenge (CtoS or StoC) of 8 to 64 bytes."""
    if length not in _CHALLENGE_BYTES:
        raise ValueError(f"an HLS challenge is 8 to 64 bytes, not {length}")
    return secrets.token_bytes(length)


def hls_gmac(keys: SuiteKeys, system_title: bytes, ic: int, challenge: bytes) -> bytes:
    """f(challenge) = SC(0x10) || IC || GMAC(SC || AK || challenge), IV = title || IC."""
    return _header(AUTHENTICATED, ic) + _hls_tag(keys, system_title, ic, challenge)


def _hls_tag(keys: SuiteKeys, system_title: bytes, ic: int, challenge: bytes) -> bytes:
    encryptor = _gcm(keys, check_system_title(system_title) + ic.to_bytes(4, "big")).encryptor()
    encryptor.authenticate_additional_data(
        bytes((_HLS_SC,)) + keys.authentication.reveal() + challenge)
    encryptor.finalize()
    return encryptor.tag[:TAG_BYTES]


def verify_hls_gmac(keys: SuiteKeys, peer_title: bytes, challenge: bytes,
                    reply: bytes) -> int:
    """Check the peer's f(challenge); its invocation counter when it verifies."""
    if len(reply) != 5 + TAG_BYTES or reply[0] != _HLS_SC:
        raise AuthenticationFailed(
            f"HLS-GMAC reply of {len(reply)} bytes is not SC 0x10 || IC || 12-byte tag")
    ic = int.from_bytes(reply[1:5], "big")
    if not hmac.compare_digest(_hls_tag(keys, peer_title, ic, challenge), reply[5:]):
        raise AuthenticationFailed("HLS-GMAC reply does not verify: wrong keys or system "
                                   "title, or it answers another challenge")
    return ic


def check_lls_password(expected: SecretBytes, received: bytes) -> None:
    """Server side of LLS: the calling-authentication-value against the password."""
    if not hmac.compare_digest(expected.reveal(), received):
        raise AuthenticationFailed("LLS password does not match")


class SecurityContext:
    """One end of a suite-0 association: ciphers what it sends, checks what it gets.

    ``policy`` is the protection every received APDU must have at least (the
    association's security policy), and what :meth:`cipher` applies.
    """

    def __init__(self, keys: SuiteKeys, own_title: bytes, counters: InvocationCounters, *,
                 policy: SecurityControl = AUTHENTICATED_ENCRYPTED,
                 general: bool = False) -> None:
        _check_supported(policy)
        self.keys = keys
        self.own_title = check_system_title(own_title)
        self.counters = counters
        self.policy = policy
        self.general = general
        self.peer_title: bytes | None = None

    def cipher(self, apdu: bytes) -> bytes:
        """``apdu`` secured with the next invocation counter."""
        return cipher_apdu(apdu, self.keys, self.policy, self.own_title,
                           self.counters.next_outgoing(), general=self.general)

    def decipher(self, frame: bytes) -> Deciphered:
        """The plain APDU of a received ciphered one, after the policy and replay checks."""
        opened = decipher_apdu(frame, self.keys, self.peer_title)
        if not opened.control.covers(self.policy):
            raise SecurityError(f"received APDU protected with SC {opened.control.byte:#04x}, "
                                f"the association requires {self.policy.byte:#04x}")
        key_set = int(opened.control.broadcast_key)
        last = self.counters.last_received(opened.system_title, key_set)
        if last is not None and opened.invocation_counter <= last:
            hint = (": the peer's counter is exhausted, its keys must be changed"
                    if last == IC_MAX else "")
            raise ReplayedFrame(
                f"invocation counter {opened.invocation_counter} from "
                f"{opened.system_title.hex()} does not rise above {last} (replayed frame){hint}")
        self.counters.record_received(opened.system_title, key_set, opened.invocation_counter)
        return opened

    def hls_reply(self, challenge: bytes) -> bytes:
        """Our f(challenge) for reply_to_HLS_authentication, with a fresh counter."""
        if len(challenge) not in _CHALLENGE_BYTES:
            raise SecurityError(f"HLS challenge of {len(challenge)} bytes (8 to 64 allowed)")
        return hls_gmac(self.keys, self.own_title, self.counters.next_outgoing(), challenge)

    def hls_check(self, challenge: bytes, reply: bytes) -> None:
        """The peer's f(challenge) against the challenge we sent.

        The challenge is fresh per association, so a replayed reply cannot verify; the
        IC inside is not held to the replay window (servers may compute it before the
        counter they cipher the carrying response with).
        """
        if self.peer_title is None:
            raise SecurityError("no system title of the peer to check HLS with")
        verify_hls_gmac(self.keys, self.peer_title, challenge, reply)
