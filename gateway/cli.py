"""``ami-gateway``: one command line for running, checking, importing and exporting."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from gateway import __version__, log
from gateway.commission.cli import commission_app
from gateway.errors import ConfigError, GatewayError
from gateway.settings import ConfigInvalid, LoadedConfig, load_config

if TYPE_CHECKING:
    from gateway.store.sqlite import SqliteStore

app = typer.Typer(
    name="ami-gateway",
    help="Meter data ingestion and AMI gateway: read meters, validate, store, feed the portal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(commission_app, name="commission")
err = Console(stderr=True, soft_wrap=True)  # one error per line, greppable
T = TypeVar("T")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Gateway config (TOML).")]


class Fmt(StrEnum):
    csv = "csv"
    json = "json"
    #: Green Button Download My Data: ESPI 3.3 Atom XML, or the portals' CSV layout.
    espi_xml = "espi-xml"
    espi_csv = "espi-csv"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(_with_task_dump(coro))
    except KeyboardInterrupt:
        err.print("stopped")
        raise typer.Exit(130) from None
    except BaseExceptionGroup as group:
        # Tasks fail together: report our own errors plainly, let anything else surface.
        ours, rest = group.split(GatewayError)
        if rest is not None or ours is None:
            raise
        first = ours.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from group


async def _with_task_dump(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; meanwhile `kill -USR2 <pid>` prints every asyncio task and what it
    awaits to stderr (SIGUSR1 gives the threads): what a gateway that will not stop
    waits on."""
    import signal

    loop = asyncio.get_running_loop()
    if not hasattr(signal, "SIGUSR2"):
        return await coro
    loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
    try:
        return await coro
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)


def _dump_tasks() -> None:
    tasks = asyncio.all_tasks()
    print(f"--- {len(tasks)} asyncio task(s) ---", file=sys.stderr)
    for task in tasks:
        print(f"{task!r}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


def _config(path: Path) -> LoadedConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        _config_failed(exc)
        raise AssertionError("unreachable") from exc


def _config_failed(exc: ConfigError) -> None:
    problems = exc.problems if isinstance(exc, ConfigInvalid) else [exc]
    for p in problems:
        err.print(f"[red]error[/red] {p}", markup=True, highlight=False, soft_wrap=True)
    err.print(f"{len(problems)} problem(s)")
    raise typer.Exit(2)


def _configure_logs(cfg: LoadedConfig) -> None:
    g = cfg.settings.gateway
    log.configure(g.log_format, g.log_level)


@app.command()
def version() -> None:
    """Print the gateway version."""
    print(__version__)


@app.command()
def check(config: ConfigOpt) -> None:
    """Validate a config and its device profiles. Exit 2 with every problem, 0 if valid."""
    from edge.assembly import assemble

    cfg = _config(config)
    try:
        assembly = assemble(cfg)
    except ConfigError as exc:
        _config_failed(exc)
        return
    series = len(assembly.series())
    meters = len(assembly.meters) + len(assembly.manual) + len(assembly.mqtt)
    manual = f" ({len(assembly.manual)} manual)" if assembly.manual else ""
    print(f"{cfg.file}: valid: {meters} meter(s){manual}, {series} stored series, "
          f"profiles from {cfg.profiles_dir}")
    for plan in assembly.manual:
        registers = ", ".join(
            f"{r.channel} ({r.unit}, {f'{r.digits} dials' if r.digits else 'no roll-over'})"
            for r in plan.meter.registers)
        print(f"  manual meter {plan.meter.meter_id}: not polled, takes self-reads; "
              f"max {plan.meter.max_power_w} W; {plan.timezone}; {registers}")
    for mqtt in assembly.mqtt:
        stored = ", ".join(f"{s.channel} ({s.unit})" for s in mqtt.series) or "none"
        print(f"  MQTT meter {mqtt.meter.meter_id}: {mqtt.meter.codec} on "
              f"{mqtt.meter.topic} (qos {mqtt.meter.qos}); stores {stored}")
    if assembly.mqtt_link is not None:
        print(f"  MQTT broker {assembly.mqtt_link.device} as {assembly.mqtt_link.client_id}")
    windows = cfg.settings.self_reads.windows
    if assembly.manual and windows:
        from gateway.ingest.selfread import windows_of
        from gateway.validation.selfread import describe

        print(f"  self-reads are taken on {describe(windows_of(windows))}, local time")


@app.command()
def run(config: ConfigOpt) -> None:
    """Run the gateway: poll the configured meters, store intervals, serve the portal."""
    from edge.agent import Agent
    from edge.assembly import assemble
    from gateway.clock import SystemClock

    cfg = _config(config)
    _configure_logs(cfg)
    try:
        assembly = assemble(cfg)
    except ConfigError as exc:
        _config_failed(exc)
        return
    try:
        _run(Agent(assembly, SystemClock()).run())
    except GatewayError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from exc


@app.command(name="import")
def import_(
    config: ConfigOpt,
    readings: Annotated[Path, typer.Argument(help="CSV with columns meter_id,channel,at,value")],
) -> None:
    """Feed register readings from CSV through validation and intervalization into the store.

    Bad rows are reported with their line number and reason (and kept in the quarantine);
    the good rows are imported. Exit status 1 if any row was bad.
    """
    from gateway.ingest.importer import import_csv

    cfg = _config(config)
    log.configure("console" if sys.stderr.isatty() else "json", "warning")
    try:
        report = _run(import_csv(cfg, readings))
    except ConfigError as exc:
        _config_failed(exc)
        return
    except (GatewayError, OSError) as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from exc
    for bad in report.errors:
        err.print(f"{readings}:{bad.line}: {bad.reason}", highlight=False, markup=False)
    print(f"{report.readings} reading(s) imported into {report.intervals} interval(s) "
          f"({report.inserted} new, {report.unchanged} unchanged, {report.updated} updated); "
          f"{len(report.errors)} bad row(s), {report.quarantined} quarantined")
    if report.errors or report.quarantined:
        raise typer.Exit(1)


@app.command()
def export(
    config: ConfigOpt,
    meter: Annotated[str, typer.Option("--meter", help="meter_id")],
    from_: Annotated[str, typer.Option("--from", help="First local day, YYYY-MM-DD")],
    to: Annotated[str, typer.Option("--to", help="Last local day, YYYY-MM-DD (inclusive)")],
    daily: Annotated[bool, typer.Option("--daily", help="Daily usage, not intervals")] = False,
    fmt: Annotated[Fmt, typer.Option("--format")] = Fmt.csv,
    channel: Annotated[str, typer.Option("--channel")] = "1.0.1.8.0.255",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (default stdout)")]
    = None,
) -> None:
    """Export a meter's intervals or daily usage over local days, as CSV or JSON; or
    its intervals as Green Button Download My Data (espi-xml: ESPI 3.3 Atom XML,
    espi-csv: the portals' CSV layout)."""
    cfg = _config(config)
    try:
        first, last = date.fromisoformat(from_), date.fromisoformat(to)
    except ValueError as exc:
        err.print(f"[red]error[/red] --from/--to: {exc}; give dates as YYYY-MM-DD")
        raise typer.Exit(2) from exc
    if first > last:
        err.print("[red]error[/red] --from is after --to")
        raise typer.Exit(2)
    if fmt in (Fmt.espi_xml, Fmt.espi_csv):
        from gateway.errors import DataError
        from gateway.espi_cli import export_espi

        try:
            data = _run(export_espi(cfg, meter, channel, first, last,
                                    "xml" if fmt is Fmt.espi_xml else "csv"))
        except DataError as exc:
            err.print(f"[red]error[/red] {exc}")
            raise typer.Exit(1) from exc
        if output is None:
            sys.stdout.buffer.write(data)
        else:
            output.write_bytes(data)
        return
    text = _run(_export(cfg, meter, channel, first, last, daily, fmt))
    if text is None:
        err.print(f"[red]error[/red] no meter {meter!r} with channel {channel!r} in the store")
        raise typer.Exit(1)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


@asynccontextmanager
async def _store(cfg: LoadedConfig) -> AsyncIterator[SqliteStore]:
    """The config's store, open for one command."""
    from gateway.store.sqlite import SqliteStore

    store = SqliteStore(cfg.store_path, synchronous=cfg.settings.store.synchronous)
    await store.open()
    try:
        # What this command writes (an import, an edit) is queued for the config's sinks.
        await store.use_sinks([s.name for s in cfg.settings.sinks])
        yield store
    finally:
        await store.close()


async def _export(cfg: LoadedConfig, meter: str, channel: str, first: date, last: date,
                  daily: bool, fmt: Fmt) -> str | None:
    from gateway.export import render
    from gateway.store.sqlite import day_bounds

    async with _store(cfg) as store:
        found = [s for s in await store.series(meter) if s.channel == channel]
        if not found:
            return None
        if daily:
            rows: list[Any] = await store.daily(meter, channel, first, last)
        else:
            tz = ZoneInfo(found[0].timezone)
            lo, hi = day_bounds(first, tz)[0], day_bounds(last, tz)[1]
            rows = await store.intervals(meter, channel, datetime.fromtimestamp(lo, UTC),
                                         datetime.fromtimestamp(hi, UTC))
        return render(rows, fmt.value)


@app.command(name="edit")
def edit_(
    config: ConfigOpt,
    meter: Annotated[str, typer.Option("--meter", help="meter_id")],
    start: Annotated[str, typer.Option("--start", help="Interval start, ISO 8601 with offset")],
    value: Annotated[int, typer.Option("--value", help="Corrected consumption, Wh")],
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit trail")],
    channel: Annotated[str, typer.Option("--channel")] = "1.0.1.8.0.255",
    operator: Annotated[str | None, typer.Option("--operator", help="Who (default: login)")]
    = None,
) -> None:
    """Correct one interval (ESPI code 7). The value first derived stays as raw; who,
    when and why go to the audit trail (`ami-gateway audit`)."""
    import getpass

    from gateway.model import require_utc

    cfg = _config(config)
    try:
        at = require_utc(datetime.fromisoformat(start), "--start")
    except ValueError as exc:
        err.print(f"[red]error[/red] --start: {exc}")
        raise typer.Exit(2) from exc
    who = operator or getpass.getuser()
    try:
        iv = _run(_edit(cfg, meter, channel, at, value, who, reason))
    except GatewayError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from exc
    print(f"{meter} {channel} {iv.start.isoformat()}: {iv.value} {iv.unit} "
          f"(was {iv.raw if iv.raw is not None else 'missing'} as first derived), "
          f"quality {int(iv.quality)} edited by {who}")


async def _edit(cfg: LoadedConfig, meter: str, channel: str, at: datetime, value: int,
                who: str, reason: str) -> Any:
    async with _store(cfg) as store:
        return await store.edit_interval(meter, channel, at, value, operator=who,
                                         reason=reason, at=datetime.now(UTC))


@app.command()
def audit(
    config: ConfigOpt,
    meter: Annotated[str, typer.Option("--meter", help="meter_id")],
    channel: Annotated[str, typer.Option("--channel")] = "1.0.1.8.0.255",
    events: Annotated[bool, typer.Option(
        "--events", help="The series' events instead: exchanges, resets, ambiguous wraps")]
    = False,
) -> None:
    """The audit trail of a meter's corrections: who, when, why, from what to what (CSV)."""
    import csv

    cfg = _config(config)
    out = csv.writer(sys.stdout, lineterminator="\n")
    if events:
        out.writerow(["at", "kind", "meter_id", "channel", "reason", "read"])
        for e in _run(_events(cfg, meter)):
            out.writerow([e.at.isoformat(), e.kind, e.meter_id, e.channel, e.reason, e.payload])
        return
    trail = _run(_audit(cfg, meter, channel))
    out.writerow(["meter_id", "channel", "start", "old_value", "new_value", "operator",
                  "reason", "at"])
    for e in trail:
        out.writerow([e.meter_id, e.channel, e.start.isoformat(),
                      "" if e.old_value is None else e.old_value, e.new_value, e.operator,
                      e.reason, e.at.isoformat()])


async def _events(cfg: LoadedConfig, meter: str) -> list[Any]:
    async with _store(cfg) as store:
        return list(await store.events(meter))


async def _audit(cfg: LoadedConfig, meter: str, channel: str) -> list[Any]:
    async with _store(cfg) as store:
        return list(await store.edits(meter, channel))


@app.command()
def status(
    config: ConfigOpt,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document, for scripts")]
    = False,
) -> None:
    """The outbox per sink (depth, oldest undelivered, delivery rate, quarantined), the
    meters by state and the quarantine, from the store (the gateway may run or not).
    Exits 1 when a sink is failing or the outbox is past its alarm depth."""
    import msgspec

    cfg = _config(config)
    view = _run(_status(cfg))
    if json_out:
        sys.stdout.write(msgspec.json.encode(view).decode() + "\n")
    else:
        _print_status(view)
    if view.status != "ok" and (view.outbox.alarm or any(s.failing for s in view.sinks)):
        raise typer.Exit(1)


async def _status(cfg: LoadedConfig) -> Any:
    from gateway.status import gateway_status

    async with _store(cfg) as store:
        return await gateway_status(store, cfg.settings.outbox)


def _print_status(view: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"status [bold]{view.status}[/]   outbox depth {view.outbox.depth:,} "
                  f"(alarm at {view.outbox.alarm_depth:,}, pause at "
                  f"{view.outbox.pause_depth:,})   quarantined {view.quarantined:,}   meters "
                  f"{view.meters.ok} ok, {view.meters.failing} failing, "
                  f"{view.meters.unknown} not read yet")
    if not view.sinks:
        console.print("no sinks configured: intervals stay in the local store")
        return
    table = Table()
    for col in ("sink", "depth", "oldest undelivered", "rate /s", "delivered", "quarantined",
                "last delivery", "error"):
        table.add_column(col)
    for s in view.sinks:
        table.add_row(s.name, f"{s.depth:,}",
                      s.oldest_undelivered.isoformat() if s.oldest_undelivered else "-",
                      f"{s.delivery_rate_per_s:,.0f}", f"{s.delivered_total:,}",
                      f"{s.quarantined:,}",
                      s.last_delivery_at.isoformat() if s.last_delivery_at else "-",
                      s.last_error or "")
    console.print(table)


@app.command(name="self-read")
def self_read(
    config: ConfigOpt,
    meter: Annotated[str, typer.Argument(help="meter_id of a manual meter")],
    value: Annotated[str, typer.Argument(help="The register as its dials show it, e.g. 12345.6")],
    channel: Annotated[str | None, typer.Option(
        "--channel", help="Register (OBIS); default the meter's first")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="When it was read, ISO 8601 with offset; default now")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="Who read it, kept in the audit (default: login)")] = None,
) -> None:
    """Record a customer's register reading of a manual meter through the same rules as a
    polled read. Exit 1 if it is refused (the reason is printed and kept in the quarantine).

    Safe while the gateway runs: a concurrent write is never overwritten, only re-judged.
    """
    import getpass

    from gateway.model import require_utc

    cfg = _config(config)
    log.configure("console" if sys.stderr.isatty() else "json", "warning")
    when = None
    if at is not None:
        try:
            when = require_utc(datetime.fromisoformat(at), "--at")
        except ValueError as exc:
            err.print(f"[red]error[/red] --at: {exc}")
            raise typer.Exit(2) from exc
    from gateway.ingest.selfread import SelfReadRefused

    try:
        receipt = _run(_self_read(cfg, meter, value, channel, when, by or getpass.getuser()))
    except ConfigError as exc:
        _config_failed(exc)
        return
    except SelfReadRefused as exc:
        err.print(f"refused ({exc.refusal.code}): {exc.refusal.message}", highlight=False,
                  markup=False)
        raise typer.Exit(1) from exc
    except GatewayError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from exc
    status = "recorded" if receipt.recorded else "already recorded"
    print(f"{receipt.meter_id} {receipt.channel} {receipt.at.isoformat()}: {status}: "
          f"{receipt.message}")


async def _self_read(cfg: LoadedConfig, meter: str, value: str, channel: str | None,
                     at: datetime | None, by: str) -> Any:
    from edge.assembly import assemble
    from gateway.clock import SystemClock
    from gateway.ingest.selfread import SelfReads

    assembly = assemble(cfg)
    async with _store(cfg) as store:
        self_reads = SelfReads(assembly, store, SystemClock())
        await self_reads.open()
        return await self_reads.submit(meter, value, channel=channel, at=at,
                                       submitted_by=f"{by} via cli")


@app.command()
def ingest(
    config: ConfigOpt,
    worker: Annotated[int, typer.Option(
        min=0, help="Worker number: the broker client id is <client_id_prefix>-<N>")] = 0,
    retire: Annotated[bool, typer.Option(
        help="End the (stopped) worker's broker session and exit: for scaling down, so "
             "its share of the messages goes to the other workers at once")] = False,
) -> None:
    """Central ingest: store the edges' interval batches from the broker, ack each after
    the commit. Runs until SIGTERM (exit 0) or SIGINT (exit 130)."""
    from gateway.ingest.central_run import retire_worker, run_ingest

    cfg = _config(config)
    _configure_logs(cfg)
    try:
        if retire:
            _run(retire_worker(cfg, worker))
            print(f"worker {worker}: broker session ended")
            return
        code = _run(run_ingest(cfg, worker=worker))
    except ConfigError as exc:
        _config_failed(exc)
        return
    except GatewayError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from exc
    if code:
        raise typer.Exit(code)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Portal port on 127.0.0.1")] = 8080,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second")] = 1440.0,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its store")] =
    Path("demo-data"),
    days: Annotated[int, typer.Option(help="Simulated days of history before now")] = 30,
) -> None:
    """Simulated Modbus meters, the edge agent polling them, the SQLite store and the portal."""
    from gateway.demo import run_demo

    if speed <= 0:
        err.print("[red]error[/red] --speed must be positive")
        raise typer.Exit(2)
    try:
        _run(run_demo(port=port, speed=speed, data_dir=data_dir, days=days))
    except GatewayError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from exc


def main() -> None:
    import faulthandler
    import signal

    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck gateway waits on.
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    app()


if __name__ == "__main__":
    main()
