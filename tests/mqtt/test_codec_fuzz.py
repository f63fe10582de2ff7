"""Whatever arrives on a topic, a codec gives finite readings or a DataError: nothing
else escapes (no KeyError, no decimal trap, no OverflowError), nothing non-finite."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.drivers.mqtt.codecs import Codec, build_codec
from gateway.drivers.mqtt.config import MqttInput
from gateway.errors import DataError
from gateway.model import SERIAL_NUMBER

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)

CODECS: list[tuple[Codec, str]] = [
    (build_codec(MqttInput.model_validate({
        "topic": "m/{meter_id}", "codec": "json",
        "codec_options": {"channels": [
            {"channel": "1.0.1.8.0.255", "value": "a", "unit": "kWh", "scale": "0.001"},
            {"channel": "1.0.16.7.0.255", "value": "b.0", "unit_path": "u", "kind": "instant",
             "required": False},
            {"channel": SERIAL_NUMBER, "value": "s", "required": False}],
            "timestamp": {"path": "t", "format": "epoch_ms"}}})), "m/x"),
    (build_codec(MqttInput.model_validate({
        "topic": "m/{meter_id}", "codec": "json",
        "codec_options": {"channels": [{"channel": "e", "value": "a", "unit": "Wh"}],
                          "timestamp": {"path": "t"}}})), "m/x"),
    (build_codec(MqttInput.model_validate({
        "topic": "tele/{meter_id}/SENSOR", "codec": "tasmota_sml",
        "codec_options": {"timezone": "Europe/Berlin"}})), "tele/x/SENSOR"),
    (build_codec(MqttInput.model_validate({
        "topic": "{meter_id}/status/+", "codec": "shelly_gen2_em",
        "codec_options": {"phases": True}})), "s/status/emdata:0"),
]

_numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.floats().map(lambda f: json.dumps(f)),  # NaN, Infinity and -Infinity too
    st.sampled_from(["1e400", "-0", "1E-999", "0.1", "1772366400123", "253402300800000"]),
)
_scalars = st.one_of(st.sampled_from(["null", "true", "false"]), _numbers,
                     st.text(max_size=20).map(json.dumps),
                     st.sampled_from(['"2026-03-01T12:00:00"', '"1970-01-01T00:00:00"',
                                      '"0001-01-01T00:00:00+14:00"', '"9999-12-31T23:59:59-12:00"',
                                      '"kWh"', '"W"', '"123"']))
_json_text = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(st.sampled_from(["a", "b", "s", "t", "u", "Time", "SML", "Total_in",
                                         "Power_curr", "Meter_Number", "total_act",
                                         "total_act_ret", "a_total_act_energy", "0"]),
                        inner, max_size=6).map(
            lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"),
    ),
    max_leaves=12,
)


def _decode(codec: Codec, topic: str, payload: bytes) -> None:
    try:
        readings = codec.decode(topic, payload, NOW)
    except DataError:
        return
    for reading in readings:
        assert isinstance(reading.value, Decimal) and reading.value.is_finite()
        assert reading.at.tzinfo is UTC


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(range(len(CODECS))))
def test_arbitrary_bytes_give_readings_or_data_error(payload: bytes, which: int) -> None:
    codec, topic = CODECS[which]
    _decode(codec, topic, payload)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json_text, st.sampled_from(range(len(CODECS))))
def test_arbitrary_json_gives_readings_or_data_error(text: str, which: int) -> None:
    codec, topic = CODECS[which]
    _decode(codec, topic, text.encode())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["Total_in", "Total_out", "Power_curr", "Meter_Number",
                                        "power_l1", "x"]), _scalars, min_size=1))
def test_tasmota_group_values_give_readings_or_data_error(group: dict[str, Any]) -> None:
    codec, topic = CODECS[2]
    body = ",".join(f"{json.dumps(k)}:{v}" for k, v in group.items())
    _decode(codec, topic, ('{"Time":"2026-03-01T12:00:00","SML":{' + body + "}}").encode())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_topics_never_escape(topic: str) -> None:
    for codec, _ in CODECS:
        _decode(codec, topic, b'{"a": 1, "t": 1772366400123, "Time": "2026-03-01T12:00:00"}')


_times = st.one_of(
    _scalars,
    st.datetimes(timezones=st.sampled_from([None, UTC]) | st.timezones()).map(
        lambda d: json.dumps(d.isoformat())),
    st.sampled_from(['"0001-01-01T00:00:00+14:00"', '"9999-12-31T23:59:59-12:00"',
                     '"2026-03-29T02:30:00"', '"2026-10-25T02:30:00"']),
)


@settings(max_examples=300, deadline=None)
@given(_times, st.sampled_from([0, 1, 2]))
def test_arbitrary_timestamps_give_readings_or_data_error(stamp: str, which: int) -> None:
    codec, topic = CODECS[which]
    payload = f'{{"a": 1, "t": {stamp}, "Time": {stamp}, "SML": {{"Total_in": 1}}}}'
    _decode(codec, topic, payload.encode())
