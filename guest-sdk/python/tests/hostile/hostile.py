"""`py-hostile`: a Python task that tries the ways out any language has.

Built and run by `guest-sdk/test-languages.sh` (section "hostile"), which
checks from outside that the host held: the module reports what it tried and
what came back, and the script looks for the secret's value in everything
Cairn recorded.

Params: `attack`, one of

- `secrets`: reads the readable secret `PW`, logs it, prints it to stdout and
  stderr, keeps it in state and in a note, returns it, and runs `sh` with the
  secret bound as `$PW` (printing it, plainly and in base64);
- `secret-error`: fails with an error whose message holds the secret;
- `paths`: artifact names that could escape (`../x`, `/etc/passwd`, …), a
  tree of a directory the job does not grant, a command that is not granted;
- `spin`: loops forever (the job's `timeout` must stop it);
- `memory`: grows a list until the job's `memory` limit refuses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cairn_guest as cairn
from cairn_guest import Context, Description, Param, log, secrets, shell, state, storage


@dataclass
class Params:
    attack: str
    path: str = "/etc"


def attempt(fn):
    """`{"ok": result}` or `{"error": "<kind>: <message>"}`."""
    try:
        return {"ok": fn()}
    except cairn.Error as e:
        return {"error": f"{e.kind}: {e}"}


class Hostile(cairn.Task):
    def describe(self) -> Description:
        return (
            Description("py-hostile", "0.1.0")
            .summary("Tries to leak secrets, escape paths and exhaust limits (a test guest)")
            .param(Param.required("attack", "secrets | secret-error | paths | spin | memory"))
            .param(Param.optional("path", "A directory the job does not grant", "/etc"))
        )

    def backup(self, ctx: Context):
        p = ctx.params_as(Params)
        if p.attack == "secrets":
            value = secrets.get("PW")
            log.info(f"the secret is {value}", secret=value)
            print(f"stdout: {value}")
            print(f"stderr: {value}", file=sys.stderr)
            state.set("pw", value)
            storage.set_note("pw", value)
            with storage.create("pw.txt") as out:
                out.write(value)
            echoed = (
                shell.Command("sh", "-c", 'echo "$PW"; printf %s "$PW" | base64 -w0')
                .env("PW", "{{secret:PW}}")
                .run()
            )
            return {
                "read": value,
                "state": state.get("pw"),
                "echoed": echoed.stdout_text,
            }
        if p.attack == "secret-error":
            raise cairn.Failed(f"leaking {secrets.get('PW')} through an error")
        if p.attack == "paths":
            names = ["../x", "..", "/etc/passwd", "a/../../b", ".cairn", "a\nb", "-rf"]
            outcomes = {}
            for name in names:
                outcomes[name] = attempt(lambda: storage.create(name).finish().name)
            outcomes["tree"] = attempt(lambda: storage.add_tree("etc", p.path).name)
            outcomes["command"] = attempt(lambda: shell.run("cat", "/etc/hostname").stdout_text)
            outcomes["fine.txt"] = attempt(lambda: storage.create("fine.txt").finish().name)
            return outcomes
        if p.attack == "spin":
            n = 0
            while True:
                n += 1
        if p.attack == "memory":
            log.info("growing the heap")
            hog = []
            while True:
                hog.append(bytearray(16 * 1024 * 1024))
        raise cairn.Invalid(f"invalid params: unknown attack `{p.attack}`")

    def restore(self, ctx: Context):
        return {}


WitWorld = cairn.export_task(Hostile)
