"""Drivers: each knows how to talk to one kind of device, nothing more.

Scheduling, retries, backoff, bus ownership and logging context belong to the ingest
framework; a driver connects, reads one poll's worth of values and closes. The one
retry a driver makes is within a poll, for a device that answers it is busy: only the
protocol can tell that apart from a failure worth backing off from.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gateway.model import Reading

__all__ = ["KeepsHistory", "PolledDriver"]


class PolledDriver(Protocol):
    """A device the gateway asks for values on its own schedule.

    ``read`` returns one :class:`~gateway.model.Reading` per point of the device's
    profile: exact ``Decimal`` values in the point's unit, ``at`` taken from the
    injected clock when the reply carrying the value arrived. It raises only
    :mod:`gateway.errors` types: ``ConnectError``, ``DeviceTimeout``, ``ProtocolError``,
    ``DeviceError`` (with ``code`` and ``retryable``), and ``DataError`` for a value
    that is not a number (NaN, infinity). A failed poll returns nothing partial.
    """

    #: The network endpoint, for logs ("127.0.0.1:5020/unit 1"); not the meter's identity.
    device: str

    async def connect(self) -> None: ...

    async def read(self) -> list[Reading]: ...

    async def close(self) -> None: ...


@runtime_checkable
class KeepsHistory(Protocol):
    """A driver whose device keeps its own history (a DLMS meter's load profile): what
    the gateway could not keep can be read from the device again."""

    def rewind(self) -> None:
        """Read from what the store holds at the next poll, not from what this driver
        last handed out."""
        ...
