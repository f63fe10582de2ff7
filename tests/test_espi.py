"""Green Button Download My Data: feeds valid against ESPI 3.3, exact values and qualities."""

from __future__ import annotations

import csv
import io
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import xmlschema

from gateway.errors import DataError
from gateway.espi import espi_csv, espi_feed
from gateway.espi_cli import export_espi
from gateway.espi_time import encode_rule, local_time
from gateway.model import IntervalReading, Quality, Unit
from gateway.settings import load_config
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore

ESPI_DIR = Path(__file__).resolve().parent / "data" / "espi"
NS = {"a": "http://www.w3.org/2005/Atom", "e": "http://naesb.org/espi"}
CHICAGO = ZoneInfo("America/Chicago")
IMPORT = "1.0.1.8.0.255"
SERIES = SeriesInfo(meter_id="M1", channel=IMPORT, unit=Unit.WH, interval_s=900,
                    timezone="America/Chicago")
AT = datetime(2026, 3, 10, 12, tzinfo=UTC)
#: Local midnights around the spring-forward day (23 hours: 92 quarter-hours).
DST_DAY = datetime(2026, 3, 8, tzinfo=CHICAGO).astimezone(UTC)
NEXT_DAY = datetime(2026, 3, 9, tzinfo=CHICAGO).astimezone(UTC)
#: Interval index on the DST day -> its quality (the rest are valid).
QUALITIES = {5: Quality.ESTIMATED_LINEAR, 6: Quality.ESTIMATED_REFERENCE_DAY,
             40: Quality.EDITED, 41: Quality.EDITED, 77: Quality.QUESTIONABLE,
             91: Quality.DERIVED}


@cache
def schema() -> xmlschema.XMLSchema:
    # allow="local": a remote fetch (atom.xsd imports xml.xsd from w3.org) raises.
    return xmlschema.XMLSchema([str(ESPI_DIR / "atom.xsd"), str(ESPI_DIR / "usage.xsd")],
                               allow="local")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Validation must work offline: any outbound connection fails the test."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


def day_intervals(start: datetime, end: datetime, base: int = 100,
                  channel: str = IMPORT) -> list[IntervalReading]:
    count = int((end - start).total_seconds()) // 900
    return [IntervalReading(meter_id="M1", channel=channel,
                            start=start + timedelta(seconds=900 * i), length_s=900,
                            value=base + 7 * i, unit=Unit.WH,
                            quality=QUALITIES.get(i, Quality.VALID))
            for i in range(count)]


def feed(intervals: list[IntervalReading], series: SeriesInfo = SERIES,
         start: datetime = DST_DAY, end: datetime = NEXT_DAY, **kw: Any) -> bytes:
    return espi_feed("M1", series, intervals, start=start, end=end, generated_at=AT,
                     base_url="https://gw.example/", **kw)


def parse(xml: bytes) -> ET.Element:
    schema().validate(xml.decode())
    return ET.fromstring(xml)


def test_dst_day_feed_is_valid_with_92_intervals_and_their_qualities() -> None:
    intervals = day_intervals(DST_DAY, NEXT_DAY)
    assert len(intervals) == 92
    root = parse(feed(intervals))
    blocks = root.findall("a:entry/a:content/e:IntervalBlock", NS)
    assert len(blocks) == 1
    block = blocks[0]
    assert block.findtext("e:interval/e:duration", namespaces=NS) == str(23 * 3600)
    assert block.findtext("e:interval/e:start", namespaces=NS) == str(int(DST_DAY.timestamp()))
    readings = block.findall("e:IntervalReading", NS)
    assert len(readings) == 92
    got = [(int(r.findtext("e:timePeriod/e:start", namespaces=NS) or 0),
            int(r.findtext("e:timePeriod/e:duration", namespaces=NS) or 0),
            int(r.findtext("e:value", namespaces=NS) or 0),
            [int(q.text or "") for q in r.findall("e:ReadingQuality/e:quality", NS)])
           for r in readings]
    assert got == [(int(iv.start.timestamp()), 900, iv.value,
                    [] if iv.quality == Quality.VALID else [int(iv.quality)])
                   for iv in intervals]
    qualities = [q for *_, qs in got for q in qs]
    assert sorted(qualities) == [7, 7, 8, 9, 10, 11]
    assert sum(v for _, _, v, _ in got) == sum(iv.value for iv in intervals)


def test_feed_describes_the_usage_point_reading_type_and_local_time() -> None:
    root = parse(feed(day_intervals(DST_DAY, NEXT_DAY)))
    content = "a:entry/a:content/"
    assert root.findtext(content + "e:UsagePoint/e:ServiceCategory/e:kind", namespaces=NS) == "0"
    rt = root.find(content + "e:ReadingType", NS)
    assert rt is not None
    assert {el.tag.split("}")[1]: el.text for el in rt} == {
        "accumulationBehaviour": "4", "commodity": "1", "dataQualifier": "12",
        "flowDirection": "1", "intervalLength": "900", "kind": "12",
        "powerOfTenMultiplier": "0", "uom": "72"}
    ltp = root.find(content + "e:LocalTimeParameters", NS)
    assert ltp is not None
    # The OpenESPI samples' US rules: 2nd Sunday of March, 1st Sunday of November, 02:00.
    assert {el.tag.split("}")[1]: el.text for el in ltp} == {
        "dstEndRule": "B40E2000", "dstOffset": "3600", "dstStartRule": "360E2000",
        "tzOffset": "-21600"}
    for entry in root.findall("a:entry", NS):
        rels = [link.get("rel") for link in entry.findall("a:link", NS)]
        assert "self" in rels and "up" in rels
        assert entry.findtext("a:published", namespaces=NS) == "2026-03-10T12:00:00Z"


def test_export_channel_flows_in_reverse_and_a_tariff_register_has_its_tou() -> None:
    series = SeriesInfo(meter_id="M1", channel="1.0.2.8.1.255", unit=Unit.WH,
                        interval_s=900, timezone="America/Chicago")
    ivs = day_intervals(DST_DAY, DST_DAY + timedelta(hours=2), channel=series.channel)
    root = parse(feed(ivs, series, tariff_label="T1 day"))
    rt = root.find("a:entry/a:content/e:ReadingType", NS)
    assert rt is not None
    assert rt.findtext("e:flowDirection", namespaces=NS) == "19"
    assert rt.findtext("e:tou", namespaces=NS) == "1"
    titles = [e.findtext("a:title", namespaces=NS) for e in root.findall("a:entry", NS)]
    assert "1.0.2.8.1.255 (T1 day)" in titles


def test_ids_are_stable_across_exports_and_differ_between_entries() -> None:
    ivs = day_intervals(DST_DAY, NEXT_DAY + timedelta(days=1))
    first = parse(feed(ivs, end=NEXT_DAY + timedelta(days=1)))
    again = parse(espi_feed("M1", SERIES, list(reversed(ivs)), start=DST_DAY,
                            end=NEXT_DAY + timedelta(days=1), generated_at=AT + timedelta(1),
                            base_url="https://gw.example"))
    ids = [e.text for e in first.iter("{http://www.w3.org/2005/Atom}id")]
    assert ids == [e.text for e in again.iter("{http://www.w3.org/2005/Atom}id")]
    assert len(set(ids)) == len(ids) == 1 + 4 + 2  # feed, 4 description entries, 2 days
    assert all(i and i.startswith("urn:uuid:") for i in ids)
    other = parse(espi_feed("M2", SERIES, [], start=DST_DAY, end=NEXT_DAY,
                            generated_at=AT, base_url="https://gw.example"))
    assert not set(ids) & {e.text for e in other.iter("{http://www.w3.org/2005/Atom}id")}


def test_blocks_follow_local_days_including_the_25_hour_one() -> None:
    lo = datetime(2026, 10, 31, tzinfo=CHICAGO).astimezone(UTC)
    hi = datetime(2026, 11, 3, tzinfo=CHICAGO).astimezone(UTC)
    root = parse(feed(day_intervals(lo, hi), start=lo, end=hi))
    blocks = root.findall("a:entry/a:content/e:IntervalBlock", NS)
    assert [len(b.findall("e:IntervalReading", NS)) for b in blocks] == [96, 100, 96]
    assert [b.findtext("e:interval/e:duration", namespaces=NS) for b in blocks] == [
        "86400", "90000", "86400"]


def test_an_empty_range_is_a_valid_feed_without_blocks() -> None:
    root = parse(feed([]))
    assert root.findall("a:entry/a:content/e:IntervalBlock", NS) == []
    assert len(root.findall("a:entry", NS)) == 4


def test_the_schema_rejects_what_v33_forbids() -> None:
    """The validation can fail: a link without its type is refused."""
    xml = feed(day_intervals(DST_DAY, DST_DAY + timedelta(hours=1)))
    broken = xml.replace(b' type="espi-entry/UsagePoint"', b"", 1)
    assert broken != xml
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema().validate(broken.decode())


def test_a_non_energy_series_is_refused() -> None:
    series = SeriesInfo(meter_id="M1", channel="1.0.32.7.0.255", unit=Unit.V,
                        interval_s=900, timezone="UTC")
    with pytest.raises(DataError, match="no ESPI energy unit"):
        feed([], series)


def test_csv_rows_and_total_equal_the_intervals() -> None:
    intervals = day_intervals(DST_DAY, NEXT_DAY, base=999)
    rows = list(csv.DictReader(io.StringIO(espi_csv(SERIES, intervals).decode())))
    assert len(rows) == 92
    assert rows[0] == {
        "TYPE": "Electric usage", "DATE": "2026-03-08", "START TIME": "00:00",
        "END TIME": "00:14", "USAGE": "0.999", "UNITS": "kWh", "COST": "", "NOTES": "",
        "QUALITY": "0", "START UTC": "2026-03-08T06:00:00Z"}
    # 01:45 is followed by 03:00: the hour that does not exist on the DST day is skipped.
    assert [r["START TIME"] for r in rows[7:9]] == ["01:45", "03:00"]
    assert rows[40]["NOTES"] == "edited" and rows[40]["QUALITY"] == "7"
    assert rows[5]["NOTES"] == "estimated linear"
    total = sum(Decimal(r["USAGE"]) for r in rows)
    assert total * 1000 == sum(iv.value for iv in intervals)
    assert [int(r["QUALITY"]) for r in rows] == [int(iv.quality) for iv in intervals]


@pytest.mark.parametrize(("zone", "start", "end"), [
    ("Europe/Kyiv", "3E0E3000", "AE0E4000"),  # last Sunday of March 03:00 / October 04:00
    ("Australia/Sydney", "A40E2000", "440E3000"),  # 1st Sunday of October / of April
    ("Asia/Tokyo", "FFFFFFFF", "FFFFFFFF"),  # no DST: rule processing disabled
])
def test_local_time_rules_of_other_zones(zone: str, start: str, end: str) -> None:
    lt = local_time(zone, 2026)
    assert (lt.dst_start_rule, lt.dst_end_rule) == (start, end)


def test_rule_encoding_matches_the_schema_example() -> None:
    # usage.xsd DstRuleType: third Friday in March at 1:45 AM.
    bits = int(encode_rule(month=3, operator=4, weekday=5, day=0, hour=1, seconds=2700), 16)
    assert bits == (3 << 28) | (4 << 25) | (5 << 17) | (1 << 12) | 2700


CONFIG = """
[gateway]
data_dir = "data"
timezone = "America/Chicago"
[api]
host = "127.0.0.1"
port = 8099
[[meters]]
meter_id = "M1"
profile = "eastron_sdm120"
host = "127.0.0.1"
"""


async def test_export_from_the_store_as_xml_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    cfg.store_path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(cfg.store_path)
    await store.open()
    intervals = day_intervals(DST_DAY, NEXT_DAY + timedelta(hours=1))
    try:
        await store.register_series(SERIES)
        await store.write_intervals(intervals)
    finally:
        await store.close()
    xml = await export_espi(cfg, "M1", IMPORT, date(2026, 3, 8), date(2026, 3, 8), "xml",
                            generated_at=AT)
    root = parse(xml)
    values = [int(v.text or "") for v in root.iter("{http://naesb.org/espi}value")]
    assert values == [iv.value for iv in intervals[:92]]  # the next day's hour is outside
    link = root.find("a:link", NS)
    assert link is not None and (link.get("href") or "").startswith("http://127.0.0.1:8099/")
    rows = (await export_espi(cfg, "M1", IMPORT, date(2026, 3, 8), date(2026, 3, 9),
                              "csv")).decode().splitlines()
    assert len(rows) == 1 + 96
    with pytest.raises(DataError, match="no channel"):
        await export_espi(cfg, "M1", "1.0.2.8.0.255", date(2026, 3, 8), date(2026, 3, 8),
                          "xml")
