"""`py-http-snapshot`: a Cairn Task written in Python.

Backup fetches a JSON document from an HTTP API and stores it as the stream
artifact `api.json` (written through a storage writer), streams a granted
file into the artifact `file` with `cat` (host-side: the bytes never pass
through the module), optionally asks a Function for one field of the
document, records notes, and counts its runs in the job's state.

Restore reads `api.json` back, feeds the artifact `file` into the granted
`restore-command`, and returns what it restored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import cairn_guest as cairn
from cairn_guest import (
    Context,
    Description,
    Param,
    functions,
    http,
    log,
    progress,
    shell,
    state,
    storage,
    time,
)


@dataclass
class Params:
    """The job's params; `ctx.params_as(Params)` checks them (a missing or
    mistyped one fails the run with `invalid`, naming it)."""

    url: str
    file: str
    restore_command: list[str] = field(default_factory=lambda: ["cat"])
    function: str | None = None
    field: str = "version"


class HttpSnapshot(cairn.Task):
    def describe(self) -> Description:
        return (
            Description("py-http-snapshot", "0.1.0")
            .summary("Stores a JSON document from an HTTP API and a file; restores both (Python)")
            .param(Param.required("url", "URL of the JSON document, e.g. http://127.0.0.1:8080/status"))
            .param(Param.required("file", "File whose bytes are stored, read by `cat`"))
            .param(Param.optional(
                "restore-command",
                "Program and arguments that receive the stored file on stdin at restore",
                ["cat"],
            ))
            .param(Param.optional(
                "function",
                "A Function called with {url, field} whose result is kept as a note",
            ))
            .param(Param.optional("field", "The field the function extracts", "version"))
            .needs_http("{url}")
            .needs_command("cat")
            .needs_command("{restore-command[0]}")
            .needs_function("{function}")
        )

    def backup(self, ctx: Context):
        p = ctx.params_as(Params)
        progress.report(0, 3)

        document = http.get(p.url, timeout=30).raise_for_status().json()
        with storage.create("api.json") as out:
            json.dump(document, out, indent=2, sort_keys=True)
        progress.report(1, 3)

        copied = storage.create_from_command("file", shell.Command("cat", p.file))
        progress.report(2, 3)

        storage.set_note("source-url", p.url)
        storage.set_note("file", p.file)
        storage.set_note("fetched-at", time.now().isoformat())
        value = None
        if p.function:
            value = functions.call(p.function, {"url": p.url, "field": p.field})
            storage.set_note("field", json.dumps(value))

        runs = state.get_json("runs", 0) + 1
        state.set_json("runs", runs)
        progress.report(3, 3)
        log.info("stored the document and the file", url=p.url, file_bytes=copied.size, runs=runs)
        return {
            "artifacts": {a.name: a.size for a in storage.list()},
            "field": value,
            "runs": runs,
        }

    def restore(self, ctx: Context):
        p = ctx.params_as(Params)
        notes = storage.notes()
        with storage.open("api.json") as f:
            document = json.load(f)
        if not p.restore_command:
            raise cairn.Invalid("invalid params: `restore-command` is empty")
        command = shell.Command(*p.restore_command)
        output = storage.restore_to_command("file", command).check()
        log.info("restored", snapshot=ctx.snapshot, program=command.program)
        return {
            "snapshot": ctx.snapshot,
            "notes": notes,
            "document": document,
            "file": {
                "program": command.program,
                "exit-code": output.exit_code,
                "stdout": output.stdout_text,
            },
        }


WitWorld = cairn.export_task(HttpSnapshot)
