"""What commissioning finds, as data: the nouns the scans, the probe, the read-back and
the report share. Frozen and plain (strings, ints, tuples), so a report is its own
canonical JSON and a checksum over it detects any later change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DeviceIdentity", "DlmsFindings", "FoundDevice", "Line", "PointCheck",
           "Protocol", "ScanSummary", "Verdict"]

Protocol = Literal["modbus_rtu", "modbus_tcp", "dlms_optical", "dlms_serial", "dlms_tcp"]
Verdict = Literal["pass", "warn", "fail", "skip"]


@dataclass(frozen=True, kw_only=True)
class Line:
    """The serial settings a device answered at."""

    baudrate: int
    parity: Literal["N", "E", "O"]
    stopbits: int

    def text(self) -> str:
        return f"{self.baudrate} 8{self.parity}{self.stopbits}"


@dataclass(frozen=True, kw_only=True)
class DeviceIdentity:
    """Who the device says it is, and how we know (``source``)."""

    source: Literal["modbus_device_id", "signature", "dlms", "iec62056_21", "none"]
    vendor: str | None = None
    model: str | None = None
    revision: str | None = None
    serial: str | None = None
    #: Raw identification as read (e.g. "/ISK5\\2MT382-1000", or the FC 43/14 objects).
    raw: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class FoundDevice:
    """One device a scan or probe found, and the profile proposed for it."""

    protocol: Protocol
    #: The port path, or host:port.
    address: str
    #: Modbus unit id, or the DLMS server (physical) address.
    unit_id: int | None
    line: Line | None
    identity: DeviceIdentity
    #: The proposed device profile's name (None: no profile matches).
    profile: str | None
    #: Other profiles that would also match, best first.
    candidates: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PointCheck:
    """One configured point read back once and judged."""

    channel: str
    #: Where it was read: "input 0x0000 float32", or the OBIS code and attribute.
    source: str
    #: The value as read, exact decimal text (None: not read).
    value: str | None
    unit: str
    verdict: Verdict
    reason: str


@dataclass(frozen=True, kw_only=True)
class DlmsFindings:
    """What the DLMS probe learnt beyond the identity."""

    #: The 62056-21 identification string on the optical port, if signed on.
    identification: str | None
    #: HDLC server addresses that answered SNRM.
    server_addresses: tuple[int, ...]
    association: str  # "ok (hls_gmac)", or why it failed
    logical_device_name: str | None
    clock: str | None  # ISO 8601 as the meter gave it
    clock_drift_s: float | None
    #: (class id, logical name) of every object in the association's object list.
    objects: tuple[tuple[int, str], ...]
    #: Configured or profile OBIS codes and whether the meter has them.
    configured_present: tuple[tuple[str, bool], ...] = ()
    #: The load profile's capture objects as the meter lists them: (class id, logical
    #: name, attribute), in column order; empty when it has no such profile.
    capture_objects: tuple[tuple[int, str, int], ...] = ()
    #: The probe was stopped (Ctrl-C) before it finished: the fields hold what it had.
    interrupted: bool = False


@dataclass(frozen=True, kw_only=True)
class ScanSummary:
    """How a scan went: what was tried, how long it took, and the floor it is judged by."""

    address: str
    settings_tried: tuple[str, ...]
    ids_tried: int
    elapsed_s: float
    #: The time the line rules allow at best: per id, the request's time on the wire
    #: plus the response timeout chosen.
    floor_s: float
    timeout_s: float
    #: How the timeout was chosen (shown in the report).
    timeout_reason: str
    interrupted: bool = False
    found: tuple[FoundDevice, ...] = field(default=())
    #: Of ``elapsed_s``, the time the probes took without identifying what answered:
    #: the figure ``floor_s`` is compared with (None: not measured separately).
    probing_s: float | None = None
    #: What the scan heard that was no device (bytes at a setting that formed no valid
    #: reply: another device at another speed, or a wiring fault).
    notes: tuple[str, ...] = ()
