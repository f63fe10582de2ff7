"""Who a Modbus device is, and which profile fits it.

First Read Device Identification (function 43/14, basic objects): a ProductCode that a
profile's ``[identify] product_codes`` names (or starts with) is a match by the
vendor's own word. A device that refuses the function (exception 1, 2 or 3), stays
silent, or names no known product is recognised by signatures instead: each profile's
``[identify] signature`` checks read at the profile's own addresses and decode to
plausible values (voltage 90..270 V, frequency 45..65 Hz). A profile matches when all
its required checks pass; matches rank by checks passed (a three-phase profile's L2
and L3 voltages put it above a single-phase one at the same addresses), then by name.
The best match is proposed, the others are kept as candidates.

The matching is pure (:func:`match_product`, :func:`match_signatures`); :func:`identify`
drives a :class:`UnitLink` (the RTU scanner's port, or a Modbus TCP connection).
Each register block is read once however many profiles check it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from gateway.commission.model import DeviceIdentity
from gateway.drivers.modbus.decode import decode
from gateway.drivers.modbus.device_id import DeviceIdReply
from gateway.drivers.modbus.rtu import Refusal
from gateway.errors import DataError, DriverError
from gateway.model import SERIAL_NUMBER
from gateway.profiles import DeviceProfile, PointSpec, Table

__all__ = ["Block", "Identification", "UnitLink", "identify", "match_product",
           "match_signatures", "signature_blocks"]

#: (table, address, registers): one read.
Block = tuple[Table, int, int]

#: Exception codes that mean "no device identification here", not a failure.
_UNSUPPORTED = frozenset({1, 2, 3})


class UnitLink(Protocol):
    """Requests to one unit id at a time, over whatever line the scan holds."""

    name: str

    async def identification(self, unit: int, object_id: int) -> DeviceIdReply | Refusal:
        """Basic device identification from ``object_id``; DriverError on no reply."""
        ...

    async def read(self, unit: int, block: Block) -> tuple[int, ...] | Refusal:
        """The block's registers; DriverError on no reply or a broken one."""
        ...


@dataclass(frozen=True, slots=True)
class Identification:
    identity: DeviceIdentity
    profile: str | None
    candidates: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _block(point: PointSpec) -> Block:
    return point.table, point.address, point.width


def _points(profile: DeviceProfile) -> dict[str, PointSpec]:
    return {p.channel: p for p in profile.points}


def match_product(objects: Iterable[tuple[str, str]],
                  profiles: Mapping[str, DeviceProfile]) -> tuple[str, ...]:
    """Profiles whose product codes the device's ProductCode equals or starts with
    (and whose vendor name, when declared, is the device's), by name."""
    named = dict(objects)
    product = named.get("ProductCode", "").strip().upper()
    vendor = named.get("VendorName", "").strip().casefold()
    if not product:
        return ()
    hits = []
    for name, profile in sorted(profiles.items()):
        ident = profile.identify
        if ident is None or not ident.product_codes:
            continue
        if ident.vendor_name and vendor and ident.vendor_name.casefold() != vendor:
            continue
        if any(product.startswith(code.upper()) for code in ident.product_codes):
            hits.append(name)
    return tuple(hits)


def signature_blocks(profiles: Mapping[str, DeviceProfile]) -> tuple[Block, ...]:
    """Every block a signature check needs, once each, in table and address order."""
    blocks: set[Block] = set()
    for profile in profiles.values():
        if profile.identify is None:
            continue
        points = _points(profile)
        blocks.update(_block(points[c.channel]) for c in profile.identify.signature)
    return tuple(sorted(blocks))


def _value(point: PointSpec, words: tuple[int, ...] | None) -> Decimal | None:
    if words is None:
        return None
    try:
        value = decode(point, words)
    except DataError:
        return None
    return value if value.is_finite() else None


def match_signatures(readings: Mapping[Block, tuple[int, ...] | None],
                     profiles: Mapping[str, DeviceProfile],
                     ) -> tuple[tuple[str, int, tuple[tuple[str, str], ...]], ...]:
    """(profile, checks passed, (channel, value) read) of every profile whose required
    checks pass, best first. A block missing from ``readings`` or None (refused, not
    read) fails its checks."""
    ranked = []
    for name, profile in profiles.items():
        if profile.identify is None or not profile.identify.signature:
            continue
        points = _points(profile)
        passed, seen, ok = 0, [], True
        for check in profile.identify.signature:
            point = points[check.channel]
            value = _value(point, readings.get(_block(point)))
            good = value is not None and check.min <= value <= check.max
            if value is not None:
                seen.append((check.channel, str(value)))
            if good:
                passed += 1
            elif check.required:
                ok = False
        if ok:
            ranked.append((name, passed, tuple(seen)))
    ranked.sort(key=lambda hit: (-hit[1], hit[0]))
    return tuple(ranked)


async def _device_id(link: UnitLink, unit: int) -> tuple[tuple[str, str], ...] | str:
    """The basic objects, or why there are none."""
    objects: list[tuple[str, str]] = []
    object_id = 0
    for _ in range(4):  # basic objects fit one reply; a device may split them
        try:
            reply = await link.identification(unit, object_id)
        except DriverError as exc:
            return f"no device identification (function 43/14): {exc}"
        if isinstance(reply, Refusal):
            if reply.code in _UNSUPPORTED:
                return f"device identification (function 43/14) refused: {reply.name}"
            return f"device identification (function 43/14) failed: {reply.name}"
        objects.extend(reply.named())
        if not reply.more_follows or reply.next_object <= object_id:
            break
        object_id = reply.next_object
    if not any(text for _, text in objects):
        return "device identification (function 43/14) answered with no objects"
    return tuple(objects)


async def _read_all(link: UnitLink, unit: int, blocks: Iterable[Block],
                    pause_s: float) -> dict[Block, tuple[int, ...] | None]:
    readings: dict[Block, tuple[int, ...] | None] = {}
    for block in blocks:
        await asyncio.sleep(pause_s)
        try:
            reply = await link.read(unit, block)
        except DriverError:
            reply = None
        readings[block] = None if isinstance(reply, Refusal) else reply
    return readings


async def _serial(link: UnitLink, unit: int, profile: DeviceProfile,
                  pause_s: float) -> str | None:
    point = _points(profile).get(SERIAL_NUMBER)
    if point is None:
        return None
    words = (await _read_all(link, unit, [_block(point)], pause_s))[_block(point)]
    value = _value(point, words)
    return None if value is None else str(value)


async def identify(link: UnitLink, unit: int, profiles: Mapping[str, DeviceProfile], *,
                   pause_s: float = 0.1) -> Identification:
    """Who ``unit`` is and the profile to propose. ``pause_s``: wait before each
    request (the bundled Eastron profiles want 100 ms between queries)."""
    notes: list[str] = []
    objects = await _device_id(link, unit)
    if isinstance(objects, tuple):
        named = dict(objects)
        identity = DeviceIdentity(source="modbus_device_id", vendor=named.get("VendorName"),
                                  model=named.get("ProductCode"),
                                  revision=named.get("MajorMinorRevision"), raw=objects)
        hits = match_product(objects, profiles)
        if hits:
            serial = await _serial(link, unit, profiles[hits[0]], pause_s)
            return Identification(
                identity=DeviceIdentity(source=identity.source, vendor=identity.vendor,
                                        model=identity.model, revision=identity.revision,
                                        serial=serial, raw=objects),
                profile=hits[0], candidates=hits[1:])
        notes.append(f"device identification {named.get('VendorName', '?')} "
                     f"{named.get('ProductCode', '?')}: no profile declares this product "
                     "code; trying signatures")
    else:
        identity = DeviceIdentity(source="none")
        notes.append(objects)
    readings = await _read_all(link, unit, signature_blocks(profiles), pause_s)
    ranked = match_signatures(readings, profiles)
    if not ranked:
        notes.append("no profile's signature matches (no plausible voltage and frequency "
                     "at any profile's addresses)")
        return Identification(identity=identity, profile=None, notes=tuple(notes))
    best, _, seen = ranked[0]
    profile = profiles[best]
    serial = await _serial(link, unit, profile, pause_s)
    if identity.source == "none":
        identity = DeviceIdentity(source="signature", vendor=profile.manufacturer,
                                  model=profile.model, serial=serial, raw=seen)
    else:
        identity = DeviceIdentity(source=identity.source, vendor=identity.vendor,
                                  model=identity.model, revision=identity.revision,
                                  serial=serial, raw=identity.raw)
    return Identification(identity=identity, profile=best,
                          candidates=tuple(name for name, _, _ in ranked[1:]),
                          notes=tuple(notes))
