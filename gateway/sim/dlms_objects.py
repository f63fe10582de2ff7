"""A simulated DLMS/COSEM meter: its spec, its COSEM objects, and the switches tests
pull (drift, outages, exchange, silence, lost frames, a replayed answer).

Every value is computed at the moment it is read from the shared injected clock and
the household's :class:`~gateway.sim.load.MeterModel`, so a test knows the exact answer:
the total import register is the sum of the two tariff registers, the profile entry at
capture time T holds the registers at the true instant T - drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from gateway.clock import Clock
from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.apdu import (
    Access,
    DataAccessResult,
    EntryDescriptor,
    RangeDescriptor,
)
from gateway.drivers.dlms.cosem import (
    CLOCK,
    CURRENT_ASSOCIATION,
    LOAD_PROFILE_1,
    LOGICAL_DEVICE_NAME,
    SERIAL_NUMBER,
    AttributeDescriptor,
    CaptureObject,
    CosemClass,
    DeviationSign,
    DlmsUnit,
    Obis,
    ScalerUnit,
)
from gateway.drivers.dlms.counters import MemoryCounters
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.dates import ClockStatus, CosemDateTime
from gateway.drivers.dlms.hdlc_params import HdlcParameters
from gateway.drivers.dlms.keys import SuiteKeys
from gateway.drivers.dlms.mode_e import Identification
from gateway.errors import ProtocolError
from gateway.sim.dlms_object_list import object_list
from gateway.sim.dlms_profile import Capture, SelectionError, captures, select
from gateway.sim.load import Load, LoadShape, MeterModel, TariffSchedule

__all__ = ["CAPTURE_OBJECTS", "DlmsMeter", "DlmsMeterSpec", "Security"]

Security = Literal["none", "lls", "hls_gmac"]

IMPORT: Final = Obis(1, 0, 1, 8, 0, 255)
EXPORT: Final = Obis(1, 0, 2, 8, 0, 255)
TARIFF_1: Final = Obis(1, 0, 1, 8, 1, 255)
TARIFF_2: Final = Obis(1, 0, 1, 8, 2, 255)
POWER: Final = Obis(1, 0, 1, 7, 0, 255)
MAX_DEMAND: Final = Obis(1, 0, 1, 6, 0, 255)
STATUS: Final = Obis(0, 0, 96, 10, 1, 255)

#: The load profile's columns: clock, AMR status, then the four energy registers.
CAPTURE_OBJECTS: Final = (
    CaptureObject(CosemClass.CLOCK, CLOCK, 2),
    CaptureObject(CosemClass.DATA, STATUS, 2),
    CaptureObject(CosemClass.REGISTER, IMPORT, 2),
    CaptureObject(CosemClass.REGISTER, EXPORT, 2),
    CaptureObject(CosemClass.REGISTER, TARIFF_1, 2),
    CaptureObject(CosemClass.REGISTER, TARIFF_2, 2),
)
_WH: Final = ScalerUnit(0, DlmsUnit.WATT_HOUR)
_W: Final = ScalerUnit(0, DlmsUnit.WATT)


@dataclass(frozen=True)
class DlmsMeterSpec:
    """One simulated DLMS meter: identity, household, link and security."""

    meter_id: str
    serial: str = "12345678"
    logical_device_name: str = "SIM0000012345678"
    seed: int = 0
    shape: LoadShape = field(default_factory=LoadShape)
    #: When ``start_energy_wh`` applies and the meter was installed (its first
    #: capture); default: the clock's time at start minus the profile depth, so the
    #: buffer is full.
    epoch: datetime | None = None
    start_energy_wh: int = 0
    #: The day/night switch of 1.0.1.8.1 / 1.0.1.8.2; the total 1.0.1.8.0 is their sum.
    tariffs: TariffSchedule = field(default_factory=TariffSchedule)
    #: The zone of the meter's local time (clock and capture times carry its offset).
    time_zone: str = "UTC"
    #: How the meter signs the deviation of its date-times (the ISO way is a common
    #: deviation from the Blue Book).
    deviation_sign: DeviationSign = DeviationSign.BLUE_BOOK
    server_logical: int = 1
    #: The HDLC lower address (meters sharing one RS-485 line differ here).
    server_physical: int | None = None
    #: Answer SNRM to the all-station physical address (0x7F) from its own address.
    answers_all_station: bool = False
    #: What clients other than the public one (SAP 16) must use.
    security: Security = "none"
    password: bytes = b""
    keys: SuiteKeys | None = None
    system_title: bytes = bytes.fromhex("53494D0000000001")
    capture_period_s: int = 900
    profile_depth_days: int = 40
    clock_drift_s: float = 0.0
    #: True-time intervals [start, end) the meter is unpowered: no captures inside.
    outages: tuple[tuple[datetime, datetime], ...] = ()
    hdlc_limits: HdlcParameters = field(default_factory=HdlcParameters)
    max_pdu_size: int = 1024
    #: Mode E identification (a lower-case third letter: 20 ms reaction time).
    identification: Identification = field(
        default_factory=lambda: Identification("SIm", "5", ("2",), "DLMS"))

    def __post_init__(self) -> None:
        if self.security == "lls" and not self.password:
            raise ValueError(f"{self.meter_id}: LLS needs a password")
        if self.security == "hls_gmac" and self.keys is None:
            raise ValueError(f"{self.meter_id}: HLS-GMAC needs keys")
        if len(self.system_title) != 8:
            raise ValueError(f"{self.meter_id}: the system title is 8 bytes")
        if self.capture_period_s <= 0 or 86400 % self.capture_period_s:
            raise ValueError(f"{self.meter_id}: capture period must divide a day")


Getter = Callable[[datetime], Data]


class DlmsMeter:
    """A running meter's state and controls (one per spec, shared by all its links)."""

    def __init__(self, spec: DlmsMeterSpec, clock: Clock) -> None:
        self.spec = spec
        self.clock = clock
        self.zone = ZoneInfo(spec.time_zone)
        self.serial = spec.serial
        self.drift_s = spec.clock_drift_s
        #: Invocation counters (HLS-GMAC): the meter's own and the last of each client.
        self.counters = MemoryCounters()
        self.outages: list[tuple[datetime, datetime]] = list(spec.outages)
        start = spec.epoch or _floor_day(clock.now()) - timedelta(days=spec.profile_depth_days)
        self.installed_at = start.astimezone(UTC)
        self.model = self._model(self.installed_at, spec.start_energy_wh)
        #: Test switches, read by the sessions and links.
        self.is_silent = False
        self.frames_to_drop = 0
        self.replay_next = False
        #: Requests answered (APDUs, any outcome) and associations accepted.
        self.requests = 0
        self.associations = 0
        self._objects: dict[Obis, tuple[int, dict[int, Getter]]] = self._object_table()

    @property
    def meter_id(self) -> str:
        return self.spec.meter_id

    def _model(self, epoch: datetime, start_wh: int) -> MeterModel:
        spec = self.spec
        return MeterModel(Load(spec.shape, spec.seed), epoch, start_energy_wh=start_wh,
                          tariffs=spec.tariffs, start_tariff_wh=(start_wh, 0))

    # --- test controls ----------------------------------------------------------------

    def exchange(self, *, serial: str, start_energy_wh: int, at: datetime) -> None:
        """A new meter at ``at``: new serial, registers from ``start_energy_wh``, an
        empty profile from then on."""
        self.serial = serial
        self.installed_at = at.astimezone(UTC)
        self.model = self._model(self.installed_at, start_energy_wh)

    def set_clock_drift(self, seconds: float) -> None:
        self.drift_s = seconds

    def add_outage(self, start: datetime, end: datetime) -> None:
        self.outages.append((start.astimezone(UTC), end.astimezone(UTC)))

    def silent(self, on: bool = True) -> None:
        """Hear nothing and answer nothing (unpowered), until switched back."""
        self.is_silent = on

    def drop_next_frames(self, n: int) -> None:
        """Lose the next ``n`` frames the meter sends (HDLC frames, wrapper APDUs)."""
        self.frames_to_drop = n

    def replay_last_response(self) -> None:
        """Answer the next request with the previous response, byte for byte."""
        self.replay_next = True

    # --- values -----------------------------------------------------------------------

    def meter_time(self, true_at: datetime) -> datetime:
        return true_at + timedelta(seconds=self.drift_s)

    def registers_wh(self, true_at: datetime) -> tuple[int, int, int, int]:
        """(import total, export, tariff 1, tariff 2) in Wh at a true instant."""
        day, night = self.model.tariff_energy_wh(true_at)
        return day + night, self.export_wh(true_at), day, night

    def export_wh(self, true_at: datetime) -> int:
        """A small deterministic export register: 1 Wh per whole hour since install."""
        return max(0, int((true_at - self.installed_at).total_seconds()) // 3600)

    def max_demand(self, true_at: datetime) -> tuple[int, datetime]:
        """The largest average power (W) of a whole capture period since the meter's
        local midnight, and the meter time that period ended (the midnight if none)."""
        period = timedelta(seconds=self.spec.capture_period_s)
        now = self.meter_time(true_at)
        local = now.astimezone(self.zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        best, best_at = 0, midnight
        end = midnight + period
        drift = timedelta(seconds=self.drift_s)
        while end <= now:
            joules = self.model.energy_j(end - drift) - self.model.energy_j(end - period - drift)
            demand = joules // self.spec.capture_period_s
            if demand > best:
                best, best_at = demand, end
            end += period
        return best, best_at

    def date_time(self, at: datetime, status: ClockStatus | None = None) -> axdr.OctetString:
        """A meter-time instant as the 12-byte COSEM date-time in the meter's zone."""
        return CosemDateTime.from_datetime(at.astimezone(self.zone), status=status,
                                           sign=self.spec.deviation_sign).to_data()

    def profile(self, true_now: datetime) -> list[Capture]:
        spec = self.spec
        return captures(self.meter_time(true_now), period_s=spec.capture_period_s,
                        depth_s=spec.profile_depth_days * 86400, drift_s=self.drift_s,
                        installed_at=self.installed_at, outages=self.outages)

    def entry(self, capture: Capture) -> tuple[Data, ...]:
        values = self.registers_wh(capture.true_at)
        return (self.date_time(capture.at), axdr.Unsigned(capture.status),
                *(axdr.DoubleLongUnsigned(v) for v in values))

    # --- the object table ---------------------------------------------------------------

    def get(self, attribute: AttributeDescriptor, access: Access | None = None
            ) -> Data | DataAccessResult:
        """What the meter answers to a GET of ``attribute`` now."""
        found = self._objects.get(attribute.obis)
        if found is None:
            return DataAccessResult.OBJECT_UNDEFINED
        class_id, getters = found
        if attribute.class_id != class_id:
            return DataAccessResult.OBJECT_CLASS_INCONSISTENT
        now = self.clock.now()
        if attribute.obis == LOAD_PROFILE_1 and attribute.attribute_id == 2:
            return self._buffer(now, access)
        if access is not None:
            return DataAccessResult.OTHER_REASON  # selective access is the buffer's only
        if attribute.attribute_id == 1:
            return axdr.OctetString(attribute.obis.to_bytes())
        getter = getters.get(attribute.attribute_id)
        if getter is None:
            return DataAccessResult.READ_WRITE_DENIED
        return getter(now)

    def _buffer(self, now: datetime, access: Access | None) -> Data | DataAccessResult:
        if access is not None and not isinstance(access, RangeDescriptor | EntryDescriptor):
            return DataAccessResult.OTHER_REASON
        bounds = None
        try:
            if isinstance(access, RangeDescriptor):
                sign = self.spec.deviation_sign
                bounds = (CosemDateTime.from_data(access.from_value).to_datetime(
                              zone=self.zone, sign=sign),
                          CosemDateTime.from_data(access.to_value).to_datetime(
                              zone=self.zone, sign=sign))
            chosen = select(self.profile(now), CAPTURE_OBJECTS, access, bounds)
        except (SelectionError, ProtocolError):
            return DataAccessResult.OTHER_REASON
        rows = []
        for capture in chosen.rows:
            entry = self.entry(capture)
            rows.append(axdr.Structure(tuple(entry[i] for i in chosen.columns)))
        return axdr.Array(tuple(rows))

    def _object_table(self) -> dict[Obis, tuple[int, dict[int, Getter]]]:
        def register(index: int) -> dict[int, Getter]:
            return {2: lambda t: axdr.DoubleLongUnsigned(self.registers_wh(t)[index]),
                    3: lambda t: _WH.to_data()}

        def clock_status(t: datetime) -> ClockStatus:
            return ClockStatus.DAYLIGHT_SAVING if t.astimezone(self.zone).dst() \
                else ClockStatus.NONE

        def time_zone(t: datetime) -> Data:
            local = t.astimezone(self.zone)
            offset = (local.utcoffset() or timedelta()) - (local.dst() or timedelta())
            return axdr.Long(-int(offset.total_seconds()) // 60)

        def demand(t: datetime) -> tuple[int, datetime]:
            return self.max_demand(t)

        profile: dict[int, Getter] = {
            3: lambda t: axdr.Array(tuple(c.to_data() for c in CAPTURE_OBJECTS)),
            4: lambda t: axdr.DoubleLongUnsigned(self.spec.capture_period_s),
            5: lambda t: axdr.Enum(1),  # sort method: FIFO
            7: lambda t: axdr.DoubleLongUnsigned(len(self.profile(t))),
            8: lambda t: axdr.DoubleLongUnsigned(
                self.spec.profile_depth_days * 86400 // self.spec.capture_period_s),
        }
        return {
            CLOCK: (CosemClass.CLOCK, {
                2: lambda t: self.date_time(self.meter_time(t), clock_status(t)),
                3: time_zone,
                4: lambda t: axdr.Unsigned(int(clock_status(t))),
                9: lambda t: axdr.Enum(1),  # clock base: internal crystal
            }),
            SERIAL_NUMBER: (CosemClass.DATA, {
                2: lambda t: axdr.OctetString(self.serial.encode("ascii"))}),
            LOGICAL_DEVICE_NAME: (CosemClass.DATA, {
                2: lambda t: axdr.OctetString(self.spec.logical_device_name.encode("ascii"))}),
            STATUS: (CosemClass.DATA, {2: lambda t: axdr.Unsigned(0)}),
            IMPORT: (CosemClass.REGISTER, register(0)),
            EXPORT: (CosemClass.REGISTER, register(1)),
            TARIFF_1: (CosemClass.REGISTER, register(2)),
            TARIFF_2: (CosemClass.REGISTER, register(3)),
            POWER: (CosemClass.REGISTER, {
                2: lambda t: axdr.DoubleLong(self.model.instant(t).power_w),
                3: lambda t: _W.to_data()}),
            MAX_DEMAND: (CosemClass.EXTENDED_REGISTER, {
                2: lambda t: axdr.DoubleLongUnsigned(demand(t)[0]),
                3: lambda t: _W.to_data(),
                4: lambda t: axdr.Unsigned(0),
                5: lambda t: self.date_time(demand(t)[1])}),
            LOAD_PROFILE_1: (CosemClass.PROFILE_GENERIC, profile),
            CURRENT_ASSOCIATION: (CosemClass.ASSOCIATION_LN, {
                2: lambda t: self._object_list()}),
        }

    def _object_list(self) -> Data:
        """Every object the meter serves (attribute 2 of the current association)."""
        listed = ((class_id, obis, getters.keys() | ({2} if obis == LOAD_PROFILE_1 else set()))
                  for obis, (class_id, getters) in self._objects.items())
        return object_list(listed)


def _floor_day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
