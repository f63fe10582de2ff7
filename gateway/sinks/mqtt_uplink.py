"""The edge uplink as a delivery sink: batches to the central site over MQTT v5.

``deliver()`` publishes one batch (schema v1, ``gateway.uplink.schema``) at QoS 1 to
``ami/v1/<edge_id>/intervals`` and returns only when the central ingest's ack for the
same batch id arrives on ``ami/v1/<edge_id>/acks``: the ack says the intervals are
durably stored, a PUBACK only says the broker has them. No ack in time, or no
connection, raises ``SinkError(retryable=True)``, and the Delivery sends the same
entries again later (the central store is idempotent).

The session is persistent (stable client id ``edge-<edge_id>``, clean start off, a
session expiry), so acks published while the edge is away wait at the broker; an ack
that arrives while no delivery waits for it is kept for a while, and a resend of that
batch is answered by it at once. The connection lives in a task of its own that
reconnects with full-jitter exponential backoff (1 s .. 60 s), so a thousand edges do
not reconnect in step to a restarted broker.

This is the only module that imports aiomqtt (and, for the PUBACK reason code that
aiomqtt does not surface, paho).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiomqtt
from paho.mqtt.client import CallbackOnPublish_v2
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway import log
from gateway.errors import DataError, SinkError
from gateway.model import IntervalReading
from gateway.mqtt_names import acks_topic, check_edge_id, intervals_topic
from gateway.uplink.schema import Ack, decode_ack, encode_batch

__all__ = ["MqttUplinkSink", "Timezones"]

_log = log.get("gateway.uplink")

#: Where the sink learns each series' timezone (the store's series table).
Timezones = Callable[[], Awaitable[Mapping[tuple[str, str], str]]]

#: PUBACK / CONNACK reasons that trying again will not cure (MQTT v5 reason codes).
_FOR_GOOD = {134: "bad user name or password", 135: "not authorized by the broker's ACL",
             144: "topic name invalid", 153: "payload format invalid"}
#: Acks kept while no delivery waits for them (a resend of the batch is answered at once).
_KEPT_ACKS = 64


class MqttUplinkSink:
    #: The Delivery passes each batch's outbox range (gateway.ingest.delivery.KeyedSink).
    needs_batch_id = True

    def __init__(self, name: str, *, edge_id: str, host: str, port: int, password: str | None,
                 timezones: Timezones, tls: bool = False, ca_file: Path | None = None,
                 ack_timeout_s: float = 30.0, session_expiry_s: int = 86_400,
                 keepalive_s: int = 60, min_backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, topic: str | None = None) -> None:
        self.name = name
        self.edge_id = check_edge_id(edge_id)
        self.client_id = f"edge-{edge_id}"
        self.host, self.port = host, port
        self.ack_timeout_s = ack_timeout_s
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        #: Where batches go; another edge's topic only in tests of the broker's ACL.
        self.topic = topic or intervals_topic(edge_id)
        self._acks = acks_topic(edge_id)
        self._password = password
        self._tls = tls
        self._ca_file = ca_file
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._timezones_of = timezones
        self._timezones: Mapping[tuple[str, str], str] = {}
        self._client: aiomqtt.Client | None = None  # set while connected
        self._connected = asyncio.Event()
        self._last_error: SinkError | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting: tuple[str, asyncio.Future[Ack]] | None = None
        self._kept: OrderedDict[str, Ack] = OrderedDict()
        self._puback: ReasonCode | None = None
        self._lock = asyncio.Lock()
        self._transitions = log.Transitions(_log)
        #: Connections made (the first and every reconnection), for the status and tests.
        self.connections = 0

    async def open(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._connection(), name=f"uplink {self.name}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def deliver(self, batch: Sequence[IntervalReading], *,
                      batch_id: str | None = None) -> list[tuple[int, str]]:
        if batch_id is None:
            raise SinkError("the uplink needs the outbox's batch id (first-last queue "
                            "number) to match the central ack", retryable=False)
        async with self._lock:  # one batch in flight: its ack is the one awaited
            return await self._deliver(batch, f"{self.edge_id}:{batch_id}")

    async def _deliver(self, batch: Sequence[IntervalReading], batch_id: str
                       ) -> list[tuple[int, str]]:
        payload = await self._encode(batch, batch_id)
        kept = self._kept.pop(batch_id, None)
        if kept is not None:  # acked while no delivery waited: stored already
            return self._refused(kept, len(batch))
        waiter: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._waiting = (batch_id, waiter)
        publish: asyncio.Future[None] | None = None
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                client = await self._client_or_fail()
                publish = asyncio.ensure_future(self._publish(client, payload, batch_id))
                # A lost connection fails the waiter while the PUBACK may never come.
                await asyncio.wait((publish, waiter), return_when=asyncio.FIRST_COMPLETED)
                if publish.done():
                    publish.result()  # the broker's refusal, if any
                ack = await waiter
        except TimeoutError:
            raise SinkError(f"no ack from the central ingest for batch {batch_id} within "
                            f"{self.ack_timeout_s:g} s", retryable=True) from None
        finally:
            self._waiting = None
            for future in (publish, waiter):
                if future is not None and not future.done():
                    future.cancel()
            if publish is not None and publish.done() and not publish.cancelled():
                publish.exception()  # retrieved: the ack or the waiter's error decided
        return self._refused(ack, len(batch))

    async def _encode(self, batch: Sequence[IntervalReading], batch_id: str) -> bytes:
        if any((iv.meter_id, iv.channel) not in self._timezones for iv in batch):
            self._timezones = await self._timezones_of()  # a series added since
        try:
            return encode_batch(self.edge_id, batch_id, batch, self._timezones,
                                datetime.now(UTC))
        except DataError as exc:
            raise SinkError(f"batch {batch_id} cannot be sent: {exc}", retryable=False) from exc

    async def _client_or_fail(self) -> aiomqtt.Client:
        if self._task is None:
            raise SinkError("the uplink is not open", retryable=True)
        if self._client is None and self._last_error is not None:
            raise self._last_error  # reconnecting with backoff: the Delivery waits too
        await self._connected.wait()
        assert self._client is not None
        return self._client

    async def _publish(self, client: aiomqtt.Client, payload: bytes, batch_id: str) -> None:
        self._puback = None
        try:
            await client.publish(self.topic, payload, qos=1)
        except aiomqtt.MqttError as exc:
            raise SinkError(f"publishing batch {batch_id} failed: {exc}",
                            retryable=True) from exc
        code = self._puback
        if code is not None and code.is_failure:
            why = _FOR_GOOD.get(code.value)
            raise SinkError(f"the broker refused batch {batch_id} on {self.topic}: PUBACK "
                            f"{code.value} ({why or code})", retryable=why is None)

    def _refused(self, ack: Ack, size: int) -> list[tuple[int, str]]:
        bad = [i for i, _ in ack.rejected if i >= size]
        if bad:
            raise SinkError(f"the ack of batch {ack.batch_id} rejects interval {bad[0]} of "
                            f"a batch of {size}", retryable=True)
        return list(ack.rejected)

    # -- the connection ---------------------------------------------------------------

    async def _connection(self) -> None:
        """Connect, listen for acks, and on any loss reconnect after a full-jitter
        backoff: uniform in [0, min(max, min * 2**attempt)]."""
        attempt = 0
        while True:
            try:
                async with self._new_client() as client:
                    attempt = 0
                    await client.subscribe(self._acks, qos=1)
                    self._up(client)
                    async for message in client.messages:
                        self._on_ack(message.payload)
            except aiomqtt.MqttError as exc:
                self._down(exc)
            ceiling = min(self.max_backoff_s, self.min_backoff_s * 2.0 ** attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(0.0, ceiling))

    def _new_client(self) -> aiomqtt.Client:
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = self._session_expiry_s
        client = aiomqtt.Client(
            self.host, self.port, identifier=self.client_id, username=self.edge_id,
            password=self._password, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
            properties=connect, keepalive=self._keepalive_s, timeout=self.ack_timeout_s,
            tls_context=self._tls_context())
        self._watch_pubacks(client)
        return client

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self._tls:
            return None
        return ssl.create_default_context(
            cafile=str(self._ca_file) if self._ca_file is not None else None)

    def _watch_pubacks(self, client: aiomqtt.Client) -> None:
        """aiomqtt completes a publish on any PUBACK; keep its MQTT v5 reason code (135:
        the ACL refused the topic) so a refusal is not taken for a delivery."""
        paho = client._client  # the one place the reason code is seen
        completed = cast("CallbackOnPublish_v2 | None", paho.on_publish)

        def on_publish(c: Any, userdata: Any, mid: int, code: ReasonCode,
                       properties: Any) -> None:
            self._puback = code
            if completed is not None:
                completed(c, userdata, mid, code, properties)

        paho.on_publish = on_publish

    def _up(self, client: aiomqtt.Client) -> None:
        self._client, self._last_error = client, None
        self._connected.set()
        self.connections += 1
        self._transitions.ok(f"uplink {self.name}", broker=f"{self.host}:{self.port}")

    def _down(self, exc: aiomqtt.MqttError) -> None:
        self._client = None
        self._connected.clear()
        code = getattr(exc, "rc", None)
        why = _FOR_GOOD.get(code.value) if isinstance(code, ReasonCode) else None
        self._last_error = SinkError(
            f"MQTT broker {self.host}:{self.port}: {why or exc}", retryable=why is None)
        self._transitions.failed(f"uplink {self.name}", exc, broker=f"{self.host}:{self.port}")
        if self._waiting is not None and not self._waiting[1].done():
            self._waiting[1].set_exception(SinkError(
                f"connection lost while batch {self._waiting[0]} waited for its ack: {exc}",
                retryable=True))

    def _on_ack(self, payload: Any) -> None:
        if not isinstance(payload, bytes | bytearray):
            _log.warning("ack without a body: ignored", sink=self.name)
            return
        try:
            ack = decode_ack(bytes(payload))
        except DataError as exc:
            _log.warning("malformed ack: ignored", sink=self.name, error=str(exc))
            return
        waiting = self._waiting
        if waiting is not None and waiting[0] == ack.batch_id:
            if not waiting[1].done():
                waiting[1].set_result(ack)
            return
        # A late ack of an earlier attempt or of a batch not yet resent: kept, so a
        # resend of exactly that batch completes at once; other batch ids never match.
        self._kept[ack.batch_id] = ack
        while len(self._kept) > _KEPT_ACKS:
            self._kept.popitem(last=False)
