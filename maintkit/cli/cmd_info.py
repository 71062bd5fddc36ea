"""``maint playbooks``, ``maint inventory`` and ``maint schema``: what there is to run, and where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from maintkit.cli.common import inventory_option, load_inventory


@click.command("playbooks")
def playbooks() -> None:
    """List playbooks: ./playbooks first, then the built-ins."""
    import yaml

    from maintkit.playbook import BUILTIN_DIR, list_playbooks

    for name, path in list_playbooks():
        origin = "built-in" if path.parent == BUILTIN_DIR else str(path)
        try:
            desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            desc = "(invalid YAML)"
        click.echo(f"{name:<18} {origin:<24} {str(desc).strip()[:70]}")


@click.command("inventory")
@inventory_option
@click.option("--json", "as_json", is_flag=True)
def inventory(inventory_path: str, as_json: bool) -> None:
    """Show the inventory's sites, environments and groups."""
    inv = load_inventory(inventory_path)
    if as_json:
        click.echo(inv.model_dump_json(indent=2))
        return
    for site in inv.sites.values():
        click.echo(f"{site.name} ({site.platform})")
        for env in site.environments.values():
            where = (
                "local" if env.connection == "local" else f"{env.user or ''}{'@' if env.user else ''}{env.display_host}"
            )
            click.echo(f"  {env.name:<11} {where:<32} {env.path}  {env.url or ''}")
    for group, members in inv.groups.items():
        click.echo(f"group {group}: {', '.join(members)}")


@click.command("schema")
@click.argument("kind", type=click.Choice(["playbook", "inventory"]), required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to a file.")
def schema(kind: str | None, output: str | None) -> None:
    """Print JSON Schema for playbooks and inventories (for editors)."""
    from maintkit.schema import inventory_schema, playbook_schema

    if kind is None:
        data: Any = {"playbook": playbook_schema(), "inventory": inventory_schema()}
    else:
        data = playbook_schema() if kind == "playbook" else inventory_schema()
    text = json.dumps(data, indent=2)
    if output:
        Path(output).write_text(text + "\n")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


COMMANDS = [playbooks, inventory, schema]
