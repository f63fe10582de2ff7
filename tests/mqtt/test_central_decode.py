"""The central ingest's reading of a batch (pure): single faulty intervals rejected
alone with their reason, whole-message faults refused with the batch id when readable."""

from __future__ import annotations

import json

import pytest

from gateway.ingest.central_decode import Malformed, decode_batch, encode_ack
from gateway.uplink import schema
from tests.mqtt.central_harness import T0, batch, encode


def test_a_well_formed_batch_is_accepted_whole() -> None:
    d = decode_batch(encode(batch("edge-a", 0, 3, channels=2)), "edge-a")
    assert (d.batch, d.count, d.rejected) == ("edge-a:0-5", 6, [])
    assert list(d.indices) == list(range(6))
    assert [d.series_of(r).channel for r in d.readings] == ["ch0"] * 3 + ["ch1"] * 3
    assert [r.value for r in d.readings] == [7, 8, 9] * 2


def test_faulty_intervals_are_rejected_alone_the_rest_kept() -> None:
    b = batch("edge-a", 0, 6)
    b["intervals"][1][1] += 1  # off the grid
    b["intervals"][3][1] = T0 * 1000  # milliseconds by mistake: only the schema knows
    b["intervals"][4] = [0, T0, 1]  # too short
    d = decode_batch(encode(b), "edge-a")
    assert list(d.indices) == [0, 2, 5]
    assert [r.value for r in d.readings] == [7, 9, 12]
    assert [i for i, _ in d.rejected] == [1, 3, 4]
    assert "grid" in d.rejected[0][1] and "intervals[3].start" in d.rejected[1][1]


def test_every_interval_faulty_gives_an_ack_of_rejections_not_a_refusal() -> None:
    b = batch("edge-a", 0, 2)
    for row in b["intervals"]:
        row[3] = 99
    d = decode_batch(encode(b), "edge-a")
    assert d.readings == [] and [i for i, _ in d.rejected] == [0, 1]


def test_a_whole_message_fault_behind_a_faulty_interval_still_refuses_the_batch() -> None:
    b = {**batch("edge-a", 0, 2), "v": 3}
    b["intervals"][0][1] += 1
    with pytest.raises(Malformed) as caught:
        decode_batch(encode(b), "edge-a")
    assert (caught.value.batch, caught.value.count) == ("edge-a:0-1", 2)
    assert "version" in caught.value.reason


@pytest.mark.parametrize(("payload", "batch_id", "count"), [
    (b"\xff\xfe", None, 0),
    (encode({**batch("edge-a", 0, 2), "series": [["m1", "ch0", "Wh", 7, "UTC"]]}),
     "edge-a:0-1", 2),
    (encode(batch("edge-b", 0, 3)), "edge-b:0-2", 3),
    (encode({**batch("edge-a", 0, 2), "batch": "edge-a:9-1"}), "edge-a:9-1", 2),
    (encode({**batch("edge-a", 0, 2), "pad": "x" * (2 << 20)}), "edge-a:0-1", 2),
    (b" " * (20 << 20), None, 0),
])
def test_whole_message_faults(payload: bytes, batch_id: str | None, count: int) -> None:
    with pytest.raises(Malformed) as caught:
        decode_batch(payload, "edge-a")
    assert (caught.value.batch, caught.value.count) == (batch_id, count)


def test_the_ack_is_the_schemas() -> None:
    raw = encode_ack("edge-a:0-2", 2, [(1, "x" * 900)])
    ack = schema.decode_ack(raw)
    assert (ack.batch_id, ack.stored, ack.rejected[0][0]) == ("edge-a:0-2", 2, 1)
    assert len(json.loads(raw)["rejected"][0][1]) == schema.MAX_REASON_CHARS
