"""``staging.refresh``: make staging a fresh, safe copy of production.

Check (read-only, plan mode too) refuses unsafe targets first (:mod:`.guards`), then compares
both sides with the last refresh recorded on the target (``<path>/.maint/staging-refresh.json``):
nothing to do when that refresh is younger than ``max_age`` and neither production's content
(tables' row counts and checksums, file listing) nor staging's has changed since. Apply
snapshots staging (database dump and file tree, in ``.maint/staging-refresh/<run>/``), copies
the database and the files, rewrites URLs, anonymises, sets the guards, then records the
digests. A failure inside apply puts the snapshot back at once; ``rollback`` does the same
when a later step fails. Only the recorded target path, database and marker are touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from maintkit.action import Action, Context
from maintkit.actions.backup.common import format_age, parse_duration
from maintkit.actions.staging import dbcopy, files
from maintkit.actions.staging.digest import Digests, read_side
from maintkit.actions.staging.guards import check_refusal, write_generic_guards
from maintkit.actions.staging.params import DbRef, StagingRefreshParams
from maintkit.actions.staging.sides import Side, Sides, resolve
from maintkit.actions.staging.wp import WpSteps
from maintkit.errors import ApplyFailed, MaintkitError, RollbackFailed
from maintkit.results import Change, Check

MARKER = ".maint/staging-refresh.json"
WORK = ".maint/staging-refresh"


@dataclass
class RefreshUndo:
    """The target's previous state: where its snapshot is and what it held."""

    path: str
    work: str
    db: DbRef | None
    dump: str | None
    tables_before: list[str]
    files_snap: str | None
    marker_before: bytes | None
    restored: bool = False


def up_to_date(marker: dict[str, Any] | None, src: Digests, dst: Digests, source: str, max_age: str) -> str | None:
    """Why the last refresh still holds (None: refresh again)."""
    if not marker or marker.get("source_env") != source:
        return None
    try:
        age = datetime.now(UTC) - datetime.fromisoformat(str(marker.get("refreshed_at")))
    except ValueError:
        return None
    if age > parse_duration(max_age) or marker.get("source") != src.public() or marker.get("target") != dst.public():
        return None
    return f"refreshed from {source} {format_age(age)} ago; neither side changed since"


@dataclass
class Plan:
    """What check found, handed to apply."""

    sides: Sides
    excludes: list[str]
    source: Digests
    marker: dict[str, Any] | None


class StagingRefresh(Action[StagingRefreshParams]):
    """Make the stage's environment (staging) a fresh copy of the source (production)."""

    name: ClassVar[str] = "staging.refresh"
    Params = StagingRefreshParams
    summary: ClassVar[str] = "Copy production's database and files to staging, rewrite URLs, anonymise, guard."
    rollback_kind = "undo"

    def _timeout(self, ctx: Context) -> float:
        return min(self.params.timeout, ctx.env.command_timeout or self.params.timeout) or self.params.timeout

    def check(self, ctx: Context) -> Check:
        """Refuse unsafe targets; compare both sides with the last recorded refresh."""
        p, t = self.params, self._timeout(ctx)
        sides = resolve(ctx, p)
        try:
            check_refusal(ctx.site.name, sides, p.database and dbcopy.same_database(sides, t))
            excl = files.excludes(p, sides.platform)
            src, _ = read_side(sides.source, p, excl, t)
            dst, marker = read_side(sides.target, p, excl, t, record=f"{sides.target.path}/{MARKER}")
        finally:
            sides.close()
        plan = Plan(sides, excl, src, marker)
        via = "host" if sides.via_host else "controller"
        data: dict[str, Any] = {"source": p.source, "via": via, "source_rows": src.rows}
        fresh = up_to_date(marker, src, dst, p.source, p.max_age)
        if fresh:
            return Check.ok(fresh, **data)
        why = "never refreshed" if marker is None else "the last refresh is stale or a side changed since"
        return Check.change(f"refresh {ctx.env.name} from {p.source}: {why}", snapshot=plan, **data)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        """Snapshot the target, copy, rewrite, anonymise, guard, record."""
        plan: Plan = check.snapshot
        p, t = self.params, self._timeout(ctx)
        sides = resolve(ctx, p)
        try:
            undo = self._snapshot(ctx, sides, t)
            try:
                report = self._refresh(ctx, sides, plan, t, undo.work)
            except MaintkitError as exc:
                try:
                    self._restore(sides.target, undo, t)
                except RollbackFailed as undo_exc:  # both: what failed, then why staging is not back
                    raise RollbackFailed(f"{exc}; then {undo_exc}") from exc
                raise ApplyFailed(f"{exc} (staging's previous state was restored)") from exc
        finally:
            sides.close()
        ctx.record(refresh=report)
        summary = f"refreshed from {p.source}"
        return [Change(target=f"{ctx.env.name}:{ctx.env.path}", summary=summary, after=report, undo=undo)]

    def _snapshot(self, ctx: Context, sides: Sides, t: float) -> RefreshUndo:
        target = sides.target
        work = f"{target.path}/{WORK}/{ctx.run_id or 'run'}"
        marker = sides.prepare_target(f"{target.path}/{WORK}", work, f"{target.path}/{MARKER}", t)
        undo = RefreshUndo(target.path, work, target.db, None, [], None, marker)
        try:
            if self.params.database and target.db is not None:
                # the tables and the dump in one round trip; database.sql.gz where the host has no zstd
                dest = f"{work}/database.sql.zst"
                undo.tables_before, undo.dump = dbcopy.snapshot_database(target, target.db, dest, t)
            if self.params.files:
                undo.files_snap = f"{work}/files"
                files.snapshot_files(target, undo.files_snap, t)
        except MaintkitError:
            # nothing of staging's was changed: the half-made snapshot (this run's folder) goes
            target.run(["rm", "-rf", "--", work], t, check=False)
            raise
        return undo

    def _refresh(self, ctx: Context, sides: Sides, plan: Plan, t: float, work: str) -> dict[str, Any]:
        p, target = self.params, sides.target
        report: dict[str, Any] = {"via": "host" if sides.via_host else "controller"}
        if p.database and sides.source.db is not None and target.db is not None:
            source_tables = sorted(plan.source.rows)
            report["dropped_tables"] = dbcopy.copy_database(sides, t, source_tables)
            report["tables"] = len(source_tables)
        if p.files:
            files.copy_files(sides, plan.excludes, t, work)
        if sides.platform == "wordpress":
            steps = WpSteps(target, work, str(ctx.vars.get("php") or "php"), t)
            steps.upload()
            report.update(steps.run_all(p, sides.source.env.url))
        else:
            report["guards"] = {"robots_txt": write_generic_guards(target, p.guards, t)}
        if p.sql and target.db is not None:
            dbcopy.run_sql(target, target.db, p.sql, t)
        for argv in p.commands:
            res = target.run(argv, t, check=False, cwd=target.path)
            if not res.ok:
                raise ApplyFailed(f"command {argv[0]} failed on {target.env.name}: {res.stderr[-500:]}")
        self._record(ctx, sides, plan, t)
        return report

    def _record(self, ctx: Context, sides: Sides, plan: Plan, t: float) -> None:
        after, _ = read_side(sides.target, self.params, plan.excludes, t)
        marker = {
            "refreshed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": ctx.run_id,
            "source_env": self.params.source,
            "source": plan.source.public(),
            "target": after.public(),
        }
        sides.target.transport.put(json.dumps(marker, indent=1).encode(), f"{sides.target.path}/{MARKER}", mode=0o600)

    def _restore(self, target: Side, undo: RefreshUndo, t: float) -> None:
        try:
            if undo.dump and undo.db is not None:
                dbcopy.restore_from(target, undo.db, undo.dump, undo.tables_before, t)
            if undo.files_snap:
                files.restore_files(target, undo.files_snap, t)
            marker = f"{undo.path}/{MARKER}"
            if undo.marker_before is None:
                target.run(["rm", "-f", "--", marker], t)
            else:
                target.transport.put(undo.marker_before, marker, mode=0o600)
        except MaintkitError as exc:
            raise RollbackFailed(f"restoring {target.env.name} from {undo.work} failed: {exc}") from exc
        undo.restored = True

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Put staging's previous database, files and refresh record back."""
        for change in reversed(changes):
            undo = change.undo
            if isinstance(undo, RefreshUndo) and not undo.restored:
                self._restore(Side(ctx.env, ctx.transport, undo.db), undo, self._timeout(ctx))

    def finalize(self, ctx: Context, changes: list[Change], ok: bool) -> None:
        """Remove the snapshot once it is no longer needed (kept after a failed restore)."""
        for change in changes:
            undo = change.undo
            if isinstance(undo, RefreshUndo) and (ok or undo.restored):
                ctx.run(["rm", "-rf", "--", undo.work], check=False)


__all__ = ["RefreshUndo", "StagingRefresh"]
