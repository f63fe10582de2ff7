"""The agent runs the notification task when [notify] is configured, and not without it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.agent import Agent
from edge.assembly import assemble
from gateway.clock import ManualClock
from gateway.model import IntervalReading, MeterStatus, Unit
from gateway.notify.rules import SubscriptionFields
from gateway.settings import load_config
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from tests.notify.smtp_server import smtp_server

CH = "1.0.1.8.0.255"
DAY = datetime(2026, 5, 4, tzinfo=UTC)


async def seed(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.register_series(SeriesInfo(meter_id="M1", channel=CH, unit=Unit.WH,
                                           interval_s=900, timezone="UTC"))
    await store.set_meter_status(MeterStatus(meter_id="M1", timezone="UTC", status="ok",
                                             last_read_at=DAY + timedelta(hours=23)))
    await store.add_notification("M1", SubscriptionFields(
        kind="daily_above", address="c@example.org", threshold_wh=500), at=DAY)
    await store.write_intervals([
        IntervalReading(meter_id="M1", channel=CH, start=DAY + timedelta(minutes=15 * i),
                        length_s=900, value=10, unit=Unit.WH) for i in range(96)])
    await store.close()


def config(tmp_path: Path, notify: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\ndata_dir = "data"\n[store]\nsynchronous = "NORMAL"\n'
                    "[api]\nenabled = false\n" + notify)
    return path


async def test_the_agent_sends_due_notices(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    await seed(tmp_path / "data" / "store.db")
    clock = ManualClock(DAY + timedelta(days=1, hours=7))
    async with smtp_server() as inbox:
        cfg = config(tmp_path, f'[notify]\nsmtp_host = "127.0.0.1"\nsmtp_port = {inbox.port}\n'
                               'sender = "gw@example.org"\nstarttls = false\n')
        agent = Agent(assemble(load_config(cfg)), clock)
        task = asyncio.create_task(agent.run())
        try:
            async with asyncio.timeout(3):
                # Until the send is stored, not only received: the server has the message
                # before the gateway has its reply.
                while agent.notifications is None or not agent.notifications.sent:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert agent.notifications is not None and agent.notifications.sent == 1
    [msg] = inbox.messages
    assert "2026-05-04" in msg["Subject"] and msg["To"] == "c@example.org"


async def test_no_task_without_notify(tmp_path: Path) -> None:
    agent = Agent(assemble(load_config(config(tmp_path, ""))), ManualClock(DAY))
    ready = asyncio.Event()

    async def started(_: Agent) -> None:
        ready.set()

    task = asyncio.create_task(agent.run(started=started))
    await asyncio.wait_for(ready.wait(), 3)
    assert agent.notifications is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
