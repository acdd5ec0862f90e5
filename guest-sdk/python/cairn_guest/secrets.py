"""Reading secret values (``cairn:plugin/secrets``).

Most modules never need this: HTTP header values and command environment
may contain ``{{secret:NAME}}``, which the host replaces without the module
seeing the value. Reading a value needs the job to list the secret in
``allow.readable-secrets``.
"""

from __future__ import annotations

from wit_world.imports import secrets as _wit

from ._wit import call

__all__ = ["get"]


def get(name: str) -> str:
    """The value of secret ``name``.

    Raises :class:`~cairn_guest.Denied` unless the job grants reading it.
    """
    return call(_wit.get, name)
