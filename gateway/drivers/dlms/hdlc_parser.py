"""A streaming HDLC frame parser that resynchronises on flags (IEC 62056-46 6.4.1).

Everything that is not a whole, valid frame is returned as a :class:`FrameDiscarded`
with its reason and bytes, and counted: noise between frames, a wrong format type or
length, a bad HCS or FCS, a truncated frame. Nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Final

from gateway.drivers.dlms.hdlc_frame import (
    FLAG,
    FORMAT_TYPE_3,
    HdlcAddress,
    HdlcError,
    HdlcFrame,
    fcs,
)

__all__ = ["NEED_DATA", "DiscardReason", "FrameDiscarded", "FrameParser", "NeedData"]


class DiscardReason(Enum):
    """Why bytes or a frame were not used (each is counted, none is hidden)."""

    NOISE = "bytes outside any frame"
    BAD_LENGTH = "impossible length"
    BAD_HCS = "header check sequence mismatch"
    BAD_FCS = "frame check sequence mismatch"
    BAD_FRAME = "malformed frame"
    TRUNCATED = "truncated frame"
    OUT_OF_SEQUENCE = "I-frame out of sequence"
    DUPLICATE = "repeated I-frame"
    UNEXPECTED = "frame not expected in this state"


@dataclass(frozen=True, slots=True)
class FrameDiscarded:
    """Bytes that did not make a usable frame, with the reason and the bytes."""

    reason: DiscardReason
    raw: bytes
    detail: str = ""


class NeedData:
    """More bytes are needed (h11's NEED_DATA)."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

#: Format (2) + the smallest addresses (1 + 1) + control (1) + FCS (2).
_MIN_LENGTH: Final = 7


class FrameParser:
    """Splits a byte stream into frames, resynchronising on flags.

    Everything that is not a frame is returned as a :class:`FrameDiscarded` and counted
    in :attr:`discarded` (by reason) and :attr:`noise_bytes`. A frame whose header check
    passes but whose FCS fails is dropped whole (its length is trusted); any other
    defect drops bytes up to the next flag, which may open the next frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = 0
        self.noise_bytes = 0
        self.discarded: Counter[DiscardReason] = Counter()

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes held that may still become a frame."""
        return len(self._buf)

    def next_event(self) -> HdlcFrame | FrameDiscarded | NeedData:
        buf = self._buf
        while True:
            if not buf:
                return NEED_DATA
            if buf[0] != FLAG:
                end = buf.find(FLAG)
                return self._drop(len(buf) if end < 0 else end, DiscardReason.NOISE)
            if len(buf) < 2:
                return NEED_DATA
            if buf[1] == FLAG or buf[1] & 0xF0 != FORMAT_TYPE_3 >> 8:
                # An idle or closing flag (one flag may close a frame and open the next):
                # what follows is either a flag or noise, reported as such.
                del buf[0]
                continue
            if len(buf) < 3:
                return NEED_DATA
            fmt = int.from_bytes(buf[1:3], "big")
            length = fmt & 0x7FF
            if length < _MIN_LENGTH:
                return self._drop_to_flag(DiscardReason.BAD_LENGTH,
                                          f"length {length} is below {_MIN_LENGTH}")
            early = self._check_header(length)
            if early is not None:
                return early
            if len(buf) < length + 2:
                return self._overtaken() or NEED_DATA
            if buf[length + 1] != FLAG:
                return self._drop_to_flag(DiscardReason.TRUNCATED, "no closing flag "
                                          f"where the length ({length}) puts it")
            try:
                frame = HdlcFrame.decode(buf[:length + 2])
            except HdlcError as exc:
                fcs = "FCS" in str(exc)
                if fcs:  # the header was sound, so the length is trusted: drop it whole
                    return self._drop(length + 1, DiscardReason.BAD_FCS, str(exc))
                return self._drop_to_flag(DiscardReason.BAD_FRAME, str(exc))
            del buf[:length + 1]  # keep the closing flag: it may open the next frame
            self.frames += 1
            return frame

    def discard_partial(self) -> FrameDiscarded | None:
        """Give up on a frame still incomplete (the peer went quiet): report it. No
        whole frame follows it (``next_event`` would have found it), so all goes."""
        if len(self._buf) <= 1:
            self._buf.clear()
            return None
        return self._drop(len(self._buf), DiscardReason.TRUNCATED,
                          "the peer stopped sending mid-frame")

    def _overtaken(self) -> FrameDiscarded | None:
        """A whole valid frame further on means the incomplete one in front of it was
        cut short (or its length corrupted): report it rather than wait behind it."""
        buf = self._buf
        at = buf.find(FLAG, 1)
        while 0 < at < len(buf) - 8:
            length = int.from_bytes(buf[at + 1:at + 3], "big") & 0x7FF
            end = at + length + 2
            if end <= len(buf) and buf[end - 1] == FLAG:
                try:
                    HdlcFrame.decode(buf[at:end])
                except HdlcError:
                    pass
                else:
                    return self._drop(at, DiscardReason.TRUNCATED,
                                      "a whole frame follows before this one ended")
            at = buf.find(FLAG, at + 1)
        return None

    def _check_header(self, length: int) -> FrameDiscarded | None:
        """With an information field, reject a bad HCS before waiting for the body, so
        a corrupted length cannot hold up the frames behind it."""
        buf = self._buf
        try:
            _, at = HdlcAddress.decode(buf, 3)
            _, at = HdlcAddress.decode(buf, at)
        except HdlcError as exc:
            if "runs past" in str(exc):
                return None  # not all of the header is here yet
            return self._drop_to_flag(DiscardReason.BAD_FRAME, str(exc))
        header_end = at + 1  # control byte
        if length + 1 == header_end + 2 or length + 1 < header_end + 5:
            return None  # no information field: only the FCS checks it
        if len(buf) < header_end + 2:
            return None
        if fcs(buf[1:header_end]) != buf[header_end:header_end + 2]:
            return self._drop_to_flag(DiscardReason.BAD_HCS, "header check sequence "
                                      "mismatch")
        return None

    def _drop_to_flag(self, reason: DiscardReason, detail: str) -> FrameDiscarded:
        end = self._buf.find(FLAG, 1)
        return self._drop(len(self._buf) if end < 0 else end, reason, detail)

    def _drop(self, count: int, reason: DiscardReason, detail: str = "") -> FrameDiscarded:
        raw = bytes(self._buf[:count])
        del self._buf[:count]
        if reason is DiscardReason.NOISE:
            self.noise_bytes += count
        self.discarded[reason] += 1
        return FrameDiscarded(reason, raw, detail)
