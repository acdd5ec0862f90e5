"""Wall-clock time and sleeping (``cairn:plugin/time``).

Use :func:`sleep` rather than ``time.sleep``: the host does not block a
thread meanwhile and the run's timeout still applies.
"""

from __future__ import annotations

import datetime as _dt
import math

from wit_world.imports import time as _wit

__all__ = ["now", "now_ms", "sleep"]


def now_ms() -> int:
    """Milliseconds since the Unix epoch (UTC)."""
    return _wit.now()


def now() -> _dt.datetime:
    """The current wall-clock time, timezone-aware (UTC)."""
    return _dt.datetime.fromtimestamp(now_ms() / 1000, tz=_dt.timezone.utc)


def sleep(seconds: float | _dt.timedelta) -> None:
    """Suspend the module for ``seconds`` (a number or a ``timedelta``), at
    millisecond resolution, rounded up."""
    if isinstance(seconds, _dt.timedelta):
        seconds = seconds.total_seconds()
    if seconds < 0:
        raise ValueError(f"cannot sleep for a negative time ({seconds} s)")
    _wit.sleep(math.ceil(seconds * 1000))
