"""Glue between the SDK and the bindings componentize-py generates.

``componentize-py componentize`` generates the bindings of the world it
builds (``-w task`` or ``-w function``) from ``wit/`` as the package
``wit_world`` and puts them on the module's path; nothing here is written by
hand. Authors never import ``wit_world``: they use the wrappers of this SDK.

This module converts between the WIT ``error`` variant and the SDK's
exceptions, in both directions.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from componentize_py_types import Err
from wit_world.imports import types

from .errors import Error, error_for_kind, message_of

T = TypeVar("T")

# The generated dataclass of each WIT `error` case, and back.
_CASES: dict[type, str] = {
    types.Error_Denied: "denied",
    types.Error_Invalid: "invalid",
    types.Error_NotFound: "not-found",
    types.Error_Limit: "limit",
    types.Error_Unsupported: "unsupported",
    types.Error_Failed: "failed",
}
_CLASSES: dict[str, type] = {kind: cls for cls, kind in _CASES.items()}


def error_from_wit(error: Any) -> Error:
    """The SDK exception for a WIT ``error`` value (``types.Error_Denied("…")``
    becomes ``Denied("…")``)."""
    kind = _CASES.get(type(error), "failed")
    return error_for_kind(kind, getattr(error, "value", str(error)))


def error_to_wit(exc: BaseException) -> Any:
    """The WIT ``error`` value an exception reaches the host as: an SDK
    :class:`~cairn_guest.Error` keeps its case, anything else is ``failed``
    (see :mod:`cairn_guest.errors`)."""
    kind = exc.kind if isinstance(exc, Error) else "failed"
    return _CLASSES[kind](message_of(exc))


def call(function: Callable[..., T], *args: Any) -> T:
    """Call a generated import, raising the SDK exception for its error."""
    try:
        return function(*args)
    except Err as err:
        raise error_from_wit(err.value) from None
