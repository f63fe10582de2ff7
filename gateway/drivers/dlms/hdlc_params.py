"""HDLC parameter negotiation in SNRM and UA (IEC 62056-46 6.4.4.4.3.2, Green Book 8.4.5.3.2).

The information field of SNRM and UA::

    81 (format identifier)  80 (group identifier)  LL (group length)
    05 len value   maximum information field length, transmit
    06 len value   maximum information field length, receive
    07 len value   window size, transmit
    08 len value   window size, receive

Each value is 1, 2 or 4 bytes, big-endian. A parameter left out, or the whole field
left out, means the default: 128 bytes and a window of 1. The values are stated from the
sender's side: in SNRM the client's, in UA the server's. The server's UA wins: it may
lower what the client proposed, and what it answers is what the link uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.drivers.dlms.hdlc_frame import HdlcError

__all__ = ["DEFAULT_INFO_LENGTH", "DEFAULT_WINDOW", "MAX_INFO_LENGTH", "MAX_WINDOW",
           "HdlcParameters"]

DEFAULT_INFO_LENGTH: Final = 128
DEFAULT_WINDOW: Final = 1
#: The largest information field and window 62056-46 allows (the window is modulo 8).
MAX_INFO_LENGTH: Final = 2030
MAX_WINDOW: Final = 7

_FORMAT_ID: Final = 0x81
_GROUP_ID: Final = 0x80
_IDS: Final = (0x05, 0x06, 0x07, 0x08)


@dataclass(frozen=True, slots=True)
class HdlcParameters:
    """Link parameters from one side's view: what it transmits and what it receives."""

    max_info_tx: int = DEFAULT_INFO_LENGTH
    max_info_rx: int = DEFAULT_INFO_LENGTH
    window_tx: int = DEFAULT_WINDOW
    window_rx: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        for name in ("max_info_tx", "max_info_rx"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_INFO_LENGTH:
                raise ValueError(f"{name} {value} is outside 1..{MAX_INFO_LENGTH}")
        for name in ("window_tx", "window_rx"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_WINDOW:
                raise ValueError(f"{name} {value} is outside 1..{MAX_WINDOW}")

    def encode(self) -> bytes:
        """The SNRM/UA information field (values in the fewest bytes that hold them)."""
        values = (self.max_info_tx, self.max_info_rx, self.window_tx, self.window_rx)
        group = bytearray()
        for pid, value in zip(_IDS, values, strict=True):
            size = 1 if value < 0x100 else 2
            group += bytes((pid, size)) + value.to_bytes(size, "big")
        return bytes((_FORMAT_ID, _GROUP_ID, len(group))) + group

    @classmethod
    def decode(cls, info: bytes) -> HdlcParameters:
        """Parameters from an SNRM/UA information field (empty: the defaults)."""
        if not info:
            return cls()
        if len(info) < 3 or info[0] != _FORMAT_ID or info[1] != _GROUP_ID:
            raise HdlcError(f"HDLC parameters must start 81 80, not {info[:2].hex(' ')}")
        if info[2] != len(info) - 3:
            raise HdlcError(f"HDLC parameter group length {info[2]}, "
                            f"but {len(info) - 3} bytes follow")
        found: dict[int, int] = {}
        at = 3
        while at < len(info):
            if at + 2 > len(info):
                raise HdlcError("HDLC parameter cut short")
            pid, size = info[at], info[at + 1]
            if size not in (1, 2, 4) or at + 2 + size > len(info):
                raise HdlcError(f"HDLC parameter 0x{pid:02X} of length {size}")
            found[pid] = int.from_bytes(info[at + 2:at + 2 + size], "big")
            at += 2 + size
        defaults = (DEFAULT_INFO_LENGTH, DEFAULT_INFO_LENGTH, DEFAULT_WINDOW, DEFAULT_WINDOW)
        values = [found.get(pid, default) for pid, default in zip(_IDS, defaults, strict=True)]
        try:
            return cls(*values)
        except ValueError as exc:
            raise HdlcError(f"HDLC parameters out of range: {exc}") from exc

    def answer(self, limits: HdlcParameters) -> HdlcParameters:
        """The server's UA to this SNRM proposal, within the server's own ``limits``
        (both from their sender's view): it sends no more than the client receives."""
        return HdlcParameters(
            max_info_tx=min(self.max_info_rx, limits.max_info_tx),
            max_info_rx=min(self.max_info_tx, limits.max_info_rx),
            window_tx=min(self.window_rx, limits.window_tx),
            window_rx=min(self.window_tx, limits.window_rx),
        )

    def accept(self, ua: HdlcParameters) -> HdlcParameters:
        """The client's effective parameters once the server answered ``ua`` to this
        proposal. The UA wins; the client still never sends more than it proposed, and
        it receives whatever the server says it will send."""
        return HdlcParameters(
            max_info_tx=min(ua.max_info_rx, self.max_info_tx),
            max_info_rx=ua.max_info_tx,
            window_tx=min(ua.window_rx, self.window_tx),
            window_rx=ua.window_tx,
        )
