"""End to end: the demo's two-rate meter over real Modbus TCP, through the pollers, the
pipeline and the store, to the daily view of the portal API, on America/Chicago's
23-hour day. Each rate equals its register's advance; their sum is the total register's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from edge.assembly import assemble, build_driver
from gateway import log
from gateway.api import create_app
from gateway.clock import ManualClock
from gateway.demo import _TWO_RATE, TWO_RATE
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.poller import Poller
from gateway.profiles import load_profile
from gateway.settings import load_config
from gateway.sim import LoadShape, MeterSpec, serve_meters
from gateway.store.sqlite import SqliteStore

TOTAL, DAY, NIGHT = "1.0.1.8.0.255", "1.0.1.8.1.255", "1.0.1.8.2.255"
TZ = ZoneInfo("America/Chicago")


def local(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ).astimezone(UTC)


@pytest.mark.parametrize(("day", "quarter_hours"), [(date(2026, 3, 8), 92),
                                                    (date(2026, 11, 1), 100)])
async def test_two_rate_day_over_dst(tmp_path: Path, day: date, quarter_hours: int) -> None:
    start, end = local(day), local(day + timedelta(days=1))
    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "demo_two_rate.toml").write_text(_TWO_RATE)
    spec = MeterSpec(meter_id="TOU-1", profile=load_profile(devices / "demo_two_rate.toml"),
                     seed=31, start_energy_wh=3_456_789, start_night_wh=1_234_567,
                     serial=30_000_301, tariffs=TWO_RATE,
                     shape=LoadShape(base_w=500, peak_w=7000, tz="America/Chicago"))
    clock = ManualClock(start - timedelta(minutes=15))
    async with serve_meters([spec], clock) as (meter,):
        (tmp_path / "gateway.toml").write_text(
            '[gateway]\ndata_dir = "data"\ntimezone = "America/Chicago"\n'
            'profiles_dir = "devices"\n[store]\nsynchronous = "NORMAL"\n[api]\nenabled = false\n'
            f'[[meters]]\nmeter_id = "TOU-1"\nprofile = "demo_two_rate"\nhost = "{meter.host}"\n'
            f"port = {meter.port}\npoll_interval_s = 900\ntimeout_s = 0.5\n"
            "inter_request_ms = 0\n[meters.rules]\ndaily_high_wh = 1000\n")
        assembly = assemble(load_config(tmp_path / "gateway.toml"))
        [plan] = assembly.meters
        assert {s.channel for s in plan.series} == {TOTAL, DAY, NIGHT}
        store = SqliteStore(assembly.config.store_path, synchronous="NORMAL")
        await store.open()
        pipeline = await Pipeline.open(store, assembly.series())
        poller = Poller(meter_id="TOU-1", timezone=plan.timezone, protocol="modbus_tcp",
                        profile=plan.profile.name, driver=build_driver(plan, clock),
                        pipeline=pipeline, store=store, clock=clock, interval_s=900,
                        transitions=log.Transitions(log.get("test")))
        at = clock.now()
        while at <= end:
            clock.set(at)
            assert await poller.poll_once()
            at += timedelta(minutes=15)
        await poller._driver.close()

        def advance(channel: str) -> int:
            return int(meter.register_value(channel, end) - meter.register_value(channel, start))

        # The night register stands still from 07:00 to 23:00 local time, the day one
        # the rest of the day (DST or not).
        assert meter.register_value(NIGHT, local(day, 7)) == \
            meter.register_value(NIGHT, local(day, 23))
        assert meter.register_value(DAY, start) == meter.register_value(DAY, local(day, 7))
        assert advance(DAY) > 0 and advance(NIGHT) > 0
        assert advance(DAY) + advance(NIGHT) == advance(TOTAL)

        app = create_app(store, daily_limits=assembly.daily_limits())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://portal") as client:
            r = await client.get("/api/v1/meters/TOU-1/daily/rates",
                                 params={"from": day.isoformat(), "to": day.isoformat()})
        await store.close()
    assert r.status_code == 200, r.text
    [got] = r.json()["days"]
    day_rate, night_rate = got["rates"]
    assert (day_rate["channel"], night_rate["channel"]) == (DAY, NIGHT)
    for rate, channel in ((day_rate, DAY), (night_rate, NIGHT)):
        assert rate["quality"]["expected"] == rate["quality"]["present"] == quarter_hours
        assert rate["value"] == advance(channel)
        assert Decimal(rate["value_kwh"]) * 1000 == advance(channel)
        assert rate["checks"] == ["daily_high"]
    assert got["value"] == advance(TOTAL)
    assert got["quality"]["complete"] is True
    assert got["total_register"]["value"] == advance(TOTAL)
    assert got["total_register"]["mismatch"] == 0
    assert got["checks"] == ["daily_high"]
