"""Small helpers shared with the Rust SDK: sizes and durations as people
write them."""

from __future__ import annotations

import datetime as _dt
import re

from .errors import Invalid

__all__ = ["format_size", "parse_duration"]


def format_size(size: int) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``3.0 MiB``.

    >>> format_size(512), format_size(1536), format_size(5 << 30)
    ('512 B', '1.5 KiB', '5.0 GiB')
    """
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} EiB"


_UNITS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
_ORDER = list(_UNITS)
_EXAMPLES = "e.g. `500ms`, `30s`, `5m`, `1h30m`, `1d`"
_PART = re.compile(r"(\d+)\s*([A-Za-z]*)\s*")


def parse_duration(text: str) -> _dt.timedelta:
    """Parse a duration the way Cairn's config does: ``500ms``, ``30s``,
    ``5m``, ``2h``, ``1d``, combinations from the largest unit to the
    smallest (``1h30m``, ``1m 30s``), or a plain number of seconds (``90``).
    Units are case-insensitive.

    >>> parse_duration("1m30s")
    datetime.timedelta(seconds=90)

    Raises :class:`~cairn_guest.Invalid` naming what is wrong, with examples.
    """
    trimmed = text.strip()
    if not trimmed:
        raise Invalid(f"a duration is empty; write one like {_EXAMPLES}")
    if trimmed.isdigit():
        return _dt.timedelta(seconds=int(trimmed))
    total_ms = 0
    last = -1
    position = 0
    while position < len(trimmed):
        match = _PART.match(trimmed, position)
        if not match:
            raise Invalid(
                f"`{text}` is not a duration: expected a number at `{trimmed[position:]}` ({_EXAMPLES})"
            )
        number, unit = match.groups()
        lower = unit.lower()
        if lower not in _UNITS:
            why = (
                f"`{number}` has no unit; use ms, s, m, h or d ({_EXAMPLES})"
                if not unit
                else f"unknown unit `{unit}`; use ms, s, m, h or d ({_EXAMPLES})"
            )
            raise Invalid(f"`{text}` is not a duration: {why}")
        index = _ORDER.index(lower)
        if index <= last:
            raise Invalid(
                f"`{text}` is not a duration: write each unit once, largest first (e.g. `1h30m`)"
            )
        last = index
        total_ms += int(number) * _UNITS[lower]
        position = match.end()
    return _dt.timedelta(milliseconds=total_ms)
