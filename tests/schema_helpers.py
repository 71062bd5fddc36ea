"""Validating documents against maintkit's JSON Schemas the way an editor does (jsonschema, Draft 2020-12)."""

from __future__ import annotations

import datetime
from functools import cache
from typing import Any

import jsonschema

from maintkit.schema import inventory_schema, playbook_schema


@cache
def validator(kind: str) -> jsonschema.Draft202012Validator:
    """A Draft 2020-12 validator of ``maint schema KIND`` (the schema itself checked first)."""
    schema = playbook_schema() if kind == "playbook" else inventory_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def json_view(data: Any) -> Any:
    """YAML data as an editor's YAML 1.2 reader sees it: a bare ``on`` key is the string "on"
    (YAML 1.1 reads it as true), dates are strings."""
    if isinstance(data, dict):
        return {("on" if k is True else str(k)): json_view(v) for k, v in data.items()}
    if isinstance(data, list):
        return [json_view(v) for v in data]
    if isinstance(data, datetime.date):
        return data.isoformat()
    return data


def schema_errors(kind: str, data: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Every schema error of ``data``: (path in the document, the failing JSON Schema keyword), sorted."""
    errors = validator(kind).iter_errors(json_view(data))
    return sorted(((tuple(e.absolute_path), str(e.validator)) for e in errors), key=repr)


def describe(kind: str, data: Any) -> str:
    """The schema errors of ``data`` for an assertion message."""
    errors = validator(kind).iter_errors(json_view(data))
    return "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors)
