"""Progress reports, shown as a progress bar and kept in the run record
(``cairn:plugin/progress``)::

    from cairn_guest import progress

    progress.report(3, 10)                     # 3 of 10 items done
    progress.report(4096, unit="bytes")        # total unknown
"""

from __future__ import annotations

from enum import Enum

from wit_world.imports import progress as _wit

__all__ = ["Unit", "report"]


class Unit(str, Enum):
    """What ``done`` and ``total`` count."""

    #: Bytes transferred.
    BYTES = "bytes"
    #: Discrete items: documents, rows, files, steps.
    ITEMS = "items"


def report(done: int, total: int | None = None, unit: Unit | str = Unit.ITEMS) -> None:
    """Report that ``done`` units of work are complete, out of ``total`` if
    known. ``unit`` is :class:`Unit` or its name (``"bytes"``, ``"items"``)."""
    try:
        wit_unit = _wit.Unit.BYTES if Unit(unit) is Unit.BYTES else _wit.Unit.ITEMS
    except ValueError:
        raise ValueError(f"unknown progress unit {unit!r}: expected bytes or items") from None
    _wit.report(int(done), None if total is None else int(total), wit_unit)
