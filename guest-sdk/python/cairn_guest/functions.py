"""Calling Function modules from a task (``cairn:plugin/functions``). Tasks
only: in a Function module every call raises
:class:`~cairn_guest.Unsupported`::

    from cairn_guest import functions

    health = functions.call("http-request", {"url": f"{url}/_cluster/health"})
    status = health["body"]["status"]
"""

from __future__ import annotations

import json
from typing import Any

from ._wit import call as _call
from .errors import Failed, Invalid, Unsupported

try:
    # Only the task world imports `functions`. Imported at the top level,
    # while componentize-py initialises the component at build time: at run
    # time the component's Python files cannot be read, so a later import of
    # a module not loaded yet fails.
    from wit_world.imports import functions as _wit
except ImportError:
    _wit = None

__all__ = ["call"]


def call(name: str, params: Any = None) -> Any:
    """Call function ``name`` (a built-in such as ``http-request``, or one
    declared in the config's ``[functions]``) with ``params`` (any
    JSON-serializable value, ``{}`` by default); returns its decoded JSON
    result. Each call runs in a fresh sandbox with the job's grants.

    Raises :class:`~cairn_guest.Denied` unless the job grants the function in
    ``allow.functions``, :class:`~cairn_guest.NotFound` for an unknown
    function, and whatever error the function itself raises, with its case.
    """
    if _wit is None:
        raise Unsupported(f"cannot call function `{name}`: only Task modules can call functions")
    try:
        text = json.dumps({} if params is None else params)
    except (TypeError, ValueError) as e:
        raise Invalid(f"cannot serialize params for function `{name}`: {e}") from None
    result = _call(_wit.call, name, text)
    try:
        return json.loads(result)
    except ValueError as e:
        raise Failed(f"function `{name}` returned invalid JSON: {e}") from None
