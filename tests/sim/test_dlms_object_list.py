"""The simulated meter's association object list (Blue Book 4.4.3 shape, every object
it serves) and its HDLC server's answer to SNRM at the all-station address."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.clock import ManualClock
from gateway.drivers.dlms import axdr
from gateway.drivers.dlms.apdu import DataAccessResult
from gateway.drivers.dlms.cosem import CURRENT_ASSOCIATION, AttributeDescriptor, Obis
from gateway.drivers.dlms.hdlc import (
    NEED_DATA,
    Control,
    FrameKind,
    FrameParser,
    HdlcAddress,
    HdlcFrame,
    HdlcServer,
    LinkUp,
)
from gateway.sim.dlms_meter import DlmsMeter, DlmsMeterSpec

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OBJECT_LIST = AttributeDescriptor(15, CURRENT_ASSOCIATION, 2)


def test_every_served_object_is_listed_with_its_class_version_and_rights() -> None:
    meter = DlmsMeter(DlmsMeterSpec("m"), ManualClock(NOW))
    listed = meter.get(OBJECT_LIST)
    assert not isinstance(listed, DataAccessResult)
    elements = [axdr.as_items(e, count=4) for e in axdr.as_items(listed)]
    by_name = {str(Obis.from_bytes(axdr.as_bytes(e[2]))): e for e in elements}
    assert len(by_name) == len(elements) == 12
    for name, element in by_name.items():
        class_id = axdr.as_int(element[0])
        # The list says what the meter answers: the logical name, and the class checks.
        assert meter.get(AttributeDescriptor(class_id, Obis.parse(name), 1)) == \
            axdr.OctetString(Obis.parse(name).to_bytes())
    versions = {name: (axdr.as_int(e[0]), axdr.as_int(e[1])) for name, e in by_name.items()}
    assert versions["0.0.1.0.0.255"] == (8, 0)
    assert versions["1.0.99.1.0.255"] == (7, 1)
    assert versions["0.0.40.0.0.255"] == (15, 2)
    attributes, methods = axdr.as_items(by_name["1.0.99.1.0.255"][3], count=2)
    rights = [axdr.as_items(a, count=3) for a in axdr.as_items(attributes)]
    assert [axdr.as_int(r[0]) for r in rights] == list(range(1, 9))
    assert rights[1][2] == axdr.Array((axdr.Integer(1), axdr.Integer(2)))  # buffer: range, entry
    assert rights[0][2] == axdr.NullData()
    assert axdr.as_items(methods) == ()
    _, association_methods = axdr.as_items(by_name["0.0.40.0.0.255"][3], count=2)
    assert axdr.as_items(association_methods) == (
        axdr.Structure((axdr.Integer(1), axdr.Enum(1))),)  # reply_to_HLS_authentication


def snrm(to: HdlcAddress) -> bytes:
    return HdlcFrame(to, HdlcAddress.client(16), Control(FrameKind.SNRM)).encode()


def answers(server: HdlcServer, data: bytes) -> list[HdlcFrame]:
    server.receive_data(data)
    while server.next_event() is not NEED_DATA:
        pass
    parser = FrameParser()
    parser.receive_data(server.data_to_send())
    frames = []
    while isinstance(got := parser.next_event(), HdlcFrame):
        frames.append(got)
    return frames


@pytest.mark.parametrize("answers_all_station", [True, False])
def test_snrm_to_the_all_station_address(answers_all_station: bool) -> None:
    own = HdlcAddress.server(1, 35)
    server = HdlcServer(own, answers_all_station=answers_all_station)
    got = answers(server, snrm(HdlcAddress.server(1, 0x7F)))
    if not answers_all_station:
        assert got == [] and server.foreign_frames == 1
        return
    (ua,) = got
    assert ua.kind is FrameKind.UA and ua.source == own  # its own address names it
    # The link is up: frames to its own address are its from now on.
    assert answers(server, snrm(own))[0].kind is FrameKind.UA
    # Another logical device's all-station address is not this one's.
    other = HdlcServer(own, answers_all_station=True)
    assert answers(other, snrm(HdlcAddress.server(2, 0x7F))) == []
    # Nor is the 4-byte form (0x3FFF) of a meter addressed in 2 bytes, and vice versa.
    assert answers(other, snrm(HdlcAddress.server(1, 0x3FFF, width=4))) == []
    wide = HdlcServer(HdlcAddress.server(1, 1234), answers_all_station=True)
    assert answers(wide, snrm(HdlcAddress.server(1, 0x7F))) == []
    assert answers(wide, snrm(HdlcAddress.server(1, 0x3FFF, width=4)))[0].source.lower == 1234


def test_link_up_event_on_the_all_station_snrm() -> None:
    server = HdlcServer(HdlcAddress.server(1, 35), answers_all_station=True)
    server.receive_data(snrm(HdlcAddress.server(1, 0x7F)))
    assert isinstance(server.next_event(), LinkUp)
