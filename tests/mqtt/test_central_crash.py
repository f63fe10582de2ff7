"""The central ingest's guarantee under failure, against a real Mosquitto: a worker
process (``python -m gateway ingest``) killed with SIGKILL mid-stream, the broker
restarted mid-stream, malformed messages mixed into a stream of valid ones. The edge
is simulated as the contract describes it: it keeps every batch until its ack and
sends the unacked ones again after its ack timeout. At the end every interval is
stored exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.mosquitto_server import Broker, mosquitto_server
from tests.mqtt.central_harness import (
    ACL,
    REPO,
    T0,
    USERS,
    Edge,
    batch,
    encode,
    running_worker,
    stored_count,
    wait_until,
)
from tests.mqtt.test_central import MALFORMED

ACK_TIMEOUT_S = 1.0


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with mosquitto_server(tmp_path / "mqtt", users=USERS, acl=ACL) as b:
        yield b


@pytest.fixture
def edge_a(broker: Broker) -> Iterator[Edge]:
    edge = Edge(broker, "edge-a")
    yield edge
    edge.close()


def write_config(tmp: Path, broker: Broker) -> Path:
    cfg = tmp / "central.toml"
    (tmp / "ingest.pw").write_text(USERS["ingest"] + "\n")
    cfg.write_text(f"""
[gateway]
data_dir = "data"
log_format = "json"

[store]
synchronous = "NORMAL"

[ingest]
host = "{broker.host}"
port = {broker.port}
password_file = "ingest.pw"
session_expiry_s = 600
batch_ms = 2
""")
    return cfg


def start_worker(cfg: Path, worker: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway", "ingest", "--config", str(cfg),
                             "--worker", str(worker)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})


def settle(edge: Edge, rounds: int = 30) -> None:
    """The edge's resend loop: whatever stays unacked for the ack timeout is sent again."""
    for _ in range(rounds):
        edge.drain_acks(ACK_TIMEOUT_S)
        if not edge.unacked:
            return
        edge.resend_unacked()
    raise AssertionError(f"{len(edge.unacked)} batches never acked")


def exact_rows(db: Path) -> list[tuple[str, str, int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT s.meter_id, s.channel, i.start, i.value FROM interval i "
            "JOIN series s ON s.id = i.series ORDER BY 1, 2, 3").fetchall()


def expected_rows(batches: int, n: int) -> list[tuple[str, str, int, int]]:
    return sorted(("m1", "ch0", T0 + 900 * (n * k + i), 7 + i)
                  for k in range(batches) for i in range(n))


def test_cli_worker_stores_acks_and_stops_cleanly_on_sigterm_and_sigint(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, broker)
    for sig, code in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):
        proc = start_worker(cfg)
        try:
            first = 0 if sig == signal.SIGTERM else 10
            b = batch("edge-a", first, 10)
            edge_a.send_batch(b)  # lost if sent before the worker subscribed: resent
            settle(edge_a)
            assert b["batch"] not in edge_a.unacked
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=10)
        finally:
            proc.kill()
        assert proc.returncode == code, out.decode()
        assert b"ingest worker stopped" in out and b'"stored": 10' in out, out.decode()
    assert exact_rows(tmp_path / "data" / "store.db") == expected_rows(2, 10)
    retired = subprocess.run([sys.executable, "-m", "gateway", "ingest", "--config", str(cfg),
                              "--retire"], cwd=REPO, capture_output=True, timeout=20)
    assert retired.returncode == 0 and b"worker 0: broker session ended" in retired.stdout


def test_worker_killed_mid_stream_loses_and_duplicates_nothing(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, broker)
    proc = start_worker(cfg)
    n_batches, n = 300, 10
    try:
        edge_a.send_batch(batch("edge-a", 0, n))
        settle(edge_a)  # the worker is up and subscribed
        for k in range(1, n_batches):
            edge_a.send_batch(batch("edge-a", n * k, n))
            if k == n_batches // 2:
                proc.send_signal(signal.SIGKILL)  # messages in its hands are gone
                proc.wait(5)
        time.sleep(0.3)
        assert edge_a.unacked, "the kill came too late to test anything"
        proc = start_worker(cfg)  # the same client id: its session's queue waits for it
        settle(edge_a)
    finally:
        proc.kill()
        proc.wait(5)
    assert exact_rows(tmp_path / "data" / "store.db") == expected_rows(n_batches, n)


async def test_broker_restart_mid_stream_loses_nothing(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    n_batches, n = 200, 10
    async with running_worker(broker, db):
        for k in range(n_batches):
            edge_a.send_batch(batch("edge-a", n * k, n))
            if k == n_batches // 2:
                await asyncio.to_thread(broker.restart)
        await asyncio.to_thread(settle, edge_a)
        assert await stored_count(db) == n_batches * n
    assert exact_rows(db) == expected_rows(n_batches, n)


async def _mixed(broker: Broker, edge: Edge, db: Path, valid: int, malformed: int) -> None:
    bad = [p for name, p, _w, _a in MALFORMED if name != "oversized"]
    every = valid // malformed
    n = 5
    async with running_worker(broker, db) as w:
        sent_bad = 0
        for k in range(valid):
            # Batches in flight stay within what the broker queues for a busy client
            # (Mosquitto's max_queued_messages, 1000 by default): beyond it, it drops.
            if k % 50 == 0:
                await asyncio.to_thread(edge.window, 400)
            edge.send_batch(batch("edge-a", n * k, n, meter="m1"))
            if k % every == 0 and sent_bad < malformed:
                edge.send(bad[sent_bad % len(bad)], keep=False)
                sent_bad += 1
        await asyncio.to_thread(settle, edge)
        await wait_until(lambda: _quarantined(w.store, sent_bad), 20)
        assert sent_bad == malformed
        assert await w.store.quarantine_count() == malformed
        assert w.ingest.counters.quarantined == malformed
        assert w.task is not None and not w.task.done()  # the same worker throughout
    assert exact_rows(db) == expected_rows(valid, n)


async def _quarantined(store: object, n: int) -> bool:
    return await store.quarantine_count() >= n  # type: ignore[attr-defined,no-any-return]


async def test_malformed_mixed_into_a_stream_are_quarantined_and_every_reading_stored(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    started = time.monotonic()
    await _mixed(broker, edge_a, tmp_path / "central.db", 10_000, 1_000)
    assert time.monotonic() - started < 20


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AMI_SOAK"), reason="minutes long: AMI_SOAK=1")
async def test_soak_10000_malformed_in_100000_valid(
        broker: Broker, edge_a: Edge, tmp_path: Path) -> None:
    await _mixed(broker, edge_a, tmp_path / "central.db", 100_000, 10_000)


def test_encode_helper_is_compact() -> None:
    assert b" " not in encode(batch("edge-a", 0, 2))
