"""Register planning: a profile's points -> the cheapest set of read requests (pure).

Each request has a fixed cost (framing, silences, the device's turnaround, the pause it
needs before the next query) and a cost per register read. Reading a gap of unused
registers between two points is worth it only while it costs less than a new request.
That break-even gap, in registers, is the link's ``overhead_registers``:

- Serial RTU (domain.md, "Modbus RTU timing"; Modbus over Serial Line V1.02): a
  character is 11 bits, Tc = 11 / baud; the inter-frame silence t3.5 = 3.5 Tc up to
  19200 baud and 1.75 ms above. A request of N registers takes (13 + 2N) Tc + 2 t3.5 +
  turnaround, so one more request costs 13 Tc + 2 t3.5 + turnaround and one more
  register 2 Tc: G* = (13 Tc + 2 t3.5 + turnaround) / (2 Tc).
- TCP: a request costs a round trip plus the device's turnaround; a register costs its
  2 bytes at the link's throughput, which is nearly free, so G* is in the thousands and
  requests are merged up to the size limit. Behind a TCP-to-RTU gateway the serial side
  dominates: plan with :class:`SerialLink` at the bus baud rate instead.

The device's ``inter_request_ms`` counts as part of a request's cost: a split request
has to wait it out too. Blocks are chosen by dynamic programming over the sorted points
(a block always serves a run of consecutive points), minimising total time exactly
(rational arithmetic, so 9600 baud's G* = 10 is a tie, and a tie does not bridge).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from gateway.profiles import DeviceProfile, PointSpec, Table

__all__ = [
    "MODBUS_MAX_REGISTERS",
    "Link",
    "PlannedPoint",
    "ReadBlock",
    "SerialLink",
    "TcpLink",
    "plan_reads",
]

#: Read Holding/Input Registers returns at most 125 registers (Application Protocol V1.1b3).
MODBUS_MAX_REGISTERS = 125

_MS = Fraction(1, 1000)


@dataclass(frozen=True, slots=True)
class SerialLink:
    """A Modbus RTU line: 11 bits a character (8E1, 8O1 or 8N2) unless told otherwise.

    ``bits_per_char`` is start + 8 data + parity + stop bits: 10 for the common but
    non-standard 8N1.
    """

    baud: int
    bits_per_char: int = 11

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise ValueError("baud must be positive")
        if not 10 <= self.bits_per_char <= 12:
            raise ValueError("a character is 10 to 12 bits (8 data bits)")

    @property
    def char_s(self) -> Fraction:
        """Tc, the time of one character."""
        return Fraction(self.bits_per_char, self.baud)

    @property
    def silence_s(self) -> Fraction:
        """t3.5: 3.5 characters up to 19200 baud, fixed at 1.75 ms above."""
        return Fraction(7, 2) * self.char_s if self.baud <= 19200 else Fraction(7, 4000)

    def overhead_registers(self, pause_s: Fraction) -> Fraction:
        """G*: registers that cost as much as one more request with ``pause_s`` of waiting."""
        tc = self.char_s
        return (13 * tc + 2 * self.silence_s + pause_s) / (2 * tc)


@dataclass(frozen=True, slots=True)
class TcpLink:
    """Modbus TCP: a request costs a round trip; registers cost only their bytes."""

    round_trip_ms: Fraction = Fraction(1)
    #: Effective payload throughput; 1 MB/s is conservative for a LAN or a cell modem's peak.
    bytes_per_s: int = 1_000_000

    def overhead_registers(self, pause_s: Fraction) -> Fraction:
        per_register = Fraction(2, self.bytes_per_s)
        return (Fraction(self.round_trip_ms) * _MS + pause_s) / per_register


Link = SerialLink | TcpLink


@dataclass(frozen=True, slots=True)
class PlannedPoint:
    """A point and where its first register sits in its block's reply."""

    point: PointSpec
    offset: int


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers of ``table`` from ``start``."""

    table: Table
    start: int
    count: int
    points: tuple[PlannedPoint, ...]

    @property
    def end(self) -> int:
        return self.start + self.count


def plan_reads(profile: DeviceProfile, link: Link, *,
               one_per_point: bool = False) -> tuple[ReadBlock, ...]:
    """The cheapest requests that read every point of ``profile`` over ``link``.

    Blocks come input table first, then holding, each in address order. With
    ``one_per_point`` every point gets a request of its own (a device that refuses
    reads spanning more than one of its values).
    """
    pause = (profile.turnaround_ms + profile.inter_request_ms) * _MS
    overhead = link.overhead_registers(pause)
    limit = min(MODBUS_MAX_REGISTERS, profile.max_registers_per_request)
    blocks: list[ReadBlock] = []
    for table in ("input", "holding"):
        points = sorted((p for p in profile.points if p.table == table), key=_address)
        blocks += plan_table(points, table, overhead=overhead, limit=limit,
                             bridge=profile.allow_gap_reads, merge=not one_per_point)
    return tuple(blocks)


def plan_table(points: list[PointSpec], table: Table, *, overhead: Fraction, limit: int,
               bridge: bool, merge: bool = True) -> list[ReadBlock]:
    """Optimal blocks for address-sorted, non-overlapping points of one table
    (without ``merge``, one block per point).

    ``best[i]`` is the cheapest plan for the first ``i`` points, as (cost in register
    units, registers read): a block costs ``overhead + count``, and among equal costs the
    plan reading fewer registers wins, so a gap is bridged only when strictly cheaper.
    """
    n = len(points)
    best: list[tuple[Fraction, int]] = [(Fraction(0), 0)] + [(Fraction(-1), 0)] * n
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        last = points[i - 1]
        choice: tuple[Fraction, int] | None = None
        for j in range(i - 1, -1, -1):
            first = points[j]
            count = last.end - first.address
            if count > limit:
                break
            if j < i - 1 and (not merge or (not bridge
                                            and points[j + 1].address != first.end)):
                break
            cost, read = best[j]
            candidate = (cost + overhead + count, read + count)
            if choice is None or candidate < choice:
                choice, cut[i] = candidate, j
        if choice is None:
            raise ValueError(f"{last.channel} is wider than {limit} registers")
        best[i] = choice
    blocks: list[ReadBlock] = []
    i = n
    while i > 0:
        j = cut[i]
        start = points[j].address
        run = tuple(PlannedPoint(point=p, offset=p.address - start) for p in points[j:i])
        blocks.append(ReadBlock(table=table, start=start,
                                count=points[i - 1].end - start, points=run))
        i = j
    blocks.reverse()
    return blocks


def _address(point: PointSpec) -> int:
    return point.address
