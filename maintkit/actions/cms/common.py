"""The old import path of the cms building blocks, which now live in their own modules.

:mod:`~maintkit.actions.cms.plan` (plan data), :mod:`~maintkit.actions.cms.snapshots`
(tree hashes, snapshots), :mod:`~maintkit.actions.cms.db` (dump and restore),
:mod:`~maintkit.actions.cms.drivers.base` (commands, shared rollback) and
:mod:`~maintkit.actions.cms.drivers.wordpress_state` (the PHP helper's answers).
"""

from __future__ import annotations

from maintkit._text import tail
from maintkit.actions.cms.db import DbUndo, db_query, dump_database, list_tables, read_options, restore_database
from maintkit.actions.cms.drivers.base import run_commands, undo_changes
from maintkit.actions.cms.drivers.wordpress_state import JSON_MARKER, parse_marked_json, wp_helper_source
from maintkit.actions.cms.plan import ACTION, Installed, Offer, PlanFacts, Skipped, Update, UpdatePlan
from maintkit.actions.cms.snapshots import (
    PackageUndo,
    file_sizes,
    mkdir_private,
    restore_path,
    restore_script,
    sha256_hex,
    snapshot_path,
    tree_hash_script,
    tree_hashes,
    zip_tree_hash,
)

__all__ = [
    "ACTION",
    "JSON_MARKER",
    "DbUndo",
    "Installed",
    "Offer",
    "PackageUndo",
    "PlanFacts",
    "Skipped",
    "Update",
    "UpdatePlan",
    "db_query",
    "dump_database",
    "file_sizes",
    "list_tables",
    "mkdir_private",
    "parse_marked_json",
    "read_options",
    "restore_database",
    "restore_path",
    "restore_script",
    "run_commands",
    "sha256_hex",
    "snapshot_path",
    "tail",
    "tree_hash_script",
    "tree_hashes",
    "undo_changes",
    "wp_helper_source",
    "zip_tree_hash",
]
