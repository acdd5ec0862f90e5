"""The Python guest SDK for Cairn: write backup Task and Function modules in
Python, build them into WebAssembly components with componentize-py, and
let a Cairn job run them.

A module subclasses :class:`Task` (or :class:`Function`) and exports it as
the component's world by assigning ``WitWorld``::

    import cairn_guest as cairn
    from cairn_guest import Context, Description, Param, log

    class Hello(cairn.Task):
        def describe(self) -> Description:
            return (
                Description("hello-task", "0.1.0")
                .summary("Greets someone")
                .param(Param.required("name", "Who to greet"))
            )

        def backup(self, ctx: Context):
            name = ctx.params["name"]
            log.info(f"hello, {name}")
            return {"greeting": f"hello, {name}"}

        def restore(self, ctx: Context):
            return {}

    WitWorld = cairn.export_task(Hello)

Host capabilities are small modules: :mod:`log`, :mod:`progress`,
:mod:`time`, :mod:`state`, :mod:`secrets`, :mod:`http`, :mod:`shell`,
:mod:`storage` and :mod:`functions`. Each is deny-by-default: what a module
may reach is decided by the job's grants, and a refusal raises
:class:`Denied` naming the missing grant. Errors map to the WIT ``error``
variant both ways (see :mod:`cairn_guest.errors`).

The module is the control plane and the host the data plane: stream a dump
with :func:`storage.create_from_command` and a directory with
:func:`storage.add_tree` rather than reading bytes into the module.
"""

from . import functions, http, log, progress, secrets, shell, state, storage, time
from .context import Context, from_params
from .describe import Description, Param
from .errors import Denied, Error, Failed, Invalid, Limit, NotFound, Unsupported
from .export import Function, Task, export_function, export_task
from .util import format_size, parse_duration

__version__ = "0.1.0"

__all__ = [
    "Context",
    "Denied",
    "Description",
    "Error",
    "Failed",
    "Function",
    "Invalid",
    "Limit",
    "NotFound",
    "Param",
    "Task",
    "Unsupported",
    "export_function",
    "export_task",
    "format_size",
    "from_params",
    "functions",
    "http",
    "log",
    "parse_duration",
    "progress",
    "secrets",
    "shell",
    "state",
    "storage",
    "time",
]
