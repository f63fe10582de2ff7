"""Green Button Download My Data from the store: for ``ami-gateway export`` and the API.

``export_espi`` opens the config's store for one export (read only, so it declares no
sinks: an export queues nothing), ``render_espi`` works on a store already open (the API
holds one).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from gateway.errors import DataError
from gateway.espi import espi_csv, espi_feed
from gateway.settings import LoadedConfig
from gateway.store import Store

EspiFormat = Literal["xml", "csv"]


async def render_espi(store: Store, meter: str, channel: str, first: date, last: date,
                      fmt: EspiFormat, *, base_url: str,
                      generated_at: datetime | None = None) -> bytes:
    """The channel's intervals over local days ``first``..``last`` (inclusive) as ESPI
    Atom XML (``fmt="xml"``) or Green Button CSV; raises DataError for an unknown
    meter or channel or ``first > last``."""
    from gateway.store.sqlite import day_bounds

    if first > last:
        raise DataError(f"first day {first} is after last day {last}", source=meter)
    found = [s for s in await store.series(meter) if s.channel == channel]
    if not found:
        raise DataError(f"no channel {channel!r} of meter {meter!r} in the store",
                        source=meter)
    series = found[0]
    tz = ZoneInfo(series.timezone)
    start = datetime.fromtimestamp(day_bounds(first, tz)[0], UTC)
    end = datetime.fromtimestamp(day_bounds(last, tz)[1], UTC)
    intervals = await store.intervals(meter, channel, start, end)
    if fmt == "csv":
        return espi_csv(series, intervals)
    return espi_feed(meter, series, intervals, start=start, end=end,
                     generated_at=generated_at or datetime.now(UTC), base_url=base_url)


async def export_espi(cfg: LoadedConfig, meter: str, channel: str, first: date, last: date,
                      fmt: EspiFormat, *, base_url: str | None = None,
                      generated_at: datetime | None = None) -> bytes:
    """``render_espi`` on the config's store, opened for this export and closed after.

    Links point at ``base_url``, by default the configured API address.
    """
    from gateway.store.sqlite import SqliteStore

    api = cfg.settings.api
    store = SqliteStore(cfg.store_path, synchronous=cfg.settings.store.synchronous)
    await store.open()
    try:
        return await render_espi(store, meter, channel, first, last, fmt,
                                 base_url=base_url or f"http://{api.host}:{api.port}",
                                 generated_at=generated_at)
    finally:
        await store.close()
