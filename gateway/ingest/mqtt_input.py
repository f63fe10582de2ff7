"""MQTT meter input: one subscriber for all MQTT meters, feeding the pipeline.

The only module that imports aiomqtt (and paho). One connection to the [mqtt] broker
per gateway, MQTT v5 with a persistent session (clean_start false, a session expiry),
so QoS 1 readings published while the gateway restarts wait at the broker; a broker
that refuses v5 is spoken to in 3.1.1 (clean_session false). Every MQTT meter's topic
filter is subscribed at its qos (at most 1, see below); each message is decoded by every
codec whose pattern matches its topic (the pure codecs of ``gateway.drivers.mqtt``).

Readings are gathered for a short window (``window_s``, or until ``max_readings``) and
fed per topic (source ``mqtt:<topic>``), one store transaction each. A payload a codec
refuses (DataError) is quarantined with its reason and the payload (printable,
truncated): never a crash, never dropped silently. A message on a topic no meter
matches is ignored (counted). A retained message replayed on (re)subscribing is not a
new reading and is skipped (counted); live messages of a retained topic arrive with
retain unset and are taken.

The broker lost, the subscriber reconnects with jittered exponential backoff in real
time (not the gateway clock), logged once on failure and once on recovery; the MQTT
meters' status goes "failing" meanwhile.

A QoS 1 message is acknowledged only once what it brought is durably handled (its
readings committed, its payload quarantined, or nothing to keep), in the order received
(``gateway.ingest.mqtt_acks``): the process may die at any moment and the broker sends
again whatever was not acknowledged. A flush that fails acknowledges nothing. So that
the broker's in-flight window (Mosquitto: 20 per client unless the client asks for
more, which MQTT v5 lets it do) never stalls the stream, a flush starts as soon as
``ack_early`` messages wait. A redelivery (the DUP flag) is recognised: a message whose
content is still waiting in memory is not taken twice, readings older than their
series' last read are ones already taken (skipped, counted), a refused payload already
in the quarantine is not quarantined again. Meters configured at QoS 2 are subscribed
at QoS 1: paho completes QoS 2's hand-off (PUBREC) on receipt, before any commit, so
only QoS 1 leaves the broker holding the message until it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import log
from gateway.clock import Clock
from gateway.drivers.mqtt.codecs import Codec
from gateway.errors import ConnectError, DataError, GatewayError, SinkError
from gateway.ingest.mqtt_acks import AckLedger
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.poller import MAX_PENDING, STATUS_REFRESH, backoff_s
from gateway.model import MeterStatus, Reading
from gateway.settings_mqtt import MqttLink
from gateway.store import QuarantineItem, Store

__all__ = ["InputStats", "MqttSubscriber", "Route", "printable"]

_log = log.get("gateway.mqtt_input")

#: Characters of a refused payload kept in the quarantine.
PAYLOAD_SHOWN = 300
#: MQTT v5 "unsupported protocol version" (0x84) and 3.1.1's CONNACK code 1.
_NO_V5 = {0x84, 1}
#: Unacknowledged messages that start a flush: below Mosquitto's default in-flight
#: window (max_inflight_messages 20), which applies to 3.1.1 clients and to brokers
#: that cap what a v5 client asks for.
ACK_EARLY = 16
#: The in-flight window asked of a v5 broker (Receive Maximum): it keeps sending while
#: a flush commits, so batches grow with the load instead of stalling at 20.
RECEIVE_MAXIMUM = 500
#: Latest quarantine entries searched for a redelivered refused payload.
QUARANTINE_LOOKBACK = 2 * RECEIVE_MAXIMUM


@dataclass(frozen=True)
class Route:
    """One MQTT meter as the subscriber sees it."""

    meter_id: str
    timezone: str
    codec_name: str
    codec: Codec
    qos: int


@dataclass
class InputStats:
    messages: int = 0
    readings: int = 0
    intervals: int = 0
    quarantined: int = 0
    #: Messages on a topic no meter's pattern matches.
    ignored: int = 0
    #: Retained messages replayed by the broker on subscribing.
    retained: int = 0
    #: Readings of redelivered messages that their series had already taken.
    replayed: int = 0
    #: Redelivered messages whose content was still waiting in memory.
    adopted: int = 0
    acked: int = 0
    connects: int = 0


def printable(payload: bytes, limit: int = PAYLOAD_SHOWN) -> str:
    """A payload as the quarantine keeps it: text with control and invalid bytes
    escaped, cut at ``limit`` characters with the full size noted."""
    text = payload[: limit * 4].decode("utf-8", errors="backslashreplace")
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    if len(text) > limit or len(payload) > limit * 4:
        text = f"{text[:limit]}... ({len(payload)} bytes)"
    return text


class MqttSubscriber:
    def __init__(self, *, link: MqttLink, routes: Sequence[Route], pipeline: Pipeline,
                 store: Store, clock: Clock, transitions: log.Transitions,
                 window_s: float = 0.1, max_readings: int = 500, ack_early: int = ACK_EARLY,
                 backoff_base_s: float = 1.0, backoff_cap_s: float = 60.0) -> None:
        self._link = link
        self._routes = tuple(routes)
        self._pipeline = pipeline
        self._store = store
        self._clock = clock
        self._transitions = transitions
        self._window_s = window_s
        self._max = max_readings
        self._ack_early = ack_early
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._protocol = aiomqtt.ProtocolVersion.V5
        filters: dict[str, int] = {}
        for route in self._routes:
            key = route.codec.pattern.filter
            filters[key] = max(filters.get(key, 0), min(route.qos, 1))  # QoS 2: see above
        self._filters = filters
        self._by_topic: dict[str, list[Reading]] = {}
        self._count = 0
        #: Refused payloads, each with whether it came again (may be stored already).
        self._quarantine: list[tuple[QuarantineItem, bool]] = []
        self._acks = AckLedger()
        self._paho: paho.Client | None = None
        #: Message ids of the connection's messages that carry the DUP flag.
        self._redelivered: set[int] = set()
        self._seen: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._full = asyncio.Event()
        self._status_at: dict[str, tuple[str, datetime]] = {}
        #: Set while subscribed (tests wait on it).
        self.subscribed = asyncio.Event()
        self.stats = InputStats()

    def unacknowledged(self) -> int:
        """Messages of the current connection not acknowledged yet."""
        return len(self._acks)

    async def run(self) -> None:
        """Subscribe and feed until cancelled; what is gathered is fed before returning."""
        await self._announce()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._flusher(), name="mqtt flush")
                await self._connect_loop()
        finally:
            await self._flush_at_stop()  # what came since (nothing if stopped connected)

    # -- the connection

    async def _connect_loop(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
                failures = 0
            except Exception as exc:  # a defect must not stop the gateway: retry as a failure
                if not isinstance(exc, ConnectError) and \
                        not self._transitions.is_failing(self._link.device):
                    _log.exception("MQTT input failed unexpectedly", broker=self._link.device)
                failures += 1
                if self._transitions.failed(self._link.device, exc):
                    for route in self._routes:
                        await self._status(route, "failing", str(exc), None)
            base, cap = self._backoff
            await asyncio.sleep(backoff_s(max(failures, 1), base_s=base, cap_s=cap))

    async def _session(self) -> None:
        try:
            client = self._client()
            acker = _manual_ack_client(client, self._redelivered)
            async with client:
                self._paho = acker
                for topic_filter, qos in self._filters.items():
                    await client.subscribe(topic_filter, qos=qos)
                self.stats.connects += 1
                self._transitions.ok(self._link.device)
                _log.info("subscribed", broker=self._link.device, filters=len(self._filters),
                          protocol=self._protocol.name)
                self.subscribed.set()
                try:
                    async for message in client.messages:
                        self._take(message)
                except asyncio.CancelledError:
                    await self._flush_at_stop()  # acknowledged while still connected
                    raise
        except aiomqtt.MqttCodeError as exc:
            code = getattr(exc.rc, "value", exc.rc)
            if self._protocol is aiomqtt.ProtocolVersion.V5 and code in _NO_V5:
                _log.warning("the broker refuses MQTT v5: using 3.1.1", broker=self._link.device)
                self._protocol = aiomqtt.ProtocolVersion.V311
                return
            raise ConnectError(f"{self._link.device}: {exc}") from exc
        except aiomqtt.MqttError as exc:
            raise ConnectError(f"{self._link.device}: {exc}") from exc
        finally:
            self.subscribed.clear()
            self._paho = None
            self._acks.disconnected()
            self._redelivered.clear()

    async def _flush_at_stop(self) -> None:
        try:
            await self._flush_safely()
        except GatewayError as exc:
            _log.error("readings not stored at stop", error=str(exc))

    def _client(self) -> aiomqtt.Client:
        section = self._link.section
        v5 = self._protocol is aiomqtt.ProtocolVersion.V5
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = section.session_expiry_s
            if RECEIVE_MAXIMUM:
                properties.ReceiveMaximum = RECEIVE_MAXIMUM
        context = None
        if section.tls:
            ca = self._link.ca_file
            context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        return aiomqtt.Client(
            section.host, section.effective_port, username=section.username,
            password=self._link.password, identifier=self._link.client_id,
            protocol=self._protocol, keepalive=section.keepalive_s, timeout=10,
            clean_session=None if v5 else False, clean_start=False,
            properties=properties, tls_context=context)

    # -- messages

    def _take(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        raw = message.payload
        payload = bytes(raw) if isinstance(raw, bytes | bytearray) else \
            str(raw if raw is not None else "").encode()
        self.stats.messages += 1
        mid, qos = message.mid, message.qos
        dup = mid in self._redelivered
        self._redelivered.discard(mid)
        routes = [r for r in self._routes if r.codec.pattern.match(topic) is not None]
        if not routes or message.retain:
            if not routes:
                self.stats.ignored += 1
                _log.debug("no meter reads this topic", topic=topic)
            else:
                self.stats.retained += 1
            self._acks.received(mid, qos, topic, payload, done=True)  # nothing to keep
            self._acknowledge(self._acks.ready())
            return
        adopted = dup and qos > 0 and self._acks.adopt(topic, payload)
        self._acks.received(mid, qos, topic, payload)
        self._wake.set()  # even a message without readings is settled by a flush
        if len(self._acks) >= self._ack_early:
            self._full.set()
        if adopted:
            self.stats.adopted += 1
            return
        now = self._clock.now()
        for route in routes:
            try:
                readings = route.codec.decode(topic, payload, now)
            except DataError as exc:
                self._refuse(route, topic, payload, str(exc), now, dup)
                continue
            except Exception as exc:  # a codec defect must not stop the other meters
                _log.exception("codec failed", meter_id=route.meter_id, topic=topic)
                self._refuse(route, topic, payload, f"codec error: {type(exc).__name__}: "
                             f"{exc}", now, dup)
                continue
            if dup:
                readings = self._not_taken(readings)
            if not readings:
                continue
            self._by_topic.setdefault(topic, []).extend(readings)
            self._count += len(readings)
            self.stats.readings += len(readings)
            newest = max(r.at for r in readings)
            seen = self._seen.get(route.meter_id)
            self._seen[route.meter_id] = newest if seen is None else max(seen, newest)
            self._wake.set()
        if self._count >= self._max:
            self._full.set()

    def _not_taken(self, readings: list[Reading]) -> list[Reading]:
        """A redelivered message's readings but those its series already took: older
        than the series' last read (fed again, they would be quarantined as stale).
        One at the last read's very instant goes on: the series drops it if identical
        and flags a conflict if not."""
        fresh = []
        for reading in readings:
            last = self._pipeline.last_read_at(reading.meter_id, (reading.channel,))
            if last is not None and reading.at < last:
                self.stats.replayed += 1
            else:
                fresh.append(reading)
        return fresh

    def _refuse(self, route: Route, topic: str, payload: bytes, reason: str,
                now: datetime, dup: bool) -> None:
        self._quarantine.append((QuarantineItem(
            at=now, source=f"mqtt:{topic}", payload=printable(payload), reason=reason,
            meter_id=route.meter_id), dup))
        self.stats.quarantined += 1
        self._wake.set()

    # -- feeding the pipeline

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._window_s)
            try:
                stored = await self._flush_safely()
            except Exception:  # a defect must not stop the input; the batch is logged lost
                _log.exception("MQTT readings could not be fed: this batch is lost")
                stored = False
            if not stored:
                await asyncio.sleep(1.0)  # the store refuses writes: retry, not spin

    async def _flush_safely(self) -> bool:
        """Flush, letting a flush that has begun finish even if we are cancelled: its
        readings are then either committed or back in the queue, never both."""
        task = asyncio.ensure_future(self._flush())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            raise

    async def _flush(self) -> bool:
        async with self._flushing:  # the stop's flush may meet the flusher's
            return await self._flush_gathered()

    async def _flush_gathered(self) -> bool:
        self._wake.clear()
        self._full.clear()
        upto = self._acks.mark()  # what is gathered so far: settled if all commits
        batches, self._by_topic, self._count = self._by_topic, {}, 0
        quarantine, self._quarantine = self._quarantine, []
        seen, self._seen = self._seen, {}
        now = self._clock.now()
        ok = True
        if quarantine:
            try:
                items = await self._not_held(quarantine)
                if items:
                    await self._store.write_intervals([], quarantine=items)
            except SinkError as exc:
                _log.error("cannot store quarantined payloads; kept to retry", error=str(exc),
                           payloads=len(quarantine))
                self._quarantine[:0] = quarantine
                ok = False
        for topic in list(batches):
            try:
                result = await self._pipeline.feed(batches[topic], source=f"mqtt:{topic}",
                                                   now=now)
            except SinkError as exc:
                _log.error("store write failed; readings kept to retry", error=str(exc),
                           topics=len(batches), retryable=exc.retryable)
                self._requeue(batches, seen)
                return False
            del batches[topic]
            self.stats.intervals += result.intervals
        if ok:
            self._acknowledge(self._acks.settle(upto))
        by_id = {r.meter_id: r for r in self._routes}
        for meter_id, at in seen.items():
            await self._status(by_id[meter_id], "ok", None, at)
        return ok

    async def _not_held(self, quarantine: list[tuple[QuarantineItem, bool]]
                        ) -> list[QuarantineItem]:
        """The refused payloads but redelivered ones the quarantine already holds (their
        first delivery was stored, its acknowledgement lost)."""
        if not any(again for _, again in quarantine):
            return [item for item, _ in quarantine]
        held = {_key(q) for q in await self._store.quarantined(limit=QUARANTINE_LOOKBACK)}
        return [item for item, again in quarantine if not (again and _key(item) in held)]

    def _acknowledge(self, deliveries: list[tuple[int, int]]) -> None:
        client = self._paho
        if client is None or not deliveries:
            return  # disconnected: the broker sends them again
        for mid, qos in deliveries:
            client.ack(mid, qos)
        self.stats.acked += len(deliveries)

    def _requeue(self, batches: dict[str, list[Reading]], seen: dict[str, datetime]) -> None:
        for topic, readings in batches.items():
            self._by_topic[topic] = readings + self._by_topic.get(topic, [])
        self._count = sum(len(r) for r in self._by_topic.values())
        for meter_id, at in seen.items():
            self._seen[meter_id] = max(at, self._seen.get(meter_id, at))
        if self._count > MAX_PENDING:
            _log.critical("pending MQTT readings over the limit: the oldest are lost",
                          pending=self._count, kept=MAX_PENDING)
            for topic in list(self._by_topic):
                excess = self._count - MAX_PENDING
                if excess <= 0:
                    break
                lost = self._by_topic[topic][:excess]
                del self._by_topic[topic][:excess]
                self._count -= len(lost)
        self._wake.set()

    # -- meter status

    async def _announce(self) -> None:
        """List every MQTT meter (status "unknown") before its first reading."""
        for route in self._routes:
            try:
                if await self._store.meter(route.meter_id) is None:
                    await self._status(route, "unknown", None, None)
            except GatewayError as exc:
                _log.error("cannot record meter status", meter_id=route.meter_id,
                           error=str(exc))

    async def _status(self, route: Route, status: str, error: str | None,
                      at: datetime | None) -> None:
        # As the poller: a change at once, an unchanged "ok" at most once a minute.
        now = self._clock.now()
        last = self._status_at.get(route.meter_id)
        if last is not None and last[0] == status and now - last[1] < STATUS_REFRESH:
            return
        self._status_at[route.meter_id] = (status, now)
        try:
            await self._store.set_meter_status(MeterStatus(
                meter_id=route.meter_id, timezone=route.timezone, status=status,
                last_read_at=at, last_error=error, protocol="mqtt",
                profile=route.codec_name))
        except GatewayError as exc:
            _log.error("cannot record meter status", meter_id=route.meter_id, error=str(exc))



def _key(item: QuarantineItem) -> tuple[str, str | None, str | None, str, str]:
    return (item.source, item.meter_id, item.channel, item.payload, item.reason)


def _manual_ack_client(client: aiomqtt.Client, redelivered: set[int]) -> paho.Client:
    """Turn on paho's manual acknowledgement and note which messages carry the DUP flag.

    aiomqtt 2.5 exposes neither (its Message has mid and qos, not dup), so this is the
    one place that reaches its private paho client, ``Client._client``. Called before
    connecting; paho then sends a PUBACK only from ``ack(mid, qos)``.
    """
    inner: paho.Client = client._client
    inner.manual_ack_set(True)
    deliver = inner.on_message

    def on_message(c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.dup:
            redelivered.add(message.mid)
        if deliver is not None:
            deliver(c, userdata, message)

    inner.on_message = on_message
    return inner
