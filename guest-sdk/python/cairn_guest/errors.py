"""Errors: one exception class per case of the WIT ``error`` variant.

Every fallible SDK call raises a subclass of :class:`Error` when the host
refuses or fails a request, keeping the host's case: a request to an origin
the job does not grant raises :class:`Denied`, whose message names the
missing grant. Raise them yourself to choose the case a run fails with::

    if not params.get("url"):
        raise cairn_guest.Invalid("invalid params: missing field `url`")

What a task or function raises reaches the host as follows:

- an :class:`Error` subclass becomes its own case (``Invalid`` → ``invalid``);
  an error from the host that is not caught is reported unchanged;
- any other exception becomes ``failed``, with ``str(exc)`` as the message
  (the exception's class name when that is empty), followed by the messages
  of its ``raise … from …`` causes, joined by ``": "`` as in the Rust SDK.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "Error",
    "Denied",
    "Invalid",
    "NotFound",
    "Limit",
    "Unsupported",
    "Failed",
    "KINDS",
    "error_for_kind",
    "message_of",
]


class Error(Exception):
    """Base class of the SDK's errors; ``kind`` is the WIT case name.

    ``Error`` itself is never raised by the SDK; catch it to handle every
    host error, or a subclass for one case.
    """

    #: The WIT case: ``denied``, ``invalid``, ``not-found``, ``limit``,
    #: ``unsupported`` or ``failed``.
    kind: ClassVar[str] = "failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = str(message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def context(self, context: str) -> Error:
        """The same error (same case) with ``context`` before its message,
        like ``ErrorContext::context`` in the Rust SDK::

            except cairn_guest.Error as e:
                raise e.context(f"cannot dump index {name}") from None
        """
        return type(self)(f"{context}: {self.message}")


class Denied(Error):
    """The job's grants do not allow the request (origin, program, path,
    secret or function not granted)."""

    kind = "denied"


class Invalid(Error):
    """The request or the params are malformed: a bad URL, an empty argv,
    an unknown artifact name, a missing param."""

    kind = "invalid"


class NotFound(Error):
    """What was asked for does not exist: a granted program that is not
    installed, an artifact missing from the snapshot, an unknown function."""

    kind = "not-found"


class Limit(Error):
    """A limit was reached: a body or output cap, a timeout."""

    kind = "limit"


class Unsupported(Error):
    """The capability is not available here (for example storage writes
    during a restore, or calling functions from a Function module)."""

    kind = "unsupported"


class Failed(Error):
    """The operation was attempted and failed: connection refused, I/O
    error, a remote error, a failing function. Plain exceptions get this
    case."""

    kind = "failed"


#: The error class of each WIT case name.
KINDS: dict[str, type[Error]] = {
    cls.kind: cls for cls in (Denied, Invalid, NotFound, Limit, Unsupported, Failed)
}


def error_for_kind(kind: str, message: str) -> Error:
    """An error of WIT case ``kind`` (``"not-found"`` …) with ``message``."""
    try:
        return KINDS[kind](message)
    except KeyError:
        raise ValueError(
            f"unknown error kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None


def message_of(exc: BaseException) -> str:
    """The message an exception reaches the host with: its own text (its
    class name when that is empty), then each ``raise … from`` cause's,
    joined by ``": "``."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = current.message if isinstance(current, Error) else str(current)
        if isinstance(current, KeyError) and current.args:
            # str(KeyError('url')) is "'url'": say what it is.
            text = f"missing key {current.args[0]!r}"
        parts.append(text or type(current).__name__)
        current = current.__cause__
    return ": ".join(parts)
