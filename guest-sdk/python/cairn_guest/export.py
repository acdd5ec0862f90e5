"""The ``Task`` and ``Function`` base classes and the glue that exports them
as the component's ``cairn:plugin/task`` or ``function`` world.

componentize-py calls the methods of the class named ``WitWorld`` in the
module it builds; :func:`export_task` and :func:`export_function` make that
class from yours::

    class Hello(cairn_guest.Task):
        ...

    WitWorld = cairn_guest.export_task(Hello)
"""

from __future__ import annotations

import json
import traceback
from typing import Any

from componentize_py_types import Err
from wit_world.imports import types

from . import log
from ._wit import error_to_wit
from .context import Context
from .describe import Description
from .errors import Error, Invalid

__all__ = ["Task", "Function", "export_task", "export_function"]


class Task:
    """A Task module: backs up and restores one kind of thing.

    Subclass it, implement :meth:`describe`, :meth:`backup` and
    :meth:`restore` (and :meth:`forget` if the task keeps something outside
    the repository), and export it with :func:`export_task`. Each run makes
    a new instance.
    """

    def describe(self) -> Description:
        """What this task is, its params and needs."""
        raise NotImplementedError("Task.describe")

    def backup(self, ctx: Context) -> Any:
        """Back up. Artifacts written through :mod:`~cairn_guest.storage` form
        the run's snapshot, committed only if this returns. The returned value
        (any JSON-serializable value) is kept in the run record; an exception
        fails the run (see :mod:`cairn_guest.errors`)."""
        raise NotImplementedError("Task.backup")

    def restore(self, ctx: Context) -> Any:
        """Restore from ``ctx.snapshot``; returns a JSON-serializable value."""
        raise NotImplementedError("Task.restore")

    def forget(self, ctx: Context) -> Any:
        """Clean up outside the repository before the host forgets snapshot
        ``ctx.snapshot`` (retention, ``cairn forget``): for example delete the
        Elasticsearch snapshot its notes name. :mod:`~cairn_guest.storage`
        reads that snapshot's notes and artifacts, as in a restore. An
        exception makes the host keep the snapshot and call ``forget`` again
        at the next forget. The default does nothing and returns ``None``."""
        return None


class Function:
    """A Function module: one reusable step a task (or a pipeline) calls.

    Subclass it, implement :meth:`describe` and :meth:`call`, and export it
    with :func:`export_function`.
    """

    def describe(self) -> Description:
        """What this function is, its params and needs."""
        raise NotImplementedError("Function.describe")

    def call(self, params: Any) -> Any:
        """Run with the decoded JSON ``params`` (usually a dict; see
        :func:`~cairn_guest.from_params`); returns a JSON-serializable value.
        An exception is returned to the caller with its case and message."""
        raise NotImplementedError("Function.call")


def export_task(task: type[Task] | Task) -> type:
    """The ``WitWorld`` class exporting ``task`` (a :class:`Task` subclass, or
    an instance) as the ``cairn:plugin/task`` world. Assign it at the top level
    of the module you build: ``WitWorld = export_task(MyTask)``."""
    make = _factory(task, Task)

    class WitWorld:
        def describe(self) -> types.Description:
            return _description_to_wit(make().describe())

        def backup(self, context: types.Context) -> str:
            return _finish("backup", lambda: make().backup(_context(context)))

        def restore(self, context: types.Context) -> str:
            return _finish("restore", lambda: make().restore(_context(context)))

        def forget(self, context: types.Context) -> str:
            return _finish("forget", lambda: make().forget(_context(context)))

    WitWorld.__qualname__ = WitWorld.__name__ = "WitWorld"
    return WitWorld


def export_function(function: type[Function] | Function) -> type:
    """The ``WitWorld`` class exporting ``function`` (a :class:`Function`
    subclass, or an instance) as the ``cairn:plugin/function`` world:
    ``WitWorld = export_function(MyFunction)``."""
    make = _factory(function, Function)

    class WitWorld:
        def describe(self) -> types.Description:
            return _description_to_wit(make().describe())

        def call(self, params: str) -> str:
            def run() -> Any:
                try:
                    decoded = json.loads(params)
                except ValueError as e:
                    raise Invalid(f"params are not valid JSON: {e}") from None
                return make().call(decoded)

            return _finish("call", run)

    WitWorld.__qualname__ = WitWorld.__name__ = "WitWorld"
    return WitWorld


def _factory(target: Any, base: type) -> Any:
    """A callable giving the object whose methods run: a new instance of a
    class per call, or the instance given."""
    if isinstance(target, type):
        if not issubclass(target, base):
            raise TypeError(f"{target.__name__} is not a subclass of cairn_guest.{base.__name__}")
        return target
    if not isinstance(target, base):
        raise TypeError(f"{target!r} is not a cairn_guest.{base.__name__}")
    return lambda: target


def _context(context: types.Context) -> Context:
    return Context(context.job, context.run_id, context.params, context.snapshot)


def _finish(operation: str, run: Any) -> str:
    """Run an export: its value as JSON text, or ``Err`` with the WIT error."""
    try:
        value = run()
    except Exception as exc:  # every error reaches the host as a WIT error
        if not isinstance(exc, Error):
            # A plain exception is usually a bug: keep its traceback in the
            # run's log (at debug level) for the author.
            log.debug("".join(traceback.format_exception(exc)).rstrip())
        raise Err(error_to_wit(exc)) from None
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise Err(types.Error_Failed(
            f"{operation} returned a value that is not JSON: {e}"
        )) from None


def _description_to_wit(description: Description) -> types.Description:
    if not isinstance(description, Description):
        raise TypeError(
            f"describe() must return a cairn_guest.Description, not {type(description).__name__}"
        )
    d = description.to_dict()
    return types.Description(
        name=d["name"],
        version=d["version"],
        summary=d["summary"],
        params=[
            types.Param(
                name=p["name"],
                description=p["description"],
                required=p["required"],
                default=p["default"],
            )
            for p in d["params"]
        ],
        needs=types.Needs(**d["needs"]),
    )
