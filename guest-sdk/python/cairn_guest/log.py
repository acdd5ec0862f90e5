"""Structured logging into the host's log output and the run record
(``cairn:plugin/log``)::

    from cairn_guest import log

    log.info("starting")
    log.info("copied index", index="products", docs=1200)
    log.log("warn", "replicas unassigned", {"index": "products", "count": 2})

Field values are formatted with ``str()``. Secret values known to the host
are redacted from what is logged. ``print()`` also reaches the run log
(stdout as info, stderr as warn), capped by the job's ``output-limit``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping

from wit_world.imports import log as _wit

__all__ = ["Level", "log", "trace", "debug", "info", "warn", "error"]


class Level(str, Enum):
    """Severity of a log line."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


_LEVELS = {
    Level.TRACE: _wit.Level.TRACE,
    Level.DEBUG: _wit.Level.DEBUG,
    Level.INFO: _wit.Level.INFO,
    Level.WARN: _wit.Level.WARN,
    Level.ERROR: _wit.Level.ERROR,
}


def log(level: Level | str, message: str, fields: Mapping[str, Any] | None = None) -> None:
    """Emit one line at ``level`` (a :class:`Level` or its name, e.g.
    ``"warn"``) with key/value ``fields``."""
    try:
        wit_level = _LEVELS[Level(level.lower() if isinstance(level, str) else level)]
    except ValueError:
        raise ValueError(
            f"unknown log level {level!r}: expected trace, debug, info, warn or error"
        ) from None
    wit_fields = [_wit.Field(key=str(k), value=str(v)) for k, v in (fields or {}).items()]
    _wit.log(wit_level, str(message), wit_fields)


def trace(message: str, **fields: Any) -> None:
    """Log at trace level, with ``key=value`` fields."""
    log(Level.TRACE, message, fields)


def debug(message: str, **fields: Any) -> None:
    """Log at debug level, with ``key=value`` fields."""
    log(Level.DEBUG, message, fields)


def info(message: str, **fields: Any) -> None:
    """Log at info level, with ``key=value`` fields."""
    log(Level.INFO, message, fields)


def warn(message: str, **fields: Any) -> None:
    """Log at warn level, with ``key=value`` fields."""
    log(Level.WARN, message, fields)


def error(message: str, **fields: Any) -> None:
    """Log at error level, with ``key=value`` fields."""
    log(Level.ERROR, message, fields)
