"""``backup.restore``: restore a backup's databases and/or files, after a safety backup."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from maintkit._text import tail
from maintkit.action import Action, Context
from maintkit.errors import ApplyFailed, CheckFailed, MaintkitError, NotReversible, RollbackFailed, VerifyFailed
from maintkit.probes import Probe
from maintkit.probes.backup import BackupListing, Manifest
from maintkit.results import Change, Check

from .codec import item_compression, missing_decoders
from .common import backup_dir, format_age, is_protected, select, timeout_kwargs
from .create import BackupJob, missing_for, record_of, tools_probe, write_backup
from .db import ConnectionOverride, DatabaseSpec, connect, spec_from_item
from .files import ALWAYS_EXCLUDED, compare_script, content_differences, exact_restore_script
from .verify import compare_tables, db_state

What = Literal["db", "files", "both"]


class BackupRestoreParams(ConnectionOverride):
    """Parameters of ``backup.restore``."""

    backup: str = Field("latest", description="latest (newest regular backup) or a backup id")
    what: What = Field("both", description="db, files or both (what the backup holds)")
    backup_dir: str | None = Field(None, description="Default: vars.backup_dir, else <path>/.maint/backups")
    safety_backup: bool = Field(True, description="Back up the current state first (makes the restore reversible)")
    drop_extra_tables: bool = Field(True, description="Drop tables that are not in the backup (exact restore)")
    strip_definers: bool = Field(False, description="Remove DEFINER clauses (when the definer user does not exist)")
    row_tolerance: float = Field(0.0, ge=0, le=1, description="Allowed relative difference of row counts in verify")
    timeout: float | None = Field(None, gt=0, description="Seconds a dump, restore or extraction may take")


def _parts(manifest: Manifest, what: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dbs = manifest.db_items() if what in ("db", "both") else []
    files = manifest.file_items() if what in ("files", "both") else []
    return dbs, files


def _safety_job(
    ctx: Context, p: BackupRestoreParams, dbs: list[dict[str, Any]], files: list[dict[str, Any]]
) -> BackupJob:
    specs = [spec_from_item(i, p) for i in dbs]
    paths = sorted({str(x) for i in files for x in i.get("paths", [])})
    excludes = sorted({str(x) for i in files for x in i.get("excludes", []) if x not in ALWAYS_EXCLUDED})
    return BackupJob(specs, paths, ctx.path.rstrip("/") or "/", excludes, "auto")


class BackupRestore(Action[BackupRestoreParams]):
    """Restore a backup (``latest`` or an id): databases, files, or both.

    On production (env ``production`` or ``vars.protected: true``) it refuses to run without
    the confirmation flag (``maint run --yes`` / ``maint restore --yes``). It first takes a
    safety backup of what it will overwrite, so the restore itself can be rolled back; when
    the restore fails midway the safety backup is put back at once. Databases are restored
    exactly (tables not in the backup are dropped, unless ``drop_extra_tables: false``); files
    are restored exactly: under the archived paths, entries the backup does not hold are
    removed (``<path>/.maint`` and the backup's excludes are left alone), so rolling a restore
    back from its safety backup gives back the exact previous tree.
    """

    name = "backup.restore"
    Params = BackupRestoreParams
    summary = "Restore a backup (db, files or both) after a safety backup; production needs --yes."
    rollback_kind = "undo"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        try:
            return [BackupListing(backup_dir(ctx, self.params.backup_dir)), tools_probe()]
        except CheckFailed:
            return []

    def check(self, ctx: Context) -> Check:
        p = self.params
        directory = backup_dir(ctx, p.backup_dir)
        manifest = select(ctx.probe(BackupListing(directory)), p.backup)
        dbs, files = _parts(manifest, p.what)
        if not dbs and not files:
            raise CheckFailed(f"backup {manifest.id} holds no {p.what} to restore ({manifest.describe()})")
        if (p.what == "db" and not dbs) or (p.what == "files" and not files):
            raise CheckFailed(f"backup {manifest.id} holds no {p.what} ({manifest.describe()})")
        tools = ctx.probe(tools_probe())
        missing = missing_for(_safety_job(ctx, p, dbs, files), tools)
        missing += [t for t in missing_decoders([*dbs, *files], tools) if t not in missing]
        if missing:
            raise CheckFailed(f"{ctx.env.display_host} lacks {', '.join(missing)}")
        what = ", ".join([f"db {i.get('name')}" for i in dbs] + (["files"] if files else []))
        age = format_age(datetime.now(UTC) - manifest.created)
        reason = f"restore {what} from backup {manifest.id} ({age} old)"
        reason += "; a safety backup is taken first" if p.safety_backup else "; NO safety backup (safety_backup: false)"
        if is_protected(ctx) and not ctx.options.extra.get("yes"):
            message = (
                f"{ctx.site.name}/{ctx.env.name} is protected: restoring overwrites live data; "
                "confirm with --yes (maint run --yes, or maint restore --yes)"
            )
            if not ctx.check_mode:
                raise CheckFailed(message)
            reason += f" (needs confirmation: {message})"
        return Check.change(reason, snapshot=(directory, manifest, dbs, files))

    # ------------------------------------------------------------------------------ apply
    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        directory, manifest, dbs, files = check.snapshot
        tools = ctx.probe(tools_probe())
        safety: Manifest | None = None
        if p.safety_backup:
            job = _safety_job(ctx, p, dbs, files)
            safety = write_backup(
                ctx, job, directory, tools, kind="safety", note=f"before restoring {manifest.id}", timeout=p.timeout
            )
            ctx.record(safety_backup=record_of(safety, directory))
        try:
            self._restore(ctx, manifest, dbs, files, tools, drop_extra=p.drop_extra_tables, strip=p.strip_definers)
        except MaintkitError as exc:
            raise self._failed(ctx, manifest, safety, exc, tools) from None
        ctx.record(restored={"id": manifest.id, "what": p.what, "safety_backup": safety.id if safety else None})
        what = ", ".join([f"db {i.get('name')}" for i in dbs] + (["files"] if files else []))
        return [
            Change(
                f"{ctx.site.name}/{ctx.env.name}",
                f"restored {what} from backup {manifest.id}",
                before={"safety_backup": safety.id if safety else None},
                after={"restored": manifest.id},
                undo=(directory, safety),
            )
        ]

    def _failed(
        self, ctx: Context, manifest: Manifest, safety: Manifest | None, exc: MaintkitError, tools: frozenset[str]
    ) -> ApplyFailed:
        if safety is None:
            return ApplyFailed(f"restoring {manifest.id} failed and there is no safety backup: {exc}")
        try:
            sdbs, sfiles = _parts(safety, "both")
            self._restore(ctx, safety, sdbs, sfiles, tools, drop_extra=True, strip=self.params.strip_definers)
        except MaintkitError as again:
            return ApplyFailed(
                f"restoring {manifest.id} failed ({exc}) and putting back the safety backup {safety.id} failed too "
                f"({again}): restore {safety.id} by hand",
            )
        return ApplyFailed(
            f"restoring {manifest.id} failed; the previous state was put back from safety backup {safety.id}: {exc}",
        )

    def _restore(
        self,
        ctx: Context,
        manifest: Manifest,
        dbs: list[dict[str, Any]],
        files: list[dict[str, Any]],
        tools: frozenset[str],
        *,
        drop_extra: bool,
        strip: bool,
    ) -> None:
        directory = manifest.directory.rsplit("/", 1)[0]
        for item in dbs:
            spec = spec_from_item(item, self.params)
            self._restore_db(ctx, spec, manifest, item, directory, tools, drop_extra=drop_extra, strip=strip)
        base = ctx.path.rstrip("/") or "/"
        for item in files:
            stage = f"{base}/.maint/restore-{secrets.token_hex(4)}.partial"
            paths = [str(x) for x in item.get("paths", [])]
            excludes = [str(x) for x in item.get("excludes", [])]
            compression = item_compression(item)
            script = exact_restore_script(manifest.path(str(item["file"])), compression, base, paths, excludes, stage)
            res = ctx.run_shell(script, check=False, **timeout_kwargs(self.params.timeout))
            if not res.ok:
                raise ApplyFailed(f"extracting {item['file']} failed: {tail(res.stderr or res.stdout, 500)}")

    def _restore_db(
        self,
        ctx: Context,
        spec: DatabaseSpec,
        manifest: Manifest,
        item: dict[str, Any],
        directory: str,
        tools: frozenset[str],
        *,
        drop_extra: bool,
        strip: bool,
    ) -> None:
        expected = dict(item.get("tables") or {})
        with connect(ctx, spec, directory, tools) as client:
            if drop_extra:
                current = client.tables(ctx, spec.name)
                extra = [n for n, (kind, _) in current.items() if n not in expected and kind == "table"]
                views = [n for n, (kind, _) in current.items() if n not in expected and kind == "view"]
                client.drop_tables(ctx, spec.name, extra, views)
            script = client.restore_script(
                manifest.path(str(item["file"])),
                spec.name,
                strip_definers=strip,
                clean=True,
                compression=item_compression(item),
            )
            res = ctx.run_shell(script, env=client.env or None, check=False, **timeout_kwargs(self.params.timeout))
            if not res.ok:
                raise ApplyFailed(f"restoring db {spec.name} failed: {tail(res.stderr or res.stdout, 500)}")

    # ------------------------------------------------------------------------------ verify
    def verify(self, ctx: Context) -> None:
        p = self.params
        restored = ctx.data.get("restored") or {}
        directory = backup_dir(ctx, p.backup_dir)
        ctx.invalidate()
        manifest = ctx.probe(BackupListing(directory)).get(str(restored.get("id")))
        if manifest is None:
            raise VerifyFailed(f"backup {restored.get('id')} vanished from {directory}")
        dbs, files = _parts(manifest, p.what)
        problems = self._db_problems(ctx, directory, dbs) + self._file_problems(ctx, manifest, files)
        if problems:
            raise VerifyFailed(f"after restoring {manifest.id}: " + "; ".join(problems[:20]))

    def _db_problems(self, ctx: Context, directory: str, dbs: list[dict[str, Any]]) -> list[str]:
        problems: list[str] = []
        tools = ctx.probe(tools_probe())
        for item in dbs:
            spec = spec_from_item(item, self.params)
            expected = dict(item.get("tables") or {})
            with connect(ctx, spec, directory, tools) as client:
                kinds, counts = db_state(ctx, client, spec.name, expected)
            if not self.params.drop_extra_tables:
                kinds = {k: v for k, v in kinds.items() if k in expected}
            found = compare_tables(expected, kinds, counts, self.params.row_tolerance)
            problems += [f"db {spec.name}: {x}" for x in found]
        return problems

    def _file_problems(self, ctx: Context, manifest: Manifest, files: list[dict[str, Any]]) -> list[str]:
        problems: list[str] = []
        for item in files:
            script = compare_script(manifest.path(str(item["file"])), item_compression(item), ctx.path)
            out = ctx.run_shell(script, check=False, **timeout_kwargs(self.params.timeout)).stdout
            problems += [f"{item['file']}: {line}" for line in content_differences(out)]
        return problems

    # ------------------------------------------------------------------------------ rollback
    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Put back the safety backup taken before the restore."""
        tools = ctx.probe(tools_probe())
        for change in reversed(changes):
            _directory, safety = change.undo
            if safety is None:
                raise NotReversible("the restore ran without a safety backup (safety_backup: false)")
            dbs, files = _parts(safety, "both")
            try:
                self._restore(ctx, safety, dbs, files, tools, drop_extra=True, strip=self.params.strip_definers)
            except MaintkitError as exc:
                raise RollbackFailed(f"putting back safety backup {safety.id} failed: {exc}") from None
