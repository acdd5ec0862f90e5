"""`{{name}}`: a Cairn task written in Python.

Build with `./build.sh`; see README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import cairn_guest as cairn
from cairn_guest import Context, Description, Param, log, storage


@dataclass
class Params:
    """The job's `params`, checked: a missing or mistyped param fails the run
    with an `invalid` error naming it."""

    name: str
    greeting: str = "hello"


class {{class}}(cairn.Task):
    def describe(self) -> Description:
        return (
            Description("{{name}}", "0.1.0")
            .summary("Greets someone and keeps the greeting in the snapshot")
            .param(Param.required("name", "Who to greet"))
            .param(Param.optional("greeting", "How to greet", "hello"))
        )

    def backup(self, ctx: Context):
        p = ctx.params_as(Params)
        text = f"{p.greeting}, {p.name}"
        log.info(text, job=ctx.job)
        with storage.create("greeting.txt") as out:
            out.write(text)
        storage.set_note("greeted", p.name)
        return {"greeting": text}

    def restore(self, ctx: Context):
        with storage.open("greeting.txt") as f:
            text = f.read().decode()
        log.info(f"restored: {text}", snapshot=ctx.snapshot)
        return {"greeting": text, "greeted": storage.note("greeted")}


WitWorld = cairn.export_task({{class}})
