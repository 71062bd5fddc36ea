"""Verify's reads in the round trip of apply's last helper process (WordPress driver).

The process that re-activates the last updated package is apply's last change on the host
(unless ``post_update`` commands follow); it runs in one round trip with the switch before it
(:mod:`~maintkit.actions.cms.drivers.wordpress_trips`). Right after it, in the same shell, the tree hashes of
the packages verify and the version lock compare, the database schema verify compares with the
dump's, and the runner's own reads for verify (``Context.refresh``) are read: verify needs no
round trip of its own. A part that fails or answers incompletely is read again by verify, as
without this.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from maintkit.action import Context
from maintkit.actions.cms.db import DbUndo, parse_schema, schema_command
from maintkit.actions.cms.trip import Part, Trip, trip_results, trip_script
from maintkit.errors import RollbackFailed
from maintkit.probes.cms import tree_hash_script, tree_lines
from maintkit.transport.base import output_marker


@dataclass(frozen=True)
class AfterReads:
    """What was read right after apply's last change: tree hashes by path (empty when that read
    failed) and the database's tables and schema options (None: not read, or the read failed)."""

    trees: dict[str, str | None] = field(default_factory=dict)
    schema: tuple[list[str], dict[str, str]] | None = None


def read_parts(paths: list[str], undo: DbUndo | None) -> tuple[list[Part], str]:
    """The reads verify needs as parts of a round trip (each runs whatever the one before did):
    the tree hashes of ``paths`` and, with ``undo``, the schema; and the schema read's marker."""
    parts = [Part(f"{{ {tree_hash_script(paths)}\n}} 2>/dev/null", then="true")]
    schema_marker = ""
    if undo is not None:
        query, schema_marker = schema_command(undo)
        parts.append(Part(f"{query} 2>/dev/null", then="true"))
    return parts, schema_marker


def after_reads(trip: Trip, first: int, paths: list[str], undo: DbUndo | None, schema_marker: str) -> AfterReads:
    """What the parts of :func:`read_parts`, from part ``first`` of ``trip`` on, read (a read
    that did not run, failed or answered incompletely is left out: verify reads it again)."""
    trees: dict[str, str | None] = {}
    hashed = trip[first]
    if trip.started(first) and hashed.exit_code == 0 and len(hashed.stdout.splitlines()) == len(paths):
        trees = tree_lines(paths, hashed.stdout)
    schema = None
    if undo is not None and trip.started(first + 1) and trip[first + 1].exit_code == 0:
        with contextlib.suppress(RollbackFailed):  # verify reads it again and reports the failure
            schema = parse_schema(undo, trip[first + 1].stdout, schema_marker)
    return AfterReads(trees, schema)


def run_then_read(
    ctx: Context, parts: list[Part], paths: list[str], undo: DbUndo | None, *, timeout: float
) -> tuple[Trip, AfterReads]:
    """Run ``parts`` (the switch and the helper's re-activation), then read the tree hashes of
    ``paths``, (with ``undo``) the schema and the runner's reads for verify, in ONE round trip
    (the reads run when the last of ``parts`` ran, whatever it answered); what every part did and
    what was read."""
    reads, schema_marker = read_parts(paths, undo)
    marker = output_marker()
    head, result = ctx.run_and_probe_result(trip_script(marker, [*parts, *reads]), [], timeout=timeout)
    if head.startswith("__preamble_failed__:"):  # a part stopped the shell: nothing was read after it
        head = head.partition("\n")[2]
    trip = trip_results(result, marker, [*parts, *reads], stdout=head)
    return trip, after_reads(trip, len(parts), paths, undo, schema_marker)


__all__ = ["AfterReads", "after_reads", "read_parts", "run_then_read"]
