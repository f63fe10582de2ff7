"""The xDLMS Initiate carried in an AARQ/AARE's user-information (A-XDR), the conformance
block, and the marker for ciphered APDUs handed to ``security``; pure.

Green Book 9.4.6 (InitiateRequest/InitiateResponse, the conformance block) and 9.5 (the
ciphered xDLMS APDU tags).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from gateway.drivers.dlms.reader import Reader
from gateway.errors import ProtocolError

__all__ = [
    "CIPHERED_TAGS", "Ciphered", "ConfirmedServiceError", "Conformance", "Initiate",
    "InitiateRequest", "InitiateResponse", "decode_initiate",
]

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
