"""The shipped broker config against a real Mosquitto: edges confined to their own topics.

The broker runs with ``config/mosquitto/acl`` copied verbatim, so these tests fail if the
ACL shipped to operators stops confining edges. Clients speak MQTT v5, which lets a
refused publish be seen (PUBACK reason code) instead of vanishing silently.
"""

from __future__ import annotations

import os
import queue
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from gateway.mqtt_names import SHARED_INTERVALS, acks_topic, intervals_topic, shared_intervals
from tests.mosquitto_server import (
    Broker,
    free_port,
    password_line,
    running_mosquitto,
    write_test_pki,
)
from tests.mqtt_peer import Peer, connected

REPO = Path(__file__).resolve().parents[2]
ACL = (REPO / "config" / "mosquitto" / "acl").read_text()
USERS = {"edge-a": "pw-a", "edge-b": "pw-b", "ingest": "pw-ingest", "+": "plus"}
NOT_AUTHORIZED = 135
QUIET_S = 0.3  # how long "nothing arrives" is watched, after a later message proved delivery


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_mosquitto(tmp_path_factory.mktemp("mosquitto"), users=USERS, acl=ACL,
                           tls=True) as b:
        yield b


def login(broker: Broker, user: str, client_id: str | None = None,
          ) -> AbstractContextManager[Peer]:
    return connected(broker, user, USERS[user], client_id=client_id or f"{user}-t")


def assert_nothing_more(peer: Peer) -> None:
    with pytest.raises(queue.Empty):
        got = peer.messages.get(timeout=QUIET_S)
        pytest.fail(f"unexpected delivery on {got.topic}: {got.payload!r}")


def test_edge_publishes_its_batches_and_the_shared_ingest_receives_them(broker: Broker) -> None:
    with login(broker, "ingest") as ingest, login(broker, "edge-a") as edge:
        assert [rc.value for rc in ingest.subscribe(SHARED_INTERVALS)] == [1]
        assert edge.publish(intervals_topic("edge-a"), b"batch-1").value == 0
        msg = ingest.expect()
        assert (msg.topic, msg.payload, msg.qos) == ("ami/v1/edge-a/intervals", b"batch-1", 1)


def test_edge_cannot_publish_as_another_edge(broker: Broker) -> None:
    with login(broker, "ingest") as ingest, login(broker, "edge-a") as edge_a:
        ingest.subscribe(SHARED_INTERVALS)
        ingest.subscribe("ami/#")  # a second, wider net: the forged batch reaches neither
        forged = edge_a.publish(intervals_topic("edge-b"), b"forged")
        assert forged.value == NOT_AUTHORIZED, f"PUBACK {forged}"
        # Its own topic still works; the forged batch, had it been routed, would come first.
        assert edge_a.publish(intervals_topic("edge-a"), b"genuine").value == 0
        assert ingest.expect().payload == b"genuine"
        assert ingest.expect().payload == b"genuine"  # once per subscription
        assert_nothing_more(ingest)
        # Nor may an edge write its own acks or anything outside its two topics.
        assert edge_a.publish(acks_topic("edge-a"), b"x").value == NOT_AUTHORIZED
        assert edge_a.publish("ami/v1/edge-a/intervals/extra", b"x").value == NOT_AUTHORIZED


def test_edge_cannot_read_another_edges_acks(broker: Broker) -> None:
    with login(broker, "ingest") as ingest, login(broker, "edge-a") as edge_a, \
            login(broker, "edge-b") as edge_b:
        # Mosquitto 2.0's acl_file grants every SUBSCRIBE and checks "read" per delivered
        # message; a broker that refused the SUBACK instead would be just as safe.
        for topic_filter in (acks_topic("edge-b"), "ami/v1/+/acks", "#"):
            [granted] = edge_a.subscribe(topic_filter)
            assert granted.value in (1, NOT_AUTHORIZED), f"SUBACK {granted}"
        edge_b.subscribe(acks_topic("edge-b"))
        assert ingest.publish(acks_topic("edge-b"), b"ack-b").value == 0
        assert ingest.publish(acks_topic("edge-a"), b"ack-a").value == 0
        assert edge_b.expect().payload == b"ack-b"
        got = edge_a.expect()  # its own ack, via the "+" and "#" filters
        assert (got.topic, got.payload) == ("ami/v1/edge-a/acks", b"ack-a")
        while True:
            try:
                more = edge_a.messages.get(timeout=QUIET_S)
            except queue.Empty:
                break
            assert more.topic == "ami/v1/edge-a/acks", f"edge-a read {more.topic}"


def test_the_ingest_workers_split_the_edges_batches(broker: Broker) -> None:
    with login(broker, "ingest", "ingest-1") as w1, login(broker, "ingest", "ingest-2") as w2, \
            login(broker, "edge-a") as edge:
        w1.subscribe(SHARED_INTERVALS)
        w2.subscribe(SHARED_INTERVALS)
        sent = {f"b{i}".encode() for i in range(10)}
        for payload in sorted(sent):
            assert edge.publish(intervals_topic("edge-a"), payload).value == 0
        seen: list[bytes] = []
        per_worker = []
        for w in (w1, w2):
            got: list[bytes] = []
            while len(seen) + len(got) < len(sent):
                try:
                    got.append(bytes(w.messages.get(timeout=QUIET_S).payload))
                except queue.Empty:
                    break
            per_worker.append(len(got))
            seen += got
        assert sorted(seen) == sorted(sent)  # each batch to exactly one worker
        assert all(n > 0 for n in per_worker), per_worker


def test_another_share_group_gets_its_own_copy(broker: Broker) -> None:
    with login(broker, "ingest", "ingest-g1") as w1, login(broker, "ingest", "audit-g2") as w2, \
            login(broker, "edge-b") as edge:
        w1.subscribe(SHARED_INTERVALS)
        w2.subscribe(shared_intervals("audit"))
        assert edge.publish(intervals_topic("edge-b"), b"one").value == 0
        assert w1.expect().payload == b"one"
        assert w2.expect().payload == b"one"


@pytest.mark.parametrize(("user", "password"), [("edge-a", "wrong"), ("edge-z", "pw-a"),
                                                ("edge-a", "")])
def test_bad_credentials_are_refused_at_connect(broker: Broker, user: str,
                                                password: str) -> None:
    peer = Peer(broker, user, password, client_id="intruder")
    try:
        rc = peer.connect()
    finally:
        peer.close()
    # 2.0 answers v5 clients "Not authorized" (135) for unknown users and bad passwords alike.
    assert rc.is_failure and rc.value in (NOT_AUTHORIZED, 134), f"CONNACK {rc}"


def test_tls_listener_needs_the_ca(broker: Broker) -> None:
    trusted = Peer(broker, "edge-a", USERS["edge-a"], client_id="edge-a-tls", tls=True,
                   ca_file=broker.ca_file)
    try:
        assert not trusted.connect().is_failure
        # Nobody listens here: 2.0 answers 16 "no matching subscribers", a success code.
        assert not trusted.publish(intervals_topic("edge-a"), b"over tls").is_failure
    finally:
        trusted.close()
    stranger = Peer(broker, "edge-a", USERS["edge-a"], client_id="edge-a-tls2", tls=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.connect()  # system CAs only: the test CA's server certificate is not trusted


def test_queued_batch_survives_a_broker_restart(tmp_path: Path) -> None:
    with running_mosquitto(tmp_path, users=USERS, acl=ACL) as broker:
        with connected(broker, "ingest", USERS["ingest"], client_id="ingest-1",
                       clean_start=False, session_expiry_s=3600) as worker:
            worker.subscribe(SHARED_INTERVALS)
        with login(broker, "edge-a") as edge:
            assert edge.publish(intervals_topic("edge-a"), b"while offline").value == 0
        broker.restart()
        with connected(broker, "ingest", USERS["ingest"], client_id="ingest-1",
                       clean_start=False, session_expiry_s=3600) as worker:
            assert worker.session_present
            msg = worker.expect()
            assert (msg.topic, msg.payload, msg.qos) == ("ami/v1/edge-a/intervals",
                                                        b"while offline", 1)


def test_shipped_broker_config_loads_in_mosquitto(tmp_path: Path) -> None:
    """config/mosquitto/mosquitto.conf, with its paths pointed into tmp, starts and serves TLS."""
    text = (REPO / "config" / "mosquitto" / "mosquitto.conf").read_text()
    pki = write_test_pki(tmp_path / "certs")[0].parent
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "passwd").write_text(password_line("edge-a", USERS["edge-a"]))
    (tmp_path / "acl").write_text(ACL)
    plain, tls = free_port(), free_port()
    for old, new in [("/etc/mosquitto/passwd", str(tmp_path / "passwd")),
                     ("/etc/mosquitto/acl", str(tmp_path / "acl")),
                     ("/var/lib/mosquitto/", f"{data}/"),
                     ("/etc/mosquitto/certs/", f"{pki}/"),
                     ("listener 1883 127.0.0.1", f"listener {plain} 127.0.0.1"),
                     ("listener 8883", f"listener {tls} 127.0.0.1"),
                     ("log_dest syslog", f"log_dest file {tmp_path / 'mosquitto.log'}")]:
        assert old in text, old
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text += "user root\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    shipped = Broker(host="127.0.0.1", port=plain, tls_port=tls, tmp=tmp_path, conf=conf,
                     log_file=tmp_path / "mosquitto.log")
    shipped.start()
    edge = Peer(shipped, "edge-a", USERS["edge-a"], client_id="edge-a", tls=True,
                ca_file=pki / "ca.crt")
    try:
        assert not edge.connect().is_failure
        assert edge.publish(intervals_topic("edge-b"), b"x").value == NOT_AUTHORIZED
        assert "Error" not in shipped.log()
    finally:
        edge.close()
        shipped.stop()


def test_a_username_with_a_wildcard_gets_no_pattern_rights(broker: Broker) -> None:
    """Why edge ids exclude '+': "ami/v1/%u/intervals" would become a wildcard over all
    edges. Mosquitto 2.0 denies pattern access to such names; this pins that it still does."""
    with login(broker, "+", "plus") as plus:
        assert plus.publish(intervals_topic("edge-a"), b"x").value == NOT_AUTHORIZED
        assert plus.publish("ami/v1/+/intervals".replace("+", "edge-b"), b"x").value \
            == NOT_AUTHORIZED


def test_rotated_password_takes_effect_on_reload(tmp_path: Path) -> None:
    """The rotation procedure in mosquitto.conf: new password file, reload, edge reconnects."""
    with running_mosquitto(tmp_path, users={"edge-a": "old"}, acl=ACL) as broker:
        edge = Peer(broker, "edge-a", "old", client_id="edge-a", clean_start=False,
                    session_expiry_s=3600)
        try:
            assert not edge.connect().is_failure
            (tmp_path / "passwd").write_text(password_line("edge-a", "new"))
            broker.reload()
            # Mosquitto re-checks connected clients against the new file and drops this one.
            assert edge.disconnected.wait(2.0), broker.log()[-1000:]
        finally:
            edge.close()
        stale = Peer(broker, "edge-a", "old", client_id="edge-a")
        try:
            assert stale.connect().is_failure
        finally:
            stale.close()
        with connected(broker, "edge-a", "new", client_id="edge-a", clean_start=False,
                       session_expiry_s=3600) as renewed:
            assert renewed.session_present  # its session (and queued acks) kept
