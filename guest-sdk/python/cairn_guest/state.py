"""Persistent key/value state, private to the job and shared by its runs
(``cairn:plugin/state``)::

    from cairn_guest import state

    runs = state.get_json("runs", 0) + 1
    state.set_json("runs", runs)
"""

from __future__ import annotations

import json
from typing import Any

from wit_world.imports import state as _wit

from ._wit import call
from .errors import Failed, Invalid

__all__ = ["get", "set", "delete", "keys", "get_json", "set_json"]


def get(key: str) -> str | None:
    """The value stored under ``key``, or ``None``."""
    return call(_wit.get, key)


def set(key: str, value: str) -> None:  # noqa: A001 - the WIT name
    """Store ``value`` (text) under ``key``, replacing any previous value."""
    if not isinstance(value, str):
        raise TypeError(f"state.set stores text; use state.set_json for {type(value).__name__}")
    call(_wit.set, key, value)


def delete(key: str) -> None:
    """Remove ``key``. Removing a missing key is not an error."""
    call(_wit.delete, key)


def keys(prefix: str = "") -> list[str]:
    """Keys that start with ``prefix`` (all keys by default), in lexical order."""
    return call(_wit.list_keys, prefix)


def get_json(key: str, default: Any = None) -> Any:
    """The JSON value stored under ``key``, decoded; ``default`` when unset.

    Raises :class:`~cairn_guest.Failed` when the stored value is not JSON.
    """
    text = get(key)
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError as e:
        raise Failed(f"state key `{key}` does not hold JSON: {e}") from None


def set_json(key: str, value: Any) -> None:
    """Store ``value`` as JSON under ``key``."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as e:
        raise Invalid(f"cannot serialize state key `{key}`: {e}") from None
    set(key, text)
