"""The one error tree of the gateway.

Library exceptions are translated where a library is imported (``raise ... from exc``),
so callers only ever catch these. Nothing returns ``None`` for failure.
"""

from __future__ import annotations

from pathlib import Path


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """Invalid configuration: names the file, the key path and the fix."""

    def __init__(self, message: str, *, file: Path | str | None = None, key: str = "",
                 fix: str = "") -> None:
        self.file = str(file) if file is not None else None
        self.key = key
        self.fix = fix
        self.reason = message
        where = f"{self.file}" if self.file else "config"
        if key:
            where += f": {key}"
        text = f"{where}: {message}"
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)


class DriverError(GatewayError):
    """Reading a device failed. ``device`` names the endpoint (host:port/unit, port)."""

    def __init__(self, message: str, *, device: str = "") -> None:
        self.device = device
        super().__init__(f"{device}: {message}" if device else message)


class ConnectError(DriverError):
    """The device or its bus could not be reached (refused, unplugged, unresolvable)."""


class DeviceTimeout(DriverError):
    """The device did not answer in time."""


class ProtocolError(DriverError):
    """The device answered with bytes that break the protocol (CRC, framing, length)."""


class DeviceError(DriverError):
    """The device answered with an exception or error code of its protocol."""

    def __init__(self, message: str, *, code: int, device: str = "",
                 retryable: bool = False) -> None:
        self.code = code
        self.retryable = retryable
        super().__init__(f"{message} (code {code})", device=device)


class SinkError(GatewayError):
    """A store or uplink refused or failed a write. ``retryable`` says if trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)


class DataError(GatewayError):
    """Input that cannot be used (a bad CSV row, a garbage payload): quarantined, not dropped."""

    def __init__(self, message: str, *, source: str = "") -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)
