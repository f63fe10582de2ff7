"""Requests per poll and the line floor of a poll, for RTU meters (issue 4, planning part).

For the Eastron SDM630 profile and a scattered register map, at 9,600 and 19,200 baud:
how many read requests the planner makes, against one request per value and against
a fixed 50-register gap rule (merge two points when at most 50 unused registers lie
between them, within the request limit), and what a poll costs on the wire at best
(the line floor: for each request, (13 + 2N) characters, two 3.5-character silences and
the device's turnaround; domain.md, "Modbus RTU timing"). The issue's goal: never more
requests than either rule. The planner minimises time on the line, which is the lowest
floor of the three everywhere; on a quick device it makes more requests than the fixed
gap rule, because a request costs less than 40 unused registers: this prints where.

    .venv/bin/python benchmarks/rtu_requests.py
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from gateway.drivers.modbus.plan import MODBUS_MAX_REGISTERS, ReadBlock, plan_reads
from gateway.drivers.modbus.rtu import LineSettings
from gateway.model import Kind, Unit
from gateway.profiles import DeviceProfile, PointSpec, modbus_profiles

_MS = Fraction(1, 1000)


def scattered(name: str, turnaround_ms: int, inter_request_ms: int) -> DeviceProfile:
    """A meter whose values lie far apart: float32 points with gaps of 2 to 90 unused
    registers between them, the kind of map where a fixed gap rule goes wrong: on a
    quick device it reads up to 50 unused registers where a new request costs less;
    on a slow one it sends a new request where reading 60 more registers costs less."""
    sdm = modbus_profiles()["eastron_sdm630"]
    addresses = [0, 4, 26, 30, 80, 84, 146, 150, 242, 246, 270, 274, 340, 344, 346]
    points = tuple(
        PointSpec(channel=f"0.0.{i}.7.0.255", address=a, table="input", type="float32",
                  byte_order="big", word_order="big", unit=Unit.W, kind=Kind.INSTANT,
                  scale=Decimal(1))
        for i, a in enumerate(addresses))
    return sdm.model_copy(update={"name": name, "points": points,
                                  "turnaround_ms": turnaround_ms,
                                  "inter_request_ms": inter_request_ms,
                                  "max_registers_per_request": 125})


def one_per_value(profile: DeviceProfile) -> list[tuple[str, int]]:
    return [(p.table, p.width) for p in profile.points]


def fixed_gap(profile: DeviceProfile, gap: int = 50) -> list[tuple[str, int]]:
    """Merge consecutive points while the unused registers between them are <= ``gap``."""
    limit = min(MODBUS_MAX_REGISTERS, profile.max_registers_per_request)
    out: list[tuple[str, int]] = []
    for table in ("input", "holding"):
        points = sorted((p for p in profile.points if p.table == table),
                        key=lambda p: p.address)
        start = end = -1
        for p in points:
            if start >= 0 and p.address - end <= gap and p.address + p.width - start <= limit:
                end = p.address + p.width
                continue
            if start >= 0:
                out.append((table, end - start))
            start, end = p.address, p.address + p.width
        if start >= 0:
            out.append((table, end - start))
    return out


def floor_s(requests: list[tuple[str, int]], line: LineSettings,
            profile: DeviceProfile) -> Fraction:
    pause = (profile.turnaround_ms + profile.inter_request_ms) * _MS
    return sum((line.transaction_s(count, pause) for _, count in requests), Fraction(0))


def planned(blocks: tuple[ReadBlock, ...]) -> list[tuple[str, int]]:
    return [(b.table, b.count) for b in blocks]


def main() -> None:
    print(f"{'map':<16}{'baud':>7}  {'planner':>16}  {'one per value':>16}  "
          f"{'fixed 50 gap':>16}   (requests, line floor per poll)")
    profiles = (modbus_profiles()["eastron_sdm630"], scattered("scattered quick", 0, 0),
                scattered("scattered slow", 60, 40))
    fewer = lowest = True
    more_than_fixed: list[str] = []
    for profile in profiles:
        for baud in (9_600, 19_200):
            line = LineSettings(baud)
            rows = [planned(plan_reads(profile, line.link)), one_per_value(profile),
                    fixed_gap(profile)]
            floors = [floor_s(r, line, profile) for r in rows]
            cells = [f"{len(r):>3} {float(f) * 1000:>8.1f} ms"
                     for r, f in zip(rows, floors, strict=True)]
            print(f"{profile.name:<16}{baud:>7}  " + "  ".join(f"{c:>16}" for c in cells))
            ours, per_value, fixed = rows
            fewer &= len(ours) <= len(per_value)
            lowest &= floors[0] <= min(floors[1:])
            if len(ours) > len(fixed):
                more_than_fixed.append(
                    f"{profile.name} at {baud}: {len(ours)} requests against {len(fixed)}, "
                    f"{float(floors[0] / floors[2]):.0%} of its line time")
    print("never more requests than one per value:", "yes" if fewer else "NO")
    print("lowest line floor of the three, every map and baud:", "yes" if lowest else "NO")
    print("more requests than the fixed 50-register rule:",
          "; ".join(more_than_fixed) if more_than_fixed else "never")
    print("(the planner minimises time on the line, not requests: on a quick device an extra"
          " request costs less than reading 40 unused registers)")


if __name__ == "__main__":
    main()
