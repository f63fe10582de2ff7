"""The edge agent: pollers for every configured meter, the pipeline, the store and the
portal API, run together until stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import uvicorn

from edge.assembly import Assembly, build_driver
from gateway import log
from gateway.api.app import create_app
from gateway.clock import Clock
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.poller import Poller
from gateway.store.sqlite import SqliteStore

_log = log.get("edge.agent")


class Agent:
    """Owns the store, the pollers and the API server of one gateway."""

    def __init__(self, assembly: Assembly, clock: Clock) -> None:
        self.assembly = assembly
        self.clock = clock
        cfg = assembly.config
        self.store = SqliteStore(cfg.store_path, synchronous=cfg.settings.store.synchronous)
        self.pollers: list[Poller] = []
        self.api_port: int | None = None
        self._server: uvicorn.Server | None = None

    async def run(self, *, started: Callable[[Agent], Awaitable[None]] | None = None) -> None:
        """Run until cancelled. ``started`` is awaited once the API listens."""
        settings = self.assembly.config.settings
        async with AsyncExitStack() as stack:
            await self.store.open()
            stack.push_async_callback(self.store.close)
            pipeline = await Pipeline.open(self.store, self.assembly.series())
            transitions = log.Transitions(_log)
            for plan in self.assembly.meters:
                self.pollers.append(Poller(
                    meter_id=plan.meter.meter_id, timezone=plan.timezone,
                    protocol=plan.meter.protocol, profile=plan.profile.name,
                    driver=build_driver(plan, self.clock), pipeline=pipeline, store=self.store,
                    clock=self.clock, interval_s=plan.meter.poll_interval_s,
                    transitions=transitions,
                ))
            async with asyncio.TaskGroup() as tg:
                for poller in self.pollers:
                    tg.create_task(poller.run(), name=f"poll {poller.meter_id}")
                if settings.api.enabled:
                    await self._start_api(tg)
                _log.info("gateway running", meters=len(self.pollers), api_port=self.api_port,
                          store=str(self.store.path))
                if started is not None:
                    await started(self)

    async def _start_api(self, tg: asyncio.TaskGroup) -> None:
        api = self.assembly.config.settings.api
        config = uvicorn.Config(
            create_app(self.store), host=api.host, port=api.port, log_config=None,
            access_log=False, lifespan="off",
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._server = server
        tg.create_task(server.serve(), name="api")
        while not server.started:
            if server.should_exit:
                raise OSError(f"the portal API could not listen on {api.host}:{api.port}")
            await asyncio.sleep(0.02)
        sock = server.servers[0].sockets[0]
        self.api_port = int(sock.getsockname()[1])
