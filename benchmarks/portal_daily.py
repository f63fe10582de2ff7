"""Portal daily usage: one meter over one year, p50/p95/p99 at the HTTP level.

``GET /api/v1/meters/{id}/daily?from=&to=`` for a full year of a random meter, against a
``SqliteStore`` holding ``--meters`` x ``--days`` of 15-minute data (default 1,000 x 365 =
35,040,000 intervals, one active-import channel per meter, every meter in
America/Chicago so the year holds the 23- and 25-hour DST days). The store is built
through ``write_intervals`` in large batches (week by week across all meters, as a
poller's backlog arrives), so the ``daily`` rollup is the one production builds; it is
kept under ``--dir`` and reused by later runs (``--rebuild`` to start over).

The app (``create_app`` with every meter's daily usage checks on, history included) is
served by uvicorn in a subprocess on a free loopback port; one httpx client times
``--requests`` requests on one keep-alive connection, after a warm-up. Two modes:
``operator`` (customer access off) and ``customers`` (``[api] customers = true``: each
request carries the session of a customer whose account holds the meter). Time in the
store is measured two ways: in the server, every awaited store call of a request
(thread hop included) through a timing proxy; and ``store.daily`` called directly on the
same store for the same meters, without HTTP. The modes alternate over ``--rounds``
rounds; each mode's best round is shown in full and its median round beside it.
Building the default store takes about 11 minutes on 2 cores and 0.7 GB of disk.

Goal (portal issue): HTTP p95 <= 20 ms, of which <= 2 ms in the store.

    .venv/bin/python benchmarks/portal_daily.py [--meters 1000] [--days 365] \
        [--requests 1000] [--rounds 3] [--dir /tmp/ami-bench-portal] [--rebuild] [--mode both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import inspect
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from gateway.accounts import BillingAccount, new_token
from gateway.model import IntervalReading, MeterStatus, Quality, Unit
from gateway.store import SeriesInfo
from gateway.store.sqlite import SqliteStore
from gateway.validation.daily import DailyLimits

CHANNEL = "1.0.1.8.0.255"
TZ_NAME = "America/Chicago"
TZ = ZoneInfo(TZ_NAME)
FIRST_DAY = date(2025, 1, 1)  # a whole local year: both 2025 DST changes inside
#: Every meter's usage checks, as a config would set them: absolute limits and a 3x
#: history check over the previous 7 complete days (14 days of history per request).
LIMITS = DailyLimits(high_wh=60_000, low_wh=1_000, history_factor=Decimal(3), history_days=7)
GOAL_P95_S = 0.020
GOAL_STORE_S = 0.002
WEEK = 7


def meter_name(i: int) -> str:
    return f"CHI-{i:05d}"


def account_number(i: int) -> str:
    return f"ACC-{i:05d}"


def local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)


def quarter_hours(first: date, days: int) -> list[datetime]:
    """UTC starts of the quarter-hours of ``days`` local days (92 or 100 on DST days)."""
    start, end = local_midnight(first), local_midnight(first + timedelta(days=days))
    return [start + timedelta(seconds=900 * k)
            for k in range(int((end - start).total_seconds()) // 900)]


# -- building the store -----------------------------------------------------------------

def store_path(args: argparse.Namespace) -> Path:
    return Path(args.dir) / f"portal-{args.meters}x{args.days}.db"


async def build(path: Path, meters: int, days: int, batch: int) -> float:
    """Write the store through the public write path; returns the seconds it took."""
    store = SqliteStore(path)
    await store.open()
    t0 = time.perf_counter()
    try:
        for m in range(meters):
            await store.register_series(SeriesInfo(
                meter_id=meter_name(m), channel=CHANNEL, unit=Unit.WH, interval_s=900,
                timezone=TZ_NAME))
            await store.set_meter_status(MeterStatus(meter_id=meter_name(m), timezone=TZ_NAME,
                                                     status="ok"))
        per_batch = max(batch // (WEEK * 96), 1)  # meters per batch of one week
        written = 0
        for week in range(0, days, WEEK):
            starts = quarter_hours(FIRST_DAY + timedelta(days=week), min(WEEK, days - week))
            hours = [s.astimezone(TZ).hour for s in starts]
            for lo in range(0, meters, per_batch):
                rows = []
                for m in range(lo, min(lo + per_batch, meters)):
                    name = meter_name(m)
                    for k, (s, hour) in enumerate(zip(starts, hours, strict=True)):
                        noise = (int(s.timestamp()) // 900 * 2654435761 + m * 40503) % 97
                        value = 40 + m % 50 + (150 if 17 <= hour < 22 else 0) + noise
                        quality = Quality.ESTIMATED_LINEAR if (k + m) % 997 == 0 \
                            else Quality.VALID
                        rows.append(IntervalReading(
                            meter_id=name, channel=CHANNEL, start=s, length_s=900,
                            value=value, unit=Unit.WH, quality=quality))
                result = await store.write_intervals(rows)
                written += result.inserted
            done = min(week + WEEK, days)
            rate = written / (time.perf_counter() - t0)
            print(f"  built {done}/{days} days, {written:,} intervals, {rate:,.0f}/s",
                  flush=True)
        # One billing account per meter, open from the first day, and its customer.
        await store.put_accounts([
            BillingAccount(account_number=account_number(m), meter_id=meter_name(m),
                           valid_from=FIRST_DAY, valid_to=None, last_payment_cents=4217)
            for m in range(meters)])
        now = datetime.now(UTC)
        for m in range(meters):
            cid = await store.add_customer(f"c{m}@example.org", b"salt", b"digest", at=now)
            assert cid is not None
            assert await store.link(cid, account_number(m), 4217, at=now)
    finally:
        await store.close()
    return time.perf_counter() - t0


def file_size(path: Path) -> int:
    return sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal")
               if Path(f"{path}{s}").exists())


def table_sizes(path: Path) -> dict[str, int]:
    """Bytes per table (dbstat), when this SQLite has it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name "
                                 "ORDER BY 2 DESC LIMIT 4").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


# -- the server (a subprocess) ----------------------------------------------------------

_SPENT: contextvars.ContextVar[list[tuple[str, float]] | None] = contextvars.ContextVar(
    "spent", default=None)


class TimedStore:
    """The store, with every awaited call timed into the current request's list."""

    def __init__(self, inner: SqliteStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                spent = _SPENT.get()
                if spent is not None:
                    spent.append((name, time.perf_counter() - t))

        return timed


class StoreClock:
    """ASGI middleware: what each request spent awaiting the store, kept for /bench."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.requests: list[list[tuple[str, float]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/bench"):
            await self.app(scope, receive, send)
            return
        spent: list[tuple[str, float]] = []
        token = _SPENT.set(spent)
        try:
            await self.app(scope, receive, send)
        finally:
            _SPENT.reset(token)
            self.requests.append(spent)


async def serve(path: Path, mode: str, meters: int, profile: str | None) -> None:
    import uvicorn
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from gateway.api import create_app

    store = SqliteStore(path)
    await store.open()
    timed = cast(SqliteStore, TimedStore(store))
    limits = {meter_name(m): LIMITS for m in range(meters)}
    app = create_app(timed, daily_limits=limits,
                     accounts=timed if mode == "customers" else None,
                     operator_token="bench-operator-token-0123456789")
    clock = StoreClock(app)

    async def store_times(request: Request) -> JSONResponse:
        out = [[(n, s) for n, s in r] for r in clock.requests]
        clock.requests.clear()
        return JSONResponse(out)

    app.add_route("/bench/store", store_times)

    outer: Any = clock
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002, async_mode="enabled")

        async def profiled(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].endswith("/daily"):
                profiler.start()
                try:
                    await clock(scope, receive, send)
                finally:
                    profiler.stop()
            else:
                await clock(scope, receive, send)

        outer = profiled

    # IPPROTO_TCP, as uvicorn's own bind gets it from getaddrinfo: asyncio sets
    # TCP_NODELAY only on such sockets, and without it every reply waits ~40 ms for the
    # client's delayed ACK (headers and body are two writes).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn serves
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(outer, log_level="warning", lifespan="off", access_log=False)
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        await store.close()
        if profile:
            with open(profile, "w") as out:  # noqa: ASYNC230 - the server has stopped
                out.write(profiler.output_text(unicode=False, show_all=False))


# -- the client -------------------------------------------------------------------------

def pct(sorted_s: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted seconds."""
    return sorted_s[min(len(sorted_s) - 1, max(0, round(q * len(sorted_s)) - 1))]


def figures(seconds: list[float]) -> str:
    s = sorted(seconds)
    return (f"p50 {pct(s, .50) * 1000:6.2f} ms  p95 {pct(s, .95) * 1000:6.2f} ms  "
            f"p99 {pct(s, .99) * 1000:6.2f} ms  max {s[-1] * 1000:6.2f} ms")


async def sessions(path: Path, picks: list[int]) -> dict[int, str]:
    """A fresh session token for each picked meter's customer."""
    store = SqliteStore(path)
    await store.open()
    out: dict[int, str] = {}
    now = datetime.now(UTC)
    try:
        for m in sorted(set(picks)):
            found = await store.customer_by_email(f"c{m}@example.org")
            assert found is not None
            out[m], digest = new_token()
            await store.add_session(digest, found[0], expires_at=now + timedelta(
                hours=12), now=now)
    finally:
        await store.close()
    return out


async def direct_daily(path: Path, picks: list[int], last: date) -> list[float]:
    """``store.daily`` alone, with the route's history (14 days before ``from``)."""
    store = SqliteStore(path)
    await store.open()
    since = FIRST_DAY - timedelta(days=14)
    out = []
    try:
        for m in picks[:50]:  # warm-up
            await store.daily(meter_name(m), CHANNEL, since, last)
        for m in picks:
            t = time.perf_counter()
            days = await store.daily(meter_name(m), CHANNEL, since, last)
            out.append(time.perf_counter() - t)
            assert len(days) == (last - FIRST_DAY).days + 1
    finally:
        await store.close()
    return out


def run_mode(args: argparse.Namespace, path: Path, mode: str, picks: list[int],
             tokens: dict[int, str]) -> dict[str, Any]:
    last = FIRST_DAY + timedelta(days=args.days - 1)
    cmd = [sys.executable, __file__, "--serve", mode, "--dir", args.dir,
           "--meters", str(args.meters), "--days", str(args.days)]
    if args.profile:
        cmd += ["--profile-out", str(Path(args.dir) / f"profile-{mode}.txt")]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        params = {"from": FIRST_DAY.isoformat(), "to": last.isoformat()}
        seconds: list[float] = []
        sizes: list[int] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            # Warm-up: the first requests, and in customers mode one request per session
            # (its first use writes last_used_at, then at most every 5 minutes).
            warm = picks[:args.warmup]
            if mode == "customers":
                warm = warm + sorted(set(picks) - set(warm))
            for i, m in enumerate(warm + picks):
                headers = {"Authorization": f"Bearer {tokens[m]}"} if mode == "customers" \
                    else {}
                t = time.perf_counter()
                r = client.get(f"/api/v1/meters/{meter_name(m)}/daily", params=params,
                               headers=headers)
                body = r.content
                took = time.perf_counter() - t
                if r.status_code != 200:
                    raise RuntimeError(f"{mode}: HTTP {r.status_code} {r.text[:300]}")
                if i >= len(warm):
                    seconds.append(took)
                    sizes.append(len(body))
            spent = client.get("/bench/store").json()[len(warm):]
        sample = json.loads(body)
        assert len(sample["days"]) == args.days, len(sample["days"])
        flagged = sum(1 for d in sample["days"] if d["checks"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    per_call: dict[str, list[float]] = {}
    for request in spent:
        for name, s in request:
            per_call.setdefault(name, []).append(s)
    return {"http": seconds, "store_total": [sum(s for _, s in r) for r in spent],
            "calls": per_call, "calls_per_request": statistics.mean(len(r) for r in spent),
            "bytes": statistics.mean(sizes), "flagged": flagged}


def machine() -> str:
    return (f"{os.cpu_count()} cores ({platform.machine()}), Python "
            f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each mode, alternating")
    ap.add_argument("--batch", type=int, default=50_000, help="intervals per store write")
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "ami-bench-portal"),
                    help="where the store is kept between runs")
    ap.add_argument("--rebuild", action="store_true", help="build the store again")
    ap.add_argument("--mode", choices=("both", "operator", "customers"), default="both")
    ap.add_argument("--profile", action="store_true",
                    help="profile the server's daily requests with pyinstrument (if installed)")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--serve", choices=("operator", "customers"), help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    path = store_path(args)
    if args.serve:
        asyncio.run(serve(path, args.serve, args.meters, args.profile_out))
        return

    if args.profile:
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            raise SystemExit("--profile needs pyinstrument: .venv/bin/pip install pyinstrument "
                             "(a profiling aid, not a dependency of the gateway)") from None
    print(f"machine: {machine()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    done = Path(f"{path}.done")
    if args.rebuild or not done.exists():
        need = args.meters * args.days * 96 * 40  # bytes, generously
        free = shutil.disk_usage(path.parent).free
        if free < need:
            raise SystemExit(f"{path.parent}: {free / 1e9:.1f} GB free, the store needs about "
                             f"{need / 1e9:.1f} GB; give --dir elsewhere or fewer --meters")
        print(f"building {path} ({args.meters} meters x {args.days} days x 96 intervals)")
        for suffix in ("", "-wal", "-shm", ".done"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        took = asyncio.run(build(path, args.meters, args.days, args.batch))
        done.write_text(json.dumps({"meters": args.meters, "days": args.days, "seconds": took}))
        print(f"built in {took:.0f} s")
    else:
        took = json.loads(done.read_text())["seconds"]
        print(f"reusing {path} (built in {took:.0f} s; --rebuild to build again)")
    if args.build_only:
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    intervals = conn.execute("SELECT count(*) FROM interval").fetchone()[0]
    rollups = conn.execute("SELECT count(*) FROM daily").fetchone()[0]
    conn.close()
    sizes = ", ".join(f"{k} {v / 1e6:,.0f} MB" for k, v in table_sizes(path).items())
    print(f"store: {intervals:,} intervals, {rollups:,} daily rollups, "
          f"{file_size(path) / 1e9:.2f} GB on disk ({sizes})")
    print(f"data: {args.meters} meters x {args.days} local days ({FIRST_DAY} on) of 15-minute "
          f"intervals, 1 channel ({CHANNEL}) per meter, {TZ_NAME} (DST days of 92 and 100)")

    rng = random.Random(42)
    picks = [rng.randrange(args.meters) for _ in range(args.requests)]
    last = FIRST_DAY + timedelta(days=args.days - 1)
    direct = asyncio.run(direct_daily(path, picks, last))
    modes = ["operator", "customers"] if args.mode == "both" else [args.mode]
    tokens = asyncio.run(sessions(path, picks)) if "customers" in modes else {}
    print(f"requests: {args.requests} (after {args.warmup} warm-up) of random meters, each "
          f"{FIRST_DAY}..{last} ({args.days} days), one keep-alive connection; usage checks "
          "on (14 days of history per request)")
    print(f"store.daily called directly ({args.days + 14} rollup rows): {figures(direct)}")
    # The modes alternate round by round; each mode's best round (lowest HTTP p95) is
    # shown in full, with the median round's figures beside it: on a shared 2-core
    # machine a round can be slowed by whatever else runs.
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for n in range(args.rounds):
        for mode in modes if n % 2 == 0 else modes[::-1]:
            r = run_mode(args, path, mode, picks, tokens)
            r["load"] = os.getloadavg()[0]
            runs[mode].append(r)
            print(f"  round {n + 1} {mode:9} HTTP {figures(r['http'])}  "
                  f"(load average {r['load']:.1f})", flush=True)
    verdicts = []
    for mode in modes:
        ranked = sorted(runs[mode], key=lambda r: pct(sorted(r["http"]), .95))
        r, mid = ranked[0], ranked[len(ranked) // 2]
        http = sorted(r["http"])
        store_all = sorted(r["store_total"])
        daily = sorted(r["calls"].get("daily", [0.0]))
        print(f"[{mode}] best of {len(ranked)} rounds (load average {r['load']:.1f}):")
        print(f"[{mode}] HTTP:             {figures(http)}  ({r['bytes']:,.0f} bytes, "
              f"{r['flagged']} days flagged in the last reply)")
        print(f"[{mode}] store, all calls: {figures(store_all)}  "
              f"({r['calls_per_request']:.1f} calls per request)")
        print(f"[{mode}] store.daily:      {figures(daily)}")
        for name, s in sorted(r["calls"].items()):
            if name != "daily":
                print(f"[{mode}]   {name:14} p50 {statistics.median(s) * 1000:.3f} ms "
                      f"x {len(s) / len(http):.2f} per request")
        print(f"[{mode}] median round: HTTP {figures(mid['http'])}; store, all calls "
              f"p95 {pct(sorted(mid['store_total']), .95) * 1000:.2f} ms")
        p95, s95 = pct(http, .95), pct(store_all, .95)
        verdicts.append(f"[{mode}] ratio HTTP p95 / 20 ms: {p95 / GOAL_P95_S:.2f}   "
                        f"store p95 (all calls) / 2 ms: {s95 / GOAL_STORE_S:.2f}   "
                        f"store.daily p95 / 2 ms: {pct(daily, .95) / GOAL_STORE_S:.2f}   "
                        f"(median round: {pct(sorted(mid['http']), .95) / GOAL_P95_S:.2f}, "
                        f"{pct(sorted(mid['store_total']), .95) / GOAL_STORE_S:.2f})")
    for v in verdicts:
        print(v)
    print("goal: ratios <= 1.00")


if __name__ == "__main__":
    main()
