"""The codecs' options: unknown keys, inexact scales, incoherent units and topics are
refused with the key to blame and a fix, as gateway.settings reports them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.drivers.mqtt.config import (
    DEFAULT_SML_KEYS,
    JsonMapOptions,
    MqttInput,
    ShellyGen2EmOptions,
    TasmotaSmlOptions,
)
from gateway.model import SERIAL_NUMBER, Unit
from gateway.settings import problems_of

FILE = Path("/etc/ami/gateway.toml")
CHANNEL = {"channel": "1.0.1.8.0.255", "value": "e", "unit": "kWh"}


def problem(data: dict[str, Any]) -> tuple[str, str, str]:
    """(key, message, fix) of the first problem, as the settings loader reports it."""
    with pytest.raises(ValidationError) as caught:
        MqttInput.model_validate(data)
    first = problems_of(caught.value, FILE, data)[0]
    assert first.file == str(FILE)
    assert first.fix
    return first.key, first.reason, first.fix


def test_each_codec_validates_into_its_own_options() -> None:
    json_input = MqttInput.model_validate(
        {"topic": "m/{meter_id}", "codec": "json", "codec_options": {"channels": [CHANNEL]}})
    assert isinstance(json_input.codec_options, JsonMapOptions)
    assert json_input.codec_options.max_payload_bytes == 65_536
    tasmota = MqttInput.model_validate({"topic": "tele/+/SENSOR", "codec": "tasmota_sml"})
    assert isinstance(tasmota.codec_options, TasmotaSmlOptions)
    assert tasmota.codec_options.sensor == "SML"
    shelly = MqttInput.model_validate({"topic": "x/status/+", "codec": "shelly_gen2_em",
                                       "codec_options": {"component_id": 1}})
    assert isinstance(shelly.codec_options, ShellyGen2EmOptions)
    assert shelly.pattern.filter == "x/status/+"


def test_scale_is_exact() -> None:
    options = JsonMapOptions.model_validate(
        {"channels": [{**CHANNEL, "scale": "0.1"}, {**CHANNEL, "channel": "b", "scale": 10}]})
    assert options.channels[0].scale == Decimal("0.1")
    assert options.channels[1].scale == Decimal(10)


@pytest.mark.parametrize(("options", "key", "words"), [
    ({"channels": [{**CHANNEL, "scale": 0.1}]}, "codec_options.channels[0].scale",
     "quoted decimal"),
    ({"channels": [{**CHANNEL, "scale": "0"}]}, "codec_options.channels[0].scale", "non-zero"),
    ({"channels": [{**CHANNEL, "scale": "abc"}]}, "codec_options.channels[0].scale",
     "not a decimal"),
    ({"channels": [{**CHANNEL, "scale": "-1"}]}, "codec_options.channels[0].scale",
     "negative scale"),
    ({"channels": [{**CHANNEL, "unit": "W"}]}, "codec_options.channels[0].kind",
     "cumulative register counts energy"),
    ({"channels": [{**CHANNEL, "unit_path": "u"}]}, "codec_options.channels[0].unit",
     "exactly one of unit or unit_path"),
    ({"channels": [{"channel": SERIAL_NUMBER, "value": "s", "unit": "kWh"}]},
     "codec_options.channels[0].unit", "serial number channel has no unit"),
    ({"channels": [{**CHANNEL, "value": "a..b"}]}, "codec_options.channels[0].value",
     "empty segment"),
    ({"channels": [CHANNEL, CHANNEL]}, "codec_options.channels", "appears twice"),
    ({"channels": []}, "codec_options.channels", "at least 1"),
    ({}, "codec_options.channels", "required key is missing"),
    ({"channels": [{**CHANNEL, "colour": "red"}]}, "codec_options.channels[0].colour",
     "unknown key"),
    ({"channels": [CHANNEL], "timestamp": {"path": "t", "format": "rfc822"}},
     "codec_options.timestamp.format", "Input should be"),
    ({"channels": [CHANNEL], "meter_id": {}}, "codec_options.meter_id",
     "exactly one of placeholder or path"),
    ({"channels": [CHANNEL], "max_payload_bytes": 10}, "codec_options.max_payload_bytes",
     "greater than or equal to 64"),
])
def test_json_options_problems_name_key_and_fix(options: dict[str, Any], key: str,
                                                words: str) -> None:
    got_key, message, _ = problem({"topic": "m/{meter_id}", "codec": "json",
                                   "codec_options": options})
    assert got_key == key
    assert words in message


def test_unknown_top_level_option_lists_the_allowed_keys() -> None:
    key, message, fix = problem({"topic": "t/{meter_id}", "codec": "tasmota_sml",
                                 "codec_options": {"sensr": "SML"}})
    assert (key, message) == ("codec_options.sensr", "unknown key")
    assert "sensor" in fix and "timezone" in fix


@pytest.mark.parametrize(("data", "key", "words"), [
    ({"topic": "a/#/b", "codec": "tasmota_sml"}, "topic", "'#' may only be the last level"),
    ({"topic": "tele/+/SENSOR", "codec": "tasmota_sml",
      "codec_options": {"meter_id": {"placeholder": "device"}}},
     "codec_options.meter_id.placeholder", "no placeholder {device}"),
    ({"topic": "t", "codec": "tasmota_sml", "codec_options": {"timezone": "Mars/Olympus"}},
     "codec_options.timezone", "unknown timezone"),
    ({"topic": "t", "codec": "tasmota_sml",
      "codec_options": {"keys": {"Bezug": {"channel": "1.0.1.8.0.255", "unit": "kWh"}}}},
     "codec_options.keys", "appears twice"),
    ({"topic": "t", "codec": "shelly_gen2_em", "codec_options": {"component_id": 12}},
     "codec_options.component_id", "less than or equal to 9"),
    ({"topic": "t", "codec": "modbus"}, "codec", "Input should be"),
])
def test_input_problems_name_key_and_fix(data: dict[str, Any], key: str, words: str) -> None:
    got_key, message, _ = problem(data)
    assert got_key == key
    assert words in message


def test_an_unknown_codec_reports_only_the_codec() -> None:
    data = {"topic": "t", "codec": "modbus", "codec_options": {"channels": "x"}}
    with pytest.raises(ValidationError) as caught:
        MqttInput.model_validate(data)
    assert [p.key for p in problems_of(caught.value, FILE, data)] == ["codec"]


def test_tasmota_keys_override_the_defaults() -> None:
    options = TasmotaSmlOptions.model_validate(
        {"keys": {"Total_in": {"channel": "1.0.1.8.0.255", "unit": "Wh", "scale": "1000"}}})
    mapping = options.mapping()
    assert mapping["Total_in"].unit is Unit.WH and mapping["Total_in"].scale == 1000
    assert mapping["Power_curr"] == DEFAULT_SML_KEYS["Power_curr"]
    assert TasmotaSmlOptions(defaults=False).mapping() == {}
