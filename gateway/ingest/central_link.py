"""The central ingest's broker connection: the only module that imports paho-mqtt.

Why paho's own network thread and not aiomqtt: measured on the target machine, paho
received about 6,000 QoS 1 messages/s and aiomqtt (paho driven from the asyncio loop,
one future per message) about 2,500-3,000. Here paho's ``loop_start`` thread reads the
socket, answers PUBACK and appends each message to a deque; the asyncio side is woken
at most once per drain (one ``call_soon_threadsafe`` for a whole burst, not one per
message) and takes messages in groups for one store transaction.

The broker's PUBACK is not the delivery guarantee (the uplink contract): an edge
resends a batch until the ingest's own ack, published after the store commit. So
PUBACK is sent on receipt, and a worker that dies holding messages loses nothing.
For the same reason, messages beyond ``max_backlog`` (a store that cannot keep up) are
dropped without the ingest's ack and counted as ``shed``: the edges send them again.

A graceful stop (``stop_taking``, then store and ack what is held, then ``stop``) sends
everything it owes before its DISCONNECT: paho writes packets in the order they were
queued and drops whatever is queued after a DISCONNECT, so the PUBACK of every message
taken is queued under the same lock that closes the intake (manual acks: paho's own
PUBACK would follow the callback, outside the lock), a message arriving later is left
unacknowledged for the session's next connection, and ``stop`` first waits for the
broker's PUBACK of every ack published (not only the 20 in flight).

The session is persistent (``clean_start`` false, a session expiry, a stable client
id): while a worker restarts, the broker keeps its share of the subscription's
messages for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway import log
from gateway.errors import ConnectError
from gateway.mqtt_names import acks_topic

__all__ = ["BrokerLink", "LinkOptions", "Received", "retire_session"]

_log = log.get("gateway.ingest.link")
#: Acks in flight at once: Mosquitto's default Receive Maximum (paho does not apply the
#: broker's value by itself). Not more: paho scans its in-flight messages on every
#: PUBACK, and a window of 1,000 measured twice the CPU per ack of one of 20.
MAX_INFLIGHT = 20
#: How long a stop waits for the broker to take the acks still going out (with the
#: broker away it does not wait: the edges send those batches again).
FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class LinkOptions:
    host: str
    port: int
    client_id: str
    username: str
    password: str | None
    subscription: str
    tls: bool = False
    ca_file: Path | None = None
    session_expiry_s: int = 600
    keepalive_s: int = 30
    max_backlog: int = 100_000


class BrokerLink:
    """Receives the shared subscription into a deque; publishes acks."""

    def __init__(self, options: LinkOptions) -> None:
        self.options = options
        self.received = 0
        self.shed = 0
        self.connected = asyncio.Event()
        self._queue: collections.deque[Received] = collections.deque()
        self._wake = asyncio.Event()
        self._signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Guards ``_taking`` against the network thread: a message is taken and its
        #: PUBACK queued, or neither.
        self._lock = threading.Lock()
        self._taking = True
        self._acks_published = 0  # by the asyncio side
        self._acks_done = 0  # by paho's thread, on the broker's PUBACK of an ack
        self._client = self._build()

    def _build(self) -> paho.Client:
        o = self.options
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=o.client_id,
                        protocol=MQTTProtocolVersion.MQTTv5)
        c.username_pw_set(o.username, o.password)
        if o.tls:
            try:
                c.tls_set(ca_certs=str(o.ca_file) if o.ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConnectError(f"TLS setup for the broker failed: {exc}",
                                   device=f"{o.host}:{o.port}") from exc
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_inflight_messages_set(MAX_INFLIGHT)
        c.manual_ack_set(True)  # see the module's docstring: graceful stop
        # A callback that raises must not end paho's network thread (and with it all
        # receiving, silently): paho logs it and goes on.
        c.suppress_exceptions = True
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        return c

    # -- paho's network thread ----------------------------------------------------------

    def _on_connect(self, client: paho.Client, _u: object, flags: paho.ConnectFlags,
                    rc: ReasonCode, _p: Properties | None) -> None:
        if rc.is_failure:
            _log.error("broker refused the connection", reason=str(rc),
                       client_id=self.options.client_id)
            return
        # Subscribe on every connect: a session that expired lost its subscription.
        client.subscribe(self.options.subscription, options=SubscribeOptions(qos=1))
        _log.info("connected to the broker", session_present=flags.session_present,
                  client_id=self.options.client_id, subscription=self.options.subscription)
        self._call(self.connected.set)

    def _on_disconnect(self, _c: paho.Client, _u: object, _f: paho.DisconnectFlags,
                       rc: ReasonCode, _p: Properties | None) -> None:
        if rc.is_failure:
            _log.warning("disconnected from the broker; reconnecting", reason=str(rc))
        else:
            _log.info("disconnected from the broker", reason=str(rc))
        self._call(self.connected.clear)

    def _on_message(self, client: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            if not self._taking:
                return  # stopping: no PUBACK, the broker keeps it for the next connection
            if len(self._queue) >= self.options.max_backlog:
                self.shed += 1
            else:
                self._queue.append(Received(msg.topic, bytes(msg.payload)))
                self.received += 1
                if not self._signalled:
                    self._signalled = True
                    self._call(self._wake.set)
            client.ack(msg.mid, msg.qos)

    def _on_publish(self, _c: paho.Client, _u: object, _mid: int, _rc: ReasonCode,
                    _p: Properties) -> None:
        self._acks_done += 1

    def _call(self, fn: object) -> None:
        loop = self._loop
        if loop is not None and callable(fn):
            with contextlib.suppress(RuntimeError):  # the loop closed while we stopped
                loop.call_soon_threadsafe(fn)

    # -- the asyncio side ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background (paho retries until the broker answers)."""
        self._loop = asyncio.get_running_loop()
        o = self.options
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = o.session_expiry_s
        self._client.connect_async(o.host, o.port, keepalive=o.keepalive_s, clean_start=False,
                                   properties=props)
        self._client.loop_start()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    async def wait(self) -> None:
        """Until at least one message is waiting."""
        while not self._queue:
            await self._wake.wait()
            self._wake.clear()
            self._signalled = False

    def take(self, max_messages: int, max_bytes: int) -> list[Received]:
        """Up to ``max_messages`` waiting messages (and about ``max_bytes``), oldest first."""
        self._wake.clear()
        self._signalled = False  # before taking: anything appended later signals again
        out: list[Received] = []
        size = 0
        q = self._queue
        while q and len(out) < max_messages and size < max_bytes:
            item = q.popleft()
            out.append(item)
            size += len(item.payload)
        return out

    def publish_ack(self, edge_id: str, payload: bytes) -> None:
        """QoS 1 to the edge's acks topic; paho queues it while the broker is away."""
        self._acks_published += 1
        self._client.publish(acks_topic(edge_id), payload, qos=1)

    def stop_taking(self) -> None:
        """Take no more messages: those arriving from now on stay unacknowledged at the
        broker, which sends them to this session's next connection."""
        with self._lock:
            self._taking = False

    async def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Until the broker has taken every ack published (True), the connection is
        lost, or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while self._acks_done < self._acks_published:
            if not self.connected.is_set() or time.monotonic() > deadline:
                _log.warning("stopping with acks not taken by the broker; the edges send "
                             "those batches again",
                             acks_pending=self._acks_published - self._acks_done)
                return False
            await asyncio.sleep(0.005)
        return True

    async def stop(self) -> None:
        """Take no more messages, let the acks published go out, then disconnect (the
        session stays at the broker) and end paho's thread."""
        if self._loop is None:
            return
        self.stop_taking()
        await self.flush()
        self._loop = None

        def close() -> None:
            self._client.disconnect()  # queued after every PUBACK of a message taken
            self._client.loop_stop()

        await asyncio.to_thread(close)


def retire_session(options: LinkOptions, timeout_s: float = 10.0) -> None:
    """End worker ``options.client_id``'s session at the broker (blocking): connect with
    a clean start and no session expiry, then leave. A worker taken away for good
    otherwise keeps its share of the subscription's messages until its session expires
    (what it held then is lost to it: the edges send those batches again)."""
    done: queue.Queue[ReasonCode] = queue.Queue()
    link = BrokerLink(options)
    c = link._client
    c.on_connect = lambda _c, _u, _f, rc, _p: done.put(rc)
    c.on_message = None
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    where = f"{options.host}:{options.port}"
    try:
        c.connect(options.host, options.port, keepalive=options.keepalive_s,
                  clean_start=True, properties=props)
    except OSError as exc:
        raise ConnectError(f"cannot reach the broker: {exc}", device=where) from exc
    c.loop_start()
    try:
        rc = done.get(timeout=timeout_s)
    except queue.Empty:
        raise ConnectError(f"no CONNACK within {timeout_s} s", device=where) from None
    finally:
        c.disconnect()
        c.loop_stop()
    if rc.is_failure:
        raise ConnectError(f"the broker refused the connection: {rc}", device=where)
