"""A serial port on a pseudo-terminal opens again at the same even-parity setting.

Linux keeps no parity on a pty and refuses (EINVAL) a termios change that changes
nothing it keeps; opening at 8E1 a second time used to escape as a raw termios error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.clock import ManualClock
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.serial_link import SerialStream
from gateway.sim.rtu_bus import serve_rtu_bus


async def test_pty_opens_again_at_8e1(tmp_path: Path) -> None:
    line = LineSettings(9600, "E")
    async with serve_rtu_bus([], ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), line,
                             link=tmp_path / "tty") as sim:
        for _ in range(3):
            stream = SerialStream(sim.path, line)
            await stream.open()
            assert stream.is_open
            stream.close()
