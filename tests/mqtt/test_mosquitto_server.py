"""The test broker harness itself: the async wrapper starts and stops a real Mosquitto."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.mosquitto_server import mosquitto_server


async def test_async_wrapper_serves_then_stops(tmp_path: Path) -> None:
    async with mosquitto_server(tmp_path, persistence=False) as broker:
        _, writer = await asyncio.open_connection(broker.host, broker.port)
        writer.close()
        await writer.wait_closed()
        assert "running" in broker.log()
    with pytest.raises(OSError):
        socket.create_connection((broker.host, broker.port), timeout=0.5).close()
    assert not (tmp_path / "data" / "mosquitto.db").exists()  # persistence off: nothing saved
