"""``maint actions``: the actions there are, how each rolls back, and one action's parameters."""

from __future__ import annotations

import json
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


def _param_type(spec: dict[str, Any]) -> str:
    """A parameter's JSON Schema type, or its alternatives joined with ``|``."""
    typ = spec.get("type")
    if typ:
        return str(typ)
    return " | ".join(str(a.get("type", a.get("$ref", "?")).split("/")[-1]) for a in spec.get("anyOf", []))


def _print_action(name: str, cls: Any, schema: dict[str, Any]) -> None:
    click.echo(f"{name}: {cls.summary}")
    click.echo(rollback_line(cls))
    doc = (cls.__doc__ or "").strip()
    if doc:
        click.echo(f"\n{doc}")
    click.echo("\nparameters:")
    required = set(schema.get("required", []))
    for pname, spec in schema.get("properties", {}).items():
        default = f" (default {json.dumps(spec['default'])})" if "default" in spec else ""
        req = " (required)" if pname in required else ""
        desc = spec.get("description", "")
        click.echo(f"  {pname}: {_param_type(spec)}{req}{default}" + (f"\n      {desc}" if desc else ""))


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
