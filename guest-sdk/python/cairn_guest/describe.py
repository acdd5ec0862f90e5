"""``Description``: what a module says about itself, built fluently.

``cairn validate`` checks the needs against the job's grants before anything
runs. A needs entry is a literal (``pg_dump``, ``http://127.0.0.1:9200``) or
a reference to a param: ``{url}`` stands for the value of param ``url``
(each string, if it is a list), ``{command[0]}`` for the first element of
list param ``command``. For HTTP a URL is reduced to its origin::

    Description("es-snapshot", "0.1.0")
        .summary("Snapshots an Elasticsearch cluster")
        .param(Param.required("url", "Cluster URL, e.g. http://127.0.0.1:9200"))
        .param(Param.optional("batch", "Documents per scroll page", 100))
        .needs_http("{url}")
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["Description", "Param"]

_NO_DEFAULT: Any = object()


class Param:
    """One param a module accepts, as declared in its :class:`Description`.

    Make one with :meth:`Param.required` or :meth:`Param.optional`.
    """

    __slots__ = ("name", "description", "is_required", "default", "has_default")

    def __init__(
        self,
        name: str,
        description: str,
        *,
        required: bool = False,
        default: Any = _NO_DEFAULT,
    ) -> None:
        #: The name, as written in the job's ``params`` table.
        self.name = name
        #: What the param does.
        self.description = description
        #: Whether the job must set it.
        self.is_required = required
        #: Whether a default is documented.
        self.has_default = default is not _NO_DEFAULT
        #: The default (any JSON value), or ``None``.
        self.default = default if self.has_default else None

    @staticmethod
    def required(name: str, description: str) -> Param:
        """A param the job must set."""
        return Param(name, description, required=True)

    @staticmethod
    def optional(name: str, description: str, default: Any = _NO_DEFAULT) -> Param:
        """A param the job may leave out; ``default`` (any JSON value)
        documents the value used then. Leave it out when there is none."""
        return Param(name, description, default=default)

    def to_dict(self) -> dict[str, Any]:
        """The param as the WIT ``param`` record has it (``default`` as JSON
        text, or ``None``)."""
        return {
            "name": self.name,
            "description": self.description,
            "required": self.is_required,
            "default": json.dumps(self.default) if self.has_default else None,
        }

    def __repr__(self) -> str:
        kind = "required" if self.is_required else "optional"
        default = f", default={self.default!r}" if self.has_default else ""
        return f"Param.{kind}({self.name!r}, {self.description!r}{default})"


class Description:
    """What a module is, the params it takes and the capabilities it needs.

    Every builder method returns the description itself, so calls chain.
    """

    _NEEDS = ("http", "commands", "paths", "secrets", "functions")

    def __init__(self, name: str, version: str) -> None:
        """A module called ``name`` (its short machine name, e.g.
        ``http-request``) at semver ``version``."""
        self._name = name
        self._version = version
        self._summary = ""
        self._params: list[Param] = []
        self._needs: dict[str, list[str]] = {kind: [] for kind in self._NEEDS}

    def summary(self, summary: str) -> Description:
        """The one-line summary shown by ``cairn plugin list``."""
        self._summary = summary
        return self

    def param(self, param: Param) -> Description:
        """Declare a param."""
        self._params.append(param)
        return self

    def needs_http(self, entry: str) -> Description:
        """Declare an HTTP origin or URL the module requests (literal or ``{param}``)."""
        self._needs["http"].append(entry)
        return self

    def needs_command(self, entry: str) -> Description:
        """Declare a program the module runs (literal or ``{param}``)."""
        self._needs["commands"].append(entry)
        return self

    def needs_path(self, entry: str) -> Description:
        """Declare a file-system path the module reads or writes (literal or ``{param}``)."""
        self._needs["paths"].append(entry)
        return self

    def needs_secret(self, entry: str) -> Description:
        """Declare a secret the module injects or reads (literal or ``{param}``)."""
        self._needs["secrets"].append(entry)
        return self

    def needs_function(self, entry: str) -> Description:
        """Declare a function a task calls (literal or ``{param}``)."""
        self._needs["functions"].append(entry)
        return self

    @property
    def name(self) -> str:
        """The module's name."""
        return self._name

    @property
    def version(self) -> str:
        """The module's version."""
        return self._version

    @property
    def params(self) -> list[Param]:
        """The declared params."""
        return list(self._params)

    def to_dict(self) -> dict[str, Any]:
        """The description as the WIT ``description`` record has it."""
        return {
            "name": self._name,
            "version": self._version,
            "summary": self._summary,
            "params": [p.to_dict() for p in self._params],
            "needs": {kind: list(entries) for kind, entries in self._needs.items()},
        }

    def __repr__(self) -> str:
        return f"Description({self._name!r}, {self._version!r})"
