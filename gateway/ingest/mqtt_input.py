"""MQTT meter input: one subscriber for all MQTT meters, feeding the pipeline.

The only module that imports aiomqtt (and paho). One connection to the [mqtt] broker
per gateway, MQTT v5 with a persistent session (clean_start false, a session expiry),
so QoS 1 readings published while the gateway restarts wait at the broker; a broker
that refuses v5 is spoken to in 3.1.1 (clean_session false). Every MQTT meter's topic
filter is subscribed at its qos; each message is decoded by every codec whose pattern
matches its topic (the pure codecs of ``gateway.drivers.mqtt``).

Readings are gathered for a short window (``window_s``, or until ``max_readings``) and
fed per topic (source ``mqtt:<topic>``), one store transaction each. A payload a codec
refuses (DataError) is quarantined with its reason and the payload (printable,
truncated): never a crash, never dropped silently. A message on a topic no meter
matches is ignored (counted). A retained message replayed on (re)subscribing is not a
new reading and is skipped (counted); live messages of a retained topic arrive with
retain unset and are taken.

The broker lost, the subscriber reconnects with jittered exponential backoff in real
time (not the gateway clock), logged once on failure and once on recovery; the MQTT
meters' status goes "failing" meanwhile. Messages are acknowledged when received (as
paho does): readings still in the window when the process dies are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import log
from gateway.clock import Clock
from gateway.drivers.mqtt.codecs import Codec
from gateway.errors import ConnectError, DataError, GatewayError, SinkError
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
                 window_s: float = 0.1, max_readings: int = 500,
                 backoff_base_s: float = 1.0, backoff_cap_s: float = 60.0) -> None:
        self._link = link
        self._routes = tuple(routes)
        self._pipeline = pipeline
        self._store = store
        self._clock = clock
        self._transitions = transitions
        self._window_s = window_s
        self._max = max_readings
        self._backoff = (backoff_base_s, backoff_cap_s)
        self._protocol = aiomqtt.ProtocolVersion.V5
        filters: dict[str, int] = {}
        for route in self._routes:
            key = route.codec.pattern.filter
            filters[key] = max(filters.get(key, 0), route.qos)
        self._filters = filters
        self._by_topic: dict[str, list[Reading]] = {}
        self._count = 0
        self._quarantine: list[QuarantineItem] = []
        self._seen: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._status_at: dict[str, tuple[str, datetime]] = {}
        #: Set while subscribed (tests wait on it).
        self.subscribed = asyncio.Event()
        self.stats = InputStats()

    async def run(self) -> None:
        """Subscribe and feed until cancelled; what is gathered is fed before returning."""
        await self._announce()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._flusher(), name="mqtt flush")
                await self._connect_loop()
        finally:
            try:
                await self._flush_safely()
            except GatewayError as exc:
                _log.error("readings not stored at stop", error=str(exc))

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
            async with self._client() as client:
                for topic_filter, qos in self._filters.items():
                    await client.subscribe(topic_filter, qos=qos)
                self.stats.connects += 1
                self._transitions.ok(self._link.device)
                _log.info("subscribed", broker=self._link.device, filters=len(self._filters),
                          protocol=self._protocol.name)
                self.subscribed.set()
                async for message in client.messages:
                    self._take(message)
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

    def _client(self) -> aiomqtt.Client:
        section = self._link.section
        v5 = self._protocol is aiomqtt.ProtocolVersion.V5
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = section.session_expiry_s
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
        routes = [r for r in self._routes if r.codec.pattern.match(topic) is not None]
        if not routes:
            self.stats.ignored += 1
            _log.debug("no meter reads this topic", topic=topic)
            return
        if message.retain:
            self.stats.retained += 1
            return
        now = self._clock.now()
        for route in routes:
            try:
                readings = route.codec.decode(topic, payload, now)
            except DataError as exc:
                self._refuse(route, topic, payload, str(exc), now)
                continue
            except Exception as exc:  # a codec defect must not stop the other meters
                _log.exception("codec failed", meter_id=route.meter_id, topic=topic)
                self._refuse(route, topic, payload, f"codec error: {type(exc).__name__}: "
                             f"{exc}", now)
                continue
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

    def _refuse(self, route: Route, topic: str, payload: bytes, reason: str,
                now: datetime) -> None:
        self._quarantine.append(QuarantineItem(
            at=now, source=f"mqtt:{topic}", payload=printable(payload), reason=reason,
            meter_id=route.meter_id))
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
        self._wake.clear()
        self._full.clear()
        batches, self._by_topic, self._count = self._by_topic, {}, 0
        quarantine, self._quarantine = self._quarantine, []
        seen, self._seen = self._seen, {}
        now = self._clock.now()
        ok = True
        if quarantine:
            try:
                await self._store.write_intervals([], quarantine=quarantine)
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
        by_id = {r.meter_id: r for r in self._routes}
        for meter_id, at in seen.items():
            await self._status(by_id[meter_id], "ok", None, at)
        return ok

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

