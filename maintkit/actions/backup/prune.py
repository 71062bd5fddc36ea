"""``backup.prune``: retention by generations (last N, daily, weekly, monthly), with pins."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import Field

from maintkit._text import tail
from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed, CheckFailed, NotReversible
from maintkit.probes import Probe
from maintkit.probes.backup import ID_RE, BackupListing, Manifest, PinnedIds
from maintkit.results import Change, Check

from .common import backup_dir, ids_in_run, pin_file


def _bucket_keep(backups: Sequence[Manifest], count: int, key: Callable[[datetime], Any]) -> set[str]:
    """Keep the newest backup of each of the ``count`` newest periods (day, week, month)."""
    kept: set[str] = set()
    seen: set[Any] = set()
    for b in backups:
        if len(seen) >= count:
            break
        period = key(b.created)
        if period not in seen:
            seen.add(period)
            kept.add(b.id)
    return kept


def retention(
    backups: Sequence[Manifest], *, keep_last: int, keep_daily: int = 0, keep_weekly: int = 0, keep_monthly: int = 0
) -> dict[str, list[str]]:
    """Why each kept backup is kept: id -> reasons. ``backups`` must be newest first."""
    reasons: dict[str, list[str]] = {}

    def mark(ids: set[str], why: str) -> None:
        for i in ids:
            reasons.setdefault(i, []).append(why)

    mark({b.id for b in backups[:keep_last]}, "last")
    mark(_bucket_keep(backups, keep_daily, lambda d: d.date()), "daily")
    mark(_bucket_keep(backups, keep_weekly, lambda d: d.isocalendar()[:2]), "weekly")
    mark(_bucket_keep(backups, keep_monthly, lambda d: (d.year, d.month)), "monthly")
    return reasons


class BackupPruneParams(Params):
    """Parameters of ``backup.prune``."""

    keep_last: int = Field(7, ge=1, description="Keep the newest N backups")
    keep_daily: int = Field(0, ge=0, description="Also keep the newest backup of each of the last N days with backups")
    keep_weekly: int = Field(0, ge=0, description="... of each of the last N ISO weeks with backups")
    keep_monthly: int = Field(0, ge=0, description="... of each of the last N months with backups")
    backup_dir: str | None = Field(None, description="Default: vars.backup_dir, else <path>/.maint/backups")


class BackupPrune(Action[BackupPruneParams]):
    """Delete backups beyond the retention policy.

    Never deletes the newest verified backup, a backup pinned in ``<path>/.maint/pinned``
    (one id a line), one created, restored or relied on by an earlier step of this run,
    nor a backup whose manifest cannot be read. Plan mode lists what would be deleted.
    Deleting is not reversible.
    """

    name = "backup.prune"
    Params = BackupPruneParams
    summary = "Delete old backups by retention (last N, daily, weekly, monthly); never the newest verified or pinned."
    rollback_kind = "none"
    rollback_reason = "deleted backups cannot come back"
    depends_on_previous = True

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        try:
            return [BackupListing(backup_dir(ctx, self.params.backup_dir)), PinnedIds(pin_file(ctx))]
        except CheckFailed:
            return []

    def plan(self, ctx: Context) -> tuple[str, list[Manifest], dict[str, list[str]]]:
        """(directory, backups to delete, id -> reasons to keep)."""
        p = self.params
        directory = backup_dir(ctx, p.backup_dir)
        listing = ctx.probe(BackupListing(directory))
        backups = list(listing.backups)
        keep = retention(
            backups,
            keep_last=p.keep_last,
            keep_daily=p.keep_daily,
            keep_weekly=p.keep_weekly,
            keep_monthly=p.keep_monthly,
        )
        verified = next((b for b in backups if b.verified), None)
        if verified is not None:
            keep.setdefault(verified.id, []).append("newest verified")
        for bid in ctx.probe(PinnedIds(pin_file(ctx))):
            keep.setdefault(bid, []).append("pinned")
        for bid in ids_in_run(ctx):
            keep.setdefault(bid, []).append("used by this run")
        delete = [b for b in backups if b.id not in keep]
        return directory, delete, keep

    def check(self, ctx: Context) -> Check:
        directory, delete, keep = self.plan(ctx)
        ctx.record(prune={"keep": sorted(keep), "delete": [b.id for b in delete]})
        if not delete:
            return Check.ok(f"nothing to prune in {directory} ({len(keep)} kept)")
        diff = "".join(f"-{b.id} ({b.created:%Y-%m-%d %H:%M}, {b.size} bytes)\n" for b in delete)
        return Check.change(
            f"{len(delete)} backup(s) beyond retention: {', '.join(b.id for b in delete)} ({len(keep)} kept)",
            diff=diff,
            snapshot=(directory, delete),
        )

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        directory, delete = check.snapshot
        changes: list[Change] = []
        for b in delete:
            if not ID_RE.match(b.id):  # never build a path from anything else
                raise ApplyFailed(f"refusing to delete {b.id!r}: not a backup id")
            res = ctx.run(["rm", "-rf", "--", f"{directory}/{b.id}"], check=False)
            if not res.ok:
                raise ApplyFailed(f"cannot delete {directory}/{b.id}: {tail(res.stderr, 300)}")
            changes.append(Change(f"{directory}/{b.id}", "deleted", before=b.summary()))
        return changes

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        raise NotReversible("deleted backups cannot be brought back")
