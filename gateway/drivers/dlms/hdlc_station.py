"""What the client and server sides of the DLMS HDLC link share (IEC 62056-46 6.4.4).

The events, the byte and event queues, N(S)/N(R), the send window with its
unacknowledged frames, and the reassembly of received segments. The two sides are in
:mod:`gateway.drivers.dlms.hdlc`, which documents the procedure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final

from gateway.drivers.dlms.hdlc_frame import (
    Control,
    FrameKind,
    HdlcAddress,
    HdlcError,
    HdlcFrame,
)
from gateway.drivers.dlms.hdlc_params import HdlcParameters
from gateway.drivers.dlms.hdlc_parser import (
    NEED_DATA,
    DiscardReason,
    FrameDiscarded,
    FrameParser,
    NeedData,
)

__all__ = [
    "LLC_REQUEST",
    "LLC_RESPONSE",
    "ApduReceived",
    "Event",
    "LinkDown",
    "LinkState",
    "LinkStation",
    "LinkUp",
    "Refused",
]

#: LLC headers (62056-46 6.2, Green Book 8.3): destination LSAP, source LSAP, quality.
LLC_REQUEST: Final = b"\xe6\xe6\x00"
LLC_RESPONSE: Final = b"\xe6\xe7\x00"


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The link is connected; ``params`` are this side's effective parameters."""

    params: HdlcParameters


@dataclass(frozen=True, slots=True)
class ApduReceived:
    """A whole APDU, reassembled from its segments, LLC header removed."""

    apdu: bytes


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The link was disconnected (UA or DM to our DISC, or the peer's DISC)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The peer refused: DM (disconnected mode) or FRMR (frame reject)."""

    kind: FrameKind
    reason: str


Event = LinkUp | ApduReceived | LinkDown | Refused | FrameDiscarded


class LinkState(Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTING = "disconnecting"


class LinkStation:
    """What both sides share: the byte and event queues, N(S)/N(R), the send window
    with its unacknowledged frames, and reassembly of received segments."""

    _llc_out: bytes
    _llc_in: bytes

    def __init__(self, own: HdlcAddress, peer: HdlcAddress) -> None:
        self.own = own
        self.peer = peer
        self.state = LinkState.DISCONNECTED
        self.params = HdlcParameters()
        self.parser = FrameParser()
        self.foreign_frames = 0
        self.duplicates = 0
        self.out_of_sequence = 0
        self.retransmitted = 0
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._reset()

    def _reset(self) -> None:
        self._vs = 0
        self._vr = 0
        #: The N(R) our last poll or final frame carried: what the peer was told.
        self._told_vr: int | None = None
        self._rx = bytearray()
        self._pending: deque[bytes] = deque()
        self._unacked: list[HdlcFrame] = []

    # -- the h11-style surface ---------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self.parser.receive_data(data)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | NeedData:
        while not self._events:
            item = self.parser.next_event()
            if isinstance(item, NeedData):
                return NEED_DATA
            if isinstance(item, FrameDiscarded):
                return item
            if (item.destination != self.own and not self._accepts_destination(item)) or (
                    item.source != self.peer and not self._accepts_source(item)):
                self.foreign_frames += 1  # another station's traffic on the bus
                continue
            self._on_frame(item)
        return self._events.popleft()

    @property
    def busy(self) -> bool:
        """An APDU is still being sent (segments pending or unacknowledged)."""
        return bool(self._pending or self._unacked)

    # -- sending -------------------------------------------------------------------

    def _accepts_source(self, frame: HdlcFrame) -> bool:
        return False

    def _accepts_destination(self, frame: HdlcFrame) -> bool:
        return False

    def _may_send(self) -> bool:
        raise NotImplementedError

    def _gave_poll(self) -> None:
        raise NotImplementedError

    def _frame(self, control: Control, info: bytes = b"", segmented: bool = False) -> HdlcFrame:
        return HdlcFrame(self.peer, self.own, control, info, segmented)

    def _send(self, frame: HdlcFrame) -> None:
        self._out += frame.encode()
        if frame.control.pf:
            self._gave_poll()
            if frame.kind in (FrameKind.I, FrameKind.RR, FrameKind.RNR):
                self._told_vr = frame.control.nr

    def _queue_apdu(self, apdu: bytes) -> None:
        payload = self._llc_out + apdu
        size = self.params.max_info_tx
        self._pending.extend(payload[i:i + size] for i in range(0, len(payload), size))
        self._send_window()

    def _send_window(self) -> None:
        """Up to ``window_tx`` I-frames, the poll/final bit on the last (62056-46 6.4.4)."""
        if not self._may_send() or self._unacked:
            return
        batch: list[tuple[int, bytes, bool]] = []
        while self._pending and len(batch) < self.params.window_tx:
            chunk = self._pending.popleft()
            batch.append((self._vs, chunk, bool(self._pending)))
            self._vs = (self._vs + 1) % 8
        for i, (ns, chunk, more) in enumerate(batch):
            control = Control(FrameKind.I, i == len(batch) - 1, ns=ns, nr=self._vr)
            frame = self._frame(control, chunk, segmented=more)
            self._unacked.append(frame)
            self._send(frame)

    def _retransmit(self) -> None:
        """Go-back-N: every unacknowledged frame again, with the current N(R)."""
        last = len(self._unacked) - 1
        self._unacked = [replace(f, control=replace(f.control, nr=self._vr, pf=i == last))
                         for i, f in enumerate(self._unacked)]
        self.retransmitted += len(self._unacked)
        for frame in self._unacked:
            self._send(frame)

    def _rr(self) -> None:
        self._send(self._frame(Control(FrameKind.RR, True, nr=self._vr)))

    # -- receiving -----------------------------------------------------------------

    def _acknowledge(self, frame: HdlcFrame) -> None:
        """Drop the frames the peer's N(R) acknowledges."""
        if not self._unacked:
            return
        count = (frame.control.nr - self._unacked[0].control.ns) % 8
        if count > len(self._unacked):
            self._discard(DiscardReason.BAD_FRAME, frame,
                          f"N(R)={frame.control.nr} acknowledges frames never sent")
            return
        del self._unacked[:count]

    def _receive_i(self, frame: HdlcFrame) -> bytes | None:
        """Take an I-frame in sequence; the whole payload when its last segment came.
        Out of sequence or repeated frames are reported, never delivered, and their
        poll answered with the N(R) still expected."""
        self._acknowledge(frame)
        control = frame.control
        if control.ns != self._vr:
            behind = (self._vr - control.ns) % 8
            if 1 <= behind <= self.params.window_rx:
                # Already accepted (or the rest of a window whose first frame was
                # lost): re-acknowledged if the peer was not yet told our N(R), or if
                # no other poll of ours is in flight. Otherwise that answer is on its
                # way; a second poll would be answered with a second window, and every
                # later window would come twice.
                self.duplicates += 1
                self._discard(DiscardReason.DUPLICATE, frame,
                              f"N(S)={control.ns} was already accepted")
                if control.pf and (self._told_vr != self._vr or self._answer_is_owed()):
                    self._answer_poll()
                return None
            self.out_of_sequence += 1
            self._discard(DiscardReason.OUT_OF_SEQUENCE, frame,
                          f"N(S)={control.ns}, expected {self._vr}")
            if control.pf:
                self._answer_poll()  # RR with the N(R) still expected: go back to it
            return None
        self._vr = (self._vr + 1) % 8
        self._rx += frame.info
        if frame.segmented:
            if control.pf:
                self._answer_poll()  # RR asks for the next segments
            return None
        payload = bytes(self._rx)
        self._rx.clear()
        if not payload.startswith(self._llc_in):
            raise HdlcError(f"APDU without the LLC header {self._llc_in.hex(' ')}: "
                            f"starts {payload[:3].hex(' ') or 'empty'}")
        return payload[len(self._llc_in):]

    def _answer_poll(self) -> None:
        self._rr()

    def _answer_is_owed(self) -> bool:
        """A repeated frame with the poll/final bit must be answered though the peer
        was told our N(R) (the client's view; see HdlcClient)."""
        return False

    def _discard(self, reason: DiscardReason, frame: HdlcFrame, detail: str) -> None:
        self._events.append(FrameDiscarded(reason, frame.encode(), detail))

    def _on_frame(self, frame: HdlcFrame) -> None:
        raise NotImplementedError

    def _refused(self, frame: HdlcFrame) -> None:
        reason = ("disconnected mode (DM): the peer has no link with us"
                  if frame.kind is FrameKind.DM else
                  f"frame reject (FRMR) {frame.info.hex(' ')}".rstrip())
        self.state = LinkState.DISCONNECTED
        self._reset()
        self._events.append(Refused(frame.kind, reason))
