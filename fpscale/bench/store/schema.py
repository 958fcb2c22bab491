"""The JSON Schema of summary.json, generated from the typed summary.

``docs/summary.schema.json`` is this module's output, checked in so that
readers outside Python can validate a summary; a test checks that the
shipped file equals what the code generates. Regenerate it after changing
any dataclass of the summary:

    python -m fpscale.bench.store.schema > docs/summary.schema.json

Floats may be null: fpscale writes non-finite numbers (an undefined rate,
an unbounded threshold) as null.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from typing import Any

from fpscale.bench.store.summary import SCHEMA_VERSION, Summary


def _type(tp: Any, defs: dict) -> dict:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": ["number", "null"]}
    if tp is str:
        return {"type": "string"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type(a, defs) for a in args]}
    if origin in (list, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return {"type": "array", "prefixItems": [_type(a, defs) for a in args],
                    "minItems": len(args), "maxItems": len(args)}
        return {"type": "array", "items": _type(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type(args[1], defs)}
    if dataclasses.is_dataclass(tp):
        _define(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    raise TypeError(f"no JSON Schema for {tp!r}")


def _define(cls: type, defs: dict) -> None:
    if cls.__name__ in defs:
        return
    defs[cls.__name__] = {}  # a placeholder, for types that refer to themselves
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        props[f.name] = _type(hints[f.name], defs)
        if not (f.metadata.get("omit_if_none") or f.metadata.get("omit_if_default")):
            required.append(f.name)  # written always, None as null
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    defs[cls.__name__] = {"type": "object", "description": " ".join(doc.split()),
                          "properties": props, "required": required,
                          "additionalProperties": False}


def summary_schema() -> dict:
    """The JSON Schema (draft 2020-12) of the summary.json this fpscale writes."""
    defs: dict = {}
    _define(Summary, defs)
    top = defs.pop("Summary")
    top["properties"]["schema_version"] = {"type": "integer", "const": SCHEMA_VERSION}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "fpscale summary.json", **top,
            "$defs": {k: defs[k] for k in sorted(defs)}}


def schema_text() -> str:
    """The schema as shipped in docs/summary.schema.json."""
    return json.dumps(summary_schema(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
