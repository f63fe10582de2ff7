"""The edge agent: pollers for every polled meter, the pipeline, the store and the
portal API, run together until stopped. Manual meters get no poller: their readings
come in as self-reads (``POST /api/v1/meters/{id}/readings``, ``ami-gateway self-read``).
MQTT meters get none either: one subscriber to the [mqtt] broker feeds their readings
(``gateway.ingest.mqtt_input``) into the pollers' pipeline."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import uvicorn

from edge.assembly import Assembly, build_driver
from gateway import log
from gateway.api.app import create_app
from gateway.clock import Clock, SystemClock
from gateway.drivers.modbus.bus import BusPool
from gateway.errors import ConfigError, SinkError
from gateway.ingest.delivery import Delivery
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.poller import Poller
from gateway.ingest.selfread import SelfReads
from gateway.notify.letters import MailOut
from gateway.settings import DlmsMeterConfig
from gateway.settings_sinks import InfluxSinkConfig
from gateway.status import StatusView, gateway_status
from gateway.store import Store
from gateway.store.sqlite import SqliteStore

if TYPE_CHECKING:  # aiomqtt is imported only when a meter publishes over MQTT
    from gateway.ingest.mqtt_input import MqttSubscriber
    from gateway.notify.task import Notifications

_log = log.get("edge.agent")


class Agent:
    """Owns the store, the pollers and the API server of one gateway."""

    def __init__(self, assembly: Assembly, clock: Clock) -> None:
        self.assembly = assembly
        self.clock = clock
        cfg = assembly.config
        self.store = SqliteStore(cfg.store_path, synchronous=cfg.settings.store.synchronous)
        self.pollers: list[Poller] = []
        #: The MQTT meters' subscriber; None without MQTT meters.
        self.mqtt_input: MqttSubscriber | None = None
        self.self_reads = SelfReads(assembly, self.store, clock)
        self.api_port: int | None = None
        self._server: uvicorn.Server | None = None
        #: One delivery task per configured sink (the outbox's consumers).
        self.deliveries: list[Delivery] = []
        #: The outbox's depth (the deepest sink's) and whether it is past its limits.
        self.outbox_depth = 0
        self.outbox_alarm = False
        self.outbox_paused = False
        self._portal: Store = self.store
        #: The usage notifications' task; None without a [notify] section.
        self.notifications: Notifications | None = None

    async def run(self, *, started: Callable[[Agent], Awaitable[None]] | None = None) -> None:
        """Run until cancelled. ``started`` is awaited once the API listens."""
        settings = self.assembly.config.settings
        async with AsyncExitStack() as stack:
            await self.store.open()
            stack.push_async_callback(self.store.close)
            await self._sinks()
            if settings.api.enabled:
                self._portal = await self._portal_store(stack)
            # The pollers' pipeline holds only their series: a manual meter's series is
            # restored from the store at each self-read (another process may write it).
            pipeline = await Pipeline.open(
                self.store, self.assembly.polled_series() + self.assembly.pushed_series())
            await self.self_reads.open()
            transitions = log.Transitions(_log)
            buses = BusPool()  # one owner per serial port, shared by its meters
            stack.push_async_callback(buses.close)
            for plan in self.assembly.meters:
                can_wait = isinstance(plan.meter, DlmsMeterConfig) or not plan.meter.billing
                self.pollers.append(Poller(
                    meter_id=plan.meter.meter_id, timezone=plan.timezone,
                    protocol=plan.meter.protocol, profile=plan.profile.name,
                    driver=build_driver(plan, self.clock, buses, cursor=pipeline.last_read_at),
                    pipeline=pipeline,
                    store=self.store, clock=self.clock, interval_s=plan.meter.poll_interval_s,
                    transitions=transitions,
                    paused=(lambda: self.outbox_paused) if can_wait else None,
                ))
            self.mqtt_input = self._mqtt_input(pipeline, transitions)
            self.notifications = self._notifications()
            # Bind before any task starts, so a busy port is a plain ConfigError.
            sock = _listen(settings.api.host, settings.api.port, self.assembly.config.file) \
                if settings.api.enabled else None
            try:
                token = self.assembly.config.operator_token() if sock is not None else None
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
            async with asyncio.TaskGroup() as tg:
                for poller in self.pollers:
                    tg.create_task(poller.run(), name=f"poll {poller.meter_id}")
                for delivery in self.deliveries:
                    tg.create_task(delivery.run(), name=f"deliver {delivery.sink.name}")
                if self.deliveries:
                    tg.create_task(self._watch_outbox(), name="outbox")
                if self.mqtt_input is not None:
                    tg.create_task(self.mqtt_input.run(), name="mqtt input")
                if self.notifications is not None:
                    tg.create_task(self.notifications.run(), name="notifications")
                if sock is not None:
                    await self._start_api(tg, sock, token)
                _log.info("gateway running", meters=len(self.pollers),
                          manual_meters=len(self.assembly.manual),
                          mqtt_meters=len(self.assembly.mqtt), api_port=self.api_port,
                          store=str(self.store.path))
                if started is not None:
                    await started(self)

    def _mqtt_input(self, pipeline: Pipeline,
                    transitions: log.Transitions) -> MqttSubscriber | None:
        link = self.assembly.mqtt_link
        if not self.assembly.mqtt or link is None:
            return None
        from gateway.ingest.mqtt_input import MqttSubscriber, Route

        routes = [Route(meter_id=p.meter.meter_id, timezone=p.timezone,
                        codec_name=p.meter.codec, codec=p.codec, qos=p.meter.qos)
                  for p in self.assembly.mqtt]
        return MqttSubscriber(link=link, routes=routes, pipeline=pipeline, store=self.store,
                              clock=self.clock, transitions=transitions)

    def _notifications(self) -> Notifications | None:
        config = self.assembly.config
        section = config.settings.notify
        if section is None:
            return None
        from gateway.notify.task import Notifications
        from gateway.settings_notify import smtp_notifier

        customers = config.settings.api.customers
        # With customer access on, each notice carries an unsubscribe link to the portal.
        return Notifications(self.store, smtp_notifier(section, config.file), self.clock,
                             every_s=section.every_s,
                             accounts=self.store if customers else None,
                             unsubscribes=self.store if customers else None,
                             public_url=section.public_url)

    def _mail(self) -> MailOut | None:
        """How the portal sends its own mails (confirmations, resets): [notify]'s server."""
        config = self.assembly.config
        section = config.settings.notify
        if section is None or not config.settings.api.customers:
            return None
        from gateway.settings_notify import smtp_notifier

        return MailOut(smtp_notifier(section, config.file), section.public_url)

    async def _sinks(self) -> None:
        """Declare the configured sinks in the store and build their deliveries."""
        config = self.assembly.config
        names = [s.name for s in config.settings.sinks]
        for name, left in (await self.store.use_sinks(names)).items():
            _log.warning("sink no longer configured: what it had not taken stays in the "
                         "store only", sink=name, undelivered=left)
        if not names:
            return
        from gateway.sinks.build import batch_size, build_sinks

        for sink, cfg in zip(build_sinks(config, self.store), config.settings.sinks,
                             strict=True):
            self.deliveries.append(Delivery(self.store, sink, batch_size=batch_size(cfg)))

    async def _portal_store(self, stack: AsyncExitStack) -> Store:
        """The local store, or with api.backend naming an InfluxDB sink, InfluxDB for
        intervals and daily usage (gateway.store.portal)."""
        config = self.assembly.config
        backend = config.settings.api.backend
        if backend == "sqlite":
            return self.store
        from gateway.sinks.influx_sink import influx_auth
        from gateway.store.influx import InfluxReader
        from gateway.store.portal import InfluxPortalStore

        i, sink = next((i, s) for i, s in enumerate(config.settings.sinks)
                       if s.name == backend and isinstance(s, InfluxSinkConfig))
        reader = InfluxReader(sink.url, sink.database,
                              auth=influx_auth(config, sink, f"sinks[{i}]"),
                              retention_policy=sink.retention_policy)
        portal = InfluxPortalStore(self.store, reader)
        await portal.open()
        stack.push_async_callback(portal.close)
        return portal

    async def status(self) -> StatusView:
        live = {d.sink.name: d.stats for d in self.deliveries}
        return await gateway_status(self.store, self.assembly.config.settings.outbox, live)

    async def _watch_outbox(self, every_s: float = 2.0) -> None:
        """Follow the outbox's depth: an alarm past alarm_depth, a pause of the meters that
        can wait past pause_depth (lifted once it is back under alarm_depth)."""
        limits = self.assembly.config.settings.outbox
        while True:
            try:
                depth = max((s.depth for s in await self.store.outbox_status()), default=0)
            except SinkError as exc:
                _log.error("cannot read the outbox's depth", error=str(exc))
                await asyncio.sleep(every_s)
                continue
            self.outbox_depth = depth
            alarm = depth >= limits.alarm_depth
            if alarm != self.outbox_alarm:
                self.outbox_alarm = alarm
                if alarm:
                    _log.critical("outbox past its alarm depth: a sink is not keeping up; "
                                  "nothing is dropped", depth=depth,
                                  alarm_depth=limits.alarm_depth)
                else:
                    _log.info("outbox back under its alarm depth", depth=depth)
            if depth >= limits.pause_depth and not self.outbox_paused:
                self.outbox_paused = True
                _log.critical("outbox past its pause depth: DLMS meters and meters with "
                              "billing = false are not read until it drains (DLMS meters "
                              "keep their data)", depth=depth, pause_depth=limits.pause_depth)
            elif self.outbox_paused and depth < limits.alarm_depth:
                self.outbox_paused = False
                _log.info("outbox drained: every meter is read again", depth=depth)
            await asyncio.sleep(every_s)

    async def _start_api(self, tg: asyncio.TaskGroup, sock: socket.socket,
                         token: str | None) -> None:
        # The socket is bound by us rather than by uvicorn, which would exit the process.
        self.api_port = int(sock.getsockname()[1])
        customers = self.assembly.config.settings.api.customers
        app = create_app(self._portal, operator_token=token, self_reads=self.self_reads,
                         daily_limits=self.assembly.daily_limits(), status=self.status,
                         clock=self.clock, accounts=self.store if customers else None,
                         mail=self._mail(), session_clock=SystemClock())
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        self._server = server
        tg.create_task(server.serve(sockets=[sock]), name="api")
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.02)


def _listen(host: str, port: int, file: object) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(
            f"the portal API cannot listen on {host}:{port}: {exc.strerror or exc}",
            file=str(file), key="api.port",
            fix="choose a free port (the demo takes --port), or stop what holds it",
        ) from exc
    sock.setblocking(False)
    return sock
