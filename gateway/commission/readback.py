"""Read-back: every point of a device's profile read (twice, a few seconds apart) and
each value judged for plausibility, as an installer would check it by eye.

The judging is pure (:func:`judge`: two polls in, one :class:`PointCheck` per point out);
:func:`read_back` is the shell that polls a driver. The rules, by unit:

- voltage: present and within the nominal range of low-voltage supply (a phase at 0 V
  is a phase not connected); frequency 45-65 Hz; power factor -1..1;
- current and power: not beyond what the meter is rated for (the profile's
  ``max_power_w``); a negative active power is a warning (the site exports, or a current
  transformer is reversed: the installer knows which);
- energy registers: not negative, never going backwards, and moving when the power says
  they should: with P watts over dt seconds a register of resolution r must advance
  once P*dt exceeds r twice over; with too little power or time to tell, the check says
  so instead of passing or failing. The active import total (1.0.1.8.0) moves with the
  import power, the export total (1.0.2.8.0) with the export; of the tariff registers
  (1.0.1.8.1-63) only the active one moves, so one of them must; any other register
  standing still is only noted;
- a point that could not be read fails with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from gateway.commission.model import PointCheck, Verdict
from gateway.drivers import PolledDriver
from gateway.errors import DriverError
from gateway.model import Kind, Reading, Unit

__all__ = ["Limits", "judge", "read_back"]

_ENERGY = {Unit.WH, Unit.KWH, Unit.MWH, Unit.VARH, Unit.KVARH, Unit.VAH, Unit.KVAH}
_POWER = {Unit.W, Unit.KW, Unit.VAR, Unit.KVAR, Unit.VA, Unit.KVA}
#: Active power import (OBIS 1.0.1.7.0) and the sum of the phases (1.0.16.7.0): the
#: power an active energy register should move with.
_ACTIVE_POWER = ("1.0.1.7.0.255", "1.0.16.7.0.255")


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What the device is rated for, and the supply it sits on."""

    max_power_w: int
    voltage_min: Decimal = Decimal(90)  # below: a phase missing, or the wrong scale
    voltage_max: Decimal = Decimal(280)  # 230/240 V phases; 120 V legs sit inside too
    nominal_voltage: Decimal = Decimal(230)


def _check(reading: Reading, source: str, verdict: Verdict, reason: str) -> PointCheck:
    return PointCheck(channel=reading.channel, source=source, value=f"{reading.value:f}",
                      unit=str(reading.unit), verdict=verdict, reason=reason)


def _resolution(*values: Decimal) -> Decimal:
    """The register's step as the decimal places it was read with show it (12.34 kWh and
    60.00 kWh: 0.01 kWh); the finer of the reads."""
    exponents = [int(e) for v in values if isinstance(e := v.as_tuple().exponent, int)]
    return Decimal(1).scaleb(min([0, *exponents]))


def _instant(reading: Reading, source: str, limits: Limits) -> PointCheck:
    v, unit = reading.value, reading.unit
    if unit is Unit.V:
        if v < limits.voltage_min:
            return _check(reading, source, "fail", f"{v:f} V: below {limits.voltage_min} V "
                          "(a phase not connected, or a wrong scale)")
        if v > limits.voltage_max:
            return _check(reading, source, "fail", f"{v:f} V: above {limits.voltage_max} V "
                          "(a wrong scale, or line-to-line where a phase voltage is meant)")
        return _check(reading, source, "pass", "within the supply's range")
    if unit is Unit.HZ:
        ok = Decimal(45) <= v <= Decimal(65)
        return _check(reading, source, "pass" if ok else "fail",
                      "mains frequency" if ok else "not a mains frequency (45-65 Hz)")
    if unit is Unit.PF:
        ok = Decimal(-1) <= v <= Decimal(1)
        return _check(reading, source, "pass" if ok else "fail",
                      "between -1 and 1" if ok else "a power factor lies between -1 and 1")
    if unit in _POWER:
        watts = v * unit.factor
        if abs(watts) > limits.max_power_w * Decimal("1.1"):
            return _check(reading, source, "fail", f"beyond the meter's rating "
                          f"({limits.max_power_w} W): a wrong scale or type?")
        if watts < 0 and reading.channel in _ACTIVE_POWER:
            return _check(reading, source, "warn", "negative: the site exports, or a current "
                          "transformer is reversed")
        return _check(reading, source, "pass", "within the meter's rating")
    if unit is Unit.A:
        amps_max = Decimal(limits.max_power_w) / limits.voltage_min
        ok = Decimal(0) <= v <= amps_max
        return _check(reading, source, "pass" if ok else "fail", "within the meter's rating"
                      if ok else f"outside 0..{amps_max:.0f} A for a {limits.max_power_w} W meter")
    return _check(reading, source, "pass", "read")


_IMPORT_TOTAL = "1.0.1.8.0.255"
_EXPORT_TOTAL = "1.0.2.8.0.255"


def _tariff(channel: str) -> bool:
    parts = channel.split(".")
    return len(parts) == 6 and parts[:4] == ["1", "0", "1", "8"] and parts[4] != "0"


def _flow_w(channel: str, power_w: Decimal | None) -> Decimal | None:
    """The power a register must move with (None: nothing to tell it by)."""
    if power_w is None:
        return None
    if channel == _IMPORT_TOTAL:
        return max(power_w, Decimal(0))
    if channel == _EXPORT_TOTAL:
        return max(-power_w, Decimal(0))
    return None


def _energy(first: Reading, second: Reading | None, source: str, power_w: Decimal | None,
            dt_s: float) -> PointCheck:
    if first.value < 0:
        return _check(first, source, "fail", "a register cannot be negative")
    if second is None:
        return _check(first, source, "pass", "read once")
    if second.value < first.value:
        return _check(second, source, "fail", f"went backwards by "
                      f"{first.value - second.value:f} {first.unit} in {dt_s:.0f} s")
    moved = second.value - first.value
    if moved > 0:
        return _check(second, source, "pass", f"moved {moved:f} {first.unit} in {dt_s:.0f} s")
    if power_w is None and _tariff(first.channel):
        return _check(second, source, "pass", f"did not move in {dt_s:.0f} s (of the tariff "
                      "registers only the active one moves)")
    if power_w is None:
        return _check(second, source, "pass", f"did not move in {dt_s:.0f} s (no power "
                      "reading tells whether it should have)")
    if power_w <= 0:
        return _check(second, source, "pass", f"did not move in {dt_s:.0f} s, and nothing "
                      "flowed that it counts")
    step_base = _resolution(first.value, second.value) * first.unit.factor  # in Wh (or varh, VAh)
    expected = power_w * Decimal(str(dt_s)) / 3600
    if expected < 2 * step_base:
        need = float(2 * step_base * 3600 / power_w)
        return _check(second, source, "skip", f"did not move; at {power_w:f} W a step of "
                      f"{step_base:f} {first.unit.base} takes {need:.0f} s, longer than the "
                      f"{dt_s:.0f} s waited")
    return _check(second, source, "fail", f"did not move in {dt_s:.0f} s while {power_w:f} W "
                  f"flowed ({expected:.1f} {first.unit.base} expected)")


def judge(first: Sequence[Reading], second: Sequence[Reading] | None, *, limits: Limits,
          sources: dict[str, str], dt_s: float,
          failed: dict[str, str] | None = None) -> list[PointCheck]:
    """One check per channel of ``sources`` (channel -> where it is read), in its order.
    ``second`` is the later poll (None when the device could be read only once);
    ``failed``: channels that could not be read, with the reason."""
    now = {r.channel: r for r in first}
    later = {r.channel: r for r in second} if second is not None else {}
    power = next((later.get(c) or now.get(c) for c in _ACTIVE_POWER
                  if (later.get(c) or now.get(c)) is not None), None)
    power_w = power.value * power.unit.factor if power is not None else None
    out: list[PointCheck] = []
    for channel, source in sources.items():
        reading = now.get(channel)
        if reading is None:
            reason = (failed or {}).get(channel, "not read")
            out.append(PointCheck(channel=channel, source=source, value=None, unit="",
                                  verdict="fail", reason=reason))
        elif reading.kind is Kind.IDENTITY:
            out.append(_check(reading, source, "pass", "the meter's identity"))
        elif reading.unit in _ENERGY and reading.kind is Kind.CUMULATIVE:
            out.append(_energy(reading, later.get(channel), source,
                               _flow_w(channel, power_w), dt_s))
        else:
            out.append(_instant(later.get(channel, reading), source, limits))
    return _one_tariff_moves(out, now, later, power_w, dt_s)


def _one_tariff_moves(checks: list[PointCheck], now: dict[str, Reading],
                      later: dict[str, Reading], power_w: Decimal | None,
                      dt_s: float) -> list[PointCheck]:
    """The tariff registers as a group: the active one must move when the import total's
    rule says a register should have (judged on the first tariff register's step)."""
    tariffs = [c for c in checks if _tariff(c.channel) and c.value is not None
               and c.channel in later]
    if not tariffs or any(later[c.channel].value != now[c.channel].value for c in tariffs):
        return checks
    if all(now[c.channel].value == 0 for c in tariffs):  # the meter keeps no tariffs
        return checks
    probe = _energy(now[tariffs[0].channel], later[tariffs[0].channel], "",
                    _flow_w(_IMPORT_TOTAL, power_w), dt_s)
    if probe.verdict != "fail":
        return checks
    failed = {c.channel for c in tariffs}
    reason = f"no tariff register moved in {dt_s:.0f} s while import power flowed"
    return [PointCheck(channel=c.channel, source=c.source, value=c.value, unit=c.unit,
                       verdict="fail", reason=reason) if c.channel in failed else c
            for c in checks]


async def read_back(driver: PolledDriver, *, limits: Limits, sources: dict[str, str],
                    wait_s: float = 5.0,
                    progress: Callable[[str, int, int], None] | None = None) -> list[PointCheck]:
    """Poll ``driver`` twice ``wait_s`` apart and judge every point. A device that fails
    the first poll fails every point with the reason; one that fails only the second is
    judged on the first."""
    tell = progress or (lambda what, done, total: None)
    tell("read-back: first read", 0, 2)
    loop = asyncio.get_running_loop()
    try:
        await driver.connect()
        first = await driver.read()
    except DriverError as exc:
        return judge([], None, limits=limits, sources=sources, dt_s=0,
                     failed=dict.fromkeys(sources, str(exc)))
    started = loop.time()
    tell(f"read-back: waiting {wait_s:g} s to see the registers move", 1, 2)
    await asyncio.sleep(wait_s)
    try:
        second: list[Reading] | None = await driver.read()
    except DriverError:
        second = None
    dt_s = loop.time() - started
    tell("read-back: done", 2, 2)
    return judge(first, second, limits=limits, sources=sources, dt_s=dt_s)
