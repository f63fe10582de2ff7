"""A simulated household: deterministic load, exact energy, consistent instant values.

Power is piecewise constant per minute: a daily curve with a morning and an evening
peak (in the meter's local time), seeded noise, and the odd appliance switching on.
Everything is integer arithmetic on a seeded hash of (seed, minute), so the same seed
gives the same watts on every machine, and energy is integrated exactly: the meter
adds its power once per whole second, in joules (W*s), and shows floor(J / 3600) Wh.
``MeterModel.true_energy_wh(at)`` is therefore an exact, reproducible integer.

Instant values (per-phase voltage, current, power factor, frequency) are derived from
the same minute's hash, so a poll sees power, current and voltage that agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from zoneinfo import ZoneInfo

__all__ = ["DEFAULT_CURVE", "Instant", "Load", "LoadShape", "MeterModel", "PhaseValues",
           "TariffSchedule"]

#: Share of (peak - base) at the start of each local hour, in permille.
DEFAULT_CURVE = (
    60, 50, 40, 40, 40, 60, 200, 650, 700, 400, 250, 250,
    300, 250, 200, 200, 300, 550, 850, 1000, 900, 650, 400, 150,
)
_MASK = (1 << 64) - 1
_MILLI = Decimal("0.001")


def _mix(*parts: int) -> int:
    """splitmix64 over the parts: a fast, portable, well-spread 64-bit hash."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state + (part & _MASK) + 0x9E3779B97F4A7C15) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        state = z ^ (z >> 31)
    return state


@dataclass(frozen=True, slots=True)
class LoadShape:
    """The character of a household's demand."""

    base_w: int = 250
    peak_w: int = 4500
    #: Multiplicative noise, +- this many permille, drawn per minute.
    noise_permille: int = 200
    #: An appliance (kettle, oven) adds ``spike_w`` in this many minutes per thousand.
    spike_permille: int = 15
    spike_w: int = 2000
    #: The local time the daily curve follows (peaks at 7-8 h and 19 h local).
    tz: str = "UTC"
    curve: tuple[int, ...] = DEFAULT_CURVE

    def __post_init__(self) -> None:
        if len(self.curve) != 24:
            raise ValueError("curve needs one value per hour (24)")
        if not 0 <= self.base_w <= self.peak_w:
            raise ValueError("need 0 <= base_w <= peak_w")


@dataclass(frozen=True, slots=True)
class TariffSchedule:
    """A two-rate meter's switch: tariff 1 (the day rate) counts from ``day_from_hour``
    to ``day_to_hour`` local time, tariff 2 (the night rate) the rest of the day. Local
    time follows the zone's DST, so a 23-hour day has one night hour less."""

    tz: str = "UTC"
    day_from_hour: int = 7
    day_to_hour: int = 23

    def __post_init__(self) -> None:
        if not 0 <= self.day_from_hour < self.day_to_hour <= 24:
            raise ValueError("need 0 <= day_from_hour < day_to_hour <= 24")

    def tariff(self, local_minute_of_day: int) -> int:
        """1 or 2 for a minute of the local day (0-1439)."""
        return 1 if self.day_from_hour * 60 <= local_minute_of_day < self.day_to_hour * 60 \
            else 2


class _ZoneOffsets:
    """A zone's UTC offset in minutes per Unix hour, cached (offsets change on hours)."""

    def __init__(self, tz: str) -> None:
        self._zone = ZoneInfo(tz)
        self._by_hour: dict[int, int] = {}

    def minutes(self, hour: int) -> int:
        offset = self._by_hour.get(hour)
        if offset is None:
            moment = datetime.fromtimestamp(hour * 3600, UTC).astimezone(self._zone)
            delta = moment.utcoffset()
            offset = int(delta.total_seconds()) // 60 if delta is not None else 0
            self._by_hour[hour] = offset
        return offset


class Load:
    """Watts per minute for one seeded household."""

    def __init__(self, shape: LoadShape, seed: int) -> None:
        self.shape = shape
        self.seed = seed
        self._zone = ZoneInfo(shape.tz)
        self._offsets: dict[int, int] = {}

    def power_w(self, minute: int) -> int:
        """Demand during Unix minute ``minute`` (integer watts)."""
        shape = self.shape
        local = minute + self._offset_minutes(minute // 60)
        hour, within = divmod(local % 1440, 60)
        curve = shape.curve
        share = curve[hour] * (60 - within) + curve[(hour + 1) % 24] * within  # permille*60
        h = _mix(self.seed, minute)
        noise = 1000 + (h % (2 * shape.noise_permille + 1)) - shape.noise_permille
        watts = shape.base_w + (shape.peak_w - shape.base_w) * share * noise // 60_000_000
        if (h >> 20) % 1000 < shape.spike_permille:
            watts += shape.spike_w
        return watts

    def _offset_minutes(self, hour: int) -> int:
        """The zone's UTC offset during a Unix hour (DST changes on hour boundaries)."""
        offset = self._offsets.get(hour)
        if offset is None:
            moment = datetime.fromtimestamp(hour * 3600, UTC).astimezone(self._zone)
            delta = moment.utcoffset()
            offset = int(delta.total_seconds()) // 60 if delta is not None else 0
            self._offsets[hour] = offset
        return offset

    def hour_energy_j(self, hour: int) -> int:
        return 60 * sum(self.power_w(hour * 60 + m) for m in range(60))


@dataclass(frozen=True, slots=True)
class PhaseValues:
    voltage_v: Decimal
    current_a: Decimal
    power_w: int
    power_factor: Decimal


@dataclass(frozen=True, slots=True)
class Instant:
    """What the meter measures during one minute."""

    power_w: int
    phases: tuple[PhaseValues, ...]
    frequency_hz: Decimal
    power_factor: Decimal
    neutral_current_a: Decimal


class MeterModel:
    """One meter on one household: energy since ``epoch`` and instant values."""

    def __init__(self, load: Load, epoch: datetime, *, start_energy_wh: int = 0,
                 phases: int = 1, tariffs: TariffSchedule | None = None,
                 start_tariff_wh: tuple[int, int] = (0, 0)) -> None:
        if epoch.utcoffset() is None:
            raise ValueError("epoch must be timezone-aware")
        if phases not in (1, 3):
            raise ValueError("phases must be 1 or 3")
        self.load = load
        self.epoch = epoch.astimezone(UTC)
        self.start_energy_wh = start_energy_wh
        self.phases = phases
        self._epoch_s = _seconds(self.epoch)
        self._hour0 = self._epoch_s // 3600
        #: Joules from the start of hour0 to the start of hour0 + k.
        self._prefix = [0]
        self.tariffs = tariffs
        self.start_tariff_wh = start_tariff_wh
        self._tariff_zone = _ZoneOffsets(tariffs.tz) if tariffs is not None else None
        #: Joules on (tariff 1, tariff 2) from the start of hour0 to hour0 + k.
        self._tariff_prefix: list[tuple[int, int]] = [(0, 0)]

    def energy_j(self, at: datetime) -> int:
        """Joules since the epoch, counted once per whole second (0 before the epoch)."""
        now_s = _seconds(at)
        if now_s <= self._epoch_s:
            return 0
        return self._cumulative_j(now_s) - self._epoch_j

    def true_energy_wh(self, at: datetime) -> int:
        """The meter's energy register in whole Wh at ``at``: exact and reproducible."""
        return self.start_energy_wh + self.energy_j(at) // 3600

    def tariff_energy_wh(self, at: datetime) -> tuple[int, int]:
        """A two-rate meter's (day, night) registers in whole Wh at ``at``: each counts
        the joules of its own minutes, so their sum is the meter's total register."""
        if self.tariffs is None:
            raise ValueError("this meter has no tariff schedule")
        now_s = _seconds(at)
        day, night = self.start_tariff_wh
        if now_s <= self._epoch_s:
            return day, night
        now_j, epoch_j = self._tariff_j(now_s), self._epoch_tariff_j
        return day + (now_j[0] - epoch_j[0]) // 3600, night + (now_j[1] - epoch_j[1]) // 3600

    @cached_property
    def _epoch_tariff_j(self) -> tuple[int, int]:
        return self._tariff_j(self._epoch_s)

    def _tariff_of_minute(self, minute: int) -> int:
        assert self.tariffs is not None and self._tariff_zone is not None
        local = minute + self._tariff_zone.minutes(minute // 60)
        return self.tariffs.tariff(local % 1440)

    def _hour_tariff_j(self, hour: int) -> tuple[int, int]:
        split = [0, 0, 0]
        power = self.load.power_w
        for minute in range(hour * 60, hour * 60 + 60):
            split[self._tariff_of_minute(minute)] += 60 * power(minute)
        return split[1], split[2]

    def _tariff_j(self, second: int) -> tuple[int, int]:
        hour, within = divmod(second - self._hour0 * 3600, 3600)
        prefix = self._tariff_prefix
        while len(prefix) <= hour:
            k = len(prefix) - 1
            one, two = self._hour_tariff_j(self._hour0 + k)
            prefix.append((prefix[k][0] + one, prefix[k][1] + two))
        split = [0, *prefix[hour]]
        first_minute = (self._hour0 + hour) * 60
        minutes, seconds = divmod(within, 60)
        power = self.load.power_w
        for minute in range(first_minute, first_minute + minutes):
            split[self._tariff_of_minute(minute)] += 60 * power(minute)
        last = first_minute + minutes
        split[self._tariff_of_minute(last)] += seconds * power(last)
        return split[1], split[2]

    def instant(self, at: datetime) -> Instant:
        """Instant values during the minute that contains ``at``."""
        return self._instant(_seconds(at) // 60)

    @cached_property
    def _epoch_j(self) -> int:
        return self._cumulative_j(self._epoch_s)

    def _cumulative_j(self, second: int) -> int:
        hour, within = divmod(second - self._hour0 * 3600, 3600)
        while len(self._prefix) <= hour:
            k = len(self._prefix) - 1
            self._prefix.append(self._prefix[k] + self.load.hour_energy_j(self._hour0 + k))
        first_minute = (self._hour0 + hour) * 60
        minutes, seconds = divmod(within, 60)
        power = self.load.power_w
        joules = self._prefix[hour] + 60 * sum(power(first_minute + m) for m in range(minutes))
        return joules + seconds * power(first_minute + minutes)

    def _instant(self, minute: int) -> Instant:
        total = self.load.power_w(minute)
        h = _mix(self.load.seed, minute, 0xF00D)
        if self.phases == 1:
            powers = [total]
        else:
            weights = [300 + (h >> shift) % 400 for shift in (0, 10, 20)]
            first = total * weights[0] // sum(weights)
            second = total * weights[1] // sum(weights)
            powers = [first, second, total - first - second]
        phases = []
        apparent = Decimal(0)
        for index, watts in enumerate(powers):
            g = _mix(h, index)
            volts = Decimal(2300 + g % 81 - 40).scaleb(-1)  # 226.0 .. 234.0 V
            pf = Decimal(90 + (g >> 16) % 10).scaleb(-2)  # 0.90 .. 0.99
            amps = (Decimal(watts) / (volts * pf)).quantize(_MILLI)
            apparent += Decimal(watts) / pf
            phases.append(PhaseValues(voltage_v=volts, current_a=amps, power_w=watts,
                                      power_factor=pf))
        total_pf = (Decimal(total) / apparent).quantize(_MILLI) if total else Decimal(1)
        currents = [p.current_a for p in phases]
        if len(currents) == 3:
            a, b, c = currents
            # Phasors 120 degrees apart (the power-factor angles are left out).
            neutral = (a * a + b * b + c * c - a * b - b * c - c * a).sqrt().quantize(_MILLI)
        else:
            neutral = currents[0]
        frequency = Decimal(4995 + (h >> 40) % 11).scaleb(-2)  # 49.95 .. 50.05 Hz
        return Instant(power_w=total, phases=tuple(phases), frequency_hz=frequency,
                       power_factor=total_pf, neutral_current_a=neutral)


def _seconds(at: datetime) -> int:
    """Whole Unix seconds (floor) of an aware datetime, without float rounding."""
    if at.utcoffset() is None:
        raise ValueError("naive datetime: give a UTC offset")
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * 86400 + delta.seconds
