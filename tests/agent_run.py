"""The running gateway in a test: an ``Agent`` from a config file, started in this event
loop, yielded once its API listens, stopped (and its failure raised) on the way out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from edge.agent import Agent
from edge.assembly import assemble
from gateway.clock import Clock, SystemClock
from gateway.settings import load_config


@asynccontextmanager
async def running_agent(config: Path, clock: Clock | None = None,
                        start_s: float = 10) -> AsyncIterator[Agent]:
    agent = Agent(assemble(load_config(config)), clock or SystemClock())
    ready = asyncio.Event()

    async def started(_: Agent) -> None:
        ready.set()

    task = asyncio.create_task(agent.run(started=started))
    try:
        waiting = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({task, waiting}, timeout=start_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if task in done:  # it ended before it listened: say why
            task.result()
            raise AssertionError("the agent stopped before its API listened")
        if not done:
            raise AssertionError(f"the agent's API did not listen within {start_s} s")
        yield agent
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):  # any other failure of the agent is raised
            await task
