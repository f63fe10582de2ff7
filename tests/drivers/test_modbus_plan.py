"""The read planner: gap bridging by link cost, request limits, device quirks."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.drivers.modbus.plan import SerialLink, TcpLink, plan_reads
from gateway.profiles import load_profiles

from .profiles_for_tests import make_profile

MS = Fraction(1, 1000)


@pytest.mark.parametrize(
    ("baud", "pause_ms", "expected"),
    [
        # domain.md: ~10 registers at 9600 with no turnaround, 32 with 50 ms, 287 at
        # 115200 with 50 ms.
        (9600, 0, Fraction(10)),
        (9600, 50, Fraction(10) + Fraction(50, 1000) / (2 * Fraction(11, 9600))),
        (19200, 0, Fraction(10)),
        # Above 19200 baud t3.5 is fixed at 1.75 ms.
        (115200, 50, (13 * Fraction(11, 115200) + Fraction(7, 2000) + Fraction(50, 1000))
         / (2 * Fraction(11, 115200))),
    ],
)
def test_serial_break_even_gap(baud: int, pause_ms: int, expected: Fraction) -> None:
    assert SerialLink(baud).overhead_registers(pause_ms * MS) == expected


def test_break_even_gaps_match_the_domain_figures() -> None:
    assert round(SerialLink(9600).overhead_registers(50 * MS)) == 32
    assert round(SerialLink(115200).overhead_registers(50 * MS)) == 287




@pytest.mark.parametrize(
    ("link", "turnaround_ms", "gap", "blocks"),
    [
        (SerialLink(9600), 0, 9, [(0, 11)]),  # 2*9 Tc < 20 Tc: bridge
        (SerialLink(9600), 0, 10, [(0, 1), (10 + 1, 1)]),  # a tie does not bridge
        (SerialLink(9600), 50, 31, [(0, 33)]),
        (SerialLink(9600), 50, 32, [(0, 1), (33, 1)]),
        (SerialLink(115200), 0, 9, [(0, 11)]),  # 13 Tc + 3.5 ms: G* ~ 24.8
        (SerialLink(115200), 0, 30, [(0, 1), (31, 1)]),
        (SerialLink(115200), 50, 100, [(0, 102)]),
        (SerialLink(115200), 50, 123, [(0, 125)]),  # up to the Modbus limit of 125
        (SerialLink(115200), 50, 124, [(0, 1), (125, 1)]),
        (TcpLink(), 0, 100, [(0, 102)]),
    ],
)
def test_gap_bridging_follows_the_link_cost(
    link: SerialLink | TcpLink, turnaround_ms: int, gap: int, blocks: list[tuple[int, int]]
) -> None:
    profile = make_profile([{"address": 0}, {"address": 1 + gap}], turnaround_ms=turnaround_ms)
    assert [(b.start, b.count) for b in plan_reads(profile, link)] == blocks


def test_inter_request_pause_counts_like_turnaround() -> None:
    profile = make_profile([{"address": 0}, {"address": 32}], inter_request_ms=50)
    assert len(plan_reads(profile, SerialLink(9600))) == 1


def test_device_limit_caps_every_block() -> None:
    points = [{"address": 2 * i, "type": "uint32"} for i in range(4)]
    profile = make_profile(points, max_registers_per_request=4)
    blocks = plan_reads(profile, TcpLink())
    assert [(b.start, b.count) for b in blocks] == [(0, 4), (4, 4)]
    assert [[p.offset for p in b.points] for b in blocks] == [[0, 2], [0, 2]]


def test_quirk_forbids_bridging_but_merges_adjacent_points() -> None:
    points = [{"address": 0}, {"address": 1}, {"address": 3}]
    profile = make_profile(points, allow_gap_reads=False)
    assert [(b.start, b.count) for b in plan_reads(profile, TcpLink())] == [(0, 2), (3, 1)]


def test_tables_are_planned_apart_input_first() -> None:
    points = [{"address": 0, "table": "holding"}, {"address": 0, "table": "input"},
              {"address": 1, "table": "holding"}]
    blocks = plan_reads(make_profile(points), TcpLink())
    assert [(b.table, b.start, b.count) for b in blocks] == [("input", 0, 1), ("holding", 0, 2)]


def test_eastron_sdm630_plan_respects_its_80_register_limit() -> None:
    profile = load_profiles()["eastron_sdm630"]
    blocks = plan_reads(profile, TcpLink())
    # The serial number (holding FC00) is read apart, with function 03.
    assert [(b.table, b.start, b.count) for b in blocks] == [
        ("input", 0, 76), ("input", 224, 2), ("input", 342, 2), ("holding", 0xFC00, 2)]
    # At 9600 baud with the Eastron pause the 30225 gap is still not worth reading.
    serial = plan_reads(profile, SerialLink(9600))
    assert all(b.count <= 80 for b in serial)
    assert sum(len(b.points) for b in serial) == len(profile.points)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[dict[str, object]], int, bool]:
    widths = {"uint16": 1, "uint32": 2, "float64": 4}
    points: list[dict[str, object]] = []
    address = draw(st.integers(0, 50))
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(sorted(widths)))
        points.append({"address": address, "type": kind})
        address += widths[kind] + draw(st.integers(0, 40))
    return points, draw(st.integers(4, 125)), draw(st.booleans())


@settings(max_examples=150, deadline=None)
@given(layouts(), st.sampled_from([SerialLink(1200), SerialLink(9600), SerialLink(115200),
                                   TcpLink()]), st.integers(0, 300))
def test_every_point_read_once_within_limits(
    layout: tuple[list[dict[str, object]], int, bool], link: SerialLink | TcpLink,
    turnaround_ms: int,
) -> None:
    points, limit, bridge = layout
    profile = make_profile(points, max_registers_per_request=limit, allow_gap_reads=bridge,
                           turnaround_ms=turnaround_ms)
    blocks = plan_reads(profile, link)
    served = [p.point for b in blocks for p in b.points]
    assert sorted(p.address for p in served) == sorted(p.address for p in profile.points)
    overhead = link.overhead_registers(turnaround_ms * MS)
    for block in blocks:
        assert block.count <= limit
        assert block.points[0].offset == 0
        assert block.points[-1].offset + block.points[-1].point.width == block.count
        for planned in block.points:
            assert planned.point.address == block.start + planned.offset
        for left, right in zip(block.points, block.points[1:], strict=False):
            gap = right.offset - left.offset - left.point.width
            assert gap < overhead  # bridged only when cheaper than a request
            assert bridge or gap == 0
    # Never worse than one request per point.
    cost = sum(overhead + b.count for b in blocks)
    assert cost <= sum(overhead + p.width for p in profile.points)
