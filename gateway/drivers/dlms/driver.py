"""The DLMS driver: a meter's registers, identity, clock and load profile, per poll.

A poll associates, reads, and releases (meters drop an idle association after a minute
or two, so holding one across 15-minute polls would only trade a release for a failed
request). In one poll:

1. the clock (class 8): its drift against the gateway clock is measured and kept in
   :attr:`DlmsDriver.stats`; beyond ``clock_drift_warn_s`` the values of the poll are
   flagged CLOCK_UNTRUSTED (logged once when it starts, once when it ends);
2. the serial number (else the logical device name): an identity reading, so a new
   meter is a meter exchange to validation (``Kind.IDENTITY``);
3. the load profile (class 7), by range from the last read the gateway holds for the
   profile's channels (the pipeline's committed state, so a restart or an outage is
   caught up from the meter's own memory) to the meter's now, at most
   ``max_entries_per_poll`` rows; each row a reading stamped with its capture time;
4. the other registers (class 1, 3 and 4) by GET, stamped with the gateway clock.

Register values are scaled by the meter's own scaler_unit (attribute 3, read once per
meter identity) and converted exactly to the unit the profile stores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from gateway import log
from gateway.clock import Clock
from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.apdu import DataAccessResult, RangeDescriptor
from gateway.drivers.dlms.client import DlmsClient
from gateway.drivers.dlms.cosem import (
    CLOCK,
    LOGICAL_DEVICE_NAME,
    AttributeDescriptor,
    CaptureObject,
    CosemClass,
    CosemDateTime,
    DeviationSign,
    DlmsUnit,
    Obis,
    ProfileGenericAttr,
    ScalerUnit,
)
from gateway.drivers.dlms.cosem import SERIAL_NUMBER as SERIAL_NUMBER_OBIS
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.profile import (
    ProfileLayout,
    WantedChannel,
    rows_to_readings,
    to_unit,
)
from gateway.drivers.dlms.transport import LinkStats
from gateway.errors import DataError, DeviceError, ProtocolError
from gateway.model import SERIAL_NUMBER, Flag, Kind, Reading, Unit

__all__ = ["DlmsDriver", "DlmsReadPlan", "DlmsStats", "LoadProfilePlan", "RegisterPoint"]

_log = log.get("gateway.dlms")
_SECOND = timedelta(seconds=1)
#: Refusals that say the meter has no such object (rather than that reading it failed).
_ABSENT = frozenset({DataAccessResult.OBJECT_UNDEFINED, DataAccessResult.OBJECT_UNAVAILABLE,
                     DataAccessResult.OBJECT_CLASS_INCONSISTENT})


@dataclass(frozen=True, slots=True)
class RegisterPoint:
    """A value read by GET each poll."""

    channel: str
    obis: Obis
    class_id: int
    unit: Unit
    kind: Kind
    attribute: int = 2
    #: Class 1 (data) has no scaler_unit: the profile gives the scaler.
    scaler: int | None = None


@dataclass(frozen=True, slots=True)
class LoadProfilePlan:
    obis: Obis
    channels: tuple[WantedChannel, ...]
    status_obis: Obis | None
    #: What the device profile says the capture period is (checked), or None.
    capture_period_s: int | None
    #: How far back the first read looks when the gateway holds nothing yet.
    catch_up: timedelta
    max_entries_per_poll: int


@dataclass(frozen=True, slots=True)
class DlmsReadPlan:
    """What a poll reads: from the device profile and the meter's config."""

    registers: tuple[RegisterPoint, ...]
    load_profile: LoadProfilePlan | None
    zone: ZoneInfo
    clock: Obis | None = CLOCK
    serial: Obis | None = SERIAL_NUMBER_OBIS
    logical_device_name: Obis | None = LOGICAL_DEVICE_NAME
    clock_drift_warn_s: float = 30.0
    sign: DeviationSign = DeviationSign.BLUE_BOOK


@dataclass
class DlmsStats:
    """What the last polls found, for the status view and the benchmark."""

    clock_drift_s: float | None = None
    serial: str | None = None
    logical_device_name: str | None = None
    association_s: float | None = None
    profile_rows: int = 0
    #: The profile is still behind the meter's now (a long outage): the next poll
    #: goes on from where this one stopped.
    catching_up: bool = False
    capture_period_s: int | None = None
    link: LinkStats = field(default_factory=LinkStats)


@dataclass(frozen=True, slots=True)
class _ProfileShape:
    layout: ProfileLayout
    period_s: int
    scalers: dict[str, ScalerUnit]


class DlmsDriver:
    """Polls one DLMS meter through ``client``; ``cursor`` gives the time of the last
    profile row the gateway holds (None: nothing yet). ``lock`` is held for a whole
    poll when meters share a line; ``release`` is called by :meth:`close`."""

    def __init__(self, meter_id: str, client: DlmsClient, plan: DlmsReadPlan, clock: Clock,
                 *, cursor: Callable[[], datetime | None] | None = None,
                 lock: asyncio.Lock | None = None,
                 release: Callable[[], None] | None = None) -> None:
        self.meter_id = meter_id
        self.device = client.device
        self.plan = plan
        self._client = client
        self._clock = clock
        self._cursor = cursor or (lambda: None)
        self._lock = lock
        self._release = release
        #: The last profile row handed out in this process: ahead of the committed cursor
        #: while the store refuses writes (the poller holds those readings).
        self._returned: datetime | None = None
        self._shape: _ProfileShape | None = None
        self._shape_of: str | None = None
        self._scalers: dict[str, ScalerUnit] = {}
        self._drifting = False
        self._missing: set[str] = set()
        self.stats = DlmsStats(link=client.link.stats)

    async def connect(self) -> None:
        async with self._held():
            try:
                await self._client.associate()
                self.stats.association_s = self._client.association_s
            finally:
                if self._lock is not None:
                    # A shared line: the port is ours only while we hold its lock. Held
                    # open, it would refuse the other meters (it is opened exclusively).
                    await self._client.close()

    async def read(self) -> list[Reading]:
        async with self._held():
            try:
                await self._client.associate()
                self.stats.association_s = self._client.association_s
                return await self._poll()
            finally:
                await self._client.close()

    def rewind(self) -> None:
        """Forget the rows handed out but not stored: the next poll reads from the
        store's last read (the poller dropped what it could not keep)."""
        self._returned = None

    async def close(self) -> None:
        """Release the association and the link, and what the driver holds between
        polls (the invocation counter file); the next poll takes them again."""
        try:
            await self._client.close()
        finally:
            if self._release is not None:
                self._release()

    def _held(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self._lock if self._lock is not None else contextlib.nullcontext()

    # -- one poll ----------------------------------------------------------------------

    async def _poll(self) -> list[Reading]:
        plan = self.plan
        meter_now, flags = await self._read_clock()
        identity = await self._read_identity()
        rows: list[Reading] = []
        since: datetime | None = None
        returned = self._returned
        if plan.load_profile is not None:
            rows, since, returned = await self._read_profile(meter_now, flags, identity)
        at = self._clock.now()
        out: list[Reading] = []
        if identity is not None:
            # The profile read belongs to the meter we are talking to: a new meter's rows
            # are all its own, so its identity holds from the first of them. With none
            # (a catch-up step over slots nobody captured, or a meter clock behind ours)
            # it holds from where the read began: its later rows may be older than ``at``.
            first = rows[0].at if rows else min(since or at, at)
            out.append(Reading(meter_id=self.meter_id, channel=SERIAL_NUMBER, at=first,
                               value=identity, unit=Unit.COUNT, kind=Kind.IDENTITY))
        out.extend(rows)
        for point in plan.registers:
            try:
                value = await self._register(point)
            except DeviceError as exc:
                if exc.code not in _ABSENT:
                    raise
                self._absent(point, exc)
                continue
            out.append(Reading(meter_id=self.meter_id, channel=point.channel, at=at,
                               value=value, unit=point.unit, kind=point.kind, flags=flags,
                               meter_at=meter_now))
        # Only now are the rows handed out: a poll that fails after the profile read
        # (a timeout at a register) reads them again next time.
        self._returned = returned
        return out

    def _absent(self, point: RegisterPoint, exc: DeviceError) -> None:
        """A point this meter does not have (a generic profile lists more than most
        meters carry): logged once, the rest of the poll goes on."""
        if point.channel in self._missing:
            return
        self._missing.add(point.channel)
        level = _log.error if point.kind is Kind.CUMULATIVE else _log.warning
        level("meter has no such object: point not read", meter_id=self.meter_id,
              channel=point.channel, error=str(exc))

    async def _read_clock(self) -> tuple[datetime | None, int]:
        obis = self.plan.clock
        if obis is None:
            return None, 0
        data, gateway_now = await self._client.read_clock(obis, self._clock)
        when = CosemDateTime.from_data(data)
        meter_now = when.to_datetime(sign=self.plan.sign, zone=self.plan.zone)
        drift = (meter_now - gateway_now).total_seconds()
        self.stats.clock_drift_s = drift
        unsure = when.status is not None and bool(when.status & 0x03)
        drifting = abs(drift) > self.plan.clock_drift_warn_s or unsure
        if drifting != self._drifting:
            self._drifting = drifting
            if drifting:
                _log.warning("meter clock drifts: values flagged clock-untrusted",
                             meter_id=self.meter_id, drift_s=round(drift, 1),
                             clock_status=int(when.status or 0),
                             limit_s=self.plan.clock_drift_warn_s)
            else:
                _log.info("meter clock back within limits", meter_id=self.meter_id,
                          drift_s=round(drift, 1))
        return meter_now, int(Flag.CLOCK_UNTRUSTED) if drifting else 0

    async def _read_identity(self) -> Decimal | None:
        plan = self.plan
        identity: Decimal | None = None
        if plan.logical_device_name is not None:
            raw = await self._client.get(AttributeDescriptor(CosemClass.DATA,
                                                             plan.logical_device_name, 2))
            self.stats.logical_device_name = _text(raw)
        if plan.serial is not None:
            raw = await self._client.get(AttributeDescriptor(CosemClass.DATA, plan.serial, 2))
            self.stats.serial = _text(raw)
            identity = _identity(raw)
        elif plan.logical_device_name is not None and self.stats.logical_device_name:
            identity = Decimal(int.from_bytes(self.stats.logical_device_name.encode(), "big"))
        return identity

    async def _register(self, point: RegisterPoint) -> Decimal:
        attribute = AttributeDescriptor(point.class_id, point.obis, point.attribute)
        raw = await self._client.get(attribute)
        if point.class_id == CosemClass.DATA:
            return _plain(raw, point.scaler or 0, point.channel, self.device)
        scaler = self._scalers.get(point.channel)
        if scaler is None:
            scaler = ScalerUnit.from_data(await self._client.get(
                AttributeDescriptor(point.class_id, point.obis, 3)))
            self._scalers[point.channel] = scaler
        return to_unit(_number(scaler, raw, point.channel, self.device), scaler, point.unit,
                       what=point.channel, device=self.device)

    # -- the load profile ----------------------------------------------------------------

    async def _read_profile(self, meter_now: datetime | None, flags: int,
                            identity: Decimal | None
                            ) -> tuple[list[Reading], datetime, datetime | None]:
        """The rows of this poll, the time the read began at (every row the meter has
        from then on is its own), and where the next poll goes on from once these rows
        are handed out."""
        spec = self.plan.load_profile
        assert spec is not None
        shape = await self._profile_shape(spec, str(identity))
        now = meter_now or self._clock.now()
        period = timedelta(seconds=shape.period_s)
        cursor = _latest(self._cursor(), self._returned)
        start = cursor + _SECOND if cursor is not None else now - spec.catch_up
        end = min(start + period * spec.max_entries_per_poll - _SECOND, now)
        if end < start:
            return [], start, self._returned
        zone = self.plan.zone
        access = RangeDescriptor(
            shape.layout.clock_object,
            CosemDateTime.from_datetime(start.astimezone(zone), sign=self.plan.sign).to_data(),
            CosemDateTime.from_datetime(end.astimezone(zone), sign=self.plan.sign).to_data())
        buffer = await self._client.get(
            AttributeDescriptor(CosemClass.PROFILE_GENERIC, spec.obis,
                                ProfileGenericAttr.BUFFER), access)
        rows = rows_to_readings(buffer, shape.layout, shape.scalers, meter_id=self.meter_id,
                                period_s=shape.period_s, zone=zone, device=self.device,
                                sign=self.plan.sign, extra_flags=flags)
        # A meter may answer a row on the range's edge, or its whole buffer: keep what
        # was asked for, in time order.
        rows = sorted((r for r in rows if start <= r.at <= end), key=lambda r: r.at)
        self.stats.profile_rows += len({r.at for r in rows})
        self.stats.catching_up = end < now - period
        if rows:
            return rows, start, rows[-1].at
        # Nothing in the range: rows older than a period before the meter's now will
        # never come (the meter was off); the last period may still be due.
        return rows, start, _latest(self._returned, min(end, now - period))

    async def _profile_shape(self, spec: LoadProfilePlan, identity: str) -> _ProfileShape:
        """Capture objects, capture period and the columns' scalers: read once per meter
        identity (a new meter may capture other columns)."""
        if self._shape is not None and self._shape_of == identity:
            return self._shape
        client = self._client
        objects = axdr.as_items(await client.get(AttributeDescriptor(
            CosemClass.PROFILE_GENERIC, spec.obis, ProfileGenericAttr.CAPTURE_OBJECTS)))
        capture = [CaptureObject.from_data(item) for item in objects]
        period = axdr.as_int(await client.get(AttributeDescriptor(
            CosemClass.PROFILE_GENERIC, spec.obis, ProfileGenericAttr.CAPTURE_PERIOD)))
        if period <= 0:
            raise ProtocolError(f"load profile {spec.obis} has capture period {period}: "
                                "it is not captured periodically", device=self.device)
        if spec.capture_period_s is not None and period != spec.capture_period_s:
            raise ProtocolError(f"load profile {spec.obis} captures every {period} s, the "
                                f"device profile says {spec.capture_period_s} s; correct "
                                "load_profile.capture_period_s", device=self.device)
        layout = ProfileLayout.build(capture, spec.channels, status_obis=spec.status_obis,
                                     device=self.device)
        scalers: dict[str, ScalerUnit] = {}
        for column in layout.columns:
            capture_object = column.capture
            if capture_object.class_id in (CosemClass.REGISTER, CosemClass.EXTENDED_REGISTER):
                scalers[column.wanted.channel] = ScalerUnit.from_data(await client.get(
                    AttributeDescriptor(capture_object.class_id, capture_object.obis, 3)))
            else:
                raise ProtocolError(f"profile column {capture_object.obis} is class "
                                    f"{capture_object.class_id}, not a register: no unit",
                                    device=self.device)
        self._shape = _ProfileShape(layout, period, scalers)
        self._shape_of = identity
        self.stats.capture_period_s = period
        return self._shape


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _text(raw: Data) -> str:
    if isinstance(raw, axdr.OctetString | axdr.VisibleString | axdr.Utf8String):
        return raw.value.decode("latin-1").strip("\x00 ")
    return str(axdr.as_int(raw))


def _identity(raw: Data) -> Decimal:
    """A serial number as a number: its digits if it is all digits, else its bytes read
    as one big-endian integer (the same serial always gives the same number)."""
    if isinstance(raw, axdr.OctetString | axdr.VisibleString | axdr.Utf8String):
        text = raw.value.decode("latin-1").strip("\x00 ")
        if text.isdigit():
            return Decimal(int(text))
        return Decimal(int.from_bytes(raw.value, "big"))
    return Decimal(axdr.as_int(raw))


def _number(scaler: ScalerUnit, raw: Data, channel: str, device: str) -> Decimal:
    try:
        return scaler.apply(raw)
    except ProtocolError:
        raise
    except (ValueError, ArithmeticError) as exc:  # NaN or infinity in a float register
        raise DataError(f"{channel}: not a number ({exc})", source=device) from exc


def _plain(raw: Data, scaler: int, channel: str, device: str) -> Decimal:
    return _number(ScalerUnit(scaler, DlmsUnit.COUNT), raw, channel, device)

