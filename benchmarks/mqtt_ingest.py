"""Central ingest throughput through a real Mosquitto (issue 7).

Edges (publisher processes, one broker user each, paho with up to 20 QoS 1 messages
in flight: Mosquitto's Receive Maximum) publish batches of ``--readings`` intervals to
their own topics;
the ingest workers (``python -m gateway ingest`` processes on one SQLite store,
``synchronous = NORMAL`` and FULL) read them through the shared subscription, store
them and ack each. A run is timed from the first publish to the last ack received by
the edges: every reading counted is committed in the store and acknowledged.

Three figures per run, in the same broker: a raw baseline (a paho subscriber on the
shared subscription that only counts), one worker, two workers. Goals: 5,000 msg/s per
worker and 50,000 readings/s; the ratios printed are measured / goal.

    .venv/bin/python benchmarks/mqtt_ingest.py [--messages 20000] [--readings 20]

The broker runs with ``max_queued_messages 0`` (no limit): with Mosquitto's default
of 1,000, a burst larger than that is dropped for a subscriber that lags, and the
edges would have to resend it (correct, but not what is measured here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.mqtt_names import acks_topic, intervals_topic, shared_intervals  # noqa: E402
from tests.mosquitto_server import Broker, running_mosquitto  # noqa: E402

GOAL_MSG_PER_WORKER = 5000
GOAL_READINGS = 50_000
T0 = 1_764_547_200
ACL = (ROOT / "config" / "mosquitto" / "acl").read_text()


def payloads(edge: str, meter: str, messages: int, readings: int, offset: int) -> list[bytes]:
    out = []
    for k in range(messages):
        first = offset + k * readings
        out.append(json.dumps({
            "v": 1, "edge": edge, "batch": f"{edge}:{first}-{first + readings - 1}",
            "sent_at": "2026-12-02T15:00:00Z",
            "series": [[meter, "A+", "Wh", 900, "Europe/Berlin"]],
            "intervals": [[0, T0 + 900 * (first + i), 100 + i, 0, 0, None]
                          for i in range(readings)]}, separators=(",", ":")).encode())
    return out


def _client(host: str, port: int, user: str, client_id: str) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv5)
    c.username_pw_set(user, "pw-" + user)
    c.max_inflight_messages_set(20)  # Mosquitto's Receive Maximum (its default)
    c.connect(host, port)
    return c


def edge_process(host: str, port: int, edge: str, data: list[bytes], expect_acks: bool,
                 go: Any, out: Any) -> None:
    """Publish ``data`` when ``go`` is set; report (start, last ack or PUBACK, count)."""
    c = _client(host, port, edge, f"{edge}-bench")
    acks: queue.Queue[float] = queue.Queue()
    pubacks: queue.Queue[float] = queue.Queue()
    subscribed: queue.Queue[int] = queue.Queue()
    c.on_message = lambda *_a: acks.put(time.perf_counter())
    c.on_publish = lambda *_a: pubacks.put(time.perf_counter())
    c.on_subscribe = lambda *_a: subscribed.put(1)
    c.loop_start()
    c.subscribe(acks_topic(edge), 1)
    subscribed.get(timeout=10)
    out.put(("ready", edge))
    go.wait()
    start = time.perf_counter()
    for p in data:
        c.publish(intervals_topic(edge), p, qos=1)
    last, n = 0.0, 0
    source = acks if expect_acks else pubacks
    try:
        while n < len(data):
            last = source.get(timeout=60)
            n += 1
    except queue.Empty:
        pass
    out.put(("done", start, last, n))
    c.disconnect()
    c.loop_stop()


def counter_process(host: str, port: int, total: int, out: Any) -> None:
    """The raw baseline: a paho subscriber on the shared subscription doing nothing."""
    c = _client(host, port, "ingest", "raw-baseline")
    seen = [0, 0.0]
    done: queue.Queue[int] = queue.Queue()

    def on_message(*_a: Any) -> None:
        seen[0] += 1
        if seen[0] == total:
            seen[1] = time.perf_counter()
            done.put(1)

    c.on_message = on_message
    c.on_subscribe = lambda *_a: out.put(("ready", "raw"))
    c.loop_start()
    c.subscribe(shared_intervals("raw"), 1)
    with contextlib.suppress(queue.Empty):
        done.get(timeout=120)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put(("counted", seen[0], seen[1], usage.ru_utime + usage.ru_stime))
    c.disconnect()
    c.loop_stop()


@dataclass
class Figure:
    name: str
    workers: int
    messages: int
    readings: int
    seconds: float
    #: CPU seconds the worker processes (or the raw subscriber) used, start-up included.
    cpu_s: float = 0.0

    def line(self) -> str:
        self.seconds = max(self.seconds, 1e-9)
        mps = self.messages / self.seconds
        rps = self.readings / self.seconds
        per = mps / max(self.workers, 1)
        goal = "" if not self.workers else (
            f"  per worker {per:7.0f} msg/s = {per / GOAL_MSG_PER_WORKER:4.2f} x goal, "
            f"readings {rps / GOAL_READINGS:4.2f} x goal")
        cpu = f", {1e6 * self.cpu_s / max(self.messages, 1):.0f} CPU us/msg"
        return (f"{self.name:<24} {mps:8.0f} msg/s {rps:9.0f} readings/s "
                f"({self.messages} msgs in {self.seconds:.2f} s{cpu}){goal}")


def write_config(tmp: Path, broker: Broker, synchronous: str, batch_ms: float) -> Path:
    # Each phase's workers get their own client ids and share group: a worker of an
    # earlier phase keeps its persistent session at the broker, and with it its share of
    # the group's messages (see `ami-gateway ingest --retire`).
    (tmp / "pw").write_text("pw-ingest\n")
    cfg = tmp / "central.toml"
    cfg.write_text(f"""
[gateway]
data_dir = "."
log_format = "json"
log_level = "warning"

[store]
path = "central.db"
synchronous = "{synchronous}"

[ingest]
host = "{broker.host}"
port = {broker.port}
password_file = "pw"
batch_ms = {batch_ms}
max_batch_messages = 1000
client_id_prefix = "{tmp.name}"
share_group = "{tmp.name}"
""")
    return cfg


def run_phase(broker: Broker, name: str, workers: int, edges: list[str], per_edge: int,
              readings: int, offset: int, tmp: Path, synchronous: str = "NORMAL",
              batch_ms: float = 5.0) -> Figure:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    go = ctx.Event()
    procs: list[Any] = []
    workers_p: list[subprocess.Popen[bytes]] = []
    total = per_edge * len(edges)
    if workers == 0:
        procs.append(ctx.Process(target=counter_process, args=(broker.host, broker.port, total,
                                                               out)))
    else:
        cfg = write_config(tmp, broker, synchronous, batch_ms)
        for w in range(workers):
            workers_p.append(subprocess.Popen(
                [sys.executable, "-m", "gateway", "ingest", "--config", str(cfg), "--worker",
                 str(w)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}))
        time.sleep(1.5)  # connected and subscribed (its log says so; this is simpler)
    for i, edge in enumerate(edges):
        data = payloads(edge, f"m-{edge}", per_edge, readings, offset)
        procs.append(ctx.Process(target=edge_process, args=(
            broker.host, broker.port, edge, data, workers > 0, go, out)))
        del i
    for p in procs:
        p.start()
    for _ in procs:
        assert out.get(timeout=60)[0] == "ready"
    go.set()
    starts, ends, counted = [], [], 0
    raw_end = cpu_raw = 0.0
    for _ in procs:
        msg = out.get(timeout=180)
        if msg[0] == "done":
            starts.append(msg[1])
            ends.append(msg[2])
            counted += msg[3] if workers else 0
        else:
            counted, raw_end, cpu_raw = msg[1], msg[2], msg[3]
    for p in procs:
        p.join(10)
    cpu = sum(_cpu_s(wp.pid) for wp in workers_p) if workers_p else cpu_raw
    for wp in workers_p:
        wp.send_signal(signal.SIGTERM)
        wp.wait(30)
    end = raw_end if workers == 0 else max(ends)
    if counted != total:
        print(f"  {name}: only {counted} of {total} messages counted/acked", file=sys.stderr)
    return Figure(name, workers, counted, counted * readings, end - min(starts), cpu)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored(tmp: Path) -> int:
    with sqlite3.connect(tmp / "central.db") as conn:
        return int(conn.execute("SELECT count(*) FROM interval").fetchone()[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000, help="messages per phase")
    ap.add_argument("--readings", type=int, default=20, help="readings per message")
    ap.add_argument("--edges", type=int, default=2, help="publisher processes")
    ap.add_argument("--batch-ms", type=float, default=5.0)
    args = ap.parse_args()
    edges = [f"edge-{i}" for i in range(args.edges)]
    users = {e: "pw-" + e for e in [*edges, "ingest"]}
    per_edge = args.messages // len(edges)
    tmp = Path(tempfile.mkdtemp(prefix="mqtt-ingest-bench-"))
    print(f"{os.cpu_count()} CPUs; {args.messages} messages x {args.readings} readings per "
          f"phase, {len(edges)} edge processes, QoS 1, batch_ms {args.batch_ms}")
    try:
        with running_mosquitto(tmp / "mqtt", users=users, acl=ACL, persistence=False) as broker:
            broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 0\n")
            broker.restart()
            figures = [run_phase(broker, "raw paho subscriber", 0, edges, per_edge,
                                 args.readings, 0, tmp)]
            offset = 0
            for workers, sync in ((1, "NORMAL"), (2, "NORMAL"), (1, "FULL")):
                offset += per_edge * args.readings
                phase_dir = tmp / f"w{workers}-{sync}"
                phase_dir.mkdir()
                fig = run_phase(broker, f"{workers} worker(s), {sync}", workers, edges,
                                per_edge, args.readings, offset, phase_dir, sync,
                                args.batch_ms)
                figures.append(fig)
                got = stored(phase_dir)
                if got != fig.readings:
                    print(f"  stored {got} != acked {fig.readings}", file=sys.stderr)
            for f in figures:
                print(f.line())
            one = next(f for f in figures if f.workers == 1)
            two = next(f for f in figures if f.workers == 2)
            rate = {f.name: f.messages / f.seconds for f in figures}
            print(f"two workers / one: {rate[two.name] / rate[one.name]:.2f}; "
                  f"one worker / raw baseline: {rate[one.name] / rate[figures[0].name]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
