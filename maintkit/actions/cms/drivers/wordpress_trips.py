"""The round trips of the WordPress driver's apply: two for an update of plugins and themes.

1. **prepare, install and dump**: the folders (``.maint``, this run's private snapshot folder,
   the one for the staged zips), the helper written from a here-document (0600), the error
   logs' sizes and whether ``wp-content/upgrade`` is there; then, per package, its zip written
   from stdin (exactly its bytes: the zips follow one another) beside the ``cp -a`` snapshot of
   its installed folder; then ONE helper process that unpacks every package beside its live
   folder (``install`` into ``.maint-new-<slug>``: nothing live changes), up to the first that
   fails, and, only when all were, writes the database option file (0600, the credentials never
   leave the host; only when wp-config.php names the database and table prefix the state read
   named); then the schema read and the dump, only when the option file is there (it is
   removed first, so only this run's answer counts). The dump is taken before anything live
   changes, as the switches are the first such change.
2. **switch and re-activate**: the renames of every package unpacked beside its live folder,
   one after the other, then, only when they all succeeded, ONE helper ``activate`` for all of
   them, then verify's reads (:mod:`~maintkit.actions.cms.drivers.wordpress_reads`).

A single-file plugin (installed in place) gets a round trip of its own for its zip, snapshot
and install (**snapshot and install**) between the two. When a core update is in the step, or
nothing is switched in, the first round trip prepares and dumps only (``dbcnf`` then runs in a
process of its own, before anything is installed) and every package gets the
snapshot-and-install round trip.

Each part of a round trip is read by the same code as when it ran alone (:mod:`~maintkit.actions.cms.trip`),
in order, so the errors, the changes recorded and their undo are the same; a change is recorded
before the part after it is read. A round trip may take as long as its parts could one by one.
The helper reports its own time (``timed``): ``timing_ms`` gives it to ``php`` and the rest of
the round trip to ``dump``, ``snapshots`` or ``switch``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from maintkit.action import Context
from maintkit.actions.cms.db import DbUndo, dumped, read_and_dump_script
from maintkit.actions.cms.drivers.wordpress_plan import WordPressPlanner, helper_answer
from maintkit.actions.cms.drivers.wordpress_reads import AfterReads, run_then_read
from maintkit.actions.cms.drivers.wordpress_state import WpState, wp_helper_source
from maintkit.actions.cms.drivers.wordpress_switch import Sibling, switch_result, switch_script
from maintkit.actions.cms.plan import Update
from maintkit.actions.cms.snapshots import RENAMED_MARK
from maintkit.actions.cms.trip import Part, Trip, command_timeout, run_trip
from maintkit.errors import ApplyFailed
from maintkit.results import Change
from maintkit.transport.base import join, quote


@dataclass(frozen=True)
class Staged:
    """One plugin's or theme's install, ready to send: its snapshot part (the zip written from
    the round trip's stdin first when ``data`` is not None), the helper's ``install`` arguments
    (``into`` the sibling when the package is switched in: ``side``), where it lives (``dest``)
    and where its snapshot goes (``target``)."""

    update: Update
    snapshot: Part
    args: dict[str, Any]
    data: bytes | None
    upload: str | None
    dest: str
    target: str
    side: Sibling | None


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
        snap, prep = self.helper_preparation(ctx, dirs=dirs, exists=exists)
        if self.p.database == "never":
            trip = run_trip(ctx, [Part(prep)], timeout=command_timeout(ctx))
            return snap, self.prepared_snapshot_dir(ctx, trip[0], exists=exists), None
        undo = self.dump_undo(state, snap)
        dbcnf = self.helper_script(ctx, "dbcnf", {"path": f"{snap}/db.cnf"})
        dump, marker = read_and_dump_script(undo)
        parts = [Part(prep), writes_option_file(undo, dbcnf), Part(dump)]
        timeout = command_timeout(ctx) * 2 + self.helper_timeout(ctx)
        started = time.perf_counter()
        trip = run_trip(ctx, parts, timeout=timeout)
        answer = self.helper_ran(trip, 1, "dump", started)
        existing = self.prepared_snapshot_dir(ctx, trip[0], exists=exists)
        return snap, existing, self._dumped(state, undo, answer, trip, marker)

    def helper_preparation(self, ctx: Context, *, dirs: list[str], exists: list[str]) -> tuple[str, str]:
        """This run's snapshot folder, and the preparation's shell writing the helper from a
        here-document (the round trip's stdin stays free for the zips)."""
        text = wp_helper_source().decode("utf-8")
        return self.prepare_part(ctx, dirs=dirs, exists=exists, upload=(self.helper_path(ctx), text))

    def prepare_install_and_dump(
        self, ctx: Context, state: WpState, staged: list[Staged], *, dirs: list[str], exists: list[str]
    ) -> tuple[Trip, dict[str, Any], DbUndo | None, str]:
        """Round trip 1 when every update is switched in (see the module's docstring): what its
        parts did (the preparation, then each package's snapshot in ``staged``'s order, then the
        one install, then the dump), the helper's answer, the dump taken (None with
        ``database: never``) and the dump part's marker (read them with :meth:`dump_change`).
        The zips to write go on stdin one after the other, each snapshot part taking its own."""
        _, prep = self.helper_preparation(ctx, dirs=dirs, exists=exists)
        parts, undo, marker = [Part(prep), *(s.snapshot for s in staged)], None, ""
        args: dict[str, Any] = {"packages": [s.args for s in staged]}
        if self.p.database == "never":
            parts.append(Part(self.helper_script(ctx, "install", args)))
        else:
            undo = self.dump_undo(state, self.snapshot_dir(ctx))
            expect = {"path": undo.defaults_file, "database": state.db_name, "table_prefix": state.table_prefix}
            install = self.helper_script(ctx, "install", {**args, "dbcnf": expect})
            dump, marker = read_and_dump_script(undo)
            parts += [writes_option_file(undo, install), Part(dump)]
        n = len(staged)
        timeout = command_timeout(ctx) * (2 + n) + self.helper_timeout(ctx) * n
        started = time.perf_counter()
        stdin = b"".join(s.data for s in staged if s.data is not None) or None
        trip = run_trip(ctx, parts, timeout=timeout, stdin=stdin)
        answer = self.helper_ran(trip, n + 1, "snapshots" if undo is None else "dump", started)
        return trip, answer, undo, marker

    def dump_change(self, state: WpState, undo: DbUndo, answer: Any, trip: Trip, marker: str) -> Change:
        """The dump's change after :meth:`prepare_install_and_dump`: the option file's answer
        (``dbcnf`` in the install's), then the dump (the last part), read as when they ran alone."""
        written = answer if isinstance(answer, dict) else {"ok": False, "error": "the helper did not answer"}
        return self._dumped(state, undo, written, trip, marker, index=len(trip.results) - 1)

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

    def _dumped(
        self, state: WpState, undo: DbUndo, answer: dict[str, Any], trip: Trip, marker: str, *, index: int = 2
    ) -> Change:
        """Read ``dbcnf``'s answer, then the schema read and the dump (part ``index``)."""
        if not answer.get("ok"):
            raise ApplyFailed(f"cannot read the database credentials from wp-config.php: {answer.get('error')}")
        database = str(answer.get("database") or state.db_name)
        prefix = str(answer.get("table_prefix") or state.table_prefix)
        if (database, f"{prefix}options") != (undo.database, undo.options_table):
            raise ApplyFailed(
                f"wp-config.php now names database {database} (table prefix {prefix!r}), not the "
                f"{state.db_name} ({state.table_prefix!r}) WordPress reported before the update: nothing was changed"
            )
        dumped(undo, trip[index], marker)
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

    # ---------------------------------------------------------------- 2: switch and re-activate
    def switch_and_activate(
        self,
        ctx: Context,
        sides: list[Sibling],
        args: dict[str, Any],
        reads: tuple[list[str], DbUndo | None] | None,
    ) -> tuple[Trip, dict[str, Any], AfterReads | None]:
        """Round trip 2: the switch of every one of ``sides`` in order (each only when the one
        before it succeeded), then, only when they all were, ONE helper process re-activating
        every package (``activate`` with ``args``), then with ``reads`` (paths, dump) verify's
        reads; what every part did (part ``i`` is the switch of ``sides[i]``: read them with
        :func:`switch_outcomes`), the helper's answer and what was read."""
        parts = [Part(switch_script(side)) for side in sides]
        parts.append(Part(self.helper_script(ctx, "activate", args), then="true"))
        timeout = command_timeout(ctx) * len(sides) + self.helper_timeout(ctx)
        started = time.perf_counter()
        after = None
        if reads is None:
            trip = run_trip(ctx, parts, timeout=timeout)
        else:
            trip, after = run_then_read(ctx, parts, *reads, timeout=timeout)
        answer = self.helper_ran(trip, len(sides), "switch", started)
        return trip, answer, after


def writes_option_file(undo: DbUndo, helper: str) -> Part:
    """The part running ``helper`` (``dbcnf``, or an install that writes the option file): the
    old option file removed first, and the next part (the dump) run only when it is there."""
    cnf = quote(undo.defaults_file or "")
    return Part(f"rm -f -- {cnf} || exit $?\n{helper}", then=f"[ -f {cnf} ]")


def switch_outcomes(trip: Trip, sides: list[Sibling]) -> tuple[list[tuple[Sibling, bool]], ApplyFailed | None]:
    """The switches of :meth:`WordPressTrips.switch_and_activate` that were made, in order, each
    with whether it fell back to two renames (the live folder was missing a moment), and the
    error of the first that failed (None when every one was made: no switch after it ran)."""
    done: list[tuple[Sibling, bool]] = []
    for i, side in enumerate(sides):
        try:
            switch_result(trip[i], side)
        except ApplyFailed as exc:
            return done, exc
        done.append((side, RENAMED_MARK in trip[i].stdout.splitlines()))
    return done, None


__all__ = ["Staged", "WordPressTrips", "switch_outcomes", "writes_option_file"]
