"""The simulated RTU bus as a peer for scans: units at other line settings on the same
pty answer only when the master's end is set to their speed and stop bits, and Read
Device Identification (43/14) is answered as each profile declares."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from gateway.clock import ManualClock
from gateway.drivers.modbus.device_id import DeviceIdParser, DeviceIdReply, DeviceIdRequest
from gateway.drivers.modbus.rtu import (
    LineSettings,
    NeedData,
    ReadRequest,
    Refusal,
    Registers,
    ReplyParser,
)
from gateway.drivers.modbus.serial_link import SerialStream
from gateway.profiles import modbus_profiles
from gateway.sim import MeterSpec
from gateway.sim.rtu_bus import serve_rtu_bus

PROFILES = modbus_profiles()
E9600 = LineSettings(9600, "E")
N9600_2 = LineSettings(9600, "N", 2)
N19200 = LineSettings(19200, "N", 1)


async def ask(path: str, line: LineSettings, request: ReadRequest | DeviceIdRequest,
              ) -> Registers | Refusal | DeviceIdReply | None:
    stream = SerialStream(path, line)
    await stream.open()
    parser = ReplyParser(request) if isinstance(request, ReadRequest) \
        else DeviceIdParser(request)
    try:
        await stream.write(request.frame)
        deadline = asyncio.get_running_loop().time() + 0.3
        while data := await stream.receive(deadline):
            parser.feed(data)
            event = parser.next_event()
            if not isinstance(event, NeedData):
                return event
        return None
    finally:
        stream.close()


async def test_units_answer_only_at_their_own_speed_and_stop_bits(tmp_path: Path) -> None:
    specs = [MeterSpec("sdm630", PROFILES["eastron_sdm630"], device_id=1)]
    others = [(N19200, [MeterSpec("b23", PROFILES["abb_b23"], device_id=2)])]
    async with serve_rtu_bus(specs, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), E9600,
                             link=tmp_path / "tty", others=others) as sim:
        read1, read2 = ReadRequest(1, "input", 0, 2), ReadRequest(2, "holding", 0x5B00, 2)
        assert isinstance(await ask(sim.path, E9600, read1), Registers)
        assert await ask(sim.path, E9600, read2) is None
        assert await ask(sim.path, N9600_2, read1) is None  # 2 stop bits: not its line
        assert isinstance(await ask(sim.path, N19200, read2), Registers)
        assert await ask(sim.path, N19200, read1) is None
        assert sim.mismatched == 3
        assert (sim.requests(1), sim.requests(2)) == (1, 1)


async def test_device_identification_as_the_profile_declares(tmp_path: Path) -> None:
    specs = [MeterSpec("iem", PROFILES["schneider_iem3155"], device_id=3),
             MeterSpec("sdm", PROFILES["eastron_sdm120"], device_id=4)]
    async with serve_rtu_bus(specs, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), E9600,
                             link=tmp_path / "tty") as sim:
        reply = await ask(sim.path, E9600, DeviceIdRequest(3))
        assert isinstance(reply, DeviceIdReply)
        assert reply.named() == (("VendorName", "Schneider Electric"),
                                 ("ProductCode", "A9MEM3155"),
                                 ("MajorMinorRevision", "1.0.0"))
        # A profile without device identification: exception 1, illegal function.
        assert await ask(sim.path, E9600, DeviceIdRequest(4)) == Refusal(code=1)
        assert await ask(sim.path, E9600, DeviceIdRequest(9)) is None  # nobody there
