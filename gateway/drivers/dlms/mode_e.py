"""The IEC 62056-21 mode E sign-on of an optical probe, before HDLC (62056-21:2002 6.3,
6.4.5 and Annex E). Sans-IO: no serial port, no clock; the timing is stated as data.

At 300 baud, 7E1 (62056-21 6.3, character format 1 start, 7 data, even parity, 1 stop)::

    client: / ? [device address] ! CR LF                      request message (6.3.1)
    meter:  / X X X Z \\W identification CR LF                 identification (6.3.2)
    client: ACK 2 Z 2 CR LF                                   acknowledgement/option
                                                              select (6.3.3)

``XXX`` is the manufacturer; ``Z`` the baud rate character, ``0``..``6`` for 300..19200
baud in modes C and E (a letter means mode B: no HDLC); ``\\W`` the enhanced
identification, where ``\\2`` says binary mode (HDLC) is available (62056-21 6.3.2 item
24; DLMS UA list of standard items, "Enhanced identification character"). In the
acknowledgement, protocol control ``2`` selects the HDLC procedure and mode control
``2`` binary mode. Then both sides switch to the baud of ``Z`` and to 8N1, and HDLC
starts with the client's SNRM.

Timing (62056-21:2002, the reaction time tr of the message timing clause): the meter answers
after its reaction time, at least 200 ms (20 ms if the manufacturer's third letter is
lower case) and at most 1500 ms. The acknowledgement takes 6 characters x 10 bits at
300 baud = 200 ms on the line; the client switches its port once that has left the
UART, and waits at least the meter's minimum reaction time before the first HDLC frame
so the meter has switched too. :data:`SWITCH_WAIT_S` (300 ms) is that wait with margin,
the value common HHUs use; it is not a figure of the standard.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

from gateway.drivers.dlms.hdlc_parser import NEED_DATA, NeedData
from gateway.errors import ProtocolError

__all__ = ["BAUD_RATES", "HDLC_PROTOCOL", "MAX_REACTION_S", "MIN_REACTION_S",
           "SIGN_ON_SERIAL", "SWITCH_WAIT_S", "AckReceived", "Identification",
           "ModeEError", "ModeEUnsupported", "RequestReceived", "SerialSettings",
           "SignOnClient", "SignOnServer", "acknowledgement", "request"]

#: Baud rate characters of modes C and E (62056-21 6.3.2 item 12).
BAUD_RATES: Final = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600,
                     "6": 19200}
#: The enhanced identification character for binary mode (HDLC).
HDLC_PROTOCOL: Final = "2"
MIN_REACTION_S: Final = Fraction(200, 1000)
FAST_MIN_REACTION_S: Final = Fraction(20, 1000)
MAX_REACTION_S: Final = Fraction(1500, 1000)
SWITCH_WAIT_S: Final = Fraction(300, 1000)
_ACK: Final = 0x06
_MAX_LINE: Final = 128


class ModeEError(ProtocolError):
    """A sign-on message that breaks IEC 62056-21."""


class ModeEUnsupported(ModeEError):
    """The meter identified itself but does not offer HDLC (mode E); what it said is
    in :attr:`identification` (a commissioning report shows it)."""

    def __init__(self, message: str, identification: Identification) -> None:
        super().__init__(message)
        self.identification = identification


@dataclass(frozen=True, slots=True)
class SerialSettings:
    baud: int
    bytesize: Literal[7, 8]
    parity: Literal["N", "E"]
    stopbits: int = 1

    def wire_s(self, size: int) -> Fraction:
        """Time ``size`` characters take: start, data, parity and stop bits each."""
        bits = 1 + self.bytesize + (self.parity != "N") + self.stopbits
        return Fraction(size * bits, self.baud)


#: The sign-on phase: 300 baud, 7 data bits, even parity, 1 stop bit.
SIGN_ON_SERIAL: Final = SerialSettings(300, 7, "E")


def request(address: str = "") -> bytes:
    """The request message; ``address`` selects one device on a shared bus."""
    if len(address) > 32 or any(c in "/!" or not c.isprintable() for c in address):
        raise ValueError(f"device address {address!r}: up to 32 printable characters, "
                         "no / or !")
    return b"/?" + address.encode("ascii") + b"!\r\n"


def acknowledgement(baud_char: str) -> bytes:
    """ACK 2 Z 2 CR LF: HDLC protocol procedure at the baud of ``baud_char``."""
    if baud_char not in BAUD_RATES:
        raise ValueError(f"baud rate character {baud_char!r} is not one of mode E's 0..6")
    return bytes((_ACK,)) + f"2{baud_char}2\r\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class Identification:
    """The meter's identification message."""

    manufacturer: str
    baud_char: str
    #: Enhanced identification characters (each after a backslash), in order.
    enhanced: tuple[str, ...]
    identification: str

    @property
    def baud(self) -> int:
        return BAUD_RATES[self.baud_char]

    @property
    def supports_hdlc(self) -> bool:
        return HDLC_PROTOCOL in self.enhanced and self.baud_char in BAUD_RATES

    @property
    def min_reaction_s(self) -> Fraction:
        """A lower-case third letter announces a 20 ms minimum reaction time."""
        return FAST_MIN_REACTION_S if self.manufacturer[2:].islower() else MIN_REACTION_S

    def encode(self) -> bytes:
        escapes = "".join("\\" + c for c in self.enhanced)
        text = f"/{self.manufacturer}{self.baud_char}{escapes}{self.identification}\r\n"
        return text.encode("ascii")

    @classmethod
    def decode(cls, line: bytes) -> Identification:
        """One message, from ``/`` to CR LF."""
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ModeEError(f"identification is not ASCII: {line!r}") from exc
        if not (text.startswith("/") and text.endswith("\r\n")) or len(text) < 7:
            raise ModeEError(f"not an identification message: {line!r}")
        body = text[1:-2]
        manufacturer, baud_char, rest = body[:3], body[3], body[4:]
        if not manufacturer.isalpha():
            raise ModeEError(f"manufacturer {manufacturer!r} is not three letters")
        enhanced: list[str] = []
        while rest.startswith("\\") and len(rest) >= 2:
            enhanced.append(rest[1])
            rest = rest[2:]
        if not rest.isprintable() or "/" in rest or "!" in rest:
            raise ModeEError(f"identification {rest!r} has characters 62056-21 excludes")
        return cls(manufacturer, baud_char, tuple(enhanced), rest)


class _Lines:
    """Collects one CR LF terminated message at a time, after a start character."""

    def __init__(self, start: bytes) -> None:
        self._start = start
        self._buf = bytearray()
        self.discarded = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def take(self) -> bytes | None:
        at = self._buf.find(self._start)
        if at < 0:
            self.discarded += len(self._buf)  # echo or noise before the message
            self._buf.clear()
            return None
        self.discarded += at
        del self._buf[:at]
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > _MAX_LINE:
                raise ModeEError(f"no CR LF within {_MAX_LINE} characters")
            return None
        line = bytes(self._buf[:end + 2])
        del self._buf[:end + 2]
        return line


class SignOnClient:
    """The probe's side: send :attr:`request_bytes`, feed what comes back; once the
    identification is in, :meth:`next_event` returns it and :meth:`data_to_send` holds
    the acknowledgement. ``max_baud`` caps the speed (the HHU may choose a lower one)."""

    def __init__(self, address: str = "", max_baud: int | None = None) -> None:
        self.request_bytes = request(address)
        self.max_baud = max_baud
        self.agreed_baud: int | None = None
        self._lines = _Lines(b"/")
        self._out = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._lines.feed(data)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Identification | NeedData:
        while (line := self._lines.take()) is not None:
            if line.startswith(b"/?"):
                continue  # our own request echoed by a half-duplex probe
            ident = Identification.decode(line)
            if ident.baud_char not in BAUD_RATES:
                raise ModeEUnsupported(f"{ident.manufacturer} answers in mode A/B (baud "
                                       f"character {ident.baud_char!r}): no HDLC", ident)
            if not ident.supports_hdlc:
                raise ModeEUnsupported(f"{ident.manufacturer} {ident.identification!r} "
                                       "does not offer HDLC (no \\2 in its identification)",
                                       ident)
            chars = [c for c, b in BAUD_RATES.items()
                     if b <= ident.baud and (self.max_baud is None or b <= self.max_baud)]
            self.agreed_baud = BAUD_RATES[chars[-1]]
            self._out += acknowledgement(chars[-1])
            return ident
        return NEED_DATA

    @property
    def hdlc_serial(self) -> SerialSettings:
        """The settings for the HDLC phase: the agreed baud, 8N1."""
        if self.agreed_baud is None:
            raise RuntimeError("no baud agreed yet")
        return SerialSettings(self.agreed_baud, 8, "N")


@dataclass(frozen=True, slots=True)
class RequestReceived:
    address: str


@dataclass(frozen=True, slots=True)
class AckReceived:
    """The client's option select: switch to ``baud`` and 8N1 for HDLC."""

    baud: int


class SignOnServer:
    """The meter's side, for the simulator: answers a request for its address (or
    any request without one) with ``identification``, then reads the acknowledgement."""

    def __init__(self, identification: Identification, address: str = "") -> None:
        self.identification = identification
        self.address = address
        self._lines = _Lines(b"/")
        self._acks = _Lines(bytes((_ACK,)))
        self._out = bytearray()
        self._identified = False

    def receive_data(self, data: bytes) -> None:
        (self._acks if self._identified else self._lines).feed(data)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> RequestReceived | AckReceived | NeedData:
        if not self._identified:
            line = self._lines.take()
            if line is None:
                return NEED_DATA
            if not (line.startswith(b"/?") and line.endswith(b"!\r\n")):
                raise ModeEError(f"not a request message: {line!r}")
            address = line[2:-3].decode("ascii", "replace")
            if address and address != self.address:
                return RequestReceived(address)  # for another device: stay silent
            self._identified = True
            self._out += self.identification.encode()
            return RequestReceived(address)
        line = self._acks.take()
        if line is None:
            return NEED_DATA
        if len(line) != 6 or line[1:2] != b"2" or line[3:4] != b"2":
            raise ModeEError(f"acknowledgement {line!r} does not select HDLC (ACK 2 Z 2)")
        char = chr(line[2])
        if char not in BAUD_RATES or BAUD_RATES[char] > self.identification.baud:
            raise ModeEError(f"acknowledgement asks for baud character {char!r}, above "
                             f"the {self.identification.baud_char!r} offered")
        self._identified = False
        return AckReceived(BAUD_RATES[char])
