"""The composer driver of ``cms.update`` (Magento 2, Shopware, Laravel, Drupal, Bedrock, plain composer).

Planning is in :mod:`~maintkit.actions.cms.drivers.composer_plan`. Apply runs ``composer
update PKG:VERSION... --with-all-dependencies`` for real, then the platform's own steps
(``bin/magento setup:upgrade``...) and ``post_update``; verify reads composer.lock and
vendor/composer/installed.json back.

Rollback restores the ``cp -a`` snapshot of composer.json, composer.lock and vendor/, and
the database dump when one was taken (``db_name``; with ``schema_changed_if`` only when
that command says the schema changed).
"""

from __future__ import annotations

import json
from typing import Any

from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.cms.db import DbUndo, read_and_dump, restore_database
from maintkit.actions.cms.drivers.base import run_commands
from maintkit.actions.cms.drivers.composer_plan import ComposerPlanner, parse_operations
from maintkit.actions.cms.lock import LockedPackage
from maintkit.actions.cms.plan import Installed, UpdatePlan
from maintkit.actions.cms.snapshots import PackageUndo, snapshot_path, tree_hashes
from maintkit.errors import ApplyFailed, MaintkitError, VerifyFailed
from maintkit.results import Change

#: Steps each platform needs after ``composer update`` (run in the project directory).
PLATFORM_STEPS: dict[str, list[list[str]]] = {
    "magento": [["php", "bin/magento", "setup:upgrade", "--keep-generated"], ["php", "bin/magento", "cache:flush"]],
    "shopware": [["php", "bin/console", "system:update:finish"]],
    "laravel": [["php", "artisan", "migrate", "--force"]],
    "drupal": [["vendor/bin/drush", "updatedb", "-y"], ["vendor/bin/drush", "cache:rebuild"]],
    "bedrock": [],
    "composer": [],
}
_SNAPSHOT_FILES = ("composer.json", "composer.lock", "vendor")


class ComposerDriver(ComposerPlanner):
    """Plans, applies, verifies and rolls back composer package updates."""

    # ---------------------------------------------------------------- apply
    def apply(self, ctx: Context, plan: UpdatePlan[list[Installed]]) -> list[Change]:
        """Snapshot, dump, ``composer update`` with exact versions, platform steps; undo own work on failure."""
        return self.apply_or_undo(ctx, lambda changes: self._apply(ctx, plan, changes))

    def _apply(self, ctx: Context, plan: UpdatePlan[list[Installed]], changes: list[Change]) -> None:
        project = self.project(ctx)
        snap, _ = self.prepare_snapshot_dir(ctx)
        entries: list[tuple[str | None, str]] = []
        for name in _SNAPSHOT_FILES:
            existed = snapshot_path(ctx, f"{project}/{name}", f"{snap}/files/{name}")
            entries.append((f"{snap}/files/{name}" if existed else None, f"{project}/{name}"))
        changes.append(
            Change(
                target=f"{project}/vendor",
                summary="snapshot of composer.json, composer.lock and vendor/",
                undo=PackageUndo(entries),
            )
        )
        if self.p.database != "never" and self.p.db_name:
            changes.append(self._dump(ctx, snap))
        targets = [f"{u.name}:{u.to}" for u in plan.updates if u.operation != "remove" and u.to]
        for u in plan.updates:
            changes.append(
                Change(target=u.package.key, summary=u.line(), before=u.package.version or None, after=u.to or None)
            )
        res = self.composer(
            ctx, ["update", *targets, "--with-all-dependencies", "--no-ansi", "--no-progress", *self.p.update_args]
        )
        if not res.ok:
            raise ApplyFailed(f"composer update failed ({res.why}): {tail(res.stderr or res.stdout)}")
        steps = PLATFORM_STEPS.get(self.platform, []) if self.p.platform_steps else []
        if steps:
            run_commands(ctx, steps, cwd=project, what=f"{self.platform} step")
        if self.p.post_update:
            run_commands(ctx, self.p.post_update, cwd=project, what="post_update")

    def _dump(self, ctx: Context, snap: str) -> Change:
        database = str(self.p.db_name)
        dump = f"{snap}/database.sql.zst"
        cnf = self.p.db_defaults_file
        undo = DbUndo(database=database, dump=dump, defaults_file=cnf, tables_before=[])
        read_and_dump(ctx, undo)  # the table list and the dump in one round trip
        return Change(target=f"database:{database}", summary="dumped before the update", after=undo.dump, undo=undo)

    # ---------------------------------------------------------------- verify
    def verify(self, ctx: Context, plan: UpdatePlan[list[Installed]]) -> tuple[list[Installed], dict[str, str | None]]:
        """composer.lock and vendor/composer/installed.json must both show the planned versions."""
        installed = self.installed(ctx)
        by_name = {p.name: p for p in installed}
        vendor = self._vendor_versions(ctx)
        problems = []
        for u in plan.updates:
            now = by_name.get(u.name)
            if u.operation == "remove":
                if now is not None:
                    problems.append(f"{u.name} is still locked at {now.version}")
                continue
            if now is None or now.version != u.to:
                problems.append(f"{u.name} is locked at {now.version if now else '(absent)'}, expected {u.to}")
            if vendor.get(u.name) != u.to:
                problems.append(f"vendor/ has {u.name} {vendor.get(u.name) or '(absent)'}, expected {u.to}")
        trees = tree_hashes(ctx, [by_name[u.name].path for u in plan.updates if u.name in by_name])
        for u in plan.updates:
            if u.expected_tree and u.name in by_name and trees.get(by_name[u.name].path) != u.expected_tree:
                problems.append(f"{u.name}: installed files differ from the validated package (tree hash)")
        if problems:
            raise VerifyFailed("; ".join(problems))
        return installed, trees

    def _vendor_versions(self, ctx: Context) -> dict[str, str]:
        try:
            data = json.loads(ctx.get(f"{self.project(ctx)}/vendor/composer/installed.json"))
        except (MaintkitError, json.JSONDecodeError):
            return {}
        packages = data.get("packages", []) if isinstance(data, dict) else data
        return {str(p.get("name")): str(p.get("version")) for p in packages if isinstance(p, dict)}

    def lock_packages(
        self,
        ctx: Context,
        installed: list[Installed],
        plan: UpdatePlan[list[Installed]] | None,
        trees: dict[str, str | None] | None = None,
    ) -> dict[str, LockedPackage]:
        """Lock entries for every package of composer.lock (tree hashes for the updated ones)."""
        updated = {u.name: u for u in (plan.updates if plan else [])}
        trees = dict(trees or {})
        out: dict[str, LockedPackage] = {}
        for pkg in installed:
            u = updated.get(pkg.name)
            out[pkg.key] = LockedPackage.model_validate(
                {
                    "name": pkg.name,
                    "type": "composer",
                    "version": pkg.version,
                    "tree": trees.get(pkg.path) if u else None,
                    "reference": pkg.extra.get("reference"),
                    "shasum": pkg.extra.get("shasum"),
                    "updated": u is not None,
                    "from": (u.package.version or None) if u else None,
                }
            )
        return out

    # ---------------------------------------------------------------- rollback
    def undo_database(self, ctx: Context, undo: DbUndo) -> dict[str, Any]:
        """Restore the dump unless ``schema_changed_if`` (with ``database: auto``) says the schema is unchanged."""
        changed = True
        if self.p.database == "auto" and self.p.schema_changed_if:
            res = ctx.run(self.p.schema_changed_if, cwd=self.project(ctx), env=self.env(), check=False)
            changed = res.exit_code == 0
        if not changed:
            return {"restored": False}
        return {"restored": True, "dropped_tables": restore_database(ctx, undo)}


__all__ = ["PLATFORM_STEPS", "ComposerDriver", "parse_operations"]
