"""Line protocol of intervals: escaping, exact integers, raw only when set, round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import DataError
from gateway.model import Flag, IntervalReading, Quality, Unit
from gateway.sinks.influx_line import LineEncoder, decode_line, encode_lines

AT = datetime(2026, 3, 8, 8, 0, tzinfo=UTC)


def reading(**kw: object) -> IntervalReading:
    base: dict[str, object] = dict(meter_id="M-1", channel="1.0.1.8.0.255", start=AT,
                                   length_s=900, value=250, unit=Unit.WH)
    base.update(kw)
    return IntervalReading(**base)  # type: ignore[arg-type]


def test_one_line_with_sorted_tags_integer_fields_and_seconds() -> None:
    [line] = encode_lines([reading()])
    assert line == (b"interval,channel=1.0.1.8.0.255,meter_id=M-1,unit=Wh "
                    b"flags=0i,length_s=900i,quality=0i,value=250i 1772956800")


def test_raw_is_written_only_when_set() -> None:
    edited = reading(value=300, raw=250, quality=Quality.EDITED, flags=int(Flag.EDITED))
    [line] = encode_lines([edited])
    assert b",raw=250i," in line and b"quality=7i" in line and b"flags=512i" in line
    assert b"raw=" not in encode_lines([reading()])[0]


def test_commas_spaces_and_equals_in_tags_are_escaped() -> None:
    [line] = encode_lines([reading(meter_id="Plant 3,a=b", channel="ch=1 x")])
    assert line.startswith(b"interval,channel=ch\\=1\\ x,meter_id=Plant\\ 3\\,a\\=b,unit=Wh ")
    assert decode_line(line).meter_id == "Plant 3,a=b"


def test_huge_and_negative_integers_stay_exact() -> None:
    r = reading(value=2**62 + 1, raw=-(2**40))
    assert decode_line(encode_lines([r])[0]) == r


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        (dict(meter_id=""), "empty meter_id"),
        (dict(channel="a\nb"), "line break"),
        (dict(meter_id="a\\b"), "backslash"),
        (dict(value=2**63), "64-bit"),
        (dict(start=AT.replace(microsecond=5)), "whole second"),
    ],
)
def test_what_influxdb_would_refuse_is_refused_naming_the_series(
    kw: dict[str, object], words: str,
) -> None:
    with pytest.raises(DataError) as err:
        LineEncoder().encode(reading(**kw))
    assert words in str(err.value)
    assert "channel" in str(err.value) and "meter" in str(err.value)


tag_text = st.text(st.characters(codec="utf-8", exclude_characters="\\\n\r",
                                 exclude_categories=("Cs",)), min_size=1, max_size=12)


@given(meter=tag_text, channel=tag_text, value=st.integers(-(2**63), 2**63 - 1),
       raw=st.none() | st.integers(0, 2**40), quality=st.sampled_from(list(Quality)),
       flags=st.integers(0, 2**21 - 1), seconds=st.integers(0, 4_000_000_000))
def test_round_trip(meter: str, channel: str, value: int, raw: int | None,
                    quality: Quality, flags: int, seconds: int) -> None:
    r = reading(meter_id=meter, channel=channel, value=value, raw=raw, quality=quality,
                flags=flags, start=datetime.fromtimestamp(seconds, UTC))
    assert decode_line(LineEncoder().encode(r)) == r
