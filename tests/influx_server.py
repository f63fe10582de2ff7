"""A real ``influxd`` (1.x) on free ports in a temporary directory, for the sink tests.

``influx_server(tmp)`` starts ``influxd run -config <tmp>/influxdb.conf`` with its own
meta/data/wal dirs, reporting and the monitor store off, waits for ``/ping`` and yields
the base URL; on exit it sends SIGTERM, then SIGKILL if the server lingers. Options set
``[http] max-body-size`` (for the 413 tests) and ``auth-enabled`` (with an admin user
created through the one unauthenticated ``CREATE USER`` 1.x allows on an empty server).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest

INFLUXD = shutil.which("influxd")
SKIP_REASON = ("influxd is not installed: apt-get install influxdb (Debian's InfluxDB 1.x) "
               "to run the InfluxDB sink tests")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, http_port: int, rpc_port: int, *, max_body: int, auth: bool) -> str:
    return f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{tmp}/meta"

[data]
  dir = "{tmp}/data"
  wal-dir = "{tmp}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  auth-enabled = {"true" if auth else "false"}
  max-body-size = {max_body}
  max-row-limit = 0

[logging]
  level = "warn"

[continuous_queries]
  enabled = false
"""


def require_influxd() -> str:
    if INFLUXD is None:
        pytest.skip(SKIP_REASON)
    return INFLUXD


@contextmanager
def running_influxd(tmp: Path, *, max_body: int = 25_000_000,
                    admin: tuple[str, str] | None = None) -> Iterator[str]:
    """Run influxd until the block ends; yields ``http://127.0.0.1:<port>``."""
    exe = require_influxd()
    tmp.mkdir(parents=True, exist_ok=True)
    http_port, rpc_port = free_port(), free_port()
    conf = tmp / "influxdb.conf"
    conf.write_text(_config(tmp, http_port, rpc_port, max_body=max_body, auth=admin is not None))
    log_path = tmp / "influxd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([exe, "run", "-config", str(conf)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_ready(url, proc, log_path)
        if admin is not None:
            name, password = admin
            # 1.x lets the first admin be created without credentials.
            httpx.post(url + "/query", data={
                "q": f"CREATE USER \"{name}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES",
            }).raise_for_status()
        yield url
    finally:
        stop(proc)


@asynccontextmanager
async def influx_server(tmp: Path, *, max_body: int = 25_000_000,
                        admin: tuple[str, str] | None = None) -> AsyncIterator[str]:
    """``running_influxd`` for a test of its own (start and stop off the event loop)."""
    cm = running_influxd(tmp, max_body=max_body, admin=admin)
    url = await asyncio.to_thread(cm.__enter__)
    try:
        yield url
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    with httpx.Client(base_url=url, timeout=1.0) as client:
        for _ in range(400):
            if proc.poll() is not None:
                raise RuntimeError(f"influxd exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if client.get("/ping").status_code == 204:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.025)
    stop(proc)
    raise RuntimeError(f"influxd did not answer /ping within 10 s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
