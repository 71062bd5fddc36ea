"""Verify's reads in the round trip of apply's last helper process (WordPress driver).

The process that re-activates the last updated package is apply's last change on the host
(unless ``post_update`` commands follow). Right after it, in the same shell, the tree hashes of
the packages verify and the version lock compare, the database schema verify compares with the
dump's, and the runner's own reads for verify (``Context.refresh``) are read: verify needs no
round trip of its own. A part that fails or answers incompletely is read again by verify, as
without this.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from maintkit.action import Context
from maintkit.actions.cms.db import DbUndo, parse_schema, schema_command
from maintkit.actions.cms.drivers.wordpress_plan import helper_answer
from maintkit.errors import RollbackFailed
from maintkit.probes.cms import tree_hash_script, tree_lines
from maintkit.transport.base import framed, join, output_marker, unframe

if TYPE_CHECKING:
    from maintkit.actions.cms.drivers.wordpress_plan import WordPressPlanner


@dataclass(frozen=True)
class AfterReads:
    """What was read right after apply's last change: tree hashes by path (empty when that read
    failed) and the database's tables and schema options (None: not read, or the read failed)."""

    trees: dict[str, str | None] = field(default_factory=dict)
    schema: tuple[list[str], dict[str, str]] | None = None


def call_then_read(
    planner: WordPressPlanner,
    ctx: Context,
    command: str,
    args: dict[str, Any],
    paths: list[str],
    undo: DbUndo | None,
) -> tuple[dict[str, Any], AfterReads]:
    """Run the uploaded helper's ``command``, then read the tree hashes of ``paths`` and (with
    ``undo``) the schema, in ONE round trip; the helper's answer and what was read."""
    marker = output_marker()
    helper = join(planner.helper_argv(ctx, command, args, uploaded=True))
    parts = [helper, f"{{ {tree_hash_script(paths)}\n}} 2>/dev/null"]
    schema_marker = ""
    if undo is not None:
        query, schema_marker = schema_command(undo)
        parts.append(f"{query} 2>/dev/null")
    with planner.clock.boot():
        timeout = planner.p.timeout or ctx.env.command_timeout
        head, result = ctx.run_and_probe_result(framed(marker, parts), [], timeout=timeout)
    sections = unframe(head, marker, len(parts))
    php = sections[0]
    answer = helper_answer(php[0] if php else head, php[1] if php else result.exit_code, result.stderr)
    trees: dict[str, str | None] = {}
    hashed = sections[1]
    if hashed is not None and hashed[1] == 0 and len(hashed[0].splitlines()) == len(paths):
        trees = tree_lines(paths, hashed[0])
    schema = None
    read = sections[2] if undo is not None else None
    if undo is not None and read is not None and read[1] == 0:
        with contextlib.suppress(RollbackFailed):  # verify reads it again and reports the failure
            schema = parse_schema(undo, read[0], schema_marker)
    return answer, AfterReads(trees, schema)


__all__ = ["AfterReads", "call_then_read"]
