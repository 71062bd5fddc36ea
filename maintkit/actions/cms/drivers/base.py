"""What every cms driver shares: the :class:`Driver` protocol and :class:`DriverBase` plumbing.

:class:`DriverBase` holds the paths (root, ``.maint``, snapshots), preparing this run's
snapshot directory, apply-or-undo (a failed apply undoes its own partial work before it
raises), the rollback of file snapshots then database then ``post_rollback``, and the
pruning of old snapshots. Drivers add planning, installing, verifying and lock entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from maintkit._text import head, tail
from maintkit.action import Context
from maintkit.actions.cms.db import DbUndo
from maintkit.actions.cms.lock import LockedPackage, VersionLock
from maintkit.actions.cms.params import CmsUpdateParams
from maintkit.actions.cms.plan import UpdatePlan
from maintkit.actions.cms.snapshots import PackageUndo, prepare_script, prepared, restore_path
from maintkit.actions.cms.trip import command_timeout
from maintkit.errors import ApplyFailed, MaintkitError, RollbackFailed
from maintkit.ids import is_id
from maintkit.probes import Probe
from maintkit.results import Change, CommandResult
from maintkit.transport.base import checked, join

S = TypeVar("S")


class Driver(Protocol[S]):
    """What a cms driver offers the action; ``S`` is the state it reads from the host."""

    name: ClassVar[str]
    #: read-only probes the driver's facts come from (declared by the action, batched by the runner)
    host_probes: ClassVar[tuple[Probe[Any], ...]]
    p: CmsUpdateParams
    #: after verify: did the update change the database schema (None: unknown), and what changed
    schema_changed: bool | None
    schema_changes: list[str]

    def plan(
        self, ctx: Context, lock: VersionLock | None, predicted: list[dict[str, Any]] | None = None
    ) -> UpdatePlan[S]:
        """Read-only plan."""

    def read_probes(self, ctx: Context, plan: UpdatePlan[S]) -> None:
        """Add the facts of :attr:`host_probes` (answered from the probe cache) to the plan."""

    def apply(self, ctx: Context, plan: UpdatePlan[S]) -> list[Change]:
        """Install the plan."""

    def verify(self, ctx: Context, plan: UpdatePlan[S]) -> tuple[S, dict[str, str | None]]:
        """Read back; returns (state, tree hashes)."""

    def lock_packages(
        self, ctx: Context, state: S, plan: UpdatePlan[S] | None, trees: dict[str, str | None] | None = None
    ) -> dict[str, LockedPackage]:
        """Lock entries for the installed state."""

    def undo(self, ctx: Context, changes: list[Change]) -> dict[str, Any]:
        """Roll back."""

    def cleanup(self, ctx: Context) -> None:
        """Remove temporary files."""

    def prune(self, ctx: Context) -> None:
        """Drop old snapshots."""

    def finish(self, ctx: Context) -> None:
        """At the end of the step: temporary files removed, old snapshots dropped."""


def run_commands(
    ctx: Context, commands: list[list[str]], *, cwd: str, env: dict[str, str] | None = None, what: str = "command"
) -> list[dict[str, Any]]:
    """Run argv commands in order in ``cwd``; raise ApplyFailed naming the first that fails."""
    done: list[dict[str, Any]] = []
    for argv in commands:
        res = ctx.run(argv, cwd=cwd, env=env or None, check=False)
        done.append({"command": head(join(argv), 200), "exit": res.exit_code})
        if not res.ok:
            raise ApplyFailed(
                f"{what} {head(join(argv), 200)} exited {res.exit_code}: {tail(res.stderr or res.stdout)}"
            )
    return done


def lock_schema(driver: Driver[Any], applied: bool) -> dict[str, Any]:
    """The ``schema_changed``/``schema_changes`` of a version lock: unchanged when nothing was installed,
    else what the driver compared after its update (``None``: it could not tell)."""
    if not applied:
        return {"schema_changed": False, "schema_changes": []}
    return {"schema_changed": driver.schema_changed, "schema_changes": list(driver.schema_changes)}


def undo_changes(
    ctx: Context,
    changes: list[Change],
    *,
    undo_db: Callable[[DbUndo], dict[str, Any]],
    post_rollback: list[list[str]],
    cwd: str,
    after_restore: Callable[[PackageUndo], None] | None = None,
) -> dict[str, Any]:
    """The rollback both drivers share: put file snapshots back (newest change first), then
    the database, then the post_rollback commands. Every error is collected; any error ends in
    RollbackFailed naming them all. No PHP is involved, so it works when the site is broken."""
    errors: list[str] = []
    report: dict[str, Any] = {"restored": [], "restored_by_renames": [], "database": None}
    for change in reversed(changes):
        if isinstance(change.undo, PackageUndo):
            try:
                for snapshot, dest in change.undo.entries:
                    if restore_path(ctx, snapshot, dest):
                        report["restored_by_renames"].append(dest)
                if after_restore is not None:
                    after_restore(change.undo)
                report["restored"].append(change.target)
            except MaintkitError as exc:
                errors.append(f"{change.target}: {exc}")
    for change in changes:
        if isinstance(change.undo, DbUndo):
            try:
                report["database"] = undo_db(change.undo)
            except MaintkitError as exc:
                errors.append(f"{change.target}: {exc}")
    if post_rollback and any(isinstance(c.undo, PackageUndo) for c in changes):
        try:
            run_commands(ctx, post_rollback, cwd=cwd, what="post_rollback")
        except MaintkitError as exc:
            errors.append(str(exc))
    if errors:
        raise RollbackFailed("; ".join(errors))
    return report


class DriverBase:
    """Paths, snapshots, apply-or-undo, rollback and pruning shared by the drivers."""

    name: ClassVar[str] = ""
    host_probes: ClassVar[tuple[Probe[Any], ...]] = ()

    def __init__(self, params: CmsUpdateParams) -> None:
        self.p = params
        self.schema_changed: bool | None = None
        self.schema_changes: list[str] = []

    # ---------------------------------------------------------------- paths
    def root(self, ctx: Context) -> str:
        """The site's code root: the WordPress root (where wp-load.php is) or the composer project."""
        base = ctx.path.rstrip("/") or "/"
        if not self.p.root:
            return base
        return self.p.root if self.p.root.startswith("/") else f"{base}/{self.p.root.strip('/')}"

    @staticmethod
    def maint_dir(ctx: Context) -> str:
        """``<path>/.maint``."""
        return ctx.path.rstrip("/") + "/.maint"

    def snapshot_root(self, ctx: Context) -> str:
        """Directory of all snapshots."""
        d = self.p.snapshot_dir
        if not d:
            return self.maint_dir(ctx) + "/snapshots"
        return d if d.startswith("/") else ctx.path.rstrip("/") + "/" + d

    def snapshot_dir(self, ctx: Context) -> str:
        """This run's snapshot directory."""
        return f"{self.snapshot_root(ctx)}/{ctx.run_id}"

    # ---------------------------------------------------------------- apply
    def prepare_snapshot_dir(
        self, ctx: Context, *, dirs: Sequence[str] = (), exists: Sequence[str] = ()
    ) -> tuple[str, set[str]]:
        """Create ``.maint`` (its mode kept: nginx reads its maintenance flag there), this run's
        private snapshot directory and ``dirs``; record the error log sizes; tell which of
        ``exists`` are there. One round trip (:meth:`prepare_part`, :meth:`prepared_snapshot_dir`)."""
        snap, script = self.prepare_part(ctx, dirs=dirs, exists=exists)
        return snap, self.prepared_snapshot_dir(ctx, ctx.run_shell(script), exists=exists)

    def prepare_part(
        self,
        ctx: Context,
        *,
        dirs: Sequence[str] = (),
        exists: Sequence[str] = (),
        upload: tuple[str, str] | None = None,
    ) -> tuple[str, str]:
        """This run's snapshot directory, and the shell of :meth:`prepare_snapshot_dir` (with
        ``upload``, (path, text): the text written there too from a here-document, atomically,
        mode 0600; see :func:`~maintkit.actions.cms.snapshots.prepare_script`)."""
        snap = self.snapshot_dir(ctx)
        logs = list(self.p.error_logs or [])
        script = prepare_script(snap, parent=self.maint_dir(ctx), dirs=dirs, sizes=logs, exists=exists, upload=upload)
        return snap, script

    def prepared_snapshot_dir(self, ctx: Context, res: CommandResult, *, exists: Sequence[str] = ()) -> set[str]:
        """Read what the shell of :meth:`prepare_part` did: CommandFailed when it failed; the error
        log sizes and the snapshot directory recorded; which of ``exists`` are there."""
        checked(res, command_timeout(ctx), True)
        found = prepared(res.stdout, sizes=list(self.p.error_logs or []), exists=exists)
        ctx.record(error_log_offsets=found.sizes, snapshot=self.snapshot_dir(ctx))
        return found.existing

    def apply_or_undo(self, ctx: Context, work: Callable[[list[Change]], None]) -> list[Change]:
        """Run ``work`` (it appends each change before making it); on failure undo those changes,
        clean up and raise ApplyFailed (naming a failed undo too)."""
        changes: list[Change] = []
        try:
            work(changes)
        except MaintkitError as exc:
            note = ""
            try:
                self.undo(ctx, changes)
            except MaintkitError as undo_exc:
                note = f"; undoing the partial update ALSO failed: {undo_exc}"
            self.cleanup(ctx)
            raise ApplyFailed(f"{exc}{note}") from exc
        return changes

    def read_probes(self, ctx: Context, plan: UpdatePlan[Any]) -> None:
        """No probes by default."""

    # ---------------------------------------------------------------- rollback
    def undo(self, ctx: Context, changes: list[Change]) -> dict[str, Any]:
        """Put the file snapshots back, then the database, then run ``post_rollback``; no PHP involved."""
        return undo_changes(
            ctx,
            changes,
            undo_db=lambda undo: self.undo_database(ctx, undo),
            post_rollback=self.p.post_rollback,
            cwd=self.root(ctx),
            after_restore=lambda undo: self.after_restore(ctx, undo),
        )

    def undo_database(self, ctx: Context, undo: DbUndo) -> dict[str, Any]:
        """Restore the dump when the driver decides it must; returns the report."""
        raise NotImplementedError

    def after_restore(self, ctx: Context, undo: PackageUndo) -> None:
        """Hook after one change's snapshots are back (nothing by default)."""

    def temporary_paths(self, ctx: Context) -> list[str]:
        """This run's temporary files and folders (none by default besides snapshots)."""
        return []

    def cleanup(self, ctx: Context) -> None:
        """Remove :meth:`temporary_paths` (not checked: they may not exist yet)."""
        paths = self.temporary_paths(ctx)
        if paths:
            ctx.run(["rm", "-rf", "--", *paths], check=False)

    def prune(self, ctx: Context, *, remove: Sequence[str] = ()) -> None:
        """Keep the newest ``keep_snapshots`` run snapshots; ``remove`` goes first, in the same round trip.

        Only folders named like a run id (``20261123T011500Z-3fa9c2``) are maint's snapshots;
        anything else under the snapshot folder is left alone, and so is this run's."""
        root = self.snapshot_root(ctx)
        listing = join(["find", root, "-mindepth", "1", "-maxdepth", "1", "-type", "d", "-printf", "%f\\n"])
        first = join(["rm", "-rf", "--", *remove]) + "\n" if remove else ""
        res = ctx.run_shell(first + listing, check=False)
        runs = sorted(n for n in res.stdout.split("\n") if is_id(n))
        for old in runs[: max(0, len(runs) - self.p.keep_snapshots)]:
            if old != ctx.run_id:
                ctx.run(["rm", "-rf", "--", f"{root}/{old}"], check=False)

    def finish(self, ctx: Context) -> None:
        """:meth:`cleanup` and :meth:`prune` in one round trip (unless old snapshots go)."""
        self.prune(ctx, remove=self.temporary_paths(ctx))


__all__ = ["Driver", "DriverBase", "lock_schema", "run_commands", "undo_changes"]
