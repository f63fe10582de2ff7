"""Green Button Download My Data: a channel's intervals as ESPI Atom XML or as CSV.

Pure: data in, bytes out (stdlib ``xml.etree.ElementTree``; no runtime dependency).

The feed follows NAESB REQ.21 ESPI 3.3 (``usage.xsd``/``atom.xsd``, vendored with their
origin in ``tests/data/espi/``): one Atom entry each for the UsagePoint, its
LocalTimeParameters, the MeterReading, its ReadingType and one IntervalBlock per local
day of the series' timezone that has data (23/24/25 hours long; ``interval`` is the
day's duration and start in epoch seconds). Each IntervalReading carries ``timePeriod``
and ``value`` (an integer in the ReadingType's unit, Wh for energy), and a
``ReadingQuality/quality`` (QualityOfReading) before its ``timePeriod`` as the schema's
sequence orders it, only when the quality is not 0 (valid): ReadingQuality's own
documentation says valid is assumed unless stated.

Every ``atom:link`` has ``href``, ``rel`` and ``type`` and every entry ``published``, as
v3.3's atom.xsd requires. Ids are ``urn:uuid:`` uuid5s of the meter, channel and (for a
block) local day, so exporting the same data twice gives the same ids.

Validate a feed offline (``pip install xmlschema``; it carries the ``xml:`` namespace
that atom.xsd imports, and ``allow="local"`` turns any attempt to fetch a remote file
into an error). Give absolute paths: xmlschema resolves the second against the first.

    import xmlschema
    from pathlib import Path
    espi = Path("tests/data/espi").resolve()
    schema = xmlschema.XMLSchema([str(espi / "atom.xsd"), str(espi / "usage.xsd")],
                                 allow="local")
    schema.validate("feed.xml")  # raises XMLSchemaValidationError naming the element
"""

from __future__ import annotations

import csv
import io
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from urllib.parse import quote
from zoneinfo import ZoneInfo

from gateway.errors import DataError
from gateway.espi_time import local_time
from gateway.model import IntervalReading, Quality, Unit, require_utc
from gateway.store import SeriesInfo

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
ET.register_namespace("", ATOM)
ET.register_namespace("espi", ESPI)

#: Namespace of the gateway's uuid5 ids (fixed forever: changing it changes every id).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ami-gateway:espi")

# usage.xsd enumerations (the appinfo names of each value):
SERVICE_ELECTRICITY = 0  # ServiceKind 0 "electricity"
ACCUMULATION_DELTA = 4  # AccumulationKind 4 "deltaData"
COMMODITY_ELECTRICITY = 1  # CommodityKind 1 "electricity SecondaryMetered"
DATA_QUALIFIER_NORMAL = 12  # DataQualifierKind 12 "normal"
FLOW_FORWARD, FLOW_REVERSE, FLOW_NONE = 1, 19, 0  # FlowDirectionKind "forward"/"reverse"
MEASUREMENT_ENERGY = 12  # MeasurementKind 12 "energy"
POWER_OF_TEN_NONE = 0  # UnitMultiplierKind 0 "none" (x1)
#: UnitSymbolKind of each base energy unit the gateway stores.
UOM: dict[Unit, int] = {Unit.WH: 72, Unit.VARH: 73, Unit.VAH: 71}
#: OBIS value group C (quantity and direction) -> FlowDirectionKind: 1/3/9 are active,
#: reactive and apparent import (delivered), 2/4/10 their export (received).
_FLOW_BY_OBIS_C = {1: FLOW_FORWARD, 3: FLOW_FORWARD, 9: FLOW_FORWARD,
                   2: FLOW_REVERSE, 4: FLOW_REVERSE, 10: FLOW_REVERSE}


def _uid(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, '/'.join(parts))}"


def _stamp(at: datetime) -> str:
    return require_utc(at).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _epoch(at: datetime) -> int:
    return int(require_utc(at).timestamp())


def _obis_c(channel: str) -> int | None:
    parts = channel.replace(":", ".").replace("-", ".").split(".")
    return int(parts[2]) if len(parts) >= 4 and parts[2].isdigit() else None


def _obis_e(channel: str) -> int:
    parts = channel.replace(":", ".").replace("-", ".").split(".")
    return int(parts[4]) if len(parts) >= 5 and parts[4].isdigit() else 0


def _sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = str(text)
    return el


class _Feed:
    """Builds the Atom document; entries share published/updated and the base URL."""

    def __init__(self, base_url: str, generated_at: datetime) -> None:
        self.base = base_url.rstrip("/") + "/espi/1_1/resource"
        self.stamp = _stamp(generated_at)
        self.root = ET.Element(f"{{{ATOM}}}feed")

    def link(self, parent: ET.Element, rel: str, path: str, kind: str) -> None:
        ET.SubElement(parent, f"{{{ATOM}}}link",
                      {"href": f"{self.base}/{path}", "rel": rel, "type": kind})

    def entry(self, ident: str, title: str, links: Sequence[tuple[str, str, str]],
              ) -> ET.Element:
        """An entry with its links; returns the ESPI content element's parent."""
        entry = _sub(self.root, f"{{{ATOM}}}entry")
        _sub(entry, f"{{{ATOM}}}id", ident)
        for rel, path, kind in links:
            self.link(entry, rel, path, kind)
        _sub(entry, f"{{{ATOM}}}title", title)
        content = _sub(entry, f"{{{ATOM}}}content")
        _sub(entry, f"{{{ATOM}}}published", self.stamp)
        _sub(entry, f"{{{ATOM}}}updated", self.stamp)
        return content


def _day_blocks(intervals: Sequence[IntervalReading], tz: ZoneInfo,
                ) -> list[tuple[date, list[IntervalReading]]]:
    ordered = sorted(intervals, key=lambda iv: iv.start)
    return [(day, list(ivs)) for day, ivs in
            groupby(ordered, key=lambda iv: iv.start.astimezone(tz).date())]


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def espi_feed(meter_id: str, series: SeriesInfo, intervals: Sequence[IntervalReading], *,
              start: datetime, end: datetime, generated_at: datetime, base_url: str,
              tariff_label: str | None = None) -> bytes:
    """A Download My Data feed of one channel's intervals in ``[start, end)``.

    ``intervals`` are the stored intervals of that range (any order); ``start``/``end``
    name the range in the feed's title and id, and ``start``'s local year picks the DST
    rules of LocalTimeParameters. ``tariff_label`` titles the ReadingType (e.g. "T1").
    """
    uom = UOM.get(series.unit.base)
    if uom is None:
        raise DataError(f"unit {series.unit} has no ESPI energy unit; export Wh, varh "
                        "or VAh channels", source=f"{meter_id} {series.channel}")
    tz = ZoneInfo(series.timezone)
    channel = series.channel
    feed = _Feed(base_url, generated_at)
    up_path = f"RetailCustomer/{quote(meter_id, safe='')}/UsagePoint"
    usage_point = f"{up_path}/{quote(meter_id, safe='')}"
    reading = f"{usage_point}/MeterReading/{quote(channel, safe='')}"
    reading_type = f"ReadingType/{uuid.uuid5(ID_NAMESPACE, f'{meter_id}/{channel}/rt')}"
    ltp = f"LocalTimeParameters/{uuid.uuid5(ID_NAMESPACE, f'{meter_id}/ltp')}"
    first = start.astimezone(tz).date()
    last = (end - timedelta(seconds=1)).astimezone(tz).date()

    root = feed.root
    _sub(root, f"{{{ATOM}}}id", _uid(meter_id, channel, _stamp(start), _stamp(end)))
    _sub(root, f"{{{ATOM}}}title", f"Green Button Download My Data: meter {meter_id}, "
         f"{channel}, {first.isoformat()} to {last.isoformat()}")
    _sub(root, f"{{{ATOM}}}updated", feed.stamp)
    feed.link(root, "self", f"{usage_point}/MeterReading", "espi-feed/MeterReading")

    content = feed.entry(_uid(meter_id, "UsagePoint"), f"Meter {meter_id}", [
        ("self", usage_point, "espi-entry/UsagePoint"),
        ("up", up_path, "espi-feed/UsagePoint"),
        ("related", f"{usage_point}/MeterReading", "espi-feed/MeterReading"),
        ("related", ltp, "espi-entry/LocalTimeParameters")])
    point = _sub(content, f"{{{ESPI}}}UsagePoint")
    _sub(_sub(point, f"{{{ESPI}}}ServiceCategory"), f"{{{ESPI}}}kind", SERVICE_ELECTRICITY)

    lt = local_time(series.timezone, first.year)
    content = feed.entry(_uid(meter_id, "LocalTimeParameters"), series.timezone, [
        ("self", ltp, "espi-entry/LocalTimeParameters"),
        ("up", "LocalTimeParameters", "espi-feed/LocalTimeParameters")])
    params = _sub(content, f"{{{ESPI}}}LocalTimeParameters")
    for tag, value in (("dstEndRule", lt.dst_end_rule), ("dstOffset", lt.dst_offset_s),
                       ("dstStartRule", lt.dst_start_rule), ("tzOffset", lt.tz_offset_s)):
        _sub(params, f"{{{ESPI}}}{tag}", value)

    content = feed.entry(_uid(meter_id, channel, "MeterReading"), f"{channel}", [
        ("self", reading, "espi-entry/MeterReading"),
        ("up", f"{usage_point}/MeterReading", "espi-feed/MeterReading"),
        ("related", f"{reading}/IntervalBlock", "espi-feed/IntervalBlock"),
        ("related", reading_type, "espi-entry/ReadingType")])
    _sub(content, f"{{{ESPI}}}MeterReading")

    title = f"{channel} ({tariff_label})" if tariff_label else channel
    content = feed.entry(_uid(meter_id, channel, "ReadingType"), title, [
        ("self", reading_type, "espi-entry/ReadingType"),
        ("up", "ReadingType", "espi-feed/ReadingType")])
    rt = _sub(content, f"{{{ESPI}}}ReadingType")
    fields: list[tuple[str, int]] = [
        ("accumulationBehaviour", ACCUMULATION_DELTA), ("commodity", COMMODITY_ELECTRICITY),
        ("dataQualifier", DATA_QUALIFIER_NORMAL),
        ("flowDirection", _FLOW_BY_OBIS_C.get(_obis_c(channel) or 0, FLOW_NONE)),
        ("intervalLength", series.interval_s), ("kind", MEASUREMENT_ENERGY),
        ("powerOfTenMultiplier", POWER_OF_TEN_NONE)]
    if _obis_e(channel):  # OBIS E > 0 is the register's tariff: ESPI's time-of-use code
        fields.append(("tou", _obis_e(channel)))
    fields.append(("uom", uom))
    for tag, value in fields:
        _sub(rt, f"{{{ESPI}}}{tag}", value)

    for day, ivs in _day_blocks(intervals, tz):
        lo, hi = _local_midnight(day, tz), _local_midnight(day + timedelta(days=1), tz)
        block_path = f"{reading}/IntervalBlock/{day.isoformat()}"
        content = feed.entry(_uid(meter_id, channel, "IntervalBlock", day.isoformat()),
                             f"{channel} {day.isoformat()}", [
            ("self", block_path, "espi-entry/IntervalBlock"),
            ("up", f"{reading}/IntervalBlock", "espi-feed/IntervalBlock")])
        block = _sub(content, f"{{{ESPI}}}IntervalBlock")
        interval = _sub(block, f"{{{ESPI}}}interval")
        _sub(interval, f"{{{ESPI}}}duration", int((hi - lo).total_seconds()))
        _sub(interval, f"{{{ESPI}}}start", _epoch(lo))
        for iv in ivs:
            el = _sub(block, f"{{{ESPI}}}IntervalReading")
            if iv.quality != Quality.VALID:
                _sub(_sub(el, f"{{{ESPI}}}ReadingQuality"), f"{{{ESPI}}}quality",
                     int(iv.quality))
            period = _sub(el, f"{{{ESPI}}}timePeriod")
            _sub(period, f"{{{ESPI}}}duration", iv.length_s)
            _sub(period, f"{{{ESPI}}}start", _epoch(iv.start))
            _sub(el, f"{{{ESPI}}}value", iv.value)

    ET.indent(root, space=" ")
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"


#: The CSV header: the columns of the utilities' Green Button Download My Data CSV
#: (Opower-hosted portals: PG&E, ComEd, PECO ...), then the ESPI quality code and the
#: start in UTC, which the local DATE/START TIME cannot tell apart on a fall-back day.
CSV_COLUMNS: tuple[str, ...] = (
    "TYPE", "DATE", "START TIME", "END TIME", "USAGE", "UNITS", "COST", "NOTES",
    "QUALITY", "START UTC",
)


def _usage(value: int, unit: Unit) -> tuple[str, str]:
    """Usage as the utilities write it (kWh for energy), exact: Wh -> kWh with 3 decimals."""
    if unit.factor != 1 or unit is not unit.base:
        raise DataError(f"intervals in {unit}, expected a base unit")
    if unit is Unit.WH:
        sign = "-" if value < 0 else ""
        whole, frac = divmod(abs(value), 1000)
        return f"{sign}{whole}.{frac:03d}", "kWh"
    return str(value), str(unit)


def espi_csv(series: SeriesInfo, intervals: Sequence[IntervalReading]) -> bytes:
    """The intervals as Green Button CSV rows in local time, oldest first.

    END TIME is the last minute of the interval (00:00-00:14 for a quarter-hour), as the
    utilities' files have it. NOTES names the quality when it is not valid.
    """
    tz = ZoneInfo(series.timezone)
    kind = "Electric usage" if series.unit.base is Unit.WH else f"Electric {series.unit.base}"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for iv in sorted(intervals, key=lambda iv: iv.start):
        local = iv.start.astimezone(tz)
        last_minute = (iv.end - timedelta(minutes=1)).astimezone(tz)
        usage, units = _usage(iv.value, iv.unit)
        quality = Quality(iv.quality)
        notes = "" if quality is Quality.VALID else quality.name.lower().replace("_", " ")
        writer.writerow([kind, local.date().isoformat(), local.strftime("%H:%M"),
                         last_minute.strftime("%H:%M"), usage, units, "", notes,
                         int(quality), _stamp(iv.start)])
    return out.getvalue().encode()
