"""``maint actions``: the actions there are, how each rolls back, and one action's parameters."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from maintkit.cli.common import die
from maintkit.results import ExitCode


def action_row(name: str, cls: Any) -> dict[str, Any]:
    """What ``maint actions --json`` says of one action class.

    ``reversible`` is the older key, kept for readers of this JSON: true when rollback undoes.
    """
    rollback = cls.rollback_mode()
    return {
        "name": name,
        "summary": cls.summary,
        "rollback": rollback,
        "rollback_reason": cls.rollback_reason,
        "reversible": rollback == "undo",
    }


def _rows(reg: Any) -> list[dict[str, Any]]:
    """One row per registered action; an action that cannot be loaded says why."""
    from maintkit.errors import MaintkitError

    rows = []
    for n in reg.names():
        try:
            cls = reg.get(n)
        except MaintkitError as exc:
            summary = f"(cannot load: {exc})"
            rows.append({"name": n, "summary": summary, "rollback": None, "rollback_reason": "", "reversible": False})
            continue
        rows.append(action_row(n, cls))
    return rows


def _print_list(rows: list[dict[str, Any]]) -> None:
    width = max([len("action")] + [len(str(r["name"])) for r in rows])
    click.echo(f"{'action':<{width}}  rollback  summary")
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['rollback'] or '?':<8}  {r['summary']}")


def rollback_line(cls: Any) -> str:
    """``rollback: noop (a cleared cache refills itself)``; the reason only when there is one."""
    reason = cls.rollback_reason
    return f"rollback: {cls.rollback_mode()}" + (f" ({reason})" if reason else "")


#: "(default minor)" or "(default: X)" in a description: the real default of a field whose default is None
_STATED_DEFAULT = re.compile(r"\s*\(default:? ([^()]*)\)")
_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


def type_text(spec: dict[str, Any], optional: bool = True) -> str:
    """A parameter's type for people: ``patch | minor | major | none``, ``list of string``, ``integer >= 1``.

    ``null`` is left out when it only means "not given" (``optional``).
    """
    if "enum" in spec:
        return " | ".join(_literal(v) for v in spec["enum"])
    if "const" in spec:
        return _literal(spec["const"])
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in spec:
        alts = [a for a in spec["anyOf"] if not (optional and a.get("type") == "null")]
        return " | ".join(dict.fromkeys(type_text(a, optional=False) for a in alts)) or "null"
    typ = spec.get("type")
    if typ == "array":
        return "list of " + type_text(spec["items"], optional=False) if spec.get("items") else "list"
    if typ == "object":
        values = spec.get("additionalProperties")
        return "mapping of " + type_text(values, optional=False) if isinstance(values, dict) and values else "mapping"
    bounds = [f"{op} {spec[key]}" for key, op in _BOUNDS if key in spec]
    return " ".join([str(typ or "any"), ", ".join(bounds)]).strip()


def _literal(value: Any) -> str:
    """A default or an allowed value as written in YAML: strings bare, the rest as JSON.

    A nested block's default shows only what differs from its fields' defaults (listed under it).
    """
    from pydantic_core import to_jsonable_python

    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", exclude_defaults=True)
    return json.dumps(to_jsonable_python(value))


def _default_and_description(spec: dict[str, Any], field: Any, required: bool) -> tuple[str | None, str, bool]:
    """(``required`` / ``default: X`` / None, the description, whether null only means "not given").

    A field whose default is None and whose description states ``(default X)`` shows X: the
    value the action really uses (the statement moves out of the description).
    """
    desc = " ".join(str(spec.get("description", "")).split())
    if field.is_required() if field is not None else required:
        return "required", desc, False
    value = field.get_default(call_default_factory=True) if field is not None else spec.get("default")
    if value is not None:
        return f"default: {_literal(value)}", desc, False
    stated = _STATED_DEFAULT.search(desc)
    if stated:
        return f"default: {stated.group(1)}", (desc[: stated.start()] + desc[stated.end() :]).strip(), True
    return None, desc, True


def param_lines(
    name: str, spec: dict[str, Any], field: Any, indent: int, width: int, required: bool = False
) -> list[str]:
    """The lines ``maint actions NAME`` shows for one parameter: type, default, description.

    ``field`` is the pydantic field (for defaults made by factories), or None for the fields
    of a nested model (the schema's default and ``required`` are used then).
    """
    import textwrap

    default, desc, optional = _default_and_description(spec, field, required)
    head = " " * indent + f"{name}: {type_text(spec, optional)}" + (f" ({default})" if default else "")
    body = textwrap.wrap(desc, max(30, width - indent - 4), break_long_words=False, break_on_hyphens=False)
    return [head, *(" " * (indent + 4) + line for line in body)]


def _refs(spec: dict[str, Any]) -> list[str]:
    """The models a parameter is made of (``$ref`` names, also inside lists and alternatives)."""
    found = []
    todo = [spec]
    while todo:
        item = todo.pop(0)
        if "$ref" in item:
            found.append(str(item["$ref"]).rsplit("/", 1)[-1])
        todo.extend(a for a in item.get("anyOf", []) if isinstance(a, dict))
        todo.extend(item[key] for key in ("items", "additionalProperties") if isinstance(item.get(key), dict))
    return list(dict.fromkeys(found))


def _print_action(name: str, cls: Any, schema: dict[str, Any]) -> None:
    import shutil

    width = max(60, shutil.get_terminal_size((100, 24)).columns)
    click.echo(f"{name}: {cls.summary}")
    click.echo(rollback_line(cls))
    doc = (cls.__doc__ or "").strip()
    if doc:
        click.echo(f"\n{doc}")
    click.echo("\nparameters:")
    fields = {(f.alias or n): f for n, f in cls.Params.model_fields.items()}
    defs = schema.get("$defs", {})
    for pname, spec in schema.get("properties", {}).items():
        lines = param_lines(pname, spec, fields.get(pname), 2, width)
        for ref in _refs(spec):  # the fields of a nested model, under the parameter
            model = defs.get(ref, {})
            for sub, sub_spec in model.get("properties", {}).items():
                needed = sub in model.get("required", [])
                lines.extend(param_lines(f"{ref}.{sub}", sub_spec, None, 6, width, needed))
        click.echo("\n".join(lines))


@click.command("actions")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(name: str | None, as_json: bool) -> None:
    """List actions (with how each rolls back), or show one action with its parameter schema.

    \b
    rollback: undo  rollback puts back what the step changed
              noop  rollback has nothing to undo and succeeds (the reason is shown)
              none  the step cannot be undone (put it last in a stage)
    """
    from maintkit.errors import MaintkitError
    from maintkit.registry import default_registry

    reg = default_registry()
    try:
        if name is None:
            rows = _rows(reg)
        else:
            cls = reg.get(name)
    except MaintkitError as exc:
        hint = reg.suggest(name) if name else None
        die(f"error: {exc}" + (f" (did you mean {hint!r}?)" if hint else ""), ExitCode.INPUT)
    if name is None:
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            _print_list(rows)
        return
    schema = cls.Params.model_json_schema()
    if as_json:
        click.echo(json.dumps({**action_row(name, cls), "params": schema}, indent=2))
        return
    _print_action(name, cls, schema)
