"""Which profile fits a device: by its 43/14 product code, else by plausible readings
at each profile's own addresses (pure matching over the bundled profiles)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway.commission.modbus_identify import (
    Block,
    identify,
    match_product,
    match_signatures,
    signature_blocks,
)
from gateway.drivers.modbus.decode import encode
from gateway.drivers.modbus.device_id import DeviceIdReply
from gateway.drivers.modbus.rtu import Refusal
from gateway.errors import ConfigError, DeviceTimeout
from gateway.profiles import DeviceProfile, load_profile, modbus_profiles

PROFILES = modbus_profiles()


def readings(profile: DeviceProfile, values: dict[str, str]) -> dict[Block, tuple[int, ...]]:
    """The registers a device of ``profile`` would hold for ``values`` (by channel)."""
    out: dict[Block, tuple[int, ...]] = {}
    for point in profile.points:
        if point.channel in values:
            words = encode(point, Decimal(values[point.channel]))
            out[(point.table, point.address, point.width)] = tuple(words)
    return out


THREE_PHASE = {"1.0.32.7.0.255": "231.5", "1.0.52.7.0.255": "229.1",
               "1.0.72.7.0.255": "230.2", "1.0.14.7.0.255": "49.98"}


def test_product_code_names_the_profile() -> None:
    objects = (("VendorName", "Schneider Electric"), ("ProductCode", "A9MEM3155"))
    assert match_product(objects, PROFILES) == ("schneider_iem3155",)
    # A longer catalogue number of the same model (a variant suffix) still matches.
    assert match_product((("ProductCode", "a9mem3255-x"),), PROFILES) == ("schneider_iem3155",)


def test_product_code_of_another_vendor_or_model_matches_nothing() -> None:
    assert match_product((("VendorName", "Other"), ("ProductCode", "A9MEM3155")),
                         PROFILES) == ()
    assert match_product((("ProductCode", "METSEPM3250"),), PROFILES) == ()
    assert match_product((), PROFILES) == ()


def test_every_signature_block_is_read_once() -> None:
    blocks = signature_blocks(PROFILES)
    assert len(blocks) == len(set(blocks))
    # The three Eastron profiles share L1 voltage (input 0) and frequency (input 70).
    assert ("input", 0, 2) in blocks and ("input", 70, 2) in blocks
    assert ("holding", 0x5B00, 2) in blocks  # ABB B23 L1 voltage


@pytest.mark.parametrize(("name", "best"), [
    ("eastron_sdm630", "eastron_sdm630"),
    ("carlo_gavazzi_em340", "carlo_gavazzi_em340"),
    ("abb_b23", "abb_b23"),
    ("schneider_iem3155", "schneider_iem3155"),
])
def test_a_three_phase_meter_is_told_apart(name: str, best: str) -> None:
    ranked = match_signatures(readings(PROFILES[name], THREE_PHASE), PROFILES)
    assert ranked[0][0] == best
    assert ranked[0][1] == 4
    others = {hit[0] for hit in ranked[1:]}
    if name == "eastron_sdm630":
        # The single-phase Eastrons share its L1 and frequency addresses: candidates.
        assert others == {"eastron_sdm120", "eastron_sdm230"}
    else:
        assert others == set()


def test_single_phase_eastron_proposes_both_single_phase_profiles() -> None:
    values = {"1.0.32.7.0.255": "229.9", "1.0.14.7.0.255": "50.01"}
    ranked = match_signatures(readings(PROFILES["eastron_sdm120"], values), PROFILES)
    # The SDM630's L2/L3 are not required: it stays a candidate, ranked by checks passed.
    assert [hit[0] for hit in ranked] == ["eastron_sdm120", "eastron_sdm230", "eastron_sdm630"]
    assert ranked[0][2] == (("1.0.32.7.0.255", "229.9"), ("1.0.14.7.0.255", "50.01"))


def test_implausible_or_refused_readings_match_nothing() -> None:
    dead = dict(THREE_PHASE, **{"1.0.14.7.0.255": "0"})
    assert match_signatures(readings(PROFILES["eastron_sdm630"], dead), PROFILES) == ()
    assert match_signatures({}, PROFILES) == ()
    refused = {block: None for block in signature_blocks(PROFILES)}
    assert match_signatures(refused, PROFILES) == ()


def test_signature_names_a_point_of_its_profile(tmp_path: Path) -> None:
    path = tmp_path / "meter.toml"
    path.write_text('''
manufacturer = "Test"
model = "T"
source = "tests"
max_power_w = 1000
[[points]]
channel = "1.0.32.7.0.255"
address = 0
type = "float32"
unit = "V"
kind = "instant"
[identify]
signature = [{ channel = "1.0.14.7.0.255", min = "45", max = "65" }]
''')
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert caught.value.key == "identify.signature[0].channel"
    path.write_text(path.read_text().replace('"1.0.14.7.0.255", min = "45", max = "65"',
                                             '"1.0.32.7.0.255", min = "270", max = "90"'))
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert caught.value.key == "identify.signature[0].min"
    path.write_text(path.read_text().replace("signature", "signatures"))
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert caught.value.key == "identify.signatures"
    assert "product_codes" in str(caught.value)


def test_every_bundled_modbus_profile_can_be_recognised() -> None:
    for name, profile in PROFILES.items():
        assert profile.identify is not None and profile.identify.signature, name
    iem = PROFILES["schneider_iem3155"].identify
    assert iem is not None and iem.product_codes == ("A9MEM3155", "A9MEM3255")


class TableUnit:
    """A unit whose answers are a table (a stand-in :class:`UnitLink` for the cases no
    simulator produces: identification split over two replies, an unknown product)."""

    name = "table"

    def __init__(self, replies: dict[int, DeviceIdReply | Refusal],
                 registers: dict[Block, tuple[int, ...]]) -> None:
        self.replies = replies
        self.registers = registers
        self.asked: list[object] = []

    async def identification(self, unit: int, object_id: int) -> DeviceIdReply | Refusal:
        self.asked.append(object_id)
        return self.replies[object_id]

    async def read(self, unit: int, block: Block) -> tuple[int, ...] | Refusal:
        self.asked.append(block)
        if block in self.registers:
            return self.registers[block]
        raise DeviceTimeout("no reply", device=self.name)


async def test_identification_split_over_two_replies_is_joined() -> None:
    first = DeviceIdReply(conformity=1, more_follows=True, next_object=1,
                          objects=((0, b"Schneider Electric"),))
    second = DeviceIdReply(conformity=1, more_follows=False, next_object=0,
                           objects=((1, b"A9MEM3255"), (2, b"2.1")))
    serial = PROFILES["schneider_iem3155"].points[0]  # 130 Serial Number, UInt32
    unit = TableUnit({0: first, 1: second},
                     {(serial.table, serial.address, serial.width): (0, 4242)})
    result = await identify(unit, 7, PROFILES, pause_s=0)
    assert result.profile == "schneider_iem3155"
    assert (result.identity.model, result.identity.revision, result.identity.serial) == (
        "A9MEM3255", "2.1", "4242")
    assert unit.asked[:2] == [0, 1]


async def test_unknown_product_falls_back_to_signatures() -> None:
    reply = DeviceIdReply(conformity=1, more_follows=False, next_object=0,
                          objects=((0, b"Other"), (1, b"X-100")))
    unit = TableUnit({0: reply}, readings(PROFILES["abb_b23"], THREE_PHASE))
    result = await identify(unit, 7, PROFILES, pause_s=0)
    assert result.profile == "abb_b23"
    # Who it says it is stays; the profile comes from the signature.
    assert (result.identity.source, result.identity.model) == ("modbus_device_id", "X-100")
    assert "no profile declares this product code" in result.notes[0]


async def test_nothing_plausible_proposes_no_profile() -> None:
    unit = TableUnit({0: Refusal(code=1)}, {})
    result = await identify(unit, 7, PROFILES, pause_s=0)
    assert (result.profile, result.candidates, result.identity.source) == (None, (), "none")
    assert result.notes == ("device identification (function 43/14) refused: illegal function",
                            "no profile's signature matches (no plausible voltage and "
                            "frequency at any profile's addresses)")
