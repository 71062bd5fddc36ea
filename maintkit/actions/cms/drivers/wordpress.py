"""The WordPress driver of ``cms.update`` (WooCommerce shops and any WordPress site).

Planning and the PHP helper are in :mod:`~maintkit.actions.cms.drivers.wordpress_plan`,
package sources in :mod:`~maintkit.actions.cms.drivers.wordpress_sources`. This module
installs (the database dump and ``cp -a`` snapshots before anything live changes; plugins and
themes are unpacked into a sibling folder and switched in by renames, see
:mod:`~maintkit.actions.cms.drivers.wordpress_switch`; the round trips that carry it, two for
plugins and themes, are in :mod:`~maintkit.actions.cms.drivers.wordpress_trips`), verifies what is
really installed, compares the database schema with the dump's and writes lock entries.

Rollback never runs PHP: it swaps the ``cp -a`` snapshots back and loads the database
dump with the mariadb client, so it works when the update broke WordPress.

PHP boots per changed stage: ONE ``install`` for every package switched in (it unpacks them
beside their live folders and writes the dump's option file; with a core update or a single-file
plugin, ``dbcnf`` writes it in a process of its own, with wp-config.php only, and each package
has its own install) and ONE ``activate`` for every switched package, whose fresh process
booted WordPress with all the new code and also reports the installed state: verify checks that
report (``read_back: activation``) instead of booting WordPress once more, unless anything
ran after it (``post_update`` commands), in which case verify reads the state afresh.
"""

from __future__ import annotations

from typing import Any

from maintkit.action import Context
from maintkit.actions.cms.db import DbUndo, restore_database
from maintkit.actions.cms.drivers.base import run_commands
from maintkit.actions.cms.drivers.wordpress_reads import AfterReads
from maintkit.actions.cms.drivers.wordpress_state import (
    WpState,
    read_zip_package,
    same_version,
    state_from_helper,
)
from maintkit.actions.cms.drivers.wordpress_switch import schema_changes, sibling, switchable
from maintkit.actions.cms.drivers.wordpress_trips import Staged, WordPressTrips, switch_outcomes
from maintkit.actions.cms.lock import LockedPackage
from maintkit.actions.cms.plan import Update, UpdatePlan
from maintkit.actions.cms.snapshots import (
    PackageUndo,
    sha256_hex,
    snapshot_path,
    snapshot_result,
    snapshot_script,
    tree_hashes,
)
from maintkit.actions.cms.trip import Part
from maintkit.errors import ApplyFailed, CheckFailed, VerifyFailed
from maintkit.results import Change, CommandResult

CORE_ENTRIES_EXCLUDED = ("wp-config.php", "wp-content", ".maint", ".htaccess")


def core_entries(ctx: Context, root: str) -> list[str]:
    """The entries of the WordPress root that belong to core (snapshotted before a core update)."""
    res = ctx.run(["find", root, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\n"], check=False)
    names = [n for n in res.stdout.splitlines() if n]
    keep = []
    for n in names:
        if n in CORE_ENTRIES_EXCLUDED:
            continue
        if n in ("wp-admin", "wp-includes") or n.endswith(".php") or n in ("license.txt", "readme.html"):
            keep.append(n)
    return keep


class WordPressDriver(WordPressTrips):
    """Plans, applies, verifies and rolls back WordPress core, plugin and theme updates."""

    #: package folders switched in in this apply
    switched: list[str]
    #: those of them switched by two renames, not the atomic exchange (missing for a moment)
    by_renames: list[str]
    #: the state the last helper process of apply reported after every change (None: read afresh)
    _listing: dict[str, Any] | None = None
    #: what the last helper process of apply flushed after every change (``flush_caches``)
    _flushed: dict[str, Any] | None = None
    #: verify's reads taken right after the last helper process of apply (None: verify reads)
    _after: AfterReads | None = None
    #: the packages whose tree hashes verify reads (planned before apply: see ``_verify_paths``)
    _pre_paths: list[str]

    # ---------------------------------------------------------------- apply
    def apply(self, ctx: Context, plan: UpdatePlan[WpState]) -> list[Change]:
        """Dump the database, snapshot and install every update; undo own work on failure."""
        return self.apply_or_undo(ctx, lambda changes: self._apply(ctx, plan, changes))

    def _apply(self, ctx: Context, plan: UpdatePlan[WpState], changes: list[Change]) -> None:
        self.switched, self._db_undo, self._listing, self._flushed, self._after = [], None, None, None, None
        self.by_renames = []
        state = plan.state
        self._pre_paths = self._verify_paths(ctx, plan, state)
        updates = sorted(plan.updates, key=lambda u: u.kind != "core")
        try:
            staged = self._prepare(ctx, state, updates, changes)
            batch = {id(s.update) for s in staged}
            for update in updates:
                if id(update) not in batch:
                    staged += self._install(ctx, update, changes, last=update is updates[-1])
            if staged:  # every package unpacked beside its live folder: switched in, then ONE activation
                self._switch(ctx, staged)
        finally:
            ctx.record(
                switched=list(self.switched), switched_by_renames=list(self.by_renames),
                timing_ms=self.clock.public(), php_boots=self.clock.boots,
            )  # fmt: skip
        if self.p.post_update:
            self._listing = self._flushed = self._after = None  # the commands may change what activation reported
            run_commands(ctx, self.p.post_update, cwd=self.root(ctx), what="post_update")
        if self._flushed is not None:
            ctx.record(platform_flushed=self._flushed)

    def _prepare(self, ctx: Context, state: WpState, updates: list[Update], changes: list[Change]) -> list[Staged]:
        """The first round trip: the folders, the helper and the dump, with the install of every
        package switched in beside its live folder when no core update goes first (those are
        returned, their changes recorded: see :mod:`~maintkit.actions.cms.drivers.wordpress_trips`)."""
        workdir = state.paths.get("content", self.root(ctx) + "/wp-content") + "/upgrade"
        packages = f"{self.snapshot_dir(ctx)}/packages"  # the zips staged for the upgrader
        core = any(u.kind == "core" for u in updates)
        batch = [] if core else [self._staged(ctx, u) for u in updates if switchable(u.package.path)]
        if not batch:
            _, existing, dump = self.prepare_and_dump(ctx, state, dirs=[packages], exists=[workdir])
            if dump is not None:
                changes.append(dump)
            self._upgrade_dir(workdir, existing, changes)
            return []
        trip, answer, undo, marker = self.prepare_install_and_dump(ctx, state, batch, dirs=[packages], exists=[workdir])
        self._upgrade_dir(workdir, self.prepared_snapshot_dir(ctx, trip[0], exists=[workdir]), changes)
        for i, one in enumerate(batch, start=1):  # every snapshot ran before the one install
            self._record_package(one, trip[i], changes)
        self._answers_ok(batch, answer, "install")
        if undo is not None:  # first in the changes, as when it ran before the install: undone last
            changes.insert(0, self.dump_change(state, undo, answer.get("dbcnf"), trip, marker))
        return batch

    @staticmethod
    def _upgrade_dir(workdir: str, existing: set[str], changes: list[Change]) -> None:
        """``wp-content/upgrade`` as a change when it was not there: the upgrader makes it and
        leaves it behind (the undo removes it)."""
        if workdir not in existing:
            changes.append(
                Change(
                    target=workdir, summary="WordPress upgrade working directory", undo=PackageUndo([(None, workdir)])
                )
            )

    def _flush_args(self, ctx: Context, last: bool) -> dict[str, Any]:
        """``flush_caches``: the last helper process of apply flushes the object cache and the
        rewrite rules after everything it did (with the site's URL, as cache.clear's flush)."""
        if not (self.p.flush_caches and last):
            return {}
        return {"flush": True, **({"url": ctx.env.url} if ctx.env.url else {})}

    def _flush_record(self, ctx: Context, res: dict[str, Any]) -> dict[str, Any] | None:
        """What the helper process that just answered flushed (None: nothing)."""
        flushed = res.get("flushed")
        if isinstance(flushed, dict) and flushed.get("rewrite"):
            return {"root": self.root(ctx), "cache": bool(flushed.get("cache")), "rewrite": True}
        return None

    def _stage_zip(self, ctx: Context, update: Update, snap: str) -> tuple[str, bytes | None]:
        """Where the upgrader finds the package, and the bytes to write there first (None: the
        zip is already on the host, its sha256 checked here)."""
        offer = update.offer
        if offer is None:
            raise ApplyFailed(f"{update.kind} {update.name}: no package to install")
        if offer.location == "host":
            res = ctx.run(["sha256sum", "--", offer.ref], check=False)
            actual = res.stdout.split(" ", 1)[0] if res.ok else ""
            if offer.sha256 and actual != offer.sha256:
                raise ApplyFailed(f"{offer.ref} changed since it was checked (sha256 {actual or 'unreadable'})")
            return offer.ref, None
        if offer.data is None:
            offer.data = self.sources.fetch(ctx, offer)
            if offer.sha256 and sha256_hex(offer.data) != offer.sha256:
                raise ApplyFailed(f"{offer.ref} changed since it was checked")
        return f"{snap}/packages/{update.name}-{update.to}.zip", offer.data  # folder made by prepare_snapshot_dir

    def _staged(self, ctx: Context, update: Update) -> Staged:
        """A plugin's or theme's install, ready to send (its zip fetched: see :meth:`_stage_zip`)."""
        pkg = update.package
        with self.clock.part("package_upload"):
            zip_path, data = self._stage_zip(ctx, update, self.snapshot_dir(ctx))
        dest = pkg.path
        side = sibling(dest) if switchable(dest) else None
        args = {
            "type": pkg.kind,
            "zip": zip_path,
            "slug": pkg.name,
            "active": bool(pkg.active),
            "network_active": bool(pkg.extra.get("network_active")),
        }
        upload = zip_path if data is not None else None
        target = f"{self.snapshot_dir(ctx)}/{pkg.kind}s/{pkg.name}"
        size = len(data) if data is not None else None  # exactly its bytes: other zips may follow on stdin
        snapshot = Part(snapshot_script(dest, target, upload=upload, size=size), stdin=data is not None)
        into = {"into": side.new} if side else {}
        return Staged(update, snapshot, {**args, **into}, data, upload, dest, target, side)

    def _install(self, ctx: Context, update: Update, changes: list[Change], *, last: bool) -> list[Staged]:
        """One update after the first round trip: core through its upgrader (it flushes when
        nothing comes after it), else the zip with the snapshot, then the install (a single-file
        plugin: in place); the package to switch in, when it is one."""
        self._listing = self._flushed = self._after = None
        if update.kind == "core":
            with self.clock.part("package_upload"):
                zip_path, data = self._stage_zip(ctx, update, self.snapshot_dir(ctx))
                if data is not None:
                    ctx.put(data, zip_path, mode=0o600)
            self._install_core(ctx, update, zip_path, self.snapshot_dir(ctx), changes, self._flush_args(ctx, last))
            return []
        staged = self._staged(ctx, update)
        # the zip written with the snapshot, then the install: one round trip
        trip, started = self.snapshot_and_install(ctx, staged.snapshot, staged.args, staged.data)
        answer = self.helper_ran(trip, 1, "snapshots", started)
        self._record_package(staged, trip[0], changes)
        self._helper_ok(update, answer, "install")
        return [staged] if staged.side is not None else []

    @staticmethod
    def _record_package(staged: Staged, snapshot: CommandResult, changes: list[Change]) -> None:
        """Read the snapshot part, then record the package's change (its undo: the siblings the
        install may have left, then the snapshot back)."""
        update, pkg = staged.update, staged.update.package
        existed = snapshot_result(snapshot, staged.dest, upload=staged.upload)
        # the rollback removes the siblings it may have left (only these recorded paths), then restores
        side = staged.side
        leftovers: list[tuple[str | None, str]] = [(None, side.new), (None, side.old)] if side else []
        changes.append(
            Change(
                target=pkg.key,
                summary=f"{pkg.kind} {pkg.name} {pkg.version} -> {update.to}",
                before=pkg.version,
                after=update.to,
                undo=PackageUndo([*leftovers, (staged.target if existed else None, staged.dest)]),
            )
        )

    def _switch(self, ctx: Context, staged: list[Staged]) -> None:
        """The switches and ONE re-activation of every package in ``staged``; apply's last helper
        process (no ``post_update`` after it) also reads what verify compares, in the same round
        trip, and flushes."""
        self._listing = self._flushed = self._after = None
        reads = None if self.p.post_update else (self._pre_paths, self._db_undo)
        packages = [{k: v for k, v in s.args.items() if k not in ("into", "zip")} for s in staged]
        args = {"packages": packages, "list": True, **self._flush_args(ctx, True)}
        sides = [s.side for s in staged if s.side is not None]
        trip, res, self._after = self.switch_and_activate(ctx, sides, args, reads)
        done, failed = switch_outcomes(trip, sides)
        for side, renamed in done:
            self.switched.append(side.dest)
            if renamed:
                self.by_renames.append(side.dest)
        if failed is not None:
            raise failed
        self._answers_ok(staged, res, "activation")
        self._flushed = self._flush_record(ctx, res)
        state = res.get("state")
        self._listing = state if isinstance(state, dict) and state.get("ok") else None

    def _answers_ok(self, staged: list[Staged], res: dict[str, Any], what: str) -> None:
        """ApplyFailed naming the package the helper's one process failed for (``what``: its
        install or its re-activation): each one's answer in order (an install stops at the first
        that failed); a process that died (a PHP fatal error) names the package whose folder
        holds the file the error happened in, else every package it worked on."""
        results = res.get("results")
        if isinstance(results, list):  # the first that failed raises; a process that died has none
            for one, answer in zip(staged, results, strict=False):
                self._helper_ok(one.update, answer if isinstance(answer, dict) else {}, what)
            if len(results) == len(staged):
                return
        where = str(res.get("file") or "")
        blamed = [s for s in staged if where.startswith(f"{s.dest}/")] or staged
        if len(blamed) == 1:
            self._helper_ok(blamed[0].update, {**res, "ok": False}, what)
        names = ", ".join(f"{s.update.package.kind} {s.update.package.name} {s.update.to}" for s in blamed)
        raise ApplyFailed(f"{names}: {what} failed: {res.get('error')}")

    def _verify_paths(self, ctx: Context, plan: UpdatePlan[WpState], st: WpState) -> list[str]:
        """The package folders verify hashes: the updated ones and, on a stage that writes the
        version lock, every package in policy scope as ``st`` lists them."""
        paths = [u.package.path for u in plan.updates if u.kind != "core"]
        if not ctx.stage_promote:  # the version lock hashes every package in scope: one read for all
            paths += [p for p in self._lock_paths(st) if p not in paths]
        return paths

    @staticmethod
    def _helper_ok(update: Update, res: dict[str, Any], what: str) -> None:
        """ApplyFailed with the helper's error and last messages unless it answered ok."""
        if not res.get("ok"):
            pkg = update.package
            msgs = "; ".join(str(m) for m in res.get("messages", [])[-5:])
            raise ApplyFailed(
                f"{pkg.kind} {pkg.name} {update.to}: {what} failed: {res.get('error')}" + (f" ({msgs})" if msgs else "")
            )

    def _install_core(
        self, ctx: Context, update: Update, zip_path: str, snap: str, changes: list[Change], flush: dict[str, Any]
    ) -> None:
        root = self.root(ctx)
        entries = core_entries(ctx, root)
        pairs: list[tuple[str | None, str]] = []
        for name in entries:
            snapshot_path(ctx, f"{root}/{name}", f"{snap}/core/{name}")
            pairs.append((f"{snap}/core/{name}", f"{root}/{name}"))
        changes.append(
            Change(
                target="core:wordpress",
                summary=f"core {update.package.version} -> {update.to}",
                before=update.package.version,
                after=update.to,
                undo=PackageUndo(pairs, remove_new=sorted(entries)),
            )
        )
        res = self.call(ctx, "core", {"zip": zip_path, "version": update.to}, uploaded=True)
        if not res.get("ok"):
            raise ApplyFailed(f"core {update.to}: update failed: {res.get('error')}")
        db = self.call(ctx, "dbupgrade", {"list": True, **flush}, uploaded=True)
        if not db.get("ok"):
            raise ApplyFailed(f"core {update.to}: database upgrade failed: {db.get('error')}")
        self._flushed = self._flush_record(ctx, db)
        state = db.get("state")
        self._listing = state if isinstance(state, dict) and state.get("ok") else None

    # ---------------------------------------------------------------- verify
    def verify(self, ctx: Context, plan: UpdatePlan[WpState]) -> tuple[WpState, dict[str, str | None]]:
        """Read back what is installed (WordPress must bootstrap) and compare it with the plan.

        The state comes from the process that re-activated the last switched package (it booted
        WordPress with the new code, after every change), else from a fresh helper run."""
        try:
            st = self._read_back(ctx)
        except CheckFailed as exc:
            raise VerifyFailed(f"after the update: {exc.message}") from None
        problems = []
        for u in plan.updates:
            now = st.find(u.kind, u.name)
            if now is None:
                problems.append(f"{u.kind} {u.name} is missing after the update")
                continue
            if not same_version(now.version, u.to):
                problems.append(f"{u.kind} {u.name} is {now.version}, expected {u.to}")
            if u.kind == "plugin" and u.package.active and not now.active:
                problems.append(f"plugin {u.name} was active and is not any more")
            if u.kind == "core" and st.db_version != st.files_db_version:
                problems.append(f"database version {st.db_version} != {st.files_db_version} after the core update")
        trees = self._trees_after(ctx, self._verify_paths(ctx, plan, st))
        for u in plan.updates:
            if u.expected_tree and trees.get(u.package.path) != u.expected_tree:
                problems.append(f"{u.kind} {u.name}: installed files differ from the validated package (tree hash)")
        if problems:
            raise VerifyFailed("; ".join(problems))
        self._compare_schema(ctx)
        ctx.record(timing_ms=self.clock.public(), php_boots=self.clock.boots)
        return st, trees

    def _trees_after(self, ctx: Context, paths: list[str]) -> dict[str, str | None]:
        """The tree hashes of ``paths`` after apply: those read right after its last change, the
        others read now."""
        known = self._after.trees if self._after is not None else {}
        missing = [p for p in paths if p not in known]
        if self._after is not None and known:
            ctx.record(verify_reads="activation" if not missing else "activation+fresh")
        return {**{p: known[p] for p in paths if p in known}, **tree_hashes(ctx, missing)}

    def _read_back(self, ctx: Context) -> WpState:
        """The installed state after apply: the last activation's report, or a fresh read."""
        if self._listing is not None:
            ctx.record(read_back="activation")
            return state_from_helper(self._listing, self.root(ctx))
        ctx.record(read_back="helper")
        return self.state(ctx, uploaded=True)

    def _compare_schema(self, ctx: Context) -> None:
        """After the new code booted (the read-back above): did the schema change since the dump?"""
        self.schema_changed, self.schema_changes = None, []
        if self._db_undo is not None:
            read = self._after.schema if self._after is not None else None
            self.schema_changes = schema_changes(ctx, self._db_undo, read)
            self.schema_changed = bool(self.schema_changes)
        ctx.record(schema_changed=self.schema_changed, schema_changes=self.schema_changes)

    def _lock_paths(self, st: WpState) -> list[str]:
        """The folders of the plugins and themes the version lock records (in policy scope)."""
        policy = self.p.policy()
        return [pkg.path for pkg in st.packages if pkg.kind != "core" and self.in_scope(policy, pkg)]

    def lock_packages(
        self, ctx: Context, st: WpState, plan: UpdatePlan[WpState] | None, trees: dict[str, str | None] | None = None
    ) -> dict[str, LockedPackage]:
        """Lock entries for every package in policy scope, as installed now (tree hashes not
        in ``trees`` are read here)."""
        policy = self.p.policy()
        scoped = [pkg for pkg in st.packages if self.in_scope(policy, pkg)]
        trees = dict(trees or {})
        need = [pkg.path for pkg in scoped if pkg.kind != "core" and pkg.path not in trees]
        trees.update(tree_hashes(ctx, need))
        updated = {u.package.key: u for u in (plan.updates if plan else [])}
        out: dict[str, LockedPackage] = {}
        for pkg in scoped:
            u = updated.get(pkg.key)
            out[pkg.key] = LockedPackage.model_validate(
                {
                    "name": pkg.name,
                    "type": pkg.kind,
                    "version": pkg.version,
                    "tree": trees.get(pkg.path) if pkg.kind != "core" else None,
                    "sha256": u.offer.sha256 if u and u.offer else None,
                    "source": u.offer.source if u and u.offer else None,
                    "updated": u is not None,
                    "from": u.package.version if u else None,
                }
            )
        return out

    # ---------------------------------------------------------------- rollback
    def after_restore(self, ctx: Context, undo: PackageUndo) -> None:
        """After the core snapshot is back: remove PHP files the new core added."""
        if undo.remove_new:
            self._remove_new_core_files(ctx, undo.remove_new)

    def _remove_new_core_files(self, ctx: Context, before: list[str]) -> None:
        now = core_entries(ctx, self.root(ctx))
        for name in now:
            if name not in before and name.endswith(".php") and name != "wp-config.php":
                ctx.run(["rm", "-f", "--", f"{self.root(ctx)}/{name}"], check=False)

    def undo_database(self, ctx: Context, undo: DbUndo) -> dict[str, Any]:
        """Restore the dump when the schema changed (tables or schema options) or ``database: always``."""
        changed = schema_changes(ctx, undo)
        if self.p.database == "always" or changed:
            dropped = restore_database(ctx, undo)
            return {"restored": True, "schema_changed": changed, "dropped_tables": dropped}
        return {"restored": False, "schema_changed": []}

    def temporary_paths(self, ctx: Context) -> list[str]:
        """The helper, staged packages and the credentials file of this run."""
        snap = self.snapshot_dir(ctx)
        return [self.helper_path(ctx), f"{snap}/packages", f"{snap}/db.cnf"]


__all__ = ["CORE_ENTRIES_EXCLUDED", "WordPressDriver", "WpState", "core_entries", "read_zip_package"]
