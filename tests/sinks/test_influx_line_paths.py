"""The encoder's quick path (whole-second UTC start, integers inside int64) writes the
very line its careful path writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.model import Flag, IntervalReading, Quality, Unit
from gateway.sinks.influx_line import LineEncoder

AT = datetime(2026, 3, 8, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("kw", [
    {},
    {"value": -(2**63), "raw": 2**63 - 1, "quality": Quality.EDITED,
     "flags": int(Flag.EDITED)},
    {"length_s": 3600, "unit": Unit.VARH, "value": 0, "raw": 0},
    {"meter_id": "Plant 3,a=b", "channel": "ch=1 x", "length_s": -1},
])
def test_quick_and_careful_paths_write_the_same_line(kw: dict[str, object]) -> None:
    base: dict[str, object] = dict(meter_id="M-1", channel="1.0.1.8.0.255", start=AT,
                                   length_s=900, value=250, unit=Unit.WH)
    r = IntervalReading(**{**base, **kw})  # type: ignore[arg-type]
    encoder = LineEncoder()
    careful = encoder._encode_checked(r)
    assert encoder.encode(r) == careful
    assert LineEncoder().encode(r) == careful  # with its tag set not yet cached
