"""`py-json-field`: a Cairn Function written in Python.

Params: `url` (a JSON document), `field` (a dotted path into it, e.g.
`version.major` or `items.0.name`) and optional `headers` (values may contain
`{{secret:NAME}}`). Result: `{"status": 200, "field": "...", "value": ...}`.
A field the document does not have is a `not-found` error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cairn_guest as cairn
from cairn_guest import Description, Param, from_params, http


@dataclass
class Params:
    url: str
    field: str
    headers: dict[str, str] = field(default_factory=dict)


def lookup(document: Any, path: str) -> Any:
    """The value at dotted `path` in `document` (list items by index)."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise cairn.NotFound(f"the document has no field `{path}` (no `{part}`)")
    return value


class JsonField(cairn.Function):
    def describe(self) -> Description:
        return (
            Description("py-json-field", "0.1.0")
            .summary("GETs a JSON document and returns one field of it (Python)")
            .param(Param.required("url", "URL of the JSON document"))
            .param(Param.required("field", "Dotted path of the field, e.g. version.major"))
            .param(Param.optional("headers", "Request headers; values may contain {{secret:NAME}}", {}))
            .needs_http("{url}")
        )

    def call(self, params: Any) -> Any:
        p = from_params(params, Params)
        response = http.get(p.url, headers=p.headers).raise_for_status()
        try:
            value = lookup(response.json(), p.field)
        except cairn.NotFound as e:
            raise e.context(f"GET {p.url}") from None
        return {"status": response.status, "field": p.field, "value": value}


WitWorld = cairn.export_function(JsonField)
