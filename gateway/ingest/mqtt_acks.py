"""Which received MQTT messages may be acknowledged, and when (pure bookkeeping).

The MQTT input acknowledges a QoS 1 message only once what it brought is durably
handled: its readings committed, its refused payload quarantined in the store, or
nothing to keep (no meter reads the topic; a retained replay). Acknowledgements go out
in the order the messages were received (MQTT 3.1.1 and 5.0, 4.6), so one message
still waiting holds back those after it.

``received`` numbers every message; ``mark`` is the number the next message will get,
taken when a flush begins: a flush that commits everything gathered settles every
message received before it (``settle``), and the done prefix is handed back to be
acknowledged. A message id is only valid on the connection it arrived on: when that
connection ends (``disconnected``), its messages that are done are forgotten (the
broker sends them again, and the input recognises readings it already took), and
those whose content is still waiting in memory become orphans. When the broker sends
an orphan again (same topic and payload), ``adopt`` pairs them: its content is not
taken twice, and the new delivery is acknowledged with the next flush that commits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["AckLedger", "Delivery"]


@dataclass(slots=True)
class Delivery:
    seq: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    done: bool = False


class AckLedger:
    def __init__(self) -> None:
        self._seq = 0
        self._open: deque[Delivery] = deque()
        self._orphans: list[Delivery] = []

    def __len__(self) -> int:
        """Messages of the current connection not acknowledged yet."""
        return len(self._open)

    @property
    def orphans(self) -> int:
        return len(self._orphans)

    def received(self, mid: int, qos: int, topic: str, payload: bytes, *,
                 done: bool = False) -> None:
        """A message arrived (QoS 0 ones need no acknowledgement and are not kept)."""
        seq = self._seq
        self._seq += 1
        if qos > 0:
            self._open.append(Delivery(seq, mid, qos, topic, payload, done))

    def mark(self) -> int:
        return self._seq

    def adopt(self, topic: str, payload: bytes) -> bool:
        """Pair a redelivered message with an orphan whose content is still waiting."""
        for i, orphan in enumerate(self._orphans):
            if orphan.topic == topic and orphan.payload == payload:
                del self._orphans[i]
                return True
        return False

    def settle(self, upto: int) -> list[tuple[int, int]]:
        """Everything received before ``upto`` is durably handled: the (mid, qos) to
        acknowledge now, in order."""
        for delivery in self._open:
            if delivery.seq >= upto:
                break
            delivery.done = True
        self._orphans = [o for o in self._orphans if o.seq >= upto]
        return self.ready()

    def ready(self) -> list[tuple[int, int]]:
        """Pop the done prefix of the current connection's messages."""
        out = []
        while self._open and self._open[0].done:
            delivery = self._open.popleft()
            out.append((delivery.mid, delivery.qos))
        return out

    def disconnected(self) -> None:
        """The connection ended: its message ids mean nothing on the next one."""
        self._orphans.extend(d for d in self._open if not d.done)
        self._open.clear()
