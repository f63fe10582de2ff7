"""The simulated household: deterministic, shaped like a day, and integrated exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.sim.load import Load, LoadShape, MeterModel

DAY = datetime(2026, 1, 15, tzinfo=UTC)
MINUTE0 = int(DAY.timestamp()) // 60


def test_same_seed_same_watts_other_seed_other_watts() -> None:
    a, b, c = Load(LoadShape(), 7), Load(LoadShape(), 7), Load(LoadShape(), 8)
    minutes = range(MINUTE0, MINUTE0 + 1440)
    assert [a.power_w(m) for m in minutes] == [b.power_w(m) for m in minutes]
    assert [a.power_w(m) for m in minutes] != [c.power_w(m) for m in minutes]


def test_daily_curve_has_morning_and_evening_peaks() -> None:
    load = Load(LoadShape(base_w=200, peak_w=5000), 1)

    def mean(hour: int) -> float:
        start = MINUTE0 + 60 * hour
        return sum(load.power_w(m) for m in range(start, start + 60)) / 60

    night, morning, midday, evening = mean(3), mean(7), mean(13), mean(19)
    assert evening > morning > midday > night
    assert all(200 <= load.power_w(m) <= 5000 * 1.2 + 2000
               for m in range(MINUTE0, MINUTE0 + 1440))


def test_curve_follows_local_time() -> None:
    quiet = {"noise_permille": 0, "spike_permille": 0}
    utc = Load(LoadShape(**quiet), 1)  # type: ignore[arg-type]
    chicago = Load(LoadShape(tz="America/Chicago", **quiet), 1)  # type: ignore[arg-type]
    evening_utc = MINUTE0 + 19 * 60
    assert chicago.power_w(evening_utc + 6 * 60) == utc.power_w(evening_utc)  # CST = UTC-6
    summer = int(datetime(2026, 7, 15, tzinfo=UTC).timestamp()) // 60 + 19 * 60
    assert chicago.power_w(summer + 5 * 60) == utc.power_w(summer)  # CDT = UTC-5


def brute_force_joules(load: Load, start: datetime, end: datetime) -> int:
    """Power once per whole second, second by second."""
    first, last = int(start.timestamp()), int(end.timestamp())
    return sum(load.power_w(second // 60) for second in range(first, last))


@pytest.mark.parametrize(
    ("epoch", "span"),
    [
        (DAY, timedelta(hours=2, minutes=13, seconds=7)),
        (DAY + timedelta(minutes=59, seconds=59), timedelta(seconds=2)),
        (DAY + timedelta(seconds=17, microseconds=999_999), timedelta(hours=1, seconds=43)),
        (DAY + timedelta(hours=23, minutes=30), timedelta(hours=1, minutes=1)),
    ],
)
def test_energy_is_the_exact_integral(epoch: datetime, span: timedelta) -> None:
    load = Load(LoadShape(), 3)
    model = MeterModel(load, epoch, start_energy_wh=100)
    at = epoch + span
    joules = brute_force_joules(load, epoch, at)
    assert model.energy_j(at) == joules
    assert model.true_energy_wh(at) == 100 + joules // 3600
    # Asking again, or earlier, changes nothing.
    assert model.energy_j(at) == joules
    assert model.energy_j(epoch) == 0 and model.energy_j(epoch - span) == 0


def test_energy_rises_and_is_reproducible() -> None:
    a = MeterModel(Load(LoadShape(), 5), DAY)
    b = MeterModel(Load(LoadShape(), 5), DAY)
    readings = [a.true_energy_wh(DAY + timedelta(minutes=37 * k)) for k in range(80)]
    assert readings == sorted(readings)
    assert readings == [b.true_energy_wh(DAY + timedelta(minutes=37 * k)) for k in range(80)]


def test_a_few_kilowatts_roll_a_16_bit_counter_within_a_day() -> None:
    model = MeterModel(Load(LoadShape(base_w=2000, peak_w=5000), 9), DAY)
    assert model.true_energy_wh(DAY + timedelta(days=1)) > 65536


def test_instant_values_agree_with_power() -> None:
    model = MeterModel(Load(LoadShape(), 4), DAY, phases=3)
    for minute in range(0, 1440, 97):
        at = DAY + timedelta(minutes=minute, seconds=30)
        now = model.instant(at)
        assert now.power_w == model.load.power_w(MINUTE0 + minute)
        assert sum(p.power_w for p in now.phases) == now.power_w
        for phase in now.phases:
            assert 226 <= phase.voltage_v <= 234
            assert abs(phase.current_a * phase.voltage_v * phase.power_factor
                       - phase.power_w) <= phase.voltage_v / 1000
        assert 0 <= now.neutral_current_a <= max(p.current_a for p in now.phases)
        assert Decimal("49.95") <= now.frequency_hz <= Decimal("50.05")
        assert model.instant(at) == now  # constant within the minute


def test_tariff_registers_split_the_energy_by_local_time() -> None:
    from zoneinfo import ZoneInfo

    from gateway.sim import TariffSchedule

    tz = ZoneInfo("Asia/Kolkata")  # +05:30: the 07:00 switch falls mid-way through a UTC hour
    day = datetime(2026, 6, 1, tzinfo=tz)
    model = MeterModel(Load(LoadShape(tz="Asia/Kolkata"), 6), day.astimezone(UTC),
                       start_energy_wh=900, tariffs=TariffSchedule(tz="Asia/Kolkata"),
                       start_tariff_wh=(600, 300))
    assert model.tariff_energy_wh(day) == (600, 300)
    seven, eleven_pm = day.replace(hour=7), day.replace(hour=23)
    # The day register stands still before 07:00, the night one from 07:00 to 23:00.
    assert model.tariff_energy_wh(seven)[0] == 600
    assert model.tariff_energy_wh(seven)[1] == model.tariff_energy_wh(eleven_pm)[1] > 300
    end = day + timedelta(days=1)
    day_wh, night_wh = model.tariff_energy_wh(end)
    assert model.tariff_energy_wh(end - timedelta(minutes=30))[0] == day_wh
    # Each register floors its own joules: the two together lose under 2 Wh to rounding.
    assert 0 <= model.true_energy_wh(end) - (day_wh + night_wh) < 2
