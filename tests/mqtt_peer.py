"""A blocking MQTT v5 test client over paho-mqtt 2.x that waits for each acknowledgement.

``Peer.connect()`` returns the CONNACK reason code, ``subscribe()`` the SUBACK codes,
``publish()`` the PUBACK code, so tests assert what the broker really answered instead of
sleeping and hoping. Received messages queue up in ``Peer.messages``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.mosquitto_server import Broker

WAIT_S = 2.0


class Peer:
    def __init__(self, broker: Broker, username: str, password: str, *, client_id: str,
                 clean_start: bool = True, session_expiry_s: int = 0, tls: bool = False,
                 ca_file: Path | None = None) -> None:
        self.broker = broker
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.port = broker.port
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.session_present = False
        self.disconnected = threading.Event()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._acks: dict[int, list[ReasonCode]] = {}
        self._ack_seen = threading.Condition()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
        c.username_pw_set(username, password)
        if tls:
            assert broker.tls_port is not None
            self.port = broker.tls_port
            c.tls_set(ca_certs=str(ca_file) if ca_file else None)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_message = lambda _c, _u, msg: self.messages.put(msg)
        c.on_disconnect = lambda *_args: self.disconnected.set()
        self.client = c

    # paho callbacks (its network thread)
    def _on_connect(self, _c: paho.Client, _u: object, flags: paho.ConnectFlags,
                    rc: ReasonCode, _p: Properties | None) -> None:
        self.session_present = flags.session_present
        self._connack.put(rc)

    def _record(self, mid: int, codes: list[ReasonCode]) -> None:
        with self._ack_seen:
            self._acks[mid] = codes
            self._ack_seen.notify_all()

    def _on_subscribe(self, _c: paho.Client, _u: object, mid: int, codes: list[ReasonCode],
                      _p: Properties | None) -> None:
        self._record(mid, codes)

    def _on_publish(self, _c: paho.Client, _u: object, mid: int, code: ReasonCode,
                    _p: Properties | None) -> None:
        self._record(mid, [code])

    def _wait_ack(self, mid: int) -> list[ReasonCode]:
        with self._ack_seen:
            if not self._ack_seen.wait_for(lambda: mid in self._acks, WAIT_S):
                raise TimeoutError(f"no acknowledgement for packet {mid} within {WAIT_S} s")
            return self._acks.pop(mid)

    def connect(self) -> ReasonCode:
        """Connect and wait for CONNACK; TLS failures raise from here (ssl.SSLError)."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect(self.broker.host, self.port, keepalive=30,
                            clean_start=self.clean_start, properties=props)
        self.client.loop_start()
        return self._connack.get(timeout=WAIT_S)

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[ReasonCode]:
        rc, mid = self.client.subscribe(topic_filter, qos)
        assert rc == paho.MQTT_ERR_SUCCESS and mid is not None
        return self._wait_ack(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> ReasonCode:
        """Publish; for QoS 1 return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=qos)
        return self._wait_ack(info.mid)[0]

    def expect(self, timeout: float = WAIT_S) -> paho.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def connected(broker: Broker, username: str, password: str, *, client_id: str,
              clean_start: bool = True, session_expiry_s: int = 0) -> Iterator[Peer]:
    """A connected peer (asserting CONNACK success), closed at the end."""
    peer = Peer(broker, username, password, client_id=client_id, clean_start=clean_start,
                session_expiry_s=session_expiry_s)
    rc = peer.connect()
    try:
        assert not rc.is_failure, f"{username}: CONNACK {rc}"
        yield peer
    finally:
        peer.close()
