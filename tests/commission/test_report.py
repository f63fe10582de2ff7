"""The report file: a checksum (and a signature) that catch any later change, a page that
shows every field escaped, and a config snippet the gateway accepts as it is."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commission.model import (
    DeviceIdentity,
    DlmsFindings,
    FoundDevice,
    Line,
    PointCheck,
    ScanSummary,
)
from gateway.commission.report import (
    DeviceRecord,
    Report,
    config_snippet,
    render_html,
    to_json,
    verify,
)
from gateway.settings import load_config

RTU = FoundDevice(protocol="modbus_rtu", address="/dev/ttyUSB0", unit_id=7,
                  line=Line(baudrate=9600, parity="E", stopbits=1),
                  identity=DeviceIdentity(source="signature", vendor="Eastron",
                                          model="SDM630 <v2>", serial="21000123"),
                  profile="eastron_sdm630", candidates=("eastron_sdm230",))
TCP = FoundDevice(protocol="modbus_tcp", address="10.0.0.9:502", unit_id=1, line=None,
                  identity=DeviceIdentity(source="modbus_device_id", vendor="Schneider"),
                  profile="schneider_iem3155")
DLMS = FoundDevice(protocol="dlms_optical", address="/dev/ttyUSB1", unit_id=17,
                   line=Line(baudrate=9600, parity="N", stopbits=1),
                   identity=DeviceIdentity(source="iec62056_21", vendor="Iskraemeco",
                                           raw=(("identification", "/ISK5\\2MT382"),)),
                   profile="dlms_generic_electricity")
CHECKS = (
    PointCheck(channel="1.0.32.7.0.255", source="input 0x0000 float32", value="231.2",
               unit="V", verdict="pass", reason="within the supply's range"),
    PointCheck(channel="1.0.1.8.0.255", source="input 0x0156 float32", value="1234.5",
               unit="kWh", verdict="fail", reason="did not move"),
)
FINDINGS = DlmsFindings(identification="/ISK5\\2MT382", server_addresses=(17,),
                        association="ok (hls_gmac)", logical_device_name="ISK0012345678",
                        clock="2026-12-02T12:00:03+01:00", clock_drift_s=3.2,
                        objects=((3, "1.0.1.8.0.255"), (8, "0.0.1.0.0.255")),
                        configured_present=(("1.0.1.8.0.255", True), ("1.0.2.8.0.255", False)))
SCAN = ScanSummary(address="/dev/ttyUSB0", settings_tried=("9600 8E1", "19200 8N1"),
                   ids_tried=247, elapsed_s=41.3, floor_s=40.1, timeout_s=0.152,
                   timeout_reason="t3.5 + the slowest profile's turnaround + margin")


def report(**changes: object) -> Report:
    records = (DeviceRecord(device=RTU, meter_id="M-21000123", checks=CHECKS),
               DeviceRecord(device=TCP, meter_id="NEW-10.0.0.9-1"),
               DeviceRecord(device=DLMS, meter_id="M-DLMS-1", dlms=FINDINGS))
    fields: dict[str, object] = dict(
        gateway_version="0.1.0", created_at="2026-12-02T11:00:00Z", host="laptop",
        site="Substation 4 <north>", installer="J. Doe", scans=(SCAN,), devices=records,
        interrupted=False, snippet=config_snippet(records))
    fields.update(changes)
    return Report(**fields)  # type: ignore[arg-type]


def test_the_checksum_catches_a_changed_field() -> None:
    text = to_json(report())
    assert verify(text) == (True, "the checksum matches (unsigned: anyone could have "
                                  "recomputed it)")
    data = json.loads(text)
    data["report"]["devices"][0]["checks"][1]["verdict"] = "pass"
    assert verify(json.dumps(data))[0] is False
    assert verify("{}") == (False, "not a commissioning report")


def test_a_signed_report_names_its_key_and_refuses_another(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    text = to_json(report(), sign_key=pem)
    assert verify(text, trusted_public_key=public) == (
        True, "the checksum and the signature match")
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert verify(text, trusted_public_key=other)[0] is False
    # Changing a field and recomputing the checksum does not fool the signature.
    data = json.loads(text)
    data["report"]["site"] = "elsewhere"
    import hashlib

    from gateway.commission.report import _canonical
    data["checksum"] = "sha256:" + hashlib.sha256(_canonical(data["report"])).hexdigest()
    assert verify(json.dumps(data)) == (False, "the signature does not match: the report "
                                               "was changed")
    assert verify(to_json(report()), trusted_public_key=public) == (
        False, "the report is not signed")


def test_the_page_shows_every_finding_escaped() -> None:
    r = report(interrupted=True)
    page = render_html(r, to_json(r))
    assert "<north>" not in page and "Substation 4 &lt;north&gt;" in page
    assert "SDM630 &lt;v2&gt;" in page
    for text in ("did not move", "1.0.2.8.0.255 MISSING", "+3.2 s", "/ISK5\\2MT382",
                 "152 ms: t3.5", "41.3 s", "40.1 s", "Stopped before every step ran",
                 json.loads(to_json(r))["checksum"]):
        assert text in page, text


def test_the_snippet_is_a_config_the_gateway_accepts(tmp_path: Path) -> None:
    snippet = report().snippet
    assert 'meter_id = "M-21000123"' in snippet and "parity = \"E\"" in snippet
    assert "server_physical = 17" in snippet and 'host = "10.0.0.9"' in snippet
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\ndata_dir = "data"\n\n' + snippet)
    loaded = load_config(config)
    assert [m.meter_id for m in loaded.settings.meters] == [
        "M-21000123", "NEW-10.0.0.9-1", "M-DLMS-1"]
