"""The portal on InfluxDB answers as on the embedded store: the same intervals and the
same daily totals (local days across DST changes, estimated and edited days marked),
for data the outbox delivered there."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.api.app import create_app
from gateway.ingest.delivery import Delivery
from gateway.model import Flag, IntervalReading, Quality, Unit
from gateway.settings import load_config
from gateway.sinks.build import build_sinks
from gateway.sinks.influx_sink import influx_auth
from gateway.store import SeriesInfo
from gateway.store.influx import InfluxReader
from gateway.store.portal import InfluxPortalStore
from gateway.store.sqlite import SqliteStore
from tests.influx_server import running_influxd

CH = "1.0.1.8.0.255"
ZONE = "America/Chicago"


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with running_influxd(tmp_path_factory.mktemp("influxd-portal")) as url:
        yield url


def month_of_intervals() -> list[IntervalReading]:
    """Chicago, 2026-02-25 .. 2026-03-12 local (spring forward on 03-08), with an
    estimated afternoon, a questionable hour and a missing evening."""
    tz = ZoneInfo(ZONE)
    start = datetime(2026, 2, 25, tzinfo=tz).astimezone(UTC)
    end = datetime(2026, 3, 13, tzinfo=tz).astimezone(UTC)
    out = []
    at, i = start, 0
    while at < end:
        local = at.astimezone(tz)
        quality, flags = Quality.VALID, 0
        if local.date() == date(2026, 3, 2) and 13 <= local.hour < 17:
            quality, flags = Quality.ESTIMATED_LINEAR, int(Flag.GAP_SPANNED)
        elif local.date() == date(2026, 3, 8) and local.hour == 9:
            quality, flags = Quality.QUESTIONABLE, int(Flag.SPIKE)
        if not (local.date() == date(2026, 3, 10) and local.hour >= 20):
            out.append(IntervalReading(meter_id="P-1", channel=CH, start=at, length_s=900,
                                       value=100 + (i * 13) % 400, unit=Unit.WH,
                                       quality=quality, flags=flags))
        at += timedelta(minutes=15)
        i += 1
    return out


async def test_daily_and_intervals_are_the_same_on_influxdb_as_on_the_local_store(
        tmp_path: Path, influx: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("\n".join([
        "[gateway]", 'data_dir = "data"', f'timezone = "{ZONE}"',
        "[api]", 'backend = "tsdb"',
        "[[sinks]]", 'kind = "influxdb"', 'name = "tsdb"', f'url = "{influx}"',
        'database = "portal"', "create_database = true",
    ]) + "\n")
    cfg = load_config(config)
    store = SqliteStore(cfg.store_path, synchronous="NORMAL")
    await store.open()
    await store.register_series(SeriesInfo(meter_id="P-1", channel=CH, unit=Unit.WH,
                                           interval_s=900, timezone=ZONE))
    await store.use_sinks(["tsdb"])
    await store.write_intervals(month_of_intervals())
    await store.edit_interval("P-1", CH, datetime(2026, 3, 4, 18, tzinfo=UTC), 999,
                              operator="ops", reason="meter test", at=datetime.now(UTC))
    [sink] = build_sinks(cfg, store)
    delivery = Delivery(store, sink)
    await sink.open()
    while await delivery.drain_once():
        pass
    await sink.close()
    [sink_cfg] = cfg.settings.sinks
    reader = InfluxReader(sink_cfg.url, sink_cfg.database,
                          auth=influx_auth(cfg, sink_cfg, "sinks[0]"))
    portal = InfluxPortalStore(store, reader)
    await portal.open()
    try:
        answers = []
        for backend in (store, portal):
            transport = httpx.ASGITransport(app=create_app(backend))
            async with httpx.AsyncClient(transport=transport, base_url="http://p") as http:
                daily = await http.get("/api/v1/meters/P-1/daily",
                                       params={"from": "2026-02-25", "to": "2026-03-12"})
                intervals = await http.get("/api/v1/meters/P-1/intervals", params={
                    "from": "2026-03-07T00:00:00-06:00", "to": "2026-03-11T00:00:00-05:00"})
            assert daily.status_code == intervals.status_code == 200
            answers.append((daily.json(), intervals.json()))
        assert answers[0] == answers[1]
        days = {d["date"]: d for d in answers[0][0]["days"]}
        assert len(days) == 16
        assert days["2026-03-08"]["quality"]["expected"] == 92  # spring forward
        assert days["2026-03-08"]["quality"]["questionable"] == 4
        assert days["2026-03-02"]["quality"]["estimated"] == 16
        assert days["2026-03-04"]["quality"]["edited"] == 1
        assert not days["2026-03-10"]["quality"]["complete"]
        assert sum(d["value"] for d in days.values()) == \
            sum(iv.value for iv in await store.intervals(
                "P-1", CH, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)))
    finally:
        await portal.close()
        await store.close()


def test_the_backend_must_be_sqlite_or_a_sink(tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    config = tmp_path / "gateway.toml"
    config.write_text('[api]\nbackend = "influx"\n')
    with pytest.raises(ConfigError, match=r"api\.backend.*neither.*fix: use \"sqlite\""):
        load_config(config)
