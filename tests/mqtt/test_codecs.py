"""The codecs on recorded-style payloads: exact values, the right channels, kinds and
times, and every malformed class refused with a reason that names the field.

The payloads are written after the formats their docs show:
- Tasmota: ``tele/<topic>/SENSOR`` = ``{"Time":"2024-02-24T22:20:38",...}`` (Tasmota's
  MQTT log format), the SML group and key names from Tasmota's Smart Meter Interface
  docs (https://tasmota.github.io/docs/Smart-Meter-Interface/) and evcc's page on
  Tasmota SML readers (https://docs.evcc.io/en/meters/tasmota-sml-ir-reader-for-smartmeters-e-g-hichi):
  Total_in / Total_out in kWh with 4 decimals, Power_curr in W, a meter number read as
  text (``@#``).
- Shelly: status of EMData / EM (Pro 3EM) and EM1Data / EM1 (Pro EM) as in
  https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/EMData#status,
  .../EM#status, .../EM1Data#status, .../EM1#status, published on
  ``<topic_prefix>/status/<component:id>`` (.../ComponentsAndServices/Mqtt).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from gateway.drivers.mqtt.codecs import (
    CODECS,
    JsonMapCodec,
    ShellyGen2EmCodec,
    TasmotaSmlCodec,
    build_codec,
)
from gateway.drivers.mqtt.config import MqttInput
from gateway.errors import ConfigError, DataError
from gateway.model import SERIAL_NUMBER, Kind, Reading, Unit

TASMOTA_SENSOR = (
    b'{"Time":"2026-03-01T12:00:00","SML":{"Total_in":12345.6789,"Total_out":0.1,'
    b'"Power_curr":-412,"Meter_Number":"0a01454d4800010e5e2b"}}'
)
#: The same script with the evcc names for phases and a meter named "Haus".
TASMOTA_HAUS = (
    b'{"Time":"2026-10-25T02:30:00","Haus":{"Total_in":7.0001,"power_l1":120,'
    b'"power_l2":0,"power_l3":-3.5,"voltage_l1":230.1,"Meter_number":"12345678"}}'
)

SHELLY_EMDATA = (
    b'{"id":0,"a_total_act_energy":41574.47,"a_total_act_ret_energy":0,'
    b'"b_total_act_energy":8784.89,"b_total_act_ret_energy":12.5,'
    b'"c_total_act_energy":6557.2,"c_total_act_ret_energy":0,'
    b'"total_act":56916.56,"total_act_ret":12.5}'
)
SHELLY_EM = (
    b'{"id":0,"a_current":1.504,"a_voltage":231.2,"a_act_power":253.1,"a_aprt_power":254.0,'
    b'"a_pf":0.99,"a_freq":50.0,"b_current":2.2,"b_voltage":232.3,"b_act_power":510.0,'
    b'"b_aprt_power":511.0,"b_pf":0.98,"b_freq":50.0,"c_current":3.3,"c_voltage":233.4,'
    b'"c_act_power":-770.2,"c_aprt_power":771.0,"c_pf":-0.97,"c_freq":50.0,'
    b'"n_current":null,"total_current":7.004,"total_act_power":-7.1,'
    b'"total_aprt_power":1536.0,"user_calibrated_phase":[]}'
)
SHELLY_EM1DATA_1 = b'{"id":1,"total_act_energy":6644.90,"total_act_ret_energy":2595.26}'
SHELLY_EM1_1 = (
    b'{"id":1,"current":22.780,"voltage":224.6,"act_power":5080.3,"aprt_power":5142.4,'
    b'"pf":0.99,"freq":50.0,"calibration":"factory"}'
)

NOW = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)


def codec(topic: str, name: str, options: dict[str, Any] | None = None,
          meter_id: str | None = None) -> Any:
    data: dict[str, Any] = {"topic": topic, "codec": name}
    if options is not None:
        data["codec_options"] = options
    return build_codec(MqttInput.model_validate(data), meter_id)


def by_channel(readings: list[Reading]) -> dict[str, Reading]:
    return {r.channel: r for r in readings}


def refused(c: Any, topic: str, payload: bytes) -> str:
    with pytest.raises(DataError) as caught:
        c.decode(topic, payload, NOW)
    assert caught.value.source == topic
    return str(caught.value)


# -- generic JSON -----------------------------------------------------------------------

JSON_OPTIONS: dict[str, Any] = {
    "channels": [
        {"channel": "1.0.1.8.0.255", "value": "energy.import", "unit": "kWh"},
        {"channel": "1.0.2.8.0.255", "value": "energy.export_wh", "unit": "kWh",
         "scale": "0.001"},
        {"channel": "1.0.16.7.0.255", "value": "readings.0.value", "unit_path": "readings.0.unit",
         "kind": "instant"},
        {"channel": SERIAL_NUMBER, "value": "serial"},
        {"channel": "1.0.32.7.0.255", "value": "voltage", "unit": "V", "kind": "instant",
         "required": False},
    ],
    "timestamp": {"path": "ts", "format": "iso8601"},
}
JSON_PAYLOAD = (b'{"ts":"2026-03-01T13:00:00+01:00","serial":"A1B2","energy":{"import":0.1,'
                b'"export_wh":1234.5},"readings":[{"value":-250.25,"unit":"w"}]}')


def test_json_map_reads_every_channel_exactly() -> None:
    c = codec("meters/{meter_id}/state", "json", JSON_OPTIONS)
    assert isinstance(c, JsonMapCodec)
    assert c.pattern.filter == "meters/+/state"
    rows = by_channel(c.decode("meters/m-7/state", JSON_PAYLOAD, NOW))
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert rows["1.0.1.8.0.255"] == Reading(meter_id="m-7", channel="1.0.1.8.0.255", at=at,
                                            meter_at=at, value=Decimal("0.1"), unit=Unit.KWH,
                                            kind=Kind.CUMULATIVE)
    assert str(rows["1.0.1.8.0.255"].value) == "0.1"  # never through a float
    assert rows["1.0.2.8.0.255"].value == Decimal("1.2345")
    assert rows["1.0.16.7.0.255"].value == Decimal("-250.25")
    assert rows["1.0.16.7.0.255"].unit is Unit.W and rows["1.0.16.7.0.255"].kind is Kind.INSTANT
    serial = rows[SERIAL_NUMBER]
    assert serial.kind is Kind.IDENTITY and serial.unit is Unit.COUNT
    assert serial.value == Decimal(int.from_bytes(b"A1B2", "big"))
    assert "1.0.32.7.0.255" not in rows  # optional and absent


def test_json_map_meter_id_from_payload_and_epoch_times() -> None:
    options = {"meter_id": {"path": "device.id"},
               "channels": [{"channel": "1.0.1.8.0.255", "value": "e", "unit": "Wh"}],
               "timestamp": {"path": "t", "format": "epoch_ms"}}
    c = codec("meters/+/state", "json", options)
    (row,) = c.decode("meters/x/state", b'{"device":{"id":123456},"e":42,"t":1772366400123}',
                      NOW)
    assert row.meter_id == "123456"
    assert row.at == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    seconds = codec("meters/+/state", "json", {**options, "timestamp": {"path": "t",
                                                                        "format": "epoch_s"}})
    (row,) = seconds.decode("meters/x/state", b'{"device":{"id":"m.1"},"e":42,"t":1772366400.5}',
                            NOW)
    assert row.meter_id == "m.1" and row.at == datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)


def test_json_map_without_timestamp_is_stamped_on_reception() -> None:
    c = codec("m/e", "json", {"channels": [{"channel": "1.0.1.8.0.255", "value": "e",
                                            "unit": "kWh"}]}, meter_id="fixed-1")
    (row,) = c.decode("m/e", b'{"e": 5}', NOW)
    assert row.meter_id == "fixed-1" and row.at == NOW and row.meter_at is None


def test_future_timestamps_are_kept_for_validation() -> None:
    c = codec("meters/{meter_id}/state", "json", JSON_OPTIONS)
    payload = JSON_PAYLOAD.replace(b"2026-03-01T13:00:00", b"2030-01-01T00:00:00")
    rows = c.decode("meters/m/state", payload, NOW)
    assert all(r.at.year == 2029 for r in rows)  # 2030-01-01T00:00+01:00


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"ts":"2026-03-01T13:00:00+01:00","energy":{"import":0.1', "invalid JSON"),
    (b"not json", "invalid JSON"),
    (b'{"energy":{"import":NaN}}', "NaN is not a number JSON allows"),
    (b'{"energy":{"import":Infinity}}', "Infinity is not a number JSON allows"),
    (b'{"energy":{"import":-Infinity}}', "-Infinity is not a number JSON allows"),
    (b'{"a":1,"a":2}', "key 'a' appears twice"),
    (b'\xff\xfe{}', "not UTF-8"),
    (JSON_PAYLOAD.replace(b'"import":0.1', b'"import":"0.1"'),
     "energy.import: a string ('0.1') where a number is due"),
    (JSON_PAYLOAD.replace(b'"import":0.1', b'"import":true'),
     "energy.import: a boolean (true) where a number is due"),
    (JSON_PAYLOAD.replace(b'"import":0.1', b'"import":null'),
     "energy.import: null where a number is due"),
    (JSON_PAYLOAD.replace(b'"import":0.1', b'"import":[1]'),
     "energy.import: a list where a number is due"),
    (JSON_PAYLOAD.replace(b'"import":0.1,', b""), "energy.import: missing (1.0.1.8.0.255)"),
    (JSON_PAYLOAD.replace(b'"import":0.1', b'"import":-0.1'),
     "energy.import: negative energy -0.1"),
    (JSON_PAYLOAD.replace(b'"import":0.1', b'"import":1e400'), "out of range"),
    (JSON_PAYLOAD.replace(b"+01:00", b""), "ts: timestamp '2026-03-01T13:00:00' has no UTC offset"),
    (JSON_PAYLOAD.replace(b'"2026-03-01T13:00:00+01:00"', b"1772366400"),
     "ts: a number (1772366400) where an ISO 8601 timestamp is due"),
    (JSON_PAYLOAD.replace(b"2026-03-01T13", b"yesterday"),
     "ts: a string ('yesterday:00:00+01:00') is not an ISO 8601 timestamp"),
    (JSON_PAYLOAD.replace(b'"ts":"2026-03-01T13:00:00+01:00",', b""), "ts: missing"),
    (JSON_PAYLOAD.replace(b'"unit":"w"', b'"unit":"horsepower"'),
     "readings.0.unit: 'horsepower' is not a known unit"),
    (JSON_PAYLOAD.replace(b'"unit":"w"', b'"unit":"mW"'),
     "readings.0.unit: 'mW' is not a known unit"),  # milli, not mega
    (JSON_PAYLOAD.replace(b'"unit":"w"', b'"unit":5'), "readings.0.unit: Decimal('5') is not"),
    (JSON_PAYLOAD.replace(b'"serial":"A1B2"', b'"serial":false'),
     "serial: a boolean (false) where a serial number is due"),
    (b"[1, 2, 3]", "ts: missing"),
])
def test_json_map_refuses_malformed_payloads(payload: bytes, reason: str) -> None:
    c = codec("meters/{meter_id}/state", "json", JSON_OPTIONS)
    assert reason in refused(c, "meters/m/state", payload)


def test_oversized_payload_is_refused_before_parsing() -> None:
    c = codec("m/{meter_id}", "json", {**JSON_OPTIONS, "max_payload_bytes": 1024})
    big = b'{"pad":"' + b"x" * 1100 + b'"}'
    assert "payload of 1110 bytes exceeds the limit of 1024 bytes" in refused(c, "m/a", big)
    default = codec("m/{meter_id}", "json", JSON_OPTIONS)
    huge = b"[" + b"0," * 40_000 + b"0]"
    assert "exceeds the limit of 65536 bytes" in refused(default, "m/a", huge)


def test_deep_nesting_is_refused() -> None:
    c = codec("m/{meter_id}", "json", JSON_OPTIONS)
    assert "nested too deeply" in refused(c, "m/a", b"[" * 30_000 + b"]" * 30_000)


def test_topic_that_does_not_match_is_refused() -> None:
    c = codec("meters/{meter_id}/state", "json", JSON_OPTIONS)
    assert "topic does not match 'meters/{meter_id}/state'" in refused(
        c, "meters/m/other", JSON_PAYLOAD)


def test_bad_meter_ids_are_refused() -> None:
    c = codec("meters/{meter_id}/state", "json", JSON_OPTIONS)
    assert "topic {meter_id}: meter id 'a b' is not" in refused(c, "meters/a b/state",
                                                               JSON_PAYLOAD)
    assert "is not 1-64" in refused(c, "meters//state", JSON_PAYLOAD)
    from_payload = codec("m", "json", {**JSON_OPTIONS, "meter_id": {"path": "id"}})
    assert "id: missing (the meter id)" in refused(from_payload, "m", JSON_PAYLOAD)
    assert "id: the meter id must be text" in refused(
        from_payload, "m", JSON_PAYLOAD.replace(b"{", b'{"id":1.5,', 1))


# -- Tasmota SML ------------------------------------------------------------------------

def test_tasmota_sml_defaults() -> None:
    c = codec("tele/{device}/SENSOR", "tasmota_sml",
              {"meter_id": {"placeholder": "device"}, "timezone": "Europe/Berlin"})
    assert isinstance(c, TasmotaSmlCodec) and c.pattern.filter == "tele/+/SENSOR"
    rows = by_channel(c.decode("tele/house/SENSOR", TASMOTA_SENSOR, NOW))
    at = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)  # 12:00 CET
    assert {r.meter_id for r in rows.values()} == {"house"}
    assert all(r.at == at and r.meter_at == at for r in rows.values())
    assert rows["1.0.1.8.0.255"].value == Decimal("12345.6789")
    assert rows["1.0.1.8.0.255"].unit is Unit.KWH
    assert str(rows["1.0.2.8.0.255"].value) == "0.1"
    assert rows["1.0.16.7.0.255"].value == Decimal(-412)
    assert rows["1.0.16.7.0.255"].kind is Kind.INSTANT and rows["1.0.16.7.0.255"].unit is Unit.W
    serial = rows[SERIAL_NUMBER]
    assert serial.kind is Kind.IDENTITY
    assert serial.value == Decimal(int.from_bytes(b"0a01454d4800010e5e2b", "big"))


def test_tasmota_named_meter_phases_and_dst_fold() -> None:
    c = codec("tele/haus/SENSOR", "tasmota_sml",
              {"sensor": "Haus", "timezone": "Europe/Berlin"}, meter_id="haus-1")
    rows = by_channel(c.decode("tele/haus/SENSOR", TASMOTA_HAUS, NOW))
    # 02:30 on 2026-10-25 happens twice in Berlin; fold=0 takes the first (CEST, +02:00).
    assert rows["1.0.1.8.0.255"].at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert rows["1.0.36.7.0.255"].value == Decimal(120)
    assert rows["1.0.76.7.0.255"].value == Decimal("-3.5")
    assert rows["1.0.32.7.0.255"].unit is Unit.V
    assert rows[SERIAL_NUMBER].value == Decimal(12345678)  # digits stay digits


def test_tasmota_local_time_in_the_spring_gap_takes_the_offset_before_it() -> None:
    c = codec("tele/{meter_id}/SENSOR", "tasmota_sml", {"timezone": "Europe/Berlin"})
    payload = TASMOTA_SENSOR.replace(b"2026-03-01T12:00:00", b"2026-03-29T02:30:00")
    rows = c.decode("tele/h/SENSOR", payload, NOW)
    assert rows[0].at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # read as +01:00


def test_tasmota_custom_keys_and_gateway_time() -> None:
    options = {"sensor": "E320", "time": "gateway", "defaults": False,
               "keys": {"bezug": {"channel": "1.0.1.8.0.255", "unit": "Wh", "scale": "1000"},
                        "watt": {"channel": "1.0.16.7.0.255", "unit": "W", "kind": "instant"}}}
    c = codec("tele/{meter_id}/SENSOR", "tasmota_sml", options)
    payload = b'{"Time":"1970-01-01T00:05:00","E320":{"bezug":1.5,"watt":7,"Total_in":9}}'
    rows = by_channel(c.decode("tele/e320/SENSOR", payload, NOW))
    assert set(rows) == {"1.0.1.8.0.255", "1.0.16.7.0.255"}  # Total_in: defaults are off
    assert rows["1.0.1.8.0.255"].value == Decimal("1500.0")
    assert rows["1.0.1.8.0.255"].at == NOW and rows["1.0.1.8.0.255"].meter_at is None


def test_tasmota_time_with_offset_is_used_as_given() -> None:
    c = codec("tele/{meter_id}/SENSOR", "tasmota_sml", {"timezone": "Europe/Berlin"})
    payload = TASMOTA_SENSOR.replace(b"12:00:00", b"12:00:00+00:00")
    rows = c.decode("tele/h/SENSOR", payload, NOW)
    assert rows[0].at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("payload", "reason"), [
    (TASMOTA_SENSOR.replace(b'"Time":"2026-03-01T12:00:00",', b""), "Time: missing"),
    (TASMOTA_SENSOR.replace(b"2026-03-01", b"1970-01-01"),
     "the device's clock is not set"),
    (TASMOTA_SENSOR.replace(b'"SML"', b'"SML2"'), "SML: missing"),
    (b'{"Time":"2026-03-01T12:00:00","SML":5}', "SML: not an object"),
    (b'{"Time":"2026-03-01T12:00:00","SML":{"Temp":5}}', "none of the mapped keys"),
    (TASMOTA_SENSOR.replace(b"12345.6789", b"-1"), "SML.Total_in: negative energy"),
    (TASMOTA_SENSOR.replace(b"12345.6789", b'"12345.6789"'),
     "SML.Total_in: a string"),
    (TASMOTA_SENSOR.replace(b"-412", b"NaN"), "NaN is not a number JSON allows"),
    (TASMOTA_SENSOR.replace(b"-412", b"false"), "SML.Power_curr: a boolean (false)"),
    (b'"just text"', "payload is not a JSON object"),
])
def test_tasmota_refuses_malformed_payloads(payload: bytes, reason: str) -> None:
    c = codec("tele/{meter_id}/SENSOR", "tasmota_sml")
    assert reason in refused(c, "tele/h/SENSOR", payload)


# -- Shelly Gen2 EM ---------------------------------------------------------------------

def test_shelly_pro3em_energy_and_power() -> None:
    c = codec("{meter_id}/status/+", "shelly_gen2_em")
    assert isinstance(c, ShellyGen2EmCodec) and c.pattern.filter == "+/status/+"
    rows = by_channel(c.decode("shellypro3em-a1/status/emdata:0", SHELLY_EMDATA, NOW))
    assert set(rows) == {"1.0.1.8.0.255", "1.0.2.8.0.255"}
    assert rows["1.0.1.8.0.255"].value == Decimal("56916.56")
    assert rows["1.0.1.8.0.255"].unit is Unit.WH and rows["1.0.1.8.0.255"].meter_id == \
        "shellypro3em-a1"
    assert rows["1.0.2.8.0.255"].value == Decimal("12.5")
    assert rows["1.0.1.8.0.255"].at == NOW and rows["1.0.1.8.0.255"].meter_at is None
    (power,) = c.decode("shellypro3em-a1/status/em:0", SHELLY_EM, NOW)
    assert power.channel == "1.0.16.7.0.255" and power.value == Decimal("-7.1")
    assert power.kind is Kind.INSTANT


def test_shelly_phases() -> None:
    c = codec("shellies/{meter_id}/status/+", "shelly_gen2_em", {"phases": True})
    rows = by_channel(c.decode("shellies/p3/status/emdata:0", SHELLY_EMDATA, NOW))
    assert rows["1.0.21.8.0.255"].value == Decimal("41574.47")
    assert rows["1.0.42.8.0.255"].value == Decimal("12.5")
    assert rows["1.0.61.8.0.255"].value == Decimal("6557.2")
    assert len(rows) == 8
    power = by_channel(c.decode("shellies/p3/status/em:0", SHELLY_EM, NOW))
    assert power["1.0.76.7.0.255"].value == Decimal("-770.2")


def test_shelly_pro_em_channel_and_ignored_components() -> None:
    c = codec("{prefix}/status/#", "shelly_gen2_em", {"component_id": 1}, meter_id="pv-1")
    rows = by_channel(c.decode("shellyproem50-b2/status/em1data:1", SHELLY_EM1DATA_1,
                               NOW))
    assert rows["1.0.1.8.0.255"].value == Decimal("6644.90")
    assert str(rows["1.0.2.8.0.255"].value) == "2595.26"
    assert {r.meter_id for r in rows.values()} == {"pv-1"}
    (power,) = c.decode("shellyproem50-b2/status/em1:1", SHELLY_EM1_1, NOW)
    assert power.value == Decimal("5080.3")
    # The other CT channel and components that are no meter give nothing.
    assert c.decode("shellyproem50-b2/status/em1data:0", SHELLY_EM1DATA_1, NOW) == []
    assert c.decode("shellyproem50-b2/status/sys", b'{"mac":"08F9E0E67204"}', NOW) == []


@pytest.mark.parametrize(("payload", "reason"), [
    (SHELLY_EMDATA.replace(b'"total_act":56916.56,', b""), "total_act: missing"),
    (SHELLY_EMDATA.replace(b"56916.56", b"-1"), "total_act: negative energy -1"),
    (SHELLY_EMDATA.replace(b"56916.56", b"null"), "total_act: null where a number"),
    (SHELLY_EMDATA.replace(b"56916.56", b"Infinity"), "Infinity is not a number"),
    (b"[]", "payload is not a JSON object"),
    (b"{", "invalid JSON"),
])
def test_shelly_refuses_malformed_payloads(payload: bytes, reason: str) -> None:
    c = codec("{meter_id}/status/+", "shelly_gen2_em")
    assert reason in refused(c, "s1/status/emdata:0", payload)


def test_shelly_invalid_json_is_refused_even_on_ignored_components() -> None:
    c = codec("{meter_id}/status/+", "shelly_gen2_em")
    assert "invalid JSON" in refused(c, "s1/status/sys", b"{oops")


# -- registry ---------------------------------------------------------------------------

def test_registry_names_every_codec() -> None:
    assert set(CODECS) == {"json", "tasmota_sml", "shelly_gen2_em"}


def test_a_codec_without_any_meter_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        codec("tele/+/SENSOR", "tasmota_sml")
    assert caught.value.key == "codec_options.meter_id"


def test_naive_reception_time_is_a_programming_error() -> None:
    c = codec("tele/{meter_id}/SENSOR", "tasmota_sml")
    with pytest.raises(ValueError, match="received_at"):
        c.decode("tele/h/SENSOR", TASMOTA_SENSOR, datetime(2026, 3, 1))
