"""Zero-downtime installs for the WordPress driver: sibling folders switched in by an exchange,
and the database schema comparison that tells production whether it needs a maintenance window.

A plugin or theme is unpacked into ``.maint-new-<slug>`` next to the installed folder (WordPress
lists neither plugins nor themes whose folder starts with a dot), then switched in by one atomic
exchange of the two folders (``renameat2(RENAME_EXCHANGE)``), and the old folder is removed: a
request sees the old package or the new one, never a half-copied folder and never none. Where
the host cannot exchange, two renames do it (``<slug>`` -> ``.maint-old-<slug>``,
``.maint-new-<slug>`` -> ``<slug>``), and the folder is missing between them.

The schema comparison is the one a rollback makes (tables, and the options listed in
``schema_options`` plus ``db_version``), taken on staging after the new code booted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.cms.db import DbUndo, read_schema
from maintkit.actions.cms.snapshots import swap_lines
from maintkit.errors import ApplyFailed
from maintkit.results import CommandResult
from maintkit.transport.base import quote

#: a name must stay under the 255-byte limit with the prefix
_MAX_NAME = 255 - len(".maint-new-")


@dataclass(frozen=True)
class Sibling:
    """The installed folder of a package and its two siblings used by the switch."""

    dest: str
    new: str
    old: str


def switchable(path: str) -> bool:
    """True for a package folder (``.../plugins/<slug>``); a single-file plugin is installed in place."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return bool(parent) and bool(name) and not name.endswith(".php")


def sibling(path: str) -> Sibling:
    """``.maint-new-<slug>`` and ``.maint-old-<slug>`` next to ``path`` (a hash for very long names)."""
    dest = path.rstrip("/")
    parent, _, name = dest.rpartition("/")
    tag = name
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME:
        tag = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Sibling(dest=dest, new=f"{parent}/.maint-new-{tag}", old=f"{parent}/.maint-old-{tag}")


def switch_script(side: Sibling) -> str:
    """Shell that switches ``side.new`` into ``side.dest`` and removes the old folder.

    The switch is one atomic exchange where the host can (:func:`~maintkit.actions.cms.snapshots.swap_lines`),
    else two renames; when the second rename fails, the old folder is renamed back: the live
    path is never left empty by a failure.
    """
    n, o = quote(side.new), quote(side.old)
    return (
        f"[ -d {n} ] || {{ echo 'staged package missing: '{n} >&2; exit 3; }}\n"
        f"rm -rf -- {o} || exit 4\n" + swap_lines(side.new, side.dest, side.old) + f"rm -rf -- {o}\n"
    )


def switch_result(res: CommandResult, side: Sibling) -> None:
    """ApplyFailed naming the folder when the run of :func:`switch_script` failed."""
    if res.exit_code != 0:
        raise ApplyFailed(f"switching {side.new} into {side.dest} failed: {tail(res.stderr or res.stdout)}")


def schema_changes(ctx: Context, undo: DbUndo, read: tuple[list[str], dict[str, str]] | None = None) -> list[str]:
    """Tables added or removed and schema options changed since ``undo`` was taken (sorted per
    kind); ``read``: the tables and options already read after the change (else read now)."""
    tables, options = read if read is not None else read_schema(ctx, undo)  # one client run for both
    changed = sorted(set(tables) ^ set(undo.tables_before))
    changed += sorted(k for k in set(options) | set(undo.schema_before) if options.get(k) != undo.schema_before.get(k))
    return changed


__all__ = ["Sibling", "schema_changes", "sibling", "switch_result", "switch_script", "switchable"]
