"""What the DLMS probe makes of a meter's answers, pure: FLAG ids, the object list's
shape, configured OBIS present or absent, and which device profile fits."""

from __future__ import annotations

import pytest

from gateway.commission.dlms_catalogue import (
    configured_obis,
    object_list,
    presence,
    propose,
    vendor_of,
)
from gateway.drivers.dlms import axdr
from gateway.errors import ProtocolError
from gateway.profiles import load_profiles
from gateway.profiles_dlms import DlmsProfile

PROFILES = {n: p for n, p in load_profiles().items() if isinstance(p, DlmsProfile)}
GENERIC = PROFILES["dlms_generic_electricity"]
POLYPHASE = PROFILES["dlms_generic_polyphase"]


@pytest.mark.parametrize(("flag", "vendor"), [
    ("ISK", "Iskraemeco"), ("ISk", "Iskraemeco"), ("lgz", "Landis+Gyr"), ("SIm", None),
    ("XYZ", None)])
def test_flag_ids(flag: str, vendor: str | None) -> None:
    assert vendor_of(flag) == vendor


def element(class_id: int, ln: bytes) -> axdr.Structure:
    rights = axdr.Structure((axdr.Array(()), axdr.Array(())))
    return axdr.Structure((axdr.LongUnsigned(class_id), axdr.Unsigned(0),
                           axdr.OctetString(ln), rights))


def test_object_list_pairs_and_broken_entries() -> None:
    good = axdr.Array((element(3, bytes([1, 0, 1, 8, 0, 255])),
                       element(8, bytes([0, 0, 1, 0, 0, 255]))))
    assert object_list(good) == ((3, "1.0.1.8.0.255"), (8, "0.0.1.0.0.255"))
    with pytest.raises(ProtocolError, match="entry 1"):
        object_list(axdr.Array((good.items[0], element(3, b"\x01\x00"))))
    with pytest.raises(ProtocolError):
        object_list(axdr.Unsigned(3))


def test_configured_codes_and_presence_in_either_notation() -> None:
    assert configured_obis(GENERIC)[-2:] == ("1.0.99.1.0.255", "0.0.96.10.1.255")
    objects = ((3, "1.0.1.8.0.255"),)
    assert presence(["1-0:1.8.0*255", "1.0.2.8.0.255"], objects) == (
        ("1.0.1.8.0.255", True), ("1.0.2.8.0.255", False))


def listing(profile: DlmsProfile, drop: int = 0) -> tuple[tuple[int, str], ...]:
    points = profile.points[:len(profile.points) - drop]
    return tuple((p.class_id, p.obis) for p in points)


def test_the_profile_the_meter_has_every_point_of_wins() -> None:
    got = propose(listing(POLYPHASE), PROFILES)
    # Every polyphase point is there, and so most of the generic profile's.
    assert (got.profile, got.candidates) == ("dlms_generic_polyphase",
                                             ("dlms_generic_electricity",))
    assert got.notes == ("profile dlms_generic_polyphase: the meter has no load profile "
                         "1.0.99.1.0.255 (registers only, no catch-up after an outage)",)
    full = (*listing(GENERIC), (7, "1.0.99.1.0.255"))
    assert propose(full, PROFILES).profile == "dlms_generic_electricity"


def test_no_profile_fits_a_meter_without_energy_registers() -> None:
    got = propose(((8, "0.0.1.0.0.255"), (3, "1.0.32.7.0.255")), PROFILES)
    assert (got.profile, got.candidates) == (None, ())
    assert "no DLMS profile fits" in got.notes[0]
