"""``maint playbooks``, ``maint inventory`` and ``maint schema``: what there is to run, and where."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from maintkit.cli.common import inventory_option, load_inventory
from maintkit.results import ExitCode

#: narrowest description column; below it, descriptions go on lines of their own
MIN_DESCRIPTION = 30


def terminal_width() -> int:
    """Columns of the terminal (``COLUMNS``, else 100 when output is not a terminal), at least 60."""
    import shutil

    return max(60, shutil.get_terminal_size((100, 24)).columns)


def playbook_description(path: Path) -> str:
    """A playbook file's description on one line, or why the file cannot be read (``unreadable: ...``).

    The file goes through the loader's YAML reader (size, encoding and syntax limits), so
    a broken file is reported the way ``maint validate`` would report it, not with a traceback.
    """
    from maintkit._yaml import read_yaml_file
    from maintkit.errors import PlaybookError

    try:
        data, _source = read_yaml_file(path, PlaybookError)
    except PlaybookError as exc:
        problem = exc.problems[0]
        where = f"line {problem.line}: " if problem.line else ""
        return f"unreadable: {where}{problem.message}"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if not isinstance(data, dict):
        return "unreadable: not a playbook (a mapping with name and stages)"
    return " ".join(str(data.get("description") or "").split())


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], width: int) -> list[str]:
    """Aligned columns; the last one wrapped at word boundaries (never inside a word) to ``width``.

    When the last column would be narrower than :data:`MIN_DESCRIPTION`, it goes on the lines
    under its row, indented by 4.
    """
    import textwrap

    fixed = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    indent = sum(fixed) + 2 * len(fixed)
    under = width - indent < MIN_DESCRIPTION
    if under:
        indent = 4
    lines = []
    for row in [header, *rows]:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row, fixed, strict=False))
        parts = textwrap.wrap(row[-1], width - indent, break_long_words=False, break_on_hyphens=False)
        if under or not parts:
            lines.append(head.rstrip())
        else:
            lines.append(f"{head}  {parts.pop(0)}")
        lines.extend(" " * indent + part for part in parts)
    return lines


@click.command("playbooks")
def playbooks() -> None:
    """List playbooks: ./playbooks first, then the built-ins, with what each does.

    A file that cannot be read (not UTF-8, broken YAML) is listed with the reason.
    """
    from maintkit.playbook import BUILTIN_DIR, list_playbooks

    rows = [
        (name, "built-in" if path.parent == BUILTIN_DIR else str(path), playbook_description(path))
        for name, path in list_playbooks()
    ]
    for line in table(("playbook", "source", "description"), rows, terminal_width()):
        click.echo(line)


@click.command("inventory")
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="The inventory as JSON (defaults applied to every environment).")
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


SCHEMA_GUIDE = """\
Name the kind of file: maint schema KIND [-o FILE]
{kinds}

Editors that use the YAML language server (VS Code's YAML extension, Neovim, JetBrains...)
read a schema named on a file's first line; `maint init` writes both schemas and the comments:
  maint schema playbook -o .maint/schema/playbook.json
  maint schema inventory -o .maint/schema/inventory.json
  # yaml-language-server: $schema=.maint/schema/inventory.json      first line of inventory.yml
  # yaml-language-server: $schema=../.maint/schema/playbook.json    first line of playbooks/*.yml
Or map them once in VS Code's settings.json:
  "yaml.schemas": {{".maint/schema/playbook.json": "playbooks/*.yml",
                   ".maint/schema/inventory.json": "inventory.yml"}}
"""


@click.command("schema")
@click.argument("kind", type=click.Choice(["playbook", "inventory"]), required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to a file.")
def schema(kind: str | None, output: str | None) -> None:
    """Print the JSON Schema (Draft 2020-12) of playbooks or of inventories, for editors.

    Without KIND: which kinds there are and how to wire them into an editor (exit 2).
    """
    from maintkit.schema import KINDS

    if kind is None:
        kinds = "\n".join(f"  {name:<10} {what}: {files}" for name, (_fn, what, files) in KINDS.items())
        click.echo(SCHEMA_GUIDE.format(kinds=kinds), nl=False, err=True)
        raise SystemExit(ExitCode.INPUT)
    text = json.dumps(KINDS[kind][0](), indent=2)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


COMMANDS = [playbooks, inventory, schema]
