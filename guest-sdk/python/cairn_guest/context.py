"""``Context``: what a run gives a task, and typed params."""

from __future__ import annotations

import dataclasses
import json
import types as _pytypes
import typing
from typing import Any, TypeVar, Union

from .errors import Invalid

__all__ = ["Context", "from_params"]

P = TypeVar("P")


class Context:
    """What a run gives a task: the job, the run, the params and, for a
    restore (or forget), the snapshot."""

    __slots__ = ("job", "run_id", "params_json", "snapshot", "_params")

    def __init__(
        self,
        job: str,
        run_id: str,
        params: Any = None,
        snapshot: str | None = None,
    ) -> None:
        """A context for job ``job``, run ``run_id``, with ``params`` (a dict,
        or its JSON text). Runs build it for you; this is for unit tests of
        task logic."""
        #: The job's name.
        self.job = job
        #: This run's identifier.
        self.run_id = run_id
        #: The params exactly as the host sent them: a JSON object as text.
        self.params_json = params if isinstance(params, str) else json.dumps(params or {})
        #: For a restore or a forget, the id of the snapshot; else ``None``.
        self.snapshot = snapshot
        self._params: Any = None

    @property
    def params(self) -> dict[str, Any]:
        """The params as a dict (parsed once).

        Raises :class:`~cairn_guest.Invalid` if the host sent text that is not
        a JSON object.
        """
        if self._params is None:
            try:
                value = json.loads(self.params_json)
            except ValueError as e:
                raise Invalid(f"params are not valid JSON: {e}") from None
            if not isinstance(value, dict):
                raise Invalid(f"params must be a JSON object, got {_json_type(value)}")
            self._params = value
        return self._params

    def params_as(self, cls: type[P], *, allow_unknown: bool = False) -> P:
        """The params as an instance of dataclass ``cls``; see :func:`from_params`."""
        return from_params(self.params, cls, allow_unknown=allow_unknown)

    def __repr__(self) -> str:
        snapshot = f", snapshot={self.snapshot!r}" if self.snapshot else ""
        return f"Context(job={self.job!r}, run_id={self.run_id!r}{snapshot})"


def from_params(params: Any, cls: type[P], *, allow_unknown: bool = False) -> P:
    """``params`` (a dict) as an instance of dataclass ``cls``, checked the way
    the Rust SDK's serde params are.

    A field ``restore_command`` reads the param ``restore-command`` (or
    ``restore_command``); a field with a default is optional. Field types
    ``str``, ``int``, ``float``, ``bool``, ``list[...]``, ``dict[str, ...]``,
    ``X | None`` and ``Any`` are checked::

        @dataclass
        class Params:
            url: str
            batch: int = 100
            headers: dict[str, str] = field(default_factory=dict)

        params = ctx.params_as(Params)

    Raises :class:`~cairn_guest.Invalid` naming the problem, e.g.
    ``invalid params: missing field `url```, for a missing field, a value of
    the wrong type or (unless ``allow_unknown``) an unknown param.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"from_params needs a dataclass type, got {cls!r}")
    if not isinstance(params, dict):
        raise Invalid(f"invalid params: expected a JSON object, got {_json_type(params)}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    by_key: dict[str, dataclasses.Field[Any]] = {}
    for f in fields:
        by_key[f.name] = f
        by_key[f.name.replace("_", "-")] = f
    values: dict[str, Any] = {}
    for key, value in params.items():
        f = by_key.get(key)
        if f is None:
            if allow_unknown:
                continue
            expected = ", ".join(f"`{f.name.replace('_', '-')}`" for f in fields)
            raise Invalid(f"invalid params: unknown field `{key}`, expected one of {expected}")
        _check_type(f"`{key}`", value, hints.get(f.name, Any))
        values[f.name] = value
    for f in fields:
        no_default = (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        if f.name not in values and no_default:
            raise Invalid(f"invalid params: missing field `{f.name.replace('_', '-')}`")
    return cls(**values)


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
          list: "a list", dict: "an object"}


def _check_type(where: str, value: Any, hint: Any) -> None:
    """Raise ``Invalid`` unless ``value`` (decoded JSON) fits type ``hint``."""
    if hint is Any or hint is object:
        return
    origin = typing.get_origin(hint)
    if origin is Union or origin is _pytypes.UnionType:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                _check_type(where, value, option)
                return
            except Invalid as e:
                errors.append(e)
        raise errors[0] if len(errors) == 1 else Invalid(
            f"invalid params: {where} has an unexpected type: {_json_type(value)}"
        )
    base = origin or hint
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base in (str, bool, list, dict):
        ok = isinstance(value, base)
    else:
        return  # a type we do not check (a nested dataclass, a Literal …)
    if not ok:
        raise Invalid(
            f"invalid params: {where} must be {_NAMES[base]}, got {_json_type(value)}"
        )
    args = typing.get_args(hint)
    if base is list and args:
        for i, item in enumerate(value):
            _check_type(f"{where}[{i}]", item, args[0])
    elif base is dict and len(args) == 2:
        for k, item in value.items():
            _check_type(f"{where}.{k}", item, args[1])


def _json_type(value: Any) -> str:
    """How a decoded JSON value is named in messages: ``string "x"``, ``42`` …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"string {json.dumps(value)[:80]}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
