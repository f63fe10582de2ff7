"""One meter's HDLC station on a link (TCP connection or serial line), and what the
links share: their statistics and the splitting of a station's output into frames
(so a frame can be lost on purpose, and counted)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.drivers.dlms.hdlc import (
    NEED_DATA,
    ApduReceived,
    HdlcAddress,
    HdlcError,
    HdlcServer,
    LinkDown,
    LinkUp,
)
from gateway.sim.dlms_meter import DlmsMeter, DlmsSession

__all__ = ["HdlcStation", "LinkStats", "lost", "split_frames"]


@dataclass
class LinkStats:
    """What crossed a link (all connections of a TCP listener, or the serial line)."""

    bytes_received: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    frames_sent: int = 0


def split_frames(data: bytes) -> list[bytes]:
    """HDLC frames as one station wrote them (each 7E .. 7E, its length in the format
    field: there is no byte stuffing on a DLMS line)."""
    frames, at = [], 0
    while at + 3 <= len(data):
        length = int.from_bytes(data[at + 1:at + 3], "big") & 0x7FF
        frames.append(data[at:at + length + 2])
        at += length + 2
    return frames


class HdlcStation:
    """One meter's HDLC server on one link, and its association above it."""

    def __init__(self, meter: DlmsMeter) -> None:
        self.meter = meter
        spec = meter.spec
        self.server = HdlcServer(HdlcAddress.server(spec.server_logical, spec.server_physical),
                                 spec.hdlc_limits,
                                 answers_all_station=spec.answers_all_station)
        self.session: DlmsSession | None = None
        #: Set when the client disconnected (DISC): an optical port signs off.
        self.went_down = False

    def feed(self, data: bytes) -> list[bytes]:
        """Frames to send in answer to ``data`` (lost ones already left out)."""
        meter = self.meter
        if meter.is_silent:
            return []
        server = self.server
        server.receive_data(data)
        while True:
            try:
                event = server.next_event()
            except HdlcError:
                continue  # a malformed APDU inside good frames: dropped, as meters do
            if event is NEED_DATA:
                break
            if isinstance(event, LinkUp):
                self.session = DlmsSession(meter, server.peer.upper)
            elif isinstance(event, LinkDown):
                self.session, self.went_down = None, True
            elif isinstance(event, ApduReceived) and self.session is not None \
                    and not server.busy:
                answer = self.session.handle(event.apdu)
                if answer is not None:
                    server.send_apdu(answer)
        return [f for f in split_frames(server.data_to_send()) if not lost(meter)]


def lost(meter: DlmsMeter) -> bool:
    if meter.frames_to_drop > 0:
        meter.frames_to_drop -= 1
        return True
    return False
