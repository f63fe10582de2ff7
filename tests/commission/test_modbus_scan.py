"""Modbus scans against simulated buses: RTU peers on a pty at different unit ids and
line settings, and Modbus TCP endpoints. What is found must be exactly what is there,
at the right setting, with the right identity and profile."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.commission.modbus_scan import ScanState, scan_serial, scan_tcp
from gateway.commission.scan_plan import ScanPlan, line_text
from gateway.drivers.modbus.rtu import LineSettings
from gateway.drivers.modbus.serial_link import SerialStream
from gateway.profiles import modbus_profiles
from gateway.sim import MeterSpec, serve_meters
from gateway.sim.rtu_bus import Faults, RtuBus, serve_rtu_bus

PROFILES = modbus_profiles()
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
E9600 = LineSettings(9600, "E")
N9600_2 = LineSettings(9600, "N", 2)
N19200 = LineSettings(19200, "N", 1)


def bus_specs() -> list[MeterSpec]:
    return [MeterSpec("sdm630", PROFILES["eastron_sdm630"], seed=1, device_id=1,
                      serial=20240101),
            MeterSpec("em340", PROFILES["carlo_gavazzi_em340"], seed=2, device_id=5),
            MeterSpec("iem3155", PROFILES["schneider_iem3155"], seed=3, device_id=12,
                      serial=88812)]


def other_line() -> list[tuple[LineSettings, list[MeterSpec]]]:
    return [(N19200, [MeterSpec("b23", PROFILES["abb_b23"], seed=4, device_id=20,
                                serial=31415926)])]


def plan(lines: tuple[LineSettings, ...], ids: range, **kwargs: object) -> ScanPlan:
    return ScanPlan.for_profiles(PROFILES.values(), lines=lines, ids=ids, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[RtuBus]:
    async with serve_rtu_bus(bus_specs(), ManualClock(START), E9600, link=tmp_path / "tty",
                             others=other_line()) as bus:
        yield bus


async def test_scan_finds_each_device_at_its_setting_and_names_it(sim: RtuBus) -> None:
    seen: list[tuple[str, int, int]] = []
    summary = await scan_serial(sim.path, plan((E9600, N9600_2, N19200), range(1, 26)),
                                PROFILES, progress=lambda *a: seen.append(a))
    found = {(d.unit_id, d.line.text() if d.line else None): d for d in summary.found}
    # Ids 2-4, 6-11, 13-19 and 21-25 are silent; 20 answers only at 19200 8N1.
    assert sorted(found) == [(1, "9600 8E1"), (5, "9600 8E1"), (12, "9600 8E1"),
                             (20, "19200 8N1")]
    sdm, em, iem, abb = (found[key] for key in sorted(found))
    assert (sdm.profile, sdm.candidates) == ("eastron_sdm630",
                                             ("eastron_sdm120", "eastron_sdm230"))
    assert (sdm.identity.source, sdm.identity.serial) == ("signature", "20240101")
    assert "refused: illegal function" in sdm.notes[0]
    assert (em.profile, em.candidates, em.identity.vendor) == (
        "carlo_gavazzi_em340", (), "Carlo Gavazzi")
    # The iEM3155 answers 43/14 with its catalogue number.
    assert (iem.identity.source, iem.identity.vendor, iem.identity.model) == (
        "modbus_device_id", "Schneider Electric", "A9MEM3155")
    assert (iem.profile, iem.identity.serial) == ("schneider_iem3155", "88812")
    assert (abb.profile, abb.identity.serial, abb.protocol) == ("abb_b23", "31415926",
                                                               "modbus_rtu")
    # Later settings probe only the ids still silent; 8N2 finds nobody (stop bits differ).
    assert summary.settings_tried == ("9600 8E1", "9600 8N2", "19200 8N1")
    assert summary.ids_tried == 25 + 22 + 22
    assert not summary.interrupted and summary.notes == ()
    assert sim.mismatched > 0  # the ABB heard 9600 probes and kept quiet
    # Progress: counts rise to the total; the last call says done.
    assert seen[-1][1] == seen[-1][2] == summary.ids_tried
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)
    # The floor: every probe's request plus timeout, exactly as planned.
    timeouts = {line_text(line): plan((line,), range(1, 2)).timing(line).per_id_s
                for line in (E9600, N9600_2, N19200)}
    assert summary.floor_s == pytest.approx(float(
        25 * timeouts["9600 8E1"] + 22 * timeouts["9600 8N2"] + 22 * timeouts["19200 8N1"]))
    assert summary.probing_s is not None and summary.probing_s <= summary.elapsed_s


async def test_garbage_and_broken_replies_are_no_device(tmp_path: Path) -> None:
    async with serve_rtu_bus(bus_specs(), ManualClock(START), E9600, link=tmp_path / "tty",
                             others=other_line(), garbage_on_mismatch=True) as sim:
        # At 19200 the 9600 devices answer what a UART makes of a wrong speed.
        summary = await scan_serial(sim.path, plan((N19200,), range(1, 21)), PROFILES,
                                    identify_found=False)
        assert [d.unit_id for d in summary.found] == [20]
        assert len(summary.notes) == 1 and summary.notes[0].startswith("noise at 19200 8N1")
        # At 9600 a reply with a broken CRC is noted, not counted.
        sim.set_faults(5, Faults(corrupt_crc=True))
        summary = await scan_serial(sim.path, plan((E9600,), range(4, 7)), PROFILES,
                                    identify_found=False)
        assert summary.found == ()
        assert summary.notes[0].startswith("noise at 9600 8E1: 7 bytes")


async def test_a_late_reply_is_named_not_lost_nor_taken_for_the_next_id(sim: RtuBus) -> None:
    # Unit 5 answers its probe 120 ms late: past the 74 ms timeout, during unit 6's wait.
    sim.set_faults(5, Faults(late_s=0.12, times=1))
    summary = await scan_serial(sim.path, plan((E9600,), range(4, 9)), PROFILES,
                                identify_found=False)
    assert summary.found == ()
    assert summary.notes == ("unit 5 answered at 9600 8E1 after the timeout: it is there "
                             "but slower than the profiles' turnaround; scan it again with "
                             "a larger margin",)


def _open_fds_on(path: str) -> int:
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
        except OSError:
            continue
    return count


async def test_cancelled_scan_keeps_what_it_found_and_closes_the_port(sim: RtuBus) -> None:
    baseline = _open_fds_on(sim.path)  # the simulator's own end
    state = ScanState()
    reached = asyncio.Event()

    def progress(what: str, done: int, total: int) -> None:
        if done >= 8:
            reached.set()

    task = asyncio.create_task(scan_serial(sim.path, plan((E9600,), range(1, 248)), PROFILES,
                                           state=state, progress=progress))
    await reached.wait()
    assert _open_fds_on(sim.path) == baseline + 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [d.unit_id for d in state.found] == [1, 5]
    assert state.found[0].profile == "eastron_sdm630"
    summary = state.summary(interrupted=True)
    assert summary.interrupted and summary.ids_tried == 8 and len(summary.found) == 2
    assert _open_fds_on(sim.path) == baseline
    # Nobody holds the port: an exclusive open succeeds.
    stream = SerialStream(sim.path, E9600)
    await stream.open()
    stream.close()


async def test_first_line_only_stops_after_the_setting_that_found_devices(
        sim: RtuBus) -> None:
    summary = await scan_serial(sim.path, plan((E9600, N19200), range(1, 6),
                                               first_line_only=True),
                                PROFILES, identify_found=False)
    assert summary.settings_tried == ("9600 8E1",)
    assert [d.unit_id for d in summary.found] == [1, 5]
    assert all(d.profile is None and d.identity.source == "none" for d in summary.found)


async def test_tcp_scan_finds_the_unit_ids_behind_an_endpoint() -> None:
    specs = [MeterSpec("sdm630", PROFILES["eastron_sdm630"], device_id=3, serial=777),
             MeterSpec("em340", PROFILES["carlo_gavazzi_em340"], device_id=1)]
    async with serve_meters(specs, ManualClock(START)) as meters:
        first = await scan_tcp(meters[0].host, meters[0].port, range(1, 11), PROFILES)
        (device,) = first.found
        assert (device.unit_id, device.protocol, device.line) == (3, "modbus_tcp", None)
        assert (device.profile, device.identity.serial) == ("eastron_sdm630", "777")
        assert first.ids_tried == 10 and first.address == f"127.0.0.1:{meters[0].port}"
        second = await scan_tcp(meters[1].host, meters[1].port, range(1, 4), PROFILES)
        assert [(d.unit_id, d.profile) for d in second.found] == [(1, "carlo_gavazzi_em340")]
