"""``ami-gateway commission``: the installer's command.

``commission run`` scans what it is told to (serial ports, Modbus TCP hosts, optical
probes, DLMS lines), reads back every configured or found device, and leaves a report
(JSON with a checksum, optionally signed; a printable HTML page) and the config snippet
to paste, or writes it into the config (``--write``). Progress bars and a summary table
go to the terminal; ``--json`` prints the report to stdout instead, for scripts. Ctrl-C
stops the step in hand (its port released), skips the rest and reports what was found.
``commission verify`` checks a report was not changed since.

Exit status: 0 every point passed (or warned), 1 a point failed or a step could not run
(a port that does not open, a refused host: named in the report), 2 bad arguments or
config, 130 stopped by Ctrl-C (the report is still written).
"""

from __future__ import annotations

import asyncio
import base64
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.commission.report import Report, render_html, to_json, verify
from gateway.errors import ConfigError
from gateway.settings import ConfigInvalid, LoadedConfig, load_config

if TYPE_CHECKING:
    from gateway.commission.session import Step

__all__ = ["commission_app"]

commission_app = typer.Typer(
    help="On site: find the devices, read every point back, leave a signed report.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True, soft_wrap=True)

_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red",
                  "not read back": "dim"}


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _load(path: Path | None) -> LoadedConfig | None:
    if path is None:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems if isinstance(exc, ConfigInvalid) else [exc]:
            err.print(f"[red]error[/red] {problem}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _run_stoppable(steps: Sequence[Step], progress: Progress | None, *, site: str | None,
                   installer: str | None) -> Report:
    """Run the steps; the first Ctrl-C stops the run (and still reports), a second one
    ends the process."""
    from gateway.commission.session import run_steps

    def tell(what: str, done: int, total: int) -> None:
        if progress is not None:
            task = progress.task_ids[0]
            progress.update(task, description=what, completed=done, total=max(total, 1))

    async def main() -> Report:
        run = asyncio.create_task(run_steps(steps, tell, site=site, installer=installer))
        loop = asyncio.get_running_loop()

        def stop() -> None:
            err.print("stopping: releasing the port, then the report of what was found")
            loop.remove_signal_handler(signal.SIGINT)
            run.cancel()

        loop.add_signal_handler(signal.SIGINT, stop)
        try:
            return await run
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    return asyncio.run(main())


def _summary(report: Report) -> Table:
    table = Table(title="Devices", title_justify="left")
    for col in ("meter", "where", "identity", "profile", "pass/warn/fail", "verdict"):
        table.add_column(col, overflow="fold")
    for rec in report.devices:
        d = rec.device
        where = d.address + ("" if d.unit_id is None else f" #{d.unit_id}") \
            + (f" {d.line.text()}" if d.line else "")
        ident = " ".join(x for x in (d.identity.vendor, d.identity.model, d.identity.serial)
                         if x) or "-"
        counts = [sum(c.verdict == v for c in rec.checks) for v in ("pass", "warn", "fail")]
        style = _VERDICT_STYLE.get(rec.verdict, "")
        table.add_row(rec.meter_id, where, ident, d.profile or "none matches",
                      "/".join(map(str, counts)) if rec.checks else "-",
                      f"[{style}]{rec.verdict}[/{style}]")
    return table


def _failures(report: Report) -> list[str]:
    return [f"{rec.meter_id} {c.channel}: {c.verdict} ({c.reason})"
            for rec in report.devices for c in rec.checks if c.verdict in ("fail", "warn")]


@commission_app.command("run")
def run(
    port: Annotated[list[str] | None, typer.Option(
        "--port", help="Scan this serial port for Modbus RTU devices (repeatable).")] = None,
    tcp: Annotated[list[str] | None, typer.Option(
        "--tcp", help="Scan the unit ids of a Modbus TCP HOST[:PORT] (repeatable).")] = None,
    optical: Annotated[list[str] | None, typer.Option(
        "--optical", help="Probe a DLMS meter through this optical probe's port.")] = None,
    dlms_serial: Annotated[list[str] | None, typer.Option(
        "--dlms-serial", help="Probe DLMS meters on this RS-485 port (HDLC).")] = None,
    dlms_tcp: Annotated[list[str] | None, typer.Option(
        "--dlms-tcp", help="Probe a DLMS meter at HOST[:PORT] (IEC 62056-47).")] = None,
    ids: Annotated[str, typer.Option(help="Unit ids to scan, e.g. 1-247 or 1-10,42.")] = "1-247",
    bauds: Annotated[str, typer.Option(help="Baud rates to try, in order.")] =
        "9600,19200,38400,115200",
    formats: Annotated[str, typer.Option(help="Character formats to try, in order.")] =
        "8E1,8N1,8N2",
    turnaround_ms: Annotated[float | None, typer.Option(
        help="The slowest device's turnaround to wait for per id (the timeout is t3.5 + "
        "this + a margin); default: the largest of the device profiles.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="The site's config: its meters are read back too, and "
        "DLMS security is taken from it.")] = None,
    write: Annotated[bool, typer.Option(
        help="Append the found devices' meter tables to --config (checked first).")] = False,
    readback: Annotated[bool, typer.Option(help="Read every point back and judge it.")] = True,
    wait_s: Annotated[float, typer.Option(
        help="Seconds between the two reads of the read-back.")] = 5.0,
    out: Annotated[Path, typer.Option(help="Folder for the report files.")] = Path("."),
    site: Annotated[str | None, typer.Option(help="Site name for the report.")] = None,
    installer: Annotated[str | None, typer.Option(help="Who commissioned it.")] = None,
    sign_key: Annotated[Path | None, typer.Option(
        help="Sign the report with this Ed25519 private key (PEM).")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the report JSON to stdout; no progress output.")] = False,
) -> None:
    """Find devices, read them back, write the report (and the config snippet)."""
    # The drivers load their protocol libraries: only for this command.
    from gateway.commission.session import read_back_step
    from gateway.commission.steps import ScanOptions, scan_steps
    from gateway.commission.write import write_snippet

    loaded = _load(config)
    if write and loaded is None:
        _fail("--write needs --config: the file the found devices are added to")
    try:
        options = ScanOptions.parse(ids=ids, bauds=bauds, formats=formats,
                                    turnaround_ms=turnaround_ms)
    except ValueError as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from exc
    try:
        steps = scan_steps(options, ports=port or [], tcp=tcp or [], optical=optical or [],
                           dlms_serial=dlms_serial or [], dlms_tcp=dlms_tcp or [],
                           config=loaded)
    except (ValueError, ConfigError) as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from exc
    if not steps and loaded is None:
        _fail("nothing to do: give --port, --tcp, --optical, --dlms-serial, --dlms-tcp or "
              "--config")
    if readback:
        steps.append(read_back_step(loaded, wait_s=wait_s))
    try:
        if json_out:
            report = _run_stoppable(steps, None, site=site, installer=installer)
        else:
            with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                          TimeElapsedColumn(), console=err, transient=True) as bars:
                bars.add_task("starting", total=1)
                report = _run_stoppable(steps, bars, site=site, installer=installer)
        text = to_json(report, sign_key=sign_key)
    except ConfigError as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from exc
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path, html_path = out / f"commission-{stamp}.json", out / f"commission-{stamp}.html"
    json_path.write_text(text)
    html_path.write_text(render_html(report, text))
    if write and loaded is not None and report.snippet:
        added = write_snippet(loaded.file, report, json_path.name)
        err.print(f"added {added} meter(s) to {loaded.file}")
    if json_out:
        sys.stdout.write(text)
    else:
        out_console = Console()
        out_console.print(_summary(report))
        for line in _failures(report):
            out_console.print(line, highlight=False, markup=False)
        for scan in report.scans:
            out_console.print(
                f"scan of {scan.address}: {scan.ids_tried} ids x {len(scan.settings_tried)} "
                f"setting(s) in {scan.elapsed_s:.1f} s (line floor {scan.floor_s:.1f} s; "
                f"timeout {scan.timeout_s * 1000:.0f} ms: {scan.timeout_reason})",
                highlight=False)
        if report.snippet and not write:
            out_console.print("\nConfig to paste:", style="bold")
            out_console.print(report.snippet, highlight=False, markup=False)
        out_console.print(f"report: {json_path}  page: {html_path}", highlight=False)
    for problem in report.problems:
        err.print(f"[red]not done[/red] {problem}", markup=True, highlight=False)
    if report.interrupted:
        err.print("stopped before every step ran: the report holds what was found")
        raise typer.Exit(130)
    if report.problems or any(rec.verdict == "fail" for rec in report.devices):
        raise typer.Exit(1)


@commission_app.command("verify")
def verify_cmd(
    report: Annotated[Path, typer.Argument(help="The report's JSON file.")],
    public_key: Annotated[Path | None, typer.Option(
        help="Trust only this signer: the Ed25519 public key (PEM) or its base64.")] = None,
) -> None:
    """Check a report was not changed since it was written (and who signed it)."""
    trusted = None
    if public_key is not None:
        trusted = _public_key(public_key)
    ok, why = verify(report.read_text(), trusted)
    (Console() if ok else err).print(f"{'ok' if ok else 'CHANGED'}: {why}", highlight=False)
    raise typer.Exit(0 if ok else 1)


def _public_key(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = path.read_bytes()
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError:
        try:
            return base64.b64decode(raw.strip(), validate=True)
        except ValueError:
            _fail(f"{path} is neither a PEM public key nor base64")
            raise AssertionError("unreachable") from None
    if not isinstance(key, Ed25519PublicKey):
        _fail(f"{path} is not an Ed25519 public key")
        raise AssertionError("unreachable")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
