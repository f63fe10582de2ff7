"""What a DLMS meter's answers mean, pure: its maker from a FLAG id, its association's
object list as (class id, logical name) pairs, which configured OBIS codes it has, the
device profile (``config/devices/dlms_*.toml``) that fits it best, and why an
association failed in an installer's words."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.acse import AcseUserDiagnostic
from gateway.drivers.dlms.cosem import CaptureObject, Obis
from gateway.drivers.dlms.data import Data
from gateway.drivers.dlms.security import SecurityError
from gateway.errors import DeviceError, DeviceTimeout, DriverError, ProtocolError
from gateway.model import Kind
from gateway.profiles_dlms import DlmsProfile

__all__ = ["FLAG_VENDORS", "Proposal", "capture_objects", "configured_obis", "failure",
           "object_list", "presence", "propose", "reason", "text", "vendor_of"]

#: Three-letter manufacturer ids (FLAG ids) of common meter makers. Source: the FLAG id
#: list the DLMS UA keeps for IEC 62056-21 identifications and COSEM logical device
#: names (dlms.com, "FLAG ID list"); only makers whose id is well established are here.
FLAG_VENDORS: Final = {
    "ABB": "ABB",
    "ACE": "Actaris (Itron)",
    "EBZ": "eBZ",
    "ELS": "Elster (Honeywell)",
    "EMH": "EMH metering",
    "ESY": "EasyMeter",
    "HAG": "Hager",
    "ISK": "Iskraemeco",
    "KAM": "Kamstrup",
    "KFM": "Kaifa",
    "LGZ": "Landis+Gyr",
    "ZPA": "ZPA Smart Energy",
}


def vendor_of(flag: str) -> str | None:
    """The maker of a FLAG id; case does not matter (a lower-case third letter in a
    62056-21 identification only says the meter reacts fast)."""
    return FLAG_VENDORS.get(flag.upper())


def object_list(value: Data) -> tuple[tuple[int, str], ...]:
    """Association LN attribute 2 (Blue Book 4.4.3): each object_list_element's class
    id and logical name, in the meter's order. ProtocolError if it is not that shape."""
    out: list[tuple[int, str]] = []
    for index, element in enumerate(axdr.as_items(value)):
        try:
            fields = axdr.as_items(element)
            if len(fields) < 3:
                raise ProtocolError(f"{len(fields)} fields, not 4")
            out.append((axdr.as_int(fields[0]), str(Obis.from_bytes(axdr.as_bytes(fields[2])))))
        except (ProtocolError, ValueError) as exc:
            raise ProtocolError(f"object list entry {index}: {exc}") from exc
    return tuple(out)


def capture_objects(value: Data) -> tuple[tuple[int, str, int], ...]:
    """Profile generic attribute 3: (class id, logical name, attribute) per column."""
    return tuple((c.class_id, str(c.obis), c.attribute_index)
                 for c in (CaptureObject.from_data(item) for item in axdr.as_items(value)))


def configured_obis(profile: DlmsProfile) -> tuple[str, ...]:
    """The OBIS codes a profile reads: its points, then its load profile and status."""
    codes = [p.obis for p in profile.points]
    if profile.load_profile is not None:
        codes += [profile.load_profile.obis, profile.load_profile.status_obis]
    return tuple(dict.fromkeys(codes))


def presence(wanted: Iterable[str], objects: Iterable[tuple[int, str]]
             ) -> tuple[tuple[str, bool], ...]:
    """Each wanted OBIS code (any notation, given dotted) and whether the list has it."""
    have = {name for _, name in objects}
    return tuple((code, code in have) for code in (str(Obis.parse(w)) for w in wanted))


@dataclass(frozen=True, slots=True)
class Proposal:
    profile: str | None
    candidates: tuple[str, ...]
    notes: tuple[str, ...]


def propose(objects: Iterable[tuple[int, str]], profiles: Mapping[str, DlmsProfile]
            ) -> Proposal:
    """The profile whose points the meter has most of (all, ideally), and the others
    that would also do. A profile fits when the meter has at least one of its energy
    registers and half of its points; ties go to the profile reading more points."""
    have = {name for _, name in objects}
    ranked: list[tuple[float, int, str, tuple[str, ...]]] = []
    for name, profile in profiles.items():
        points = [p.obis for p in profile.points]
        missing = tuple(p for p in points if p not in have)
        energy = [p.obis for p in profile.points if p.kind is Kind.CUMULATIVE]
        share = (len(points) - len(missing)) / len(points)
        if share >= 0.5 and any(e in have for e in energy):
            ranked.append((share, len(points) - len(missing), name, missing))
    ranked.sort(key=lambda r: (-r[0], -r[1], r[2]))
    if not ranked:
        return Proposal(None, (), ("no DLMS profile fits: the meter has too few of any "
                                   "profile's points; copy a generic profile and adjust it",))
    _, _, best, missing = ranked[0]
    notes: list[str] = []
    if missing:
        notes.append(f"profile {best}: the meter lacks {', '.join(missing)} (those points "
                     "are logged as absent at each poll; remove them from a copy)")
    lp = profiles[best].load_profile
    if lp is not None and lp.obis not in have:
        notes.append(f"profile {best}: the meter has no load profile {lp.obis} (registers "
                     "only, no catch-up after an outage)")
    return Proposal(best, tuple(r[2] for r in ranked[1:]), tuple(notes))


def text(raw: Data) -> str:
    """A serial number or name as text (an octet string read as Latin-1), or a number."""
    if isinstance(raw, axdr.OctetString | axdr.VisibleString | axdr.Utf8String):
        return raw.value.decode("latin-1").strip("\x00 ")
    return str(axdr.as_int(raw))


def reason(exc: DriverError) -> str:
    """The error's message without the device it names (the report names it once)."""
    return str(exc).removeprefix(f"{exc.device}: ") if exc.device else str(exc)


def failure(exc: DriverError, security: str) -> str:
    """Why the association failed, in the installer's words; never a secret."""
    text = reason(exc)
    if isinstance(exc, DeviceTimeout):
        return f"timeout ({text})"
    wrong = "wrong password" if security == "lls" else "wrong key"
    if isinstance(exc, SecurityError):
        return f"{wrong} (the meter's HLS reply does not check: {text})"
    if isinstance(exc, DeviceError):
        if exc.code == AcseUserDiagnostic.AUTHENTICATION_FAILURE and "association" in text:
            return f"{wrong} ({text})"
        if "HLS reply" in text:
            return f"{wrong} ({text})"
        return f"refused ({text})"
    return text
