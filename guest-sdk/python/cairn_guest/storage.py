"""Artifacts of the current run's snapshot (``cairn:plugin/storage``).

Bulk bytes should flow host-side: :func:`create_from_command` stores a
command's stdout and :func:`add_tree` a granted directory without the bytes
passing through the module; :func:`restore_to_command` and
:func:`restore_tree` bring them back. Small artifacts can be written with a
:class:`Writer` and read with a :class:`Reader` (a binary file object)::

    from cairn_guest import shell, storage

    def backup(self, ctx):
        storage.create_from_command("app.dump", shell.Command("pg_dump", "-Fc", "app"))
        storage.add_tree("uploads", "/srv/app/uploads")
        with storage.create("manifest.json") as out:      # finished on success
            json.dump({"format": 1}, out)
        storage.set_note("format", "1")

    def restore(self, ctx):
        with storage.open("manifest.json") as f:
            manifest = json.load(f)
        storage.restore_to_command(
            "app.dump", shell.Command("pg_restore", "-d", "app", "--clean")
        ).check()
        storage.restore_tree("uploads", "/srv/app/uploads", overwrite=True)
"""

from __future__ import annotations

import builtins
import io
from dataclasses import dataclass
from enum import Enum
from typing import Any

from wit_world.imports import storage as _wit

from ._wit import call
from .shell import Command, Output

__all__ = [
    "Artifact",
    "ArtifactKind",
    "Reader",
    "Writer",
    "add_tree",
    "create",
    "create_from_command",
    "list",
    "note",
    "notes",
    "open",
    "restore_to_command",
    "restore_tree",
    "set_note",
]

#: How many bytes a Writer gathers before sending them to the host.
WRITE_BUFFER = 64 * 1024
#: How many bytes a Reader asks the host for at a time.
READ_CHUNK = 64 * 1024


class ArtifactKind(str, Enum):
    """What an artifact holds."""

    #: A single byte stream (a dump).
    STREAM = "stream"
    #: A directory tree with modes, times and symlinks.
    TREE = "tree"


@dataclass(frozen=True)
class Artifact:
    """One artifact of a snapshot."""

    #: Name, unique within the snapshot (for example ``db.dump``).
    name: str
    #: Stream or tree.
    kind: ArtifactKind
    #: Size in bytes (sum of file sizes for a tree).
    size: int

    @staticmethod
    def _from_wit(artifact: _wit.Artifact) -> Artifact:
        kind = ArtifactKind.TREE if artifact.kind == _wit.ArtifactKind.TREE else ArtifactKind.STREAM
        return Artifact(artifact.name, kind, artifact.size)


class Writer:
    """A stream artifact being written (backup runs only). Writes are
    buffered; :meth:`finish` keeps the artifact. Used as a context manager,
    it is finished when the block ends normally and discarded when it
    raises. A writer closed or dropped unfinished is discarded.

    ``write`` takes bytes or text (UTF-8), so ``json.dump(value, writer)``
    works.
    """

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self._buffer = bytearray()
        #: The artifact's name.
        self.name = name
        #: Bytes written so far.
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview | str) -> int:
        """Append ``data``; returns how many bytes (or characters) were taken."""
        if self._inner is None:
            raise ValueError(f"artifact `{self.name}` is already finished or discarded")
        chunk = data.encode() if isinstance(data, str) else bytes(data)
        self._buffer += chunk
        self.written += len(chunk)
        if len(self._buffer) >= WRITE_BUFFER:
            self.flush()
        return len(data)

    def flush(self) -> None:
        """Send buffered bytes to the host."""
        if self._buffer and self._inner is not None:
            call(self._inner.write, bytes(self._buffer))
            self._buffer.clear()

    def finish(self) -> Artifact:
        """Send any buffered bytes and complete the artifact."""
        if self._inner is None:
            raise ValueError(f"artifact `{self.name}` is already finished or discarded")
        self.flush()
        inner, self._inner = self._inner, None
        try:
            return Artifact._from_wit(call(inner.finish))
        finally:
            inner.__exit__(None, None, None)

    def discard(self) -> None:
        """Drop the artifact unfinished (nothing is stored)."""
        if self._inner is not None:
            inner, self._inner = self._inner, None
            self._buffer.clear()
            inner.__exit__(None, None, None)

    close = discard

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and self._inner is not None:
            self.finish()
        else:
            self.discard()


class Reader(io.RawIOBase):
    """A stream artifact being read (restore runs only): a binary file
    object, so ``read()``, ``readline()``, iteration, ``json.load`` and
    ``io.TextIOWrapper`` all work."""

    def __init__(self, inner: Any, name: str) -> None:
        super().__init__()
        self._inner = inner
        self._pending = b""
        #: The artifact's name.
        self.name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._inner is None:
            raise ValueError(f"artifact `{self.name}` is closed")
        if not self._pending:
            self._pending = bytes(call(self._inner.read, max(len(buffer), READ_CHUNK)))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def read_text(self, encoding: str = "utf-8") -> str:
        """The rest of the artifact as text."""
        return self.readall().decode(encoding)

    def close(self) -> None:
        if self._inner is not None:
            inner, self._inner = self._inner, None
            inner.__exit__(None, None, None)
        super().close()


def create(name: str) -> Writer:
    """Start stream artifact ``name`` (backup runs only). Write to it, then
    :meth:`Writer.finish` it (or use it as a context manager).

    Raises :class:`~cairn_guest.Invalid` for a bad or duplicate name,
    :class:`~cairn_guest.Unsupported` during a restore.
    """
    return Writer(call(_wit.create, name), name)


def create_from_command(name: str, command: Command) -> Artifact:
    """Run ``command`` and store its stdout as stream artifact ``name``,
    without the bytes passing through the module (``command``'s stdin is
    not used).

    Raises as :meth:`Command.run <cairn_guest.shell.Command.run>`, and
    :class:`~cairn_guest.Failed` if the command exits non-zero.
    """
    return Artifact._from_wit(call(_wit.create_from_command, name, command.to_wit()))


def add_tree(name: str, path: str) -> Artifact:
    """Add the granted directory (or file) at ``path`` as tree artifact ``name``.

    Raises :class:`~cairn_guest.Denied` for a path the job does not grant,
    :class:`~cairn_guest.NotFound` if it does not exist.
    """
    return Artifact._from_wit(call(_wit.add_tree, name, path))


def set_note(key: str, value: str) -> None:
    """Record a key/value note in the snapshot (for example the name of an
    Elasticsearch snapshot), readable again at restore through :func:`notes`.

    Raises :class:`~cairn_guest.Unsupported` during a restore.
    """
    call(_wit.set_note, key, str(value))


def notes() -> dict[str, str]:
    """Notes of the snapshot being written or restored."""
    return dict(call(_wit.notes))


def note(key: str) -> str | None:
    """Note ``key`` of the snapshot being written or restored, or ``None``."""
    return notes().get(key)


def open(name: str) -> Reader:  # noqa: A001 - the WIT name
    """Open stream artifact ``name`` of the snapshot being restored.

    Raises :class:`~cairn_guest.NotFound` for an artifact the snapshot does
    not hold.
    """
    return Reader(call(_wit.open, name), name)


def restore_to_command(name: str, command: Command) -> Output:
    """Feed stream artifact ``name`` into ``command``'s stdin and wait for it.
    A non-zero exit is an :class:`~cairn_guest.shell.Output`, not an error;
    use :meth:`Output.check <cairn_guest.shell.Output.check>`."""
    return Output.from_wit(call(_wit.restore_to_command, name, command.to_wit()), command.program)


def restore_tree(name: str, target: str, overwrite: bool = False) -> Artifact:
    """Restore tree artifact ``name`` under the granted directory ``target``
    (created if missing). A target that has entries is refused
    (:class:`~cairn_guest.Invalid`) unless ``overwrite``: then restored
    entries replace what is there and other entries stay. The host never
    writes through a symlink."""
    return Artifact._from_wit(call(_wit.restore_tree, name, target, overwrite))


def list() -> builtins.list[Artifact]:  # noqa: A001 - the WIT name
    """Artifacts written so far (backup) or held by the snapshot (restore)."""
    return [Artifact._from_wit(a) for a in call(_wit.list)]
