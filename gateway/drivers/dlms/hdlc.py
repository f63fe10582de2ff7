"""The HDLC link of DLMS (IEC 62056-46, Green Book ch. 8): the client and server sides.

Sans-IO, after h11: feed received bytes to ``receive_data``, take events from
``next_event()`` until it returns :data:`NEED_DATA`, write ``data_to_send()`` to the line.
Frames and the parser are in :mod:`gateway.drivers.dlms.hdlc_frame` (re-exported here);
the parameter negotiation in :mod:`gateway.drivers.dlms.hdlc_params`.

Normal response mode (62056-46 6.4.4): the client (primary) sends frames and gives the
poll with P=1 on the last of a batch; the server (secondary) answers only then, and ends
its answer with F=1. An APDU longer than the peer's maximum information field is sent in
segments (the S bit on every one but the last), ``window`` I-frames at a time; the
receiver acknowledges a batch with RR, which also asks for the next segments (Green Book
8.4.5.4.5). Lost frames are recovered go-back-N: the receiver discards an I-frame whose
N(S) is not the one expected and answers the poll with RR carrying the N(R) it still
expects, and the sender sends again from there.

Timeouts belong to the async shell. When no answer came within its timeout (after the
poll was given), the shell calls :meth:`HdlcClient.poll_again` and writes what it returns:
the SNRM or DISC again while connecting or disconnecting, else RR with the poll bit and
the current N(R), which makes the server send again what it has not had acknowledged (or
say with RR what it still expects, so the client sends again). A partial frame left in
the parser is reported as truncated. :attr:`HdlcClient.polls` counts the polls since the
last good frame; the shell gives up with DeviceTimeout after its retry limit (Green
Book's default: 3) and may then send DISC.
"""

from __future__ import annotations

from gateway.drivers.dlms.hdlc_frame import (
    Control,
    FrameKind,
    HdlcAddress,
    HdlcError,
    HdlcFrame,
    crc16_x25,
)
from gateway.drivers.dlms.hdlc_params import HdlcParameters
from gateway.drivers.dlms.hdlc_parser import (
    NEED_DATA,
    DiscardReason,
    FrameDiscarded,
    FrameParser,
    NeedData,
)
from gateway.drivers.dlms.hdlc_station import (
    LLC_REQUEST,
    LLC_RESPONSE,
    ApduReceived,
    Event,
    LinkDown,
    LinkState,
    LinkStation,
    LinkUp,
    Refused,
)

__all__ = [
    "LLC_REQUEST",
    "LLC_RESPONSE",
    "NEED_DATA",
    "ApduReceived",
    "Control",
    "DiscardReason",
    "Event",
    "FrameDiscarded",
    "FrameKind",
    "FrameParser",
    "HdlcAddress",
    "HdlcClient",
    "HdlcError",
    "HdlcFrame",
    "HdlcParameters",
    "HdlcServer",
    "LinkDown",
    "LinkState",
    "LinkUp",
    "NeedData",
    "Refused",
    "all_station",
    "crc16_x25",
]


def all_station(width: int) -> int:
    """The all-station (broadcast) lower address of a server address ``width`` bytes
    wide (Green Book 8.4.2.3: 0x7F in a byte, 0x3FFF in two)."""
    return 0x3FFF if width == 4 else 0x7F


class HdlcClient(LinkStation):
    """The client (primary station) of one HDLC link to one server address."""

    _llc_out = LLC_REQUEST
    _llc_in = LLC_RESPONSE

    def __init__(self, client: HdlcAddress, server: HdlcAddress) -> None:
        super().__init__(client, server)
        self.polls = 0
        self._awaiting_final = False
        #: Polls given and not yet answered with a final frame. After a timeout's
        #: re-poll it may count one more than the server will answer (the first poll
        #: was lost): it errs towards caution, never towards a second poll in flight.
        self._outstanding = 0
        self._proposal = HdlcParameters()

    def connect(self, proposal: HdlcParameters | None = None) -> None:
        """Queue SNRM; the information field only when the proposal is not the default."""
        self._proposal = proposal or HdlcParameters()
        info = b"" if self._proposal == HdlcParameters() else self._proposal.encode()
        self.state = LinkState.CONNECTING
        self._reset()
        self._send(self._frame(Control(FrameKind.SNRM), info))

    def send_apdu(self, apdu: bytes) -> None:
        if self.state is not LinkState.CONNECTED:
            raise RuntimeError(f"cannot send an APDU on a {self.state.value} link")
        if self.busy:
            raise RuntimeError("the previous APDU is still being sent")
        self._queue_apdu(apdu)

    def disconnect(self) -> None:
        self.state = LinkState.DISCONNECTING
        self._reset()
        self._send(self._frame(Control(FrameKind.DISC)))

    def poll_again(self) -> bytes:
        """What to send when the answer did not come in time (see the module docs)."""
        partial = self.parser.discard_partial()
        if partial is not None:
            self._events.append(partial)
        self.polls += 1
        if self.state is LinkState.CONNECTING:
            info = b"" if self._proposal == HdlcParameters() else self._proposal.encode()
            frame = self._frame(Control(FrameKind.SNRM), info)
        elif self.state is LinkState.DISCONNECTING:
            frame = self._frame(Control(FrameKind.DISC))
        elif self.state is LinkState.CONNECTED:
            frame = self._frame(Control(FrameKind.RR, True, nr=self._vr))
        else:
            return b""
        self._awaiting_final = True
        self._outstanding += 1
        return frame.encode()

    def _may_send(self) -> bool:
        return not self._awaiting_final

    def _gave_poll(self) -> None:
        self._awaiting_final = True
        self._outstanding += 1

    def _answer_is_owed(self) -> bool:
        # This final frame answered our only poll: unless we poll, nobody speaks. A
        # frame lost inside a window makes the rest of it look like repeats (N(S)
        # counts modulo 8, the window is 7), so without this the loss would cost a
        # timeout before the re-poll.
        return self._outstanding == 0

    def _on_frame(self, frame: HdlcFrame) -> None:
        self.polls = 0
        if frame.control.pf:
            self._awaiting_final = False
            self._outstanding = max(0, self._outstanding - 1)
        kind, state = frame.kind, self.state
        if kind in (FrameKind.DM, FrameKind.FRMR) and state in (LinkState.CONNECTING,
                                                                  LinkState.CONNECTED):
            self._refused(frame)
        elif state is LinkState.CONNECTING and kind is FrameKind.UA:
            self.params = self._proposal.accept(HdlcParameters.decode(frame.info))
            self.state = LinkState.CONNECTED
            self._events.append(LinkUp(self.params))
        elif state is LinkState.DISCONNECTING and kind in (FrameKind.UA, FrameKind.DM):
            self.state = LinkState.DISCONNECTED
            self._events.append(LinkDown())
        elif state is LinkState.CONNECTED and kind is FrameKind.I:
            apdu = self._receive_i(frame)
            if apdu is not None:
                self._pending.clear()  # the server answered: nothing of ours is owed
                self._events.append(ApduReceived(apdu))
        elif state is LinkState.CONNECTED and kind in (FrameKind.RR, FrameKind.RNR):
            self._acknowledge(frame)
            if kind is FrameKind.RR and frame.control.pf:
                if self._unacked:
                    self._retransmit()  # the server still expects N(R): send again
                else:
                    self._send_window()
        else:
            self._discard(DiscardReason.UNEXPECTED, frame,
                          f"{frame.describe()} while {state.value}")


class HdlcServer(LinkStation):
    """The server (secondary station) side, for the meter simulator.

    It answers SNRM with UA and the negotiated parameters (within ``limits``: up to
    2030 bytes and a window of 7), takes a client's APDU from its I-frames, and sends
    its response with :meth:`send_apdu` in segments that honour the client's receive
    maximum and window, waiting for the client's RR between windows. Frames before SNRM
    are answered DM (62056-46 6.4.4.4.3.1: a station in NDM answers DM to anything but
    SNRM); DISC is answered UA, and the link goes down.
    """

    _llc_out = LLC_RESPONSE
    _llc_in = LLC_REQUEST

    def __init__(self, server: HdlcAddress, limits: HdlcParameters | None = None, *,
                 answers_all_station: bool = False) -> None:
        # Any client may connect; the one that sends SNRM owns the link until DISC.
        super().__init__(server, HdlcAddress.client(0))
        self.limits = limits or HdlcParameters()
        self.answers_all_station = answers_all_station
        self._has_poll = False

    def send_apdu(self, apdu: bytes) -> None:
        """Queue the response; sent now if the server holds the poll, else when polled."""
        if self.state is not LinkState.CONNECTED:
            raise RuntimeError(f"cannot send an APDU on a {self.state.value} link")
        if self.busy:
            raise RuntimeError("the previous APDU is still being sent")
        self._queue_apdu(apdu)

    def _accepts_source(self, frame: HdlcFrame) -> bool:
        # Before a link exists, any client may send SNRM (or get DM for anything else).
        return self.state is LinkState.DISCONNECTED and frame.source.lower is None

    def _accepts_destination(self, frame: HdlcFrame) -> bool:
        # A meter alone on its port (an optical head) may take SNRM to its logical
        # device at the all-station physical address and answer from its own address,
        # which is how a client finds an unknown physical address. Not every meter
        # does (62056-46 leaves it open), hence the switch. Only in its own address
        # size: a meter addressed in 4 bytes takes 0x3FFF, not 0x7F.
        to = frame.destination
        return (self.answers_all_station and frame.kind is FrameKind.SNRM
                and to.width == self.own.width and to.upper == self.own.upper
                and to.lower == all_station(to.width))

    def _may_send(self) -> bool:
        return self._has_poll

    def _gave_poll(self) -> None:
        self._has_poll = False

    def _answer_poll(self) -> None:
        if self._unacked:
            self._retransmit()
        elif self._pending:
            self._send_window()
        else:
            self._rr()

    def _on_frame(self, frame: HdlcFrame) -> None:
        kind, control = frame.kind, frame.control
        if control.pf:
            self._has_poll = True
        if kind is FrameKind.SNRM:
            try:
                proposal = HdlcParameters.decode(frame.info)
            except HdlcError as exc:
                self._reject(frame, str(exc))
                return
            self.peer = frame.source
            self._reset()
            self.params = proposal.answer(self.limits)
            self.state = LinkState.CONNECTED
            self._send(self._frame(Control(FrameKind.UA), self.params.encode()))
            self._events.append(LinkUp(self.params))
        elif self.state is not LinkState.CONNECTED:
            self.peer = frame.source
            if control.pf:
                self._send(self._frame(Control(FrameKind.DM)))
            self._discard(DiscardReason.UNEXPECTED, frame, "no link (answered DM)")
        elif kind is FrameKind.DISC:
            self._send(self._frame(Control(FrameKind.UA)))
            self.state = LinkState.DISCONNECTED
            self._reset()
            self._events.append(LinkDown())
        elif kind is FrameKind.I:
            if len(frame.info) > self.params.max_info_rx:
                self._reject(frame, f"information field of {len(frame.info)} bytes, "
                             f"above the negotiated {self.params.max_info_rx}")
                return
            apdu = self._receive_i(frame)
            if apdu is not None:
                self._events.append(ApduReceived(apdu))
        elif kind in (FrameKind.RR, FrameKind.RNR):
            self._acknowledge(frame)
            if kind is FrameKind.RR and control.pf:
                self._answer_poll()
        else:
            self._reject(frame, f"{kind.name} is not a command a client sends")

    def _reject(self, frame: HdlcFrame, detail: str) -> None:
        """FRMR (ISO/IEC 13239 5.5.3.4.2): the rejected control field, our V(S)/V(R),
        and why: W (unknown command) or Y (information field too long)."""
        self._discard(DiscardReason.BAD_FRAME, frame, detail)
        if frame.control.pf:
            why = 0x04 if frame.kind is FrameKind.I else 0x01
            info = bytes((frame.control.encode(), self._vr << 5 | self._vs << 1, why))
            self._send(self._frame(Control(FrameKind.FRMR), info))
