"""The commissioning report: what was found on site, as JSON with a checksum (and an
Ed25519 signature when a key is given), a printable HTML page, and the config snippet.

The checksum is SHA-256 over the report's canonical JSON (sorted keys, no spaces), so
any later change to a field is detectable by :func:`verify`; anyone can recompute a
checksum, though, so a report that must prove who made it is signed as well
(``sign_key``: an Ed25519 private key in PEM), and :func:`verify` then checks the
signature against the public key the report names (or one the caller trusts).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.commission.model import DlmsFindings, FoundDevice, PointCheck, ScanSummary
from gateway.errors import ConfigError

__all__ = ["FORMAT", "DeviceRecord", "Report", "config_snippet", "render_html", "to_json",
           "verify"]

FORMAT = "ami-gateway commissioning report 1"


@dataclass(frozen=True, kw_only=True)
class DeviceRecord:
    """A device found, the meter id it goes under, its read-back and DLMS findings."""

    device: FoundDevice
    meter_id: str
    checks: tuple[PointCheck, ...] = ()
    dlms: DlmsFindings | None = None

    @property
    def verdict(self) -> str:
        """fail if any point failed, warn if any warned, else pass (or "not read back")."""
        verdicts = {c.verdict for c in self.checks}
        for worst in ("fail", "warn", "pass"):
            if worst in verdicts:
                return worst
        return "not read back"


@dataclass(frozen=True, kw_only=True)
class Report:
    gateway_version: str
    created_at: str  # ISO 8601, UTC
    host: str
    site: str | None
    installer: str | None
    scans: tuple[ScanSummary, ...]
    devices: tuple[DeviceRecord, ...]
    #: Stopped by the installer (Ctrl-C) before every step ran: says so on the page.
    interrupted: bool
    snippet: str
    #: Steps that could not run, and why (a port that would not open, a refused host).
    problems: tuple[str, ...] = ()


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def to_json(report: Report, sign_key: Path | None = None) -> str:
    """The report file: the report, its checksum and, with ``sign_key``, its signature."""
    body = asdict(report)
    digest = hashlib.sha256(_canonical(body)).hexdigest()
    out: dict[str, Any] = {"format": FORMAT, "report": body, "checksum": f"sha256:{digest}"}
    if sign_key is not None:
        key = _private_key(sign_key)
        public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
        out["signature"] = {
            "algorithm": "ed25519",
            "public_key": base64.b64encode(public).decode(),
            "value": base64.b64encode(key.sign(_canonical(body))).decode(),
        }
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


def _private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc}", key="--sign-key",
                          fix="give an unencrypted Ed25519 private key in PEM (openssl "
                              "genpkey -algorithm ed25519 -out key.pem)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key", key="--sign-key",
                          fix="openssl genpkey -algorithm ed25519 -out key.pem")
    return key


def verify(text: str, trusted_public_key: bytes | None = None) -> tuple[bool, str]:
    """Is the report unchanged (and, when signed, signed by its key, or by
    ``trusted_public_key`` when given)? The answer and why."""
    try:
        data = json.loads(text)
        body, checksum = data["report"], data["checksum"]
    except (ValueError, KeyError, TypeError):
        return False, "not a commissioning report"
    if data.get("format") != FORMAT:
        return False, f"unknown format {data.get('format')!r}"
    digest = f"sha256:{hashlib.sha256(_canonical(body)).hexdigest()}"
    if digest != checksum:
        return False, "the checksum does not match: the report was changed"
    signature = data.get("signature")
    if signature is None:
        if trusted_public_key is not None:
            return False, "the report is not signed"
        return True, "the checksum matches (unsigned: anyone could have recomputed it)"
    try:
        public = base64.b64decode(signature["public_key"])
        if trusted_public_key is not None and public != trusted_public_key:
            return False, "signed by another key than the one trusted"
        Ed25519PublicKey.from_public_bytes(public).verify(
            base64.b64decode(signature["value"]), _canonical(body))
    except (KeyError, TypeError, ValueError, InvalidSignature):
        return False, "the signature does not match: the report was changed"
    return True, "the checksum and the signature match"


# ---------------------------------------------------------------- config snippet

def _toml(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def config_snippet(records: tuple[DeviceRecord, ...]) -> str:
    """``[[meters]]`` tables for the devices with a proposed profile, ready to paste."""
    blocks: list[str] = []
    for rec in records:
        d = rec.device
        if d.profile is None:
            continue
        lines = ["[[meters]]", f"meter_id = {_toml(rec.meter_id)}  # the utility's id for it",
                 f"profile = {_toml(d.profile)}", f"protocol = {_toml(d.protocol)}"]
        if d.protocol in ("modbus_tcp", "dlms_tcp"):
            host, _, port = d.address.rpartition(":")
            lines += [f"host = {_toml(host)}", f"port = {port}"]
        else:
            lines.append(f"port = {_toml(d.address)}")
        if d.line is not None and d.protocol == "dlms_optical":  # the agreed mode E baud
            lines.append(f"max_baud = {d.line.baudrate}")
        elif d.line is not None:
            lines.append(f"baudrate = {d.line.baudrate}")
            if d.protocol == "modbus_rtu":
                lines += [f"parity = {_toml(d.line.parity)}", f"stopbits = {d.line.stopbits}"]
        if d.unit_id is not None:
            key = "unit_id" if d.protocol.startswith("modbus") else "server_physical"
            lines.append(f"{key} = {d.unit_id}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


# ---------------------------------------------------------------- the printable page

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1f2937; margin: 24px auto;
       max-width: 1000px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 22px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid #d1d5db; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #166534; } .warn { color: #92400e; } .fail { color: #991b1b; font-weight: 600; }
.skip { color: #4b5563; } .meta { color: #4b5563; } pre { background: #f3f4f6; padding: 8px; }
.banner { border: 2px solid #991b1b; padding: 6px 10px; color: #991b1b; font-weight: 600; }
code { word-break: break-all; }
@media print { body { margin: 0; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _row(cells: list[object], cls: list[str] | None = None) -> str:
    classes = cls or [""] * len(cells)
    return "<tr>" + "".join(f'<td class="{c}">{_e(v)}</td>' if c else f"<td>{_e(v)}</td>"
                            for v, c in zip(cells, classes, strict=True)) + "</tr>"


def _head(names: list[str]) -> str:
    return "<tr>" + "".join(f'<th scope="col">{_e(n)}</th>' for n in names) + "</tr>"


def render_html(report: Report, report_json: str) -> str:
    """A self-contained page to print or keep with the site's papers."""
    data = json.loads(report_json)
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>Commissioning report · {_e(report.site or report.host)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Commissioning report{' · ' + _e(report.site) if report.site else ''}</h1>",
        f'<p class="meta">{_e(report.created_at)} · ami-gateway {_e(report.gateway_version)}'
        f" · on {_e(report.host)}"
        f"{' · by ' + _e(report.installer) if report.installer else ''}</p>",
    ]
    if report.interrupted:
        parts.append('<p class="banner">Stopped before every step ran: this report holds '
                     "what was found until then.</p>")
    for problem in report.problems:
        parts.append(f'<p class="banner">Not done: {_e(problem)}</p>')
    parts.append("<h2>Devices</h2><table>" + _head(
        ["Meter", "Protocol", "Address", "Unit / server", "Line", "Identity", "Profile",
         "Read-back"]))
    for rec in report.devices:
        d = rec.device
        ident = " ".join(x for x in (d.identity.vendor, d.identity.model, d.identity.revision,
                                     f"serial {d.identity.serial}" if d.identity.serial else None)
                         if x) or "unknown"
        parts.append(_row([rec.meter_id, d.protocol, d.address, d.unit_id,
                           d.line.text() if d.line else "", f"{ident} ({d.identity.source})",
                           d.profile or "none matches", rec.verdict],
                          ["", "", "", "num", "", "", "", rec.verdict.split()[0]]))
    parts.append("</table>")
    for rec in report.devices:
        parts += _device_section(rec)
    for scan in report.scans:
        parts.append(f"<h2>Scan of {_e(scan.address)}</h2><table>"
                     + _head(["Settings tried", "Ids per setting", "Took", "Line floor",
                              "Response timeout"]))
        parts.append(_row([", ".join(scan.settings_tried), scan.ids_tried,
                           f"{scan.elapsed_s:.1f} s", f"{scan.floor_s:.1f} s",
                           f"{scan.timeout_s * 1000:.0f} ms: {scan.timeout_reason}"]))
        parts.append("</table>")
        if scan.interrupted:
            parts.append('<p class="banner">This scan was stopped before its end.</p>')
    if report.snippet:
        parts.append(f"<h2>Config to paste</h2><pre>{_e(report.snippet)}</pre>")
    signed = data.get("signature")
    parts.append(f'<h2>Integrity</h2><p>Checksum <code>{_e(data["checksum"])}</code>'
                 + (f' · signed (Ed25519, key <code>{_e(signed["public_key"])}</code>)'
                    if signed else " · not signed")
                 + "</p><p class=\"meta\">Check the JSON report with "
                 "<code>ami-gateway commission verify &lt;report.json&gt;</code>.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _device_section(rec: DeviceRecord) -> list[str]:
    d = rec.device
    out = [f"<h2>{_e(rec.meter_id)} · {_e(d.address)}"
           f"{' unit ' + _e(d.unit_id) if d.unit_id is not None else ''}</h2>"]
    if d.identity.raw:
        out.append("<table>" + _head(["Identification", "Value"]) + "".join(
            _row([k, v]) for k, v in d.identity.raw) + "</table>")
    if d.candidates:
        out.append(f"<p>Other profiles that would match: {_e(', '.join(d.candidates))}</p>")
    for note in d.notes:
        out.append(f'<p class="meta">{_e(note)}</p>')
    if rec.dlms is not None:
        f = rec.dlms
        present = ", ".join(f"{obis} {'present' if ok else 'MISSING'}"
                            for obis, ok in f.configured_present)
        out.append("<table>" + _head(["DLMS", "Found"]) + "".join(_row([k, v]) for k, v in [
            ("Identification (62056-21)", f.identification or "-"),
            ("HDLC server addresses", ", ".join(map(str, f.server_addresses)) or "-"),
            ("Association", f.association),
            ("Logical device name", f.logical_device_name or "-"),
            ("Clock", f.clock or "-"),
            ("Clock drift", "-" if f.clock_drift_s is None else f"{f.clock_drift_s:+.1f} s"),
            ("Objects in the association", str(len(f.objects))),
            ("Configured objects", present or "-"),
        ]) + "</table>")
    if rec.checks:
        out.append("<table>" + _head(["Channel", "Read from", "Value", "Verdict", "Why"]))
        for c in rec.checks:
            value = "" if c.value is None else f"{c.value} {c.unit}"
            out.append(_row([c.channel, c.source, value, c.verdict, c.reason],
                            ["", "", "num", c.verdict, ""]))
        out.append("</table>")
    return out
