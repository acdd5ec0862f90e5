"""Running granted programs, argv only, never through a shell
(``cairn:plugin/shell``)::

    from cairn_guest import shell

    output = (
        shell.Command("psql", "--no-psqlrc", "-tAc", "show server_version")
        .env("PGPASSWORD", "{{secret:pg-password}}")
        .timeout(10)
        .run()
        .check()
    )
    version = output.stdout_text.strip()

The environment starts empty; values may contain ``{{secret:NAME}}``, which
the host substitutes. Output is captured up to the host's cap. For bulk data
use :func:`cairn_guest.storage.create_from_command`, which streams a
command's stdout into the repository host-side.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from wit_world.imports import shell as _wit

from ._wit import call
from .errors import Failed

__all__ = ["Command", "Output", "run"]


class Command:
    """A command to run: a granted program and its arguments. Builder
    methods return the command itself, so calls chain."""

    def __init__(self, program: str, *args: str) -> None:
        """A command running ``program``, a name granted in
        ``allow.commands`` (for example ``pg_dump``), with ``args``."""
        self._program = str(program)
        self._args: list[str] = [str(a) for a in args]
        self._env: list[tuple[str, str]] = []
        self._cwd: str | None = None
        self._timeout_ms: int | None = None
        self._stdin: bytes | None = None

    def arg(self, arg: str) -> Command:
        """Add one argument, passed as it is (no shell expansion)."""
        self._args.append(str(arg))
        return self

    def args(self, args: Iterable[str]) -> Command:
        """Add arguments."""
        self._args.extend(str(a) for a in args)
        return self

    def env(self, key: str, value: str) -> Command:
        """Set an environment variable; the value may contain ``{{secret:NAME}}``."""
        self._env.append((str(key), str(value)))
        return self

    def envs(self, variables: Mapping[str, str]) -> Command:
        """Set several environment variables."""
        for key, value in variables.items():
            self.env(key, value)
        return self

    def cwd(self, directory: str) -> Command:
        """Set the working directory; it must lie under a granted path."""
        self._cwd = str(directory)
        return self

    def timeout(self, seconds: float) -> Command:
        """Kill the command (its whole process group) after ``seconds``."""
        self._timeout_ms = math.ceil(seconds * 1000)
        return self

    def stdin(self, data: bytes | str) -> Command:
        """Feed ``data`` (text is UTF-8 encoded) to the command's standard
        input (for :meth:`run` only; the storage functions ignore it)."""
        self._stdin = data.encode() if isinstance(data, str) else bytes(data)
        return self

    @property
    def program(self) -> str:
        """The program name."""
        return self._program

    def get_args(self) -> list[str]:
        """The arguments."""
        return list(self._args)

    def to_wit(self) -> _wit.Command:
        """The generated ``command`` record (used by :mod:`~cairn_guest.storage`)."""
        return _wit.Command(
            program=self._program,
            args=list(self._args),
            env=list(self._env),
            cwd=self._cwd,
            timeout_ms=self._timeout_ms,
        )

    def run(self) -> Output:
        """Run the command and wait for it. A non-zero exit is an
        :class:`Output`, not an error; use :meth:`Output.check` to make it one.

        Raises :class:`~cairn_guest.Denied` for a program the job does not
        grant, :class:`~cairn_guest.NotFound` for a granted program that is
        not installed, :class:`~cairn_guest.Limit` on timeout.
        """
        return Output.from_wit(call(_wit.run, self.to_wit(), self._stdin), self._program)

    def __repr__(self) -> str:
        return f"Command({', '.join(repr(a) for a in [self._program, *self._args])})"


def run(program: str, *args: str) -> Output:
    """Run ``program`` with ``args`` and wait for it: ``Command(program,
    *args).run()``."""
    return Command(program, *args).run()


class Output:
    """How a command ended and what it printed."""

    __slots__ = ("exit_code", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "program")

    def __init__(
        self,
        exit_code: int | None,
        stdout: bytes,
        stderr: bytes,
        stdout_truncated: bool = False,
        stderr_truncated: bool = False,
        program: str = "",
    ) -> None:
        #: Exit code; ``None`` when the process was killed by a signal.
        self.exit_code = exit_code
        #: Captured standard output, at most the host's output cap.
        self.stdout = bytes(stdout)
        #: Captured standard error, at most the host's output cap.
        self.stderr = bytes(stderr)
        #: Whether stdout was cut at the cap.
        self.stdout_truncated = stdout_truncated
        #: Whether stderr was cut at the cap.
        self.stderr_truncated = stderr_truncated
        #: The program that produced this output.
        self.program = program

    @staticmethod
    def from_wit(output: _wit.Output, program: str) -> Output:
        """The output of ``program`` from the generated ``output`` record."""
        return Output(
            output.exit_code,
            output.stdout,
            output.stderr,
            output.stdout_truncated,
            output.stderr_truncated,
            program,
        )

    @property
    def success(self) -> bool:
        """Whether the command exited with code 0."""
        return self.exit_code == 0

    @property
    def stdout_text(self) -> str:
        """Standard output as text (invalid UTF-8 replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        """Standard error as text (invalid UTF-8 replaced)."""
        return self.stderr.decode("utf-8", "replace")

    def last_stderr_line(self) -> str | None:
        """The last non-empty line of standard error, if any."""
        for line in reversed(self.stderr_text.splitlines()):
            if line.strip():
                return line.strip()
        return None

    def check(self) -> Output:
        """The output itself if the command exited with code 0.

        Raises :class:`~cairn_guest.Failed` otherwise:
        ``command `pg_dump` exited with code 1: <last stderr line>``.
        """
        if self.success:
            return self
        if self.exit_code is None:
            how = "was killed by a signal"
        else:
            how = f"exited with code {self.exit_code}"
        message = f"command `{self.program}` {how}"
        line = self.last_stderr_line()
        if line:
            message += f": {line}"
        raise Failed(message)

    def __repr__(self) -> str:
        return (
            f"Output(program={self.program!r}, exit_code={self.exit_code!r}, "
            f"stdout={len(self.stdout)} bytes, stderr={len(self.stderr)} bytes)"
        )
