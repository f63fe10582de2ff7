"""Self-reads end to end on a real SQLite store: recorded through the pipeline, refused
into the quarantine, idempotent, and never written over another process's reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from edge.assembly import Assembly, assemble
from gateway.clock import ManualClock
from gateway.errors import SinkError
from gateway.ingest.selfread import SelfReadRefused, SelfReads
from gateway.ingest.series import SeriesState
from gateway.model import Flag, Quality
from gateway.settings import load_config
from gateway.store.sqlite import SqliteStore
from gateway.validation.selfread import Code, Outcome

CHANNEL = "1.0.1.8.0.255"
START = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)  # 08:00 in Chicago
CONFIG = """
[gateway]
data_dir = "data"
timezone = "America/Chicago"
[store]
synchronous = "NORMAL"
{self_reads}
[[meters]]
meter_id = "P1"
profile = "eastron_sdm120"
host = "127.0.0.1"
[[meters]]
meter_id = "H4"
protocol = "manual"
max_power_w = 10000
registers = [{{ digits = 4 }}, {{ channel = "1.0.1.8.2.255", digits = 6, decimals = 1 }}]
[[meters]]
meter_id = "H5"
protocol = "manual"
max_power_w = 10000
registers = [{{ digits = 5 }}]
"""


def assembly_of(tmp_path: Path, self_reads: str = "") -> Assembly:
    path = tmp_path / "site.toml"
    path.write_text(CONFIG.format(self_reads=self_reads))
    return assemble(load_config(path))


class Gateway:
    """One process's view: its own store connections and self-read service."""

    def __init__(self, assembly: Assembly, clock: ManualClock) -> None:
        self.store = SqliteStore(assembly.config.store_path, synchronous="NORMAL")
        self.self_reads = SelfReads(assembly, self.store, clock)

    async def __aenter__(self) -> Gateway:
        await self.store.open()
        await self.self_reads.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    async def state(self, meter: str, channel: str = CHANNEL) -> SeriesState:
        saved = await self.store.cursor(meter, channel)
        assert saved is not None
        return msgspec.msgpack.decode(saved, type=SeriesState)

    async def total(self, meter: str, channel: str = CHANNEL) -> int:
        rows = await self.store.intervals(meter, channel, START - timedelta(days=400),
                                          START + timedelta(days=400))
        return sum(iv.value for iv in rows)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START + timedelta(days=30))


@pytest.fixture
async def gw(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Gateway]:
    async with Gateway(assembly_of(tmp_path), clock) as g:
        yield g


async def refused(gw: Gateway, *args: object, **kwargs: object) -> SelfReadRefused:
    with pytest.raises(SelfReadRefused) as err:
        await gw.self_reads.submit(*args, **kwargs)  # type: ignore[arg-type]
    return err.value


async def test_the_peers_failure_a_four_digit_wrap_is_fourteen_units(gw: Gateway) -> None:
    first = await gw.self_reads.submit("H4", "9993", at=START, submitted_by="dana")
    assert (first.recorded, first.outcome, first.intervals) == (True, Outcome.BASELINE, 0)
    wrap = await gw.self_reads.submit("H4", "0007", at=START + timedelta(days=1))
    assert (wrap.outcome, wrap.consumption, wrap.previous_value) == (
        Outcome.ROLLOVER, Decimal(14), Decimal(9993))
    assert wrap.flags & Flag.ROLLOVER and wrap.flags & Flag.GAP_SPANNED
    assert wrap.intervals == 96 and wrap.quality is Quality.ESTIMATED_LINEAR
    assert await gw.total("H4") == 14_000  # Wh: exactly the wrap, nothing lost or invented
    rows = await gw.store.intervals("H4", CHANNEL, START, START + timedelta(days=1))
    assert all(iv.quality is Quality.ESTIMATED_LINEAR for iv in rows)
    events = [e for e in await gw.store.events("H4") if e.kind == "self_read"]
    assert [e.payload for e in events] == ["self-read by dana: 9993 kWh",
                                           "self-read by unnamed: 7 kWh"]
    status = await gw.store.meter("H4")
    assert status is not None and (status.status, status.protocol) == ("ok", "manual")
    assert status.last_read_at == START + timedelta(days=1)


async def test_a_five_digit_wrap_and_a_register_with_a_decimal_dial(gw: Gateway) -> None:
    await gw.self_reads.submit("H5", "99950", at=START)
    got = await gw.self_reads.submit("H5", "00030", at=START + timedelta(days=3))
    assert (got.outcome, got.consumption) == (Outcome.ROLLOVER, Decimal(80))
    await gw.self_reads.submit("H4", "99999.9", channel="1.0.1.8.2.255", at=START)
    got = await gw.self_reads.submit("H4", "0000.4", channel="1.0.1.8.2.255",
                                     at=START + timedelta(hours=1))
    assert got.consumption == Decimal("0.5")
    assert await gw.total("H4", "1.0.1.8.2.255") == 500


async def test_a_refused_reading_is_quarantined_and_never_left_held(gw: Gateway) -> None:
    await gw.self_reads.submit("H4", "9000", at=START)
    before = await gw.state("H4")
    err = await refused(gw, "H4", "8000", at=START + timedelta(days=3), submitted_by="sam")
    assert err.refusal.code is Code.LOWER_THAN_LAST
    assert "roll-over past 9,999 would mean 9,000 kWh in 3 days" in err.refusal.message
    err = await refused(gw, "H4", "9900", at=START + timedelta(hours=2))
    assert err.refusal.code is Code.IMPLAUSIBLE_JUMP
    after = await gw.state("H4")
    assert after == before and after.held is None and after.tracker.held_at_ms is None
    [jump, drop] = await gw.store.quarantined()
    assert (drop.source, drop.meter_id, drop.channel) == ("self-read", "H4", "")
    assert drop.reason.startswith("lower_than_last: 8,000 kWh is lower than")
    assert drop.payload == f"H4,,{(START + timedelta(days=3)).isoformat()},8000,by sam"
    assert jump.reason.startswith("implausible_jump: 900 kWh in 2 hours")
    # The next honest reading continues from 9000 as if nothing had been typed in between.
    ok = await gw.self_reads.submit("H4", "9100", at=START + timedelta(days=4))
    assert ok.consumption == 100 and await gw.total("H4") == 100_000


@pytest.mark.parametrize(("meter", "value", "channel", "code"), [
    ("NOPE", "1", None, Code.UNKNOWN_METER),
    ("H4", "1", "9.9.9.9.9.9", Code.UNKNOWN_CHANNEL),
    ("P1", "1", None, Code.POLLED_METER),
    ("H4", "one", None, Code.NOT_A_NUMBER),
    ("H4", "-1", None, Code.NEGATIVE),
    ("H4", "10000", None, Code.TOO_MANY_DIGITS),
])
async def test_refusals_before_the_series_is_touched(gw: Gateway, meter: str, value: str,
                                                     channel: str | None, code: Code) -> None:
    err = await refused(gw, meter, value, channel=channel)
    assert err.refusal.code is code
    [kept] = await gw.store.quarantined()
    assert kept.reason.startswith(f"{code}: ") and kept.source == "self-read"
    assert await gw.store.cursor("H4", CHANNEL) is None


async def test_a_polled_meter_says_why_it_takes_no_self_reads(gw: Gateway) -> None:
    err = await refused(gw, "P1", "5")
    assert "race its poller's cursor" in err.refusal.message
    assert 'manual meters (protocol = "manual") only' in err.refusal.message


async def test_the_same_reading_twice_is_recorded_once(gw: Gateway) -> None:
    await gw.self_reads.submit("H4", "100", at=START)
    at = START + timedelta(days=5)
    first = await gw.self_reads.submit("H4", "350", at=at)
    again = await gw.self_reads.submit("H4", "350", at=at)
    assert (first.recorded, again.recorded, again.outcome) == (True, False, Outcome.DUPLICATE)
    assert "already recorded" in again.message
    assert await gw.total("H4") == 250_000 and await gw.store.quarantined() == []
    assert len([e for e in await gw.store.events("H4") if e.kind == "self_read"]) == 2
    other = await refused(gw, "H4", "351", at=at)
    assert other.refusal.code is Code.CONFLICTING_READ


async def test_a_late_reading_that_fits_a_gap_re_derives_it(gw: Gateway) -> None:
    await gw.self_reads.submit("H4", "100", at=START)
    await gw.self_reads.submit("H4", "300", at=START + timedelta(days=10))
    # Read on day 2, typed in after day 10 was: it fits between them, and splits the gap.
    late = await gw.self_reads.submit("H4", "190", at=START + timedelta(days=2))
    assert (late.recorded, late.outcome, late.consumption) == (True, Outcome.LATE, None)
    assert late.intervals > 0 and late.flags & Flag.GAP_SPANNED
    status = await gw.store.meter("H4")
    assert status is not None and status.last_read_at == START + timedelta(days=10)
    day = await gw.store.intervals("H4", CHANNEL, START, START + timedelta(days=2))
    assert sum(iv.value for iv in day) == 90_000  # the gap re-derived with the late read
    assert await gw.total("H4") == 200_000  # and the total unchanged
    again = await gw.self_reads.submit("H4", "190", at=START + timedelta(days=2))
    assert (again.recorded, again.outcome) == (False, Outcome.DUPLICATE)
    other = await refused(gw, "H4", "191", at=START + timedelta(days=2))
    assert other.refusal.code is Code.CONFLICTING_READ
    err = await refused(gw, "H4", "350", at=START + timedelta(days=5))  # above day 10's 300
    assert err.refusal.code is Code.BEFORE_LAST_READ
    assert "does not fit between the readings around it" in err.refusal.message
    err = await refused(gw, "H4", "50", at=START - timedelta(days=1))  # before any gap
    assert err.refusal.code is Code.BEFORE_LAST_READ
    assert await gw.total("H4") == 200_000


async def test_the_time_defaults_to_the_clock_and_the_future_is_refused(
        gw: Gateway, clock: ManualClock) -> None:
    got = await gw.self_reads.submit("H4", "100")
    assert got.at == clock.now()
    err = await refused(gw, "H4", "101", at=clock.now() + timedelta(hours=1))
    assert err.refusal.code is Code.FUTURE


async def test_windows_come_from_the_config(tmp_path: Path, clock: ManualClock) -> None:
    windows = "[self_reads]\nwindows = [{ last_days = 7 }]\n"
    async with Gateway(assembly_of(tmp_path, windows), clock) as gw:
        err = await refused(gw, "H4", "100")  # 2 December in Chicago
        assert err.refusal.code is Code.OUT_OF_WINDOW
        assert "the next window opens on 2026-12-25" in err.refusal.message
        clock.set(datetime(2026, 12, 25, 6, 0, tzinfo=UTC))  # 00:00 on the 25th in Chicago
        assert (await gw.self_reads.submit("H4", "100")).recorded


async def test_a_restart_continues_from_the_saved_cursor(tmp_path: Path,
                                                         clock: ManualClock) -> None:
    assembly = assembly_of(tmp_path)
    async with Gateway(assembly, clock) as gw:
        await gw.self_reads.submit("H4", "9990", at=START)
    async with Gateway(assembly, clock) as gw:
        got = await gw.self_reads.submit("H4", "0010", at=START + timedelta(days=2))
        assert (got.outcome, got.consumption) == (Outcome.ROLLOVER, Decimal(20))


async def test_a_guarded_write_lands_only_on_the_cursor_it_was_judged_against(
        gw: Gateway) -> None:
    await gw.self_reads.submit("H4", "100", at=START)
    judged = await gw.store.cursor("H4", CHANNEL)
    await gw.self_reads.submit("H4", "200", at=START + timedelta(days=1))  # "another process"
    with pytest.raises(SinkError) as err:
        await gw.store.guarded({("H4", CHANNEL): judged}).write_intervals(
            [], cursors={("H4", CHANNEL): b"stale"})
    assert err.value.retryable
    assert await gw.store.cursor("H4", CHANNEL) != b"stale"
    assert (await gw.state("H4")).tracker.last_value == 200_000


async def test_two_processes_submitting_at_once_never_clobber_each_other(
        tmp_path: Path, clock: ManualClock) -> None:
    assembly = assembly_of(tmp_path)
    async with Gateway(assembly, clock) as a, Gateway(assembly, clock) as b:
        await a.self_reads.submit("H4", "100", at=START)
        reads = [(a if i % 2 else b, 100 + 10 * i, START + timedelta(days=i))
                 for i in range(1, 9)]
        outcomes = await asyncio.gather(
            *(gw.self_reads.submit("H4", str(v), at=at) for gw, v, at in reads),
            return_exceptions=True)
        accepted = [v for (_, v, _), got in zip(reads, outcomes, strict=True)
                    if not isinstance(got, BaseException)]
        # A reading that lost the race to a later one is fitted into the gap before it;
        # only a writer that kept losing would be told to try again.
        assert all(isinstance(got, SelfReadRefused) and got.refusal.code is Code.BUSY
                   for got in outcomes if isinstance(got, BaseException))
        # Whatever the interleaving: the store holds exactly the accepted readings' story.
        state = await a.state("H4")
        assert state.tracker.last_value == max(accepted) * 1000
        assert await a.total("H4") == (max(accepted) - 100) * 1000
