"""How a Modbus RTU scan spends its time, from the line rules (pure: no port, no clock).

A scan sends one probe per unit id and setting; most ids are silent, so the scan's
time is the number of probes times how long the line rules make us wait for silence.

The probe: Read Holding Registers, 1 register at address 0 (8 bytes). Any valid reply
to it, data or a Modbus exception (02 "illegal data address" from a meter with nothing
there), proves a device answers that unit id: a slave must answer every request
addressed to it that it received intact (Application Protocol V1.1b3, 7). Function 3
is the one every meter implements; function 43/14 is asked of the devices found only
(``modbus_identify``), because a device without it may stay silent instead of refusing.

The wait (Modbus over Serial Line V1.02, 2.5.1.1; domain.md "Modbus RTU timing"): once
the request has left, a slave starts its reply after t3.5 of silence and its own
turnaround. The response timeout is therefore t3.5 + the largest turnaround the
bundled device profiles declare (``turnaround_ms``) + a margin for the adapter and the
operating system: a USB serial adapter hands received bytes over up to its latency
timer late (16 ms by default on FTDI chips). It counts from the request's end on the
wire to the reply's first byte; once a byte has come, the scan waits for the rest of
the longest reply (at the line's pace) instead. Silence costs exactly
``request + timeout`` per id: that is the floor a scan is judged by.

Settings are tried most common first (:data:`DEFAULT_BAUDS` in order, each in 8E1, 8N1,
8N2); once a setting has found devices, later settings probe only the ids still silent
(one id is one device on a bus), or none with ``first_line_only``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from gateway.commission.model import Line
from gateway.drivers.modbus.rtu import LineSettings, Parity, ReadRequest, crc16
from gateway.profiles import DeviceProfile

__all__ = [
    "DEFAULT_BAUDS",
    "DEFAULT_FORMATS",
    "DEFAULT_MARGIN_MS",
    "PROBE_REPLY_MAX",
    "ScanPlan",
    "ScanTiming",
    "largest_pause",
    "largest_turnaround",
    "late_probe_replies",
    "line_text",
    "model_line",
    "parse_format",
    "probe_request",
    "scan_lines",
]

#: The baud rates in use, most common first (9600 is the usual meter default).
DEFAULT_BAUDS: tuple[int, ...] = (9600, 19200, 38400, 115200)
#: Character formats: 8E1 (the spec's default), 8N1 (common, though not in the spec),
#: 8N2 (the spec's form without parity).
DEFAULT_FORMATS: tuple[tuple[Parity, int], ...] = (("E", 1), ("N", 1), ("N", 2))
#: Margin over t3.5 + turnaround: a USB adapter's latency timer (16 ms on FTDI) and
#: scheduling.
DEFAULT_MARGIN_MS = 20

#: The probe's longest reply: one register (unit, function, count, 2 bytes, CRC); an
#: exception reply is 5 bytes.
PROBE_REPLY_MAX = ReadRequest.reply_size_for(1)

_MS = Fraction(1, 1000)


def probe_request(unit: int) -> ReadRequest:
    """The probe for ``unit``: holding register 0, one register."""
    return ReadRequest(unit, "holding", 0, 1)


def scan_lines(bauds: Sequence[int] = DEFAULT_BAUDS,
               formats: Sequence[tuple[Parity, int]] = DEFAULT_FORMATS,
               ) -> tuple[LineSettings, ...]:
    """Every (baud, format) to try, in order: by baud as given, then by format."""
    return tuple(LineSettings(baud, parity, stopbits)
                 for baud in bauds for parity, stopbits in formats)


def parse_format(text: str) -> tuple[Parity, int]:
    """"8E1" -> ("E", 1): the character format as installers write it (8 data bits)."""
    value = text.strip().upper()
    if len(value) != 3 or value[0] != "8" or value[1] not in "NEO" or value[2] not in "12":
        raise ValueError(f"{text!r} is not a character format; write 8E1, 8N1, 8N2 or 8O1")
    parity: Parity = "N" if value[1] == "N" else "E" if value[1] == "E" else "O"
    return parity, int(value[2])


def line_text(line: LineSettings) -> str:
    return f"{line.baud} 8{line.parity}{line.stop_bits}"


def model_line(line: LineSettings) -> Line:
    return Line(baudrate=line.baud, parity=line.parity, stopbits=line.stop_bits)


def largest_turnaround(profiles: Iterable[DeviceProfile]) -> tuple[int, str]:
    """The largest ``turnaround_ms`` of the profiles, and the profile that declares it
    (the first by name on a tie; ``""`` when no profile declares one)."""
    best, name = 0, ""
    for profile in sorted(profiles, key=lambda p: p.name):
        if profile.turnaround_ms > best:
            best, name = profile.turnaround_ms, profile.name
    return best, name


def largest_pause(profiles: Iterable[DeviceProfile]) -> int:
    """The largest ``inter_request_ms`` of the profiles: the pause to keep between
    requests to a device found, before its profile is known."""
    return max((p.inter_request_ms for p in profiles), default=0)


def late_probe_replies(data: bytes) -> tuple[int, ...]:
    """Unit ids whose whole, CRC-valid reply to a probe is in ``data`` (bytes that came
    while waiting for another id): a device that answered after the timeout."""
    units: list[int] = []
    for offset in range(len(data) - 4):
        unit, function = data[offset], data[offset + 1]
        if not 1 <= unit <= 247 or unit in units:
            continue
        if function == 0x83:
            size = 5
        elif function == 3 and data[offset + 2] == 2:
            size = PROBE_REPLY_MAX
        else:
            continue
        frame = data[offset:offset + size]
        if len(frame) == size and crc16(frame) == 0:  # CRC over frame + CRC is 0
            units.append(unit)
    return tuple(units)


@dataclass(frozen=True, slots=True)
class ScanTiming:
    """The waits of one setting, exact (seconds as fractions)."""

    line: LineSettings
    #: The probe's time on the wire.
    request_s: Fraction
    #: From the request's end to the reply's first byte at the latest.
    timeout_s: Fraction
    #: Once a first byte came: the longest reply's time on the wire plus t3.5.
    reply_s: Fraction
    reason: str

    @property
    def per_id_s(self) -> Fraction:
        """What a silent id costs at best: the request, then the timeout."""
        return self.request_s + self.timeout_s

    def floor_s(self, ids: int) -> Fraction:
        return ids * self.per_id_s


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """What to try: settings in order, unit ids, and the timeout's parts."""

    lines: tuple[LineSettings, ...]
    ids: tuple[int, ...]
    turnaround_ms: int
    #: The profile whose turnaround it is (for the reason shown in the report).
    turnaround_from: str = ""
    margin_ms: int = DEFAULT_MARGIN_MS
    #: Stop after the first setting at which any device answered.
    first_line_only: bool = False

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError("a scan needs at least one line setting")
        if not self.ids:
            raise ValueError("a scan needs at least one unit id")
        bad = [i for i in self.ids if not 1 <= i <= 247]
        if bad:
            raise ValueError(f"unit ids {bad[:3]} are outside 1..247")
        if self.turnaround_ms < 0 or self.margin_ms < 0:
            raise ValueError("turnaround_ms and margin_ms must not be negative")

    @classmethod
    def for_profiles(cls, profiles: Iterable[DeviceProfile], *,
                     lines: Sequence[LineSettings] | None = None,
                     ids: Iterable[int] = range(1, 248),
                     margin_ms: int = DEFAULT_MARGIN_MS,
                     first_line_only: bool = False) -> ScanPlan:
        turnaround, source = largest_turnaround(profiles)
        return cls(lines=tuple(lines) if lines is not None else scan_lines(),
                   ids=tuple(ids), turnaround_ms=turnaround, turnaround_from=source,
                   margin_ms=margin_ms, first_line_only=first_line_only)

    def timing(self, line: LineSettings) -> ScanTiming:
        silence = line.silence_s
        timeout = silence + self.turnaround_ms * _MS + self.margin_ms * _MS
        whose = f" ({self.turnaround_from})" if self.turnaround_from else ""
        reason = (f"t3.5 {float(silence) * 1000:.3f} ms at {line_text(line)} + "
                  f"{self.turnaround_ms} ms largest profile turnaround{whose} + "
                  f"{self.margin_ms} ms margin (adapter latency, scheduling)")
        return ScanTiming(line=line, request_s=line.wire_s(ReadRequest.SIZE),
                          timeout_s=timeout,
                          reply_s=line.wire_s(PROBE_REPLY_MAX) + silence, reason=reason)

    def floor_s(self) -> Fraction:
        """Every id at every setting, all silent: the worst case at best speed."""
        return sum((self.timing(line).floor_s(len(self.ids)) for line in self.lines),
                   Fraction(0))

    def ids_after(self, found: Iterable[int]) -> tuple[int, ...]:
        """The ids a later setting still probes, given those found so far."""
        seen = set(found)
        return tuple(i for i in self.ids if i not in seen)

    def stop_after(self, found_any: bool) -> bool:
        """Whether to stop once a setting has been scanned."""
        return self.first_line_only and found_any
