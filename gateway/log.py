"""Structured logs: JSON lines off a terminal (for collectors), readable on one.

``Transitions`` keeps a device's failure from being logged at every poll: a device that
fails is logged once as failing, once when it recovers, and its status is kept for the
API in between.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]


def configure(fmt: LogFormat = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


class Transitions:
    """Remembers whether each device is failing, so only changes are logged."""

    def __init__(self, log: structlog.stdlib.BoundLogger) -> None:
        self._log = log
        self._failing: dict[str, str] = {}

    def failed(self, device: str, error: BaseException, **context: object) -> bool:
        """Record a failure; log it if the device was healthy. True if it was a change."""
        first = device not in self._failing
        self._failing[device] = f"{type(error).__name__}: {error}"
        if first:
            self._log.warning("device failing", device=device, error=self._failing[device],
                              **context)
        return first

    def ok(self, device: str, **context: object) -> bool:
        """Record a success; log the recovery if the device was failing."""
        error = self._failing.pop(device, None)
        if error is not None:
            self._log.info("device recovered", device=device, previous_error=error, **context)
            return True
        return False

    def is_failing(self, device: str) -> bool:
        return device in self._failing
