"""The DLMS/COSEM wrapper for TCP and UDP (IEC 62056-47 / Green Book 7.3.3.4).

Each APDU travels behind an 8-byte header, all big-endian::

    version (2) = 0x0001 | source wPort (2) | destination wPort (2) | length (2) | APDU

The wPorts are the DLMS SAPs: the client's (16 for the public client) and the server's
logical device (1 for the management logical device). The length counts the APDU only.
There are no flags and no checksum: TCP carries the bytes, so a bad header means the
stream is out of step and cannot be resynchronised; the parser then stays failed and the
shell must close the connection. The IANA port is 4059.

Sans-IO: :class:`WrapperParser` is fed bytes and gives :class:`WrapperFrame` values;
:class:`WrapperEndpoint` is one side of an association (client or server, the same
code), checking that frames come from the expected peer to this side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.drivers.dlms.hdlc_parser import NEED_DATA, NeedData
from gateway.errors import ProtocolError

__all__ = ["HEADER_SIZE", "NEED_DATA", "PORT", "VERSION", "NeedData", "WrapperEndpoint",
           "WrapperError", "WrapperFrame", "WrapperParser"]

VERSION: Final = 0x0001
HEADER_SIZE: Final = 8
#: The IANA port for DLMS/COSEM over TCP and UDP.
PORT: Final = 4059
_MAX_LENGTH: Final = 0xFFFF


class WrapperError(ProtocolError):
    """A wrapper header that breaks IEC 62056-47: the stream cannot be trusted after it."""


@dataclass(frozen=True, slots=True)
class WrapperFrame:
    source: int
    destination: int
    apdu: bytes

    def __post_init__(self) -> None:
        for port in (self.source, self.destination):
            if not 0 <= port <= 0xFFFF:
                raise ValueError(f"wPort {port} is outside 0..65535")
        if len(self.apdu) > _MAX_LENGTH:
            raise ValueError(f"an APDU of {len(self.apdu)} bytes does not fit the "
                             "wrapper's 16-bit length")

    def encode(self) -> bytes:
        return (VERSION.to_bytes(2, "big") + self.source.to_bytes(2, "big")
                + self.destination.to_bytes(2, "big") + len(self.apdu).to_bytes(2, "big")
                + self.apdu)


class WrapperParser:
    """Splits a stream into wrapper frames. ``max_apdu`` refuses an announced length
    above what this side accepts (its negotiated maximum APDU size) before buffering."""

    def __init__(self, max_apdu: int = _MAX_LENGTH) -> None:
        self.max_apdu = max_apdu
        self._buf = bytearray()
        self._failed: WrapperError | None = None

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        return len(self._buf)

    def next_event(self) -> WrapperFrame | NeedData:
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return NEED_DATA
        version = int.from_bytes(buf[0:2], "big")
        length = int.from_bytes(buf[6:8], "big")
        if version != VERSION:
            self._fail(f"wrapper version 0x{version:04X}, expected 0x0001 "
                       f"(header {bytes(buf[:HEADER_SIZE]).hex(' ')})")
        if length > self.max_apdu:
            self._fail(f"wrapper announces an APDU of {length} bytes, above the "
                       f"{self.max_apdu} accepted")
        if len(buf) < HEADER_SIZE + length:
            return NEED_DATA
        frame = WrapperFrame(int.from_bytes(buf[2:4], "big"), int.from_bytes(buf[4:6], "big"),
                             bytes(buf[HEADER_SIZE:HEADER_SIZE + length]))
        del buf[:HEADER_SIZE + length]
        return frame

    def _fail(self, message: str) -> None:
        self._failed = WrapperError(message)
        raise self._failed


class WrapperEndpoint:
    """One side of a wrapper association: ``local`` is this side's wPort, ``remote``
    the peer's. A frame between other wPorts is a protocol error (a TCP connection
    carries one association here), named with both ports."""

    def __init__(self, local: int, remote: int, max_apdu: int = _MAX_LENGTH) -> None:
        self.local = local
        self.remote = remote
        self.parser = WrapperParser(max_apdu)

    def wrap(self, apdu: bytes) -> bytes:
        return WrapperFrame(self.local, self.remote, apdu).encode()

    def receive_data(self, data: bytes) -> None:
        self.parser.receive_data(data)

    def next_apdu(self) -> bytes | NeedData:
        frame = self.parser.next_event()
        if isinstance(frame, NeedData):
            return frame
        if (frame.source, frame.destination) != (self.remote, self.local):
            raise WrapperError(f"frame from wPort {frame.source} to {frame.destination}, "
                               f"expected {self.remote} to {self.local}")
        return frame.apdu
