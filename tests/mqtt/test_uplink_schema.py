"""The uplink's v1 payload schema: round trips, the series table, limits, and every
malformed field refused by name."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from gateway.errors import DataError
from gateway.model import IntervalReading, Quality, Unit
from gateway.uplink.schema import (
    MAX_INTERVALS,
    Ack,
    batch_id_of,
    decode_ack,
    decode_batch,
    encode_ack,
    encode_batch,
    make_batch_id,
    reject_all,
)

T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
TZ = {("m1", "A+"): "Europe/Vienna", ("m2", "A+"): "UTC"}


def iv(meter: str, k: int, value: int, **kw: object) -> IntervalReading:
    return IntervalReading(meter_id=meter, channel="A+", start=T0.replace(minute=15 * k),
                           length_s=900, value=value, unit=Unit.WH, **kw)  # type: ignore[arg-type]


BATCH = [iv("m1", 0, 10), iv("m2", 0, 20, quality=Quality.ESTIMATED_LINEAR, flags=2, raw=19),
         iv("m1", 1, 2**40)]


def wire(**changes: object) -> bytes:
    doc = msgspec.json.decode(encode_batch("edge-a", "edge-a:1-3", BATCH, TZ, T0))
    doc.update(changes)
    return msgspec.json.encode(doc)


def test_round_trip_with_one_series_row_per_channel() -> None:
    payload = encode_batch("edge-a", make_batch_id("edge-a", 1, 3), BATCH, TZ, T0)
    doc = msgspec.json.decode(payload)
    assert doc["series"] == [["m1", "A+", "Wh", 900, "Europe/Vienna"],
                             ["m2", "A+", "Wh", 900, "UTC"]]
    assert doc["intervals"][1] == [1, int(T0.timestamp()), 20, 9, 2, 19]
    assert doc["sent_at"] == "2026-12-02T14:00:00Z"
    batch = decode_batch(payload, topic_edge="edge-a")
    assert batch.intervals == BATCH
    assert (batch.edge, batch.batch_id, batch.sent_at) == ("edge-a", "edge-a:1-3", T0)
    assert [s.timezone for s in batch.series] == ["Europe/Vienna", "UTC"]


def test_ack_round_trip() -> None:
    ack = Ack(batch_id="edge-a:1-3", stored=2, rejected=[(1, "no such meter")])
    assert decode_ack(encode_ack(ack)) == ack
    assert reject_all("edge-a:1-3", 2, "bad").rejected == [(0, "bad"), (1, "bad")]


@pytest.mark.parametrize(("payload", "field"), [
    (wire(v=2), "v"),
    (wire(edge="edge-b"), "edge"),
    (wire(batch="edge-b:1-3"), "batch"),
    (wire(batch="edge-a:3-1"), "batch"),
    (wire(sent_at="2026-12-02T14:00:00"), "sent_at"),
    (wire(extra=1), "batch"),
    (wire(intervals=[[0, 0, 1, 5, 0, None]]), "intervals[0].quality"),
    (wire(intervals=[[0, 0, "1", 0, 0, None]]), "intervals[0].value"),
    (wire(intervals=[[0, 0, 1.5, 0, 0, None]]), "intervals[0].value"),
    (wire(intervals=[[0, 0, 2**64, 0, 0, None]]), "intervals[0].value"),
    (wire(intervals=[[7, 0, 1, 0, 0, None]]), "intervals[0].series"),
    (wire(intervals=[[0, 60, 1, 0, 0, None]]), "intervals[0].start"),
    (wire(intervals=[[0, 1_764_000_000_000, 1, 0, 0, None]]), "intervals[0].start"),
    (wire(intervals=[]), "intervals"),
    (wire(series=[["m1", "A+", "J", 900, "UTC"]]), "series[0].unit"),
    (wire(series=[["m1", "A+", "Wh", 700, "UTC"]]), "series[0].interval_s"),
    (wire(series=[["m1", "A+", "Wh", 900, "Mars/Olympus"]]), "series[0].timezone"),
    (b"{not json", "batch"),
])
def test_malformed_batches_are_refused_by_field(payload: bytes, field: str) -> None:
    with pytest.raises(DataError) as caught:
        decode_batch(payload, topic_edge="edge-a")
    assert caught.value.source == field


def test_batch_id_readable_from_a_malformed_batch() -> None:
    assert batch_id_of(wire(v=2)) == "edge-a:1-3"
    assert batch_id_of(b'{"batch": 5}') is None
    assert batch_id_of(b"garbage") is None


def test_limits() -> None:
    many = [iv("m1", 0, 1)] * (MAX_INTERVALS + 1)
    with pytest.raises(DataError, match="1 to 10000"):
        encode_batch("edge-a", "edge-a:1-2", many, TZ, T0)
    with pytest.raises(DataError, match="limit"):
        decode_batch(b" " * (1 << 20) + b"{}")
    with pytest.raises(DataError, match="no timezone"):
        encode_batch("edge-a", "edge-a:1-1", [iv("m3", 0, 1)], TZ, T0)


def test_malformed_acks() -> None:
    with pytest.raises(DataError) as caught:
        decode_ack(b'{"v":1,"batch":"edge-a:1-3","stored":1,"rejected":[[0,"x"],[0,"y"]]}')
    assert caught.value.source == "rejected"
    with pytest.raises(DataError) as caught:
        decode_ack(b'{"v":1,"batch":"edge-a:1-3","stored":-1,"rejected":[]}')
    assert caught.value.source == "stored"
