"""Invocation counters: the interface, in memory, and on disk surviving crashes.

Security suite 0 uses IV = system title || invocation counter with the same key for
every frame, and GCM with a repeated IV under one key gives away the keystream and
the authentication subkey. So our outgoing counter must never repeat, across
restarts and crashes (Green Book 9.2.7.2). :class:`InvocationCounterStore`
reserves counters in blocks: before handing out counter n it has written a high-water
mark above n to disk, and a new store on the same file starts at that mark. A crash
costs at most one unused block and the file is written once per block, not per frame.

The last counter accepted from each peer (system title, key set) is kept in the same
file so a frame recorded before a restart cannot be replayed after it. It is written
every ``received_sync_every`` accepted frames (1 by default: replay-safe across a
crash, at one small write per received frame; a larger value trades at most that many
replayable frames after a crash for fewer writes to flash).

:class:`MemoryCounters` keeps the same state in memory only (tests, the simulator).

Writes are atomic: a temporary file in the same directory, fsync, rename over the
old one, fsync of the directory. A lock file keeps a second process off the same
counters (two processes reserving from one file would reuse counters).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from gateway.errors import ConfigError, DriverError

__all__ = ["IC_MAX", "CounterExhausted", "CounterFileError", "InvocationCounterStore",
           "InvocationCounters", "MemoryCounters", "ReleasableCounters"]

IC_MAX: Final = 0xFFFF_FFFF      # the invocation counter is 32 bits
_FORMAT: Final = 1


class CounterExhausted(DriverError):
    """Our 32-bit invocation counter is used up: the keys must be changed."""


class CounterFileError(DriverError):
    """The counter file cannot be written: no counter is handed out until it can."""


class InvocationCounters(Protocol):
    """Where a ``security.SecurityContext`` gets and records invocation counters."""

    def next_outgoing(self) -> int:
        """A counter never handed out before under this key; CounterExhausted at 2^32."""
        ...

    def last_received(self, system_title: bytes, key_set: int) -> int | None: ...

    def record_received(self, system_title: bytes, key_set: int, ic: int) -> None: ...


@dataclass(slots=True)
class MemoryCounters:
    """Counters kept in memory only (tests, the simulator): lost with the process."""

    next_ic: int = 1
    received: dict[tuple[bytes, int], int] = field(default_factory=dict)

    def next_outgoing(self) -> int:
        if self.next_ic > IC_MAX:
            raise CounterExhausted("invocation counter exhausted (2^32 frames under this "
                                   "key): change the encryption and authentication keys")
        self.next_ic += 1
        return self.next_ic - 1

    def last_received(self, system_title: bytes, key_set: int) -> int | None:
        return self.received.get((bytes(system_title), key_set))

    def record_received(self, system_title: bytes, key_set: int, ic: int) -> None:
        self.received[(bytes(system_title), key_set)] = ic


class InvocationCounterStore:
    """File-backed :class:`InvocationCounters`: one file per key (per association)."""

    def __init__(self, path: Path | str, *, block: int = 1000, first: int = 1,
                 received_sync_every: int = 1) -> None:
        if block < 1 or received_sync_every < 1:
            raise ValueError("block and received_sync_every are at least 1")
        self.path = Path(path)
        self.block = block
        self.received_sync_every = received_sync_every
        self.writes = 0              # file writes so far (the cost a block saves)
        self._unsynced = 0
        self._lock_fd = _lock(self.path)
        try:
            reserved, received = self._load()
        except BaseException:
            os.close(self._lock_fd)
            raise
        # Every counter below the mark on disk may have been used before a crash.
        self._next = max(reserved, first)
        self._reserved = reserved
        self._received = received

    # --- outgoing --------------------------------------------------------------------

    def next_outgoing(self) -> int:
        if self._next > IC_MAX:
            raise CounterExhausted(
                f"the invocation counter in {self.path} is exhausted (2^32 frames under "
                "these keys): change the encryption and authentication keys, then remove "
                "the counter file")
        if self._next >= self._reserved:
            # On disk first: a counter is used only once a mark above it is durable.
            self._save(reserved=min(self._next + self.block, IC_MAX + 1))
        self._next += 1
        return self._next - 1

    def raise_outgoing(self, at_least: int) -> None:
        """Never hand out a counter below ``at_least`` (the peer has seen ours up to it)."""
        if at_least > self._next:
            self._next = min(at_least, IC_MAX + 1)

    @property
    def next_ic(self) -> int:
        return self._next

    # --- received --------------------------------------------------------------------

    def last_received(self, system_title: bytes, key_set: int) -> int | None:
        return self._received.get(_peer_key(system_title, key_set))

    def record_received(self, system_title: bytes, key_set: int, ic: int) -> None:
        self._received[_peer_key(system_title, key_set)] = ic
        self._unsynced += 1
        if self._unsynced >= self.received_sync_every:
            self._save()

    # --- file ------------------------------------------------------------------------

    def flush(self) -> None:
        """Write received counters not yet on disk (call when an association ends)."""
        if self._unsynced:
            self._save()

    def close(self) -> None:
        if self._lock_fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> InvocationCounterStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _load(self) -> tuple[int, dict[str, int]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0, {}
        except OSError as exc:
            raise self._broken(f"cannot be read ({exc.strerror})") from exc
        try:
            doc = json.loads(text)
            if doc["format"] != _FORMAT:
                raise self._broken(f"has format {doc['format']!r}, expected {_FORMAT}")
            reserved = doc["outgoing_reserved"]
            received = doc["received"]
            if not (isinstance(reserved, int) and 0 <= reserved <= IC_MAX + 1):
                raise self._broken("has no valid outgoing_reserved counter")
            if not (isinstance(received, dict) and all(
                    isinstance(v, int) and 0 <= v <= IC_MAX for v in received.values())):
                raise self._broken("has an invalid received-counter table")
        except (ValueError, KeyError, TypeError) as exc:
            raise self._broken(f"is not a counter file ({type(exc).__name__})") from exc
        return reserved, {str(k): v for k, v in received.items()}

    def _broken(self, what: str) -> ConfigError:
        # Guessing a counter risks reusing one: refuse, and say how to recover safely.
        return ConfigError(
            f"the invocation counter file {what}", file=self.path,
            fix="restore it from a backup; if it is lost, change the keys (a new key may "
                "start counting at 1) and remove the file")

    def _save(self, reserved: int | None = None) -> None:
        reserved = self._reserved if reserved is None else reserved
        doc = {"format": _FORMAT, "outgoing_reserved": reserved,
               "received": dict(sorted(self._received.items()))}
        data = json.dumps(doc, indent=1).encode()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise CounterFileError(
                f"cannot write the invocation counter file {self.path} ({exc.strerror}): "
                "nothing is sent until it can be written") from exc
        self._reserved = reserved
        self.writes += 1
        self._unsynced = 0


def _peer_key(system_title: bytes, key_set: int) -> str:
    return f"{bytes(system_title).hex()}/{key_set}"


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is (POSIX; no-op elsewhere).
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(path: Path) -> int:
    """An exclusive lock on ``<path>.lock``, held while the store is open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    if sys.platform != "win32":
        import fcntl
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(
                "the invocation counter file is in use by another process", file=path,
                fix="stop the other gateway process, or give each its own keys and "
                    "counter file") from exc
    return fd


class ReleasableCounters:
    """An :class:`InvocationCounterStore` opened on first use and let go by
    :meth:`release`: a driver that stops frees the file and its lock (a driver built
    again in the same process, a second gateway after this one), and the next use
    opens it again and goes on above the mark on disk. A release costs at most the
    unused rest of a reserved block."""

    def __init__(self, path: Path | str, **options: int) -> None:
        self.path = Path(path)
        self._options = options
        self._store: InvocationCounterStore | None = None

    def _open(self) -> InvocationCounterStore:
        if self._store is None:
            self._store = InvocationCounterStore(self.path, **self._options)
        return self._store

    def next_outgoing(self) -> int:
        return self._open().next_outgoing()

    def last_received(self, system_title: bytes, key_set: int) -> int | None:
        return self._open().last_received(system_title, key_set)

    def record_received(self, system_title: bytes, key_set: int, ic: int) -> None:
        self._open().record_received(system_title, key_set, ic)

    def release(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()
