"""The round trips of the WordPress driver's apply: three for an update of one plugin or theme.

1. **prepare and dump**: the folders (``.maint``, this run's private snapshot folder, the one
   for the staged zips), the helper written from stdin (0600), the error logs' sizes and whether
   ``wp-content/upgrade`` is there; then the helper's ``dbcnf`` writes the database option file
   (0600, the credentials never leave the host); then the schema read and the dump. The helper
   runs only after the folders and the upload succeeded, the dump only when ``dbcnf`` wrote the
   option file (it is removed first, so only this run's answer counts).
2. **snapshot and install**, per package: the zip written from stdin beside the ``cp -a``
   snapshot of the installed folder, then the helper's ``install`` (it unpacks beside the live
   folder), only when the snapshot succeeded.
3. **switch and re-activate**, per switched package: the renames, then, only when they
   succeeded, the helper's ``activate``; after the last package's, verify's reads
   (:mod:`~maintkit.actions.cms.drivers.wordpress_reads`).

Each part of a round trip is read by the same code as when it ran alone (:mod:`~maintkit.actions.cms.trip`),
in order, so the errors, the changes recorded and their undo are the same; a change is recorded
before the part after it is read. A round trip may take as long as its parts could one by one.
The helper reports its own time (``timed``): ``timing_ms`` gives it to ``php`` and the rest of
the round trip to ``dump``, ``snapshots`` or ``switch``.
"""

from __future__ import annotations

import time
from typing import Any

from maintkit.action import Context
from maintkit.actions.cms.db import DbUndo, dumped, read_and_dump_script
from maintkit.actions.cms.drivers.wordpress_plan import WordPressPlanner, helper_answer
from maintkit.actions.cms.drivers.wordpress_reads import AfterReads, run_then_read
from maintkit.actions.cms.drivers.wordpress_state import WpState, wp_helper_source
from maintkit.actions.cms.drivers.wordpress_switch import Sibling, switch_result, switch_script
from maintkit.actions.cms.snapshots import RENAMED_MARK
from maintkit.actions.cms.trip import Part, Trip, command_timeout, run_trip
from maintkit.errors import ApplyFailed
from maintkit.results import Change
from maintkit.transport.base import join, quote


class WordPressTrips(WordPressPlanner):
    """The round trips of apply (see the module's docstring)."""

    #: the dump of this apply (its tables and schema options are what verify compares with)
    _db_undo: DbUndo | None = None

    def helper_timeout(self, ctx: Context) -> float:
        """Seconds one helper run may take."""
        return self.p.timeout or command_timeout(ctx)

    def helper_script(self, ctx: Context, command: str, args: dict[str, Any]) -> str:
        """One run of the uploaded helper as a part of a round trip; it reports its own time."""
        return join(self.helper_argv(ctx, command, {**args, "timed": True}, uploaded=True))

    def helper_ran(self, trip: Trip, index: int, rest: str, started: float) -> dict[str, Any]:
        """The answer of the helper run that is part ``index`` of ``trip`` (begun at ``started``),
        its start and time counted (the rest of the round trip to ``rest``)."""
        res = trip[index]
        answer = helper_answer(res.stdout, res.exit_code, res.stderr)
        self.clock.shared(rest, started, answer if trip.started(index) else None)
        return answer

    # ---------------------------------------------------------------- 1: prepare and dump
    def prepare_and_dump(
        self, ctx: Context, state: WpState, *, dirs: list[str], exists: list[str]
    ) -> tuple[str, set[str], Change | None]:
        """Round trip 1: this run's snapshot folder, which of ``exists`` are there, and the
        dump's change (None with ``database: never``)."""
        snap, prep = self.prepare_part(ctx, dirs=dirs, exists=exists, upload=self.helper_path(ctx))
        if self.p.database == "never":
            trip = run_trip(ctx, [Part(prep, stdin=True)], timeout=command_timeout(ctx), stdin=wp_helper_source())
            return snap, self.prepared_snapshot_dir(ctx, trip[0], exists=exists), None
        undo = self.dump_undo(state, snap)
        cnf = quote(f"{snap}/db.cnf")
        dbcnf = self.helper_script(ctx, "dbcnf", {"path": f"{snap}/db.cnf"})
        dump, marker = read_and_dump_script(undo)
        parts = [Part(prep, stdin=True), Part(f"rm -f -- {cnf} || exit $?\n{dbcnf}", then=f"[ -f {cnf} ]"), Part(dump)]
        timeout = command_timeout(ctx) * 2 + self.helper_timeout(ctx)
        started = time.perf_counter()
        trip = run_trip(ctx, parts, timeout=timeout, stdin=wp_helper_source())
        answer = self.helper_ran(trip, 1, "dump", started)
        existing = self.prepared_snapshot_dir(ctx, trip[0], exists=exists)
        return snap, existing, self._dumped(state, undo, answer, trip, marker)

    def dump_undo(self, state: WpState, snap: str) -> DbUndo:
        """The dump this run takes into ``snap``, of the database the state names (``dbcnf``
        writes the option file ``snap/db.cnf``)."""
        return DbUndo(
            database=state.db_name,
            dump=f"{snap}/database.sql.zst",
            defaults_file=f"{snap}/db.cnf",
            tables_before=[],
            options_table=f"{state.table_prefix}options",
            schema_options=["db_version", *self.p.schema_options],
        )

    def _dumped(self, state: WpState, undo: DbUndo, answer: dict[str, Any], trip: Trip, marker: str) -> Change:
        """Read ``dbcnf``'s answer, then the schema read and the dump (parts 1 and 2)."""
        if not answer.get("ok"):
            raise ApplyFailed(f"cannot read the database credentials from wp-config.php: {answer.get('error')}")
        database = str(answer.get("database") or state.db_name)
        prefix = str(answer.get("table_prefix") or state.table_prefix)
        if (database, f"{prefix}options") != (undo.database, undo.options_table):
            raise ApplyFailed(
                f"wp-config.php now names database {database} (table prefix {prefix!r}), not the "
                f"{state.db_name} ({state.table_prefix!r}) WordPress reported before the update: nothing was changed"
            )
        dumped(undo, trip[2], marker)
        self._db_undo = undo
        return Change(target=f"database:{database}", summary="dumped before the update", after=undo.dump, undo=undo)

    # ---------------------------------------------------------------- 2: snapshot and install
    def snapshot_and_install(
        self, ctx: Context, snapshot: Part, args: dict[str, Any], stdin: bytes | None
    ) -> tuple[Trip, float]:
        """Round trip 2: ``snapshot`` (it reads ``stdin``), then the helper's ``install`` with
        ``args``; what both did (the caller reads the snapshot first) and when it began."""
        install = Part(self.helper_script(ctx, "install", args))
        started = time.perf_counter()
        timeout = command_timeout(ctx) + self.helper_timeout(ctx)
        return run_trip(ctx, [snapshot, install], timeout=timeout, stdin=stdin), started

    # ---------------------------------------------------------------- 3: switch and re-activate
    def switch_and_activate(
        self, ctx: Context, side: Sibling, args: dict[str, Any], reads: tuple[list[str], DbUndo | None] | None
    ) -> tuple[dict[str, Any], AfterReads | None, bool]:
        """Round trip 3: the switch of ``side``, then (only when it succeeded) the helper's
        ``activate`` with ``args``, then with ``reads`` (paths, dump) verify's reads; the
        helper's answer, what was read, and whether the switch fell back to two renames (the
        live folder was missing a moment). ApplyFailed as before when the switch failed."""
        parts = [Part(switch_script(side)), Part(self.helper_script(ctx, "activate", args), then="true")]
        timeout = command_timeout(ctx) + self.helper_timeout(ctx)
        started = time.perf_counter()
        after = None
        if reads is None:
            trip = run_trip(ctx, parts, timeout=timeout)
        else:
            trip, after = run_then_read(ctx, parts, *reads, timeout=timeout)
        answer = self.helper_ran(trip, 1, "switch", started)
        switch_result(trip[0], side)
        return answer, after, RENAMED_MARK in trip[0].stdout.splitlines()


__all__ = ["WordPressTrips"]
