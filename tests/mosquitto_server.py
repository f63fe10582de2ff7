"""A real Mosquitto (Debian's 2.0 package) on free ports in a temporary directory.

``running_mosquitto(tmp, users=..., acl=..., tls=...)`` writes ``mosquitto.conf`` into
``tmp`` (a plain listener on 127.0.0.1, optionally a TLS listener with a throwaway CA,
persistence and the log in ``tmp``), starts ``mosquitto -c``, waits until the ports
accept connections and yields a ``Broker``. ``Broker.restart()`` stops it (SIGTERM, so it
saves its persistence file) and starts it again on the same ports. As root, Mosquitto
would drop to the ``mosquitto`` user and lose access to ``tmp``, hence ``user root``.
Passwords are written in Mosquitto 2.0's own ``$7$`` (PBKDF2-SHA512) format, so no
``mosquitto_passwd`` run is needed per user.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.influx_server import stop

MOSQUITTO = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") \
    else shutil.which("mosquitto")
SKIP_REASON = ("mosquitto is not installed: apt-get install mosquitto (Debian's Mosquitto 2.0) "
               "to run the MQTT broker tests")
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default in 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def password_line(user: str, password: str) -> str:
    """One password-file line in Mosquitto 2.0's ``$7$`` format (what mosquitto_passwd writes)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"{user}:$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}\n"


@dataclass
class Broker:
    """A running broker. ``tls_port``/``ca_file`` are set when started with ``tls=True``."""

    host: str
    port: int
    tmp: Path
    conf: Path
    log_file: Path
    tls_port: int | None = None
    ca_file: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        exe = require_mosquitto()
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        ports = [self.port] + ([self.tls_port] if self.tls_port is not None else [])
        _wait_listening(self.host, ports, self._proc, self.log_file)

    def stop(self) -> None:
        """SIGTERM (Mosquitto saves its persistence file), then SIGKILL after 5 s."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc)

    def restart(self) -> None:
        """Stop and start again on the same ports, keeping the persisted sessions."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files (what ``systemctl reload``
        does), re-checking the clients already connected."""
        assert self._proc is not None, "broker is not running"
        self._proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def require_mosquitto() -> str:
    if MOSQUITTO is None:
        pytest.skip(SKIP_REASON)
    return MOSQUITTO


def _config(broker: Broker, *, password_file: Path | None, acl_file: Path | None,
            persistence: bool, cert: tuple[Path, Path] | None) -> str:
    lines = [
        "per_listener_settings false",
        f"allow_anonymous {'false' if password_file else 'true'}",
        f"log_dest file {broker.log_file}",
        "log_type all",
        "log_timestamp_format %H:%M:%S",
        "connection_messages true",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {broker.tmp / 'data'}/",
        "autosave_interval 0",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # otherwise it drops to 'mosquitto' and cannot write tmp
    if password_file:
        lines.append(f"password_file {password_file}")
    if acl_file:
        lines.append(f"acl_file {acl_file}")
    lines.append(f"listener {broker.port} {broker.host}")
    if cert is not None and broker.tls_port is not None and broker.ca_file is not None:
        certfile, keyfile = cert
        lines += [f"listener {broker.tls_port} {broker.host}", f"cafile {broker.ca_file}",
                  f"certfile {certfile}", f"keyfile {keyfile}", "require_certificate false"]
    return "\n".join(lines) + "\n"


@contextmanager
def running_mosquitto(tmp: Path, *, users: dict[str, str] | None = None, acl: str | None = None,
                      tls: bool = False, persistence: bool = True) -> Iterator[Broker]:
    """Run Mosquitto until the block ends. ``acl`` is the text of an ACL file."""
    require_mosquitto()
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "data").mkdir(exist_ok=True)
    broker = Broker(host="127.0.0.1", port=free_port(), tmp=tmp,
                    conf=tmp / "mosquitto.conf", log_file=tmp / "mosquitto.log")
    password_file = acl_file = None
    if users is not None:
        password_file = tmp / "passwd"
        password_file.write_text("".join(password_line(u, p) for u, p in users.items()))
        password_file.chmod(0o600)
    if acl is not None:
        acl_file = tmp / "acl"
        acl_file.write_text(acl)
    cert = None
    if tls:
        broker.tls_port = free_port()
        broker.ca_file, *cert_key = write_test_pki(tmp / "pki")
        cert = (cert_key[0], cert_key[1])
    broker.conf.write_text(_config(broker, password_file=password_file, acl_file=acl_file,
                                   persistence=persistence, cert=cert))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@asynccontextmanager
async def mosquitto_server(tmp: Path, *, users: dict[str, str] | None = None,
                           acl: str | None = None, tls: bool = False,
                           persistence: bool = True) -> AsyncIterator[Broker]:
    """``running_mosquitto`` for async tests (start and stop off the event loop)."""
    cm = running_mosquitto(tmp, users=users, acl=acl, tls=tls, persistence=persistence)
    broker = await asyncio.to_thread(cm.__enter__)
    try:
        yield broker
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


def write_test_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ami test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


def _wait_listening(host: str, ports: list[int], proc: subprocess.Popen[bytes],
                    log: Path) -> None:
    deadline = time.monotonic() + 10
    pending = list(ports)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited ({proc.returncode}): "
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((host, pending[0]), timeout=0.5):
                pending.pop(0)
                continue
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(5)
                raise RuntimeError(f"mosquitto did not listen on {host}:{pending[0]} within "
                                   f"10 s: {log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.01)
