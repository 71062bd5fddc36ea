"""The WordPress driver of ``cms.update`` (WooCommerce shops and any WordPress site).

It needs no wp-cli: a small PHP helper shipped in the package (maintkit/php/wp_helper.php)
drives WordPress's own API with the site's PHP CLI. Read-only calls pipe the helper
through stdin (``php -- <root> list < helper``), so plan mode writes nothing; apply
uploads it to ``<path>/.maint/wp_helper.php`` (0600) and finalize removes it.

Update sources, in order of precedence per package: ``sources.<slug>`` (a URL or zip
path, for premium/private plugins), ``repository`` (a directory of
``<slug>-<version>.zip``, on the controller or the host), then the WordPress.org API at
``api_url`` (plugins and themes whose ``Update URI`` is empty or wordpress.org, and core).
Candidate zips are read on the controller: their header gives the exact version and
``Requires PHP`` / ``Requires at least``; their sha256 and tree hash go into the lock.

Rollback never runs PHP: it swaps the ``cp -a`` snapshots back and loads the database
dump with the mariadb client, so it works when the update broke WordPress.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote
from urllib.parse import urlparse

from maintkit.action import Context
from maintkit.actions.cms.common import (
    ACTION,
    DbUndo,
    Installed,
    Offer,
    PackageUndo,
    Skipped,
    Update,
    UpdatePlan,
    dump_database,
    file_sizes,
    list_tables,
    mkdir_private,
    parse_marked_json,
    read_options,
    restore_database,
    run_commands,
    sha256_hex,
    snapshot_path,
    tail,
    tree_hashes,
    undo_changes,
    wp_helper_source,
    zip_tree_hash,
)
from maintkit.actions.cms.lock import LockedPackage, VersionLock
from maintkit.actions.cms.params import CmsUpdateParams, PackageSource
from maintkit.actions.cms.policy import Version, VersionPolicy, choose
from maintkit.errors import ApplyFailed, CheckFailed, MaintkitError, VerifyFailed
from maintkit.results import Change

CORE = "wordpress"
_HEADER_RE = r"^(?:[ \t]*<\?php)?[ \t/*#@]*{name}:(.*)$"
_WPORG_HOSTS = ("wordpress.org", "w.org", "downloads.wordpress.org", "api.wordpress.org")
CORE_ENTRIES_EXCLUDED = ("wp-config.php", "wp-content", ".maint", ".htaccess")


@dataclass
class WpState:
    """What the helper's ``list`` reports."""

    core: Installed
    plugins: list[Installed]
    themes: list[Installed]
    php_version: str
    extensions: list[str]
    db_version: str
    files_db_version: str
    table_prefix: str
    db_name: str
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def packages(self) -> list[Installed]:
        """Core, plugins and themes."""
        return [self.core, *self.plugins, *self.themes]

    def find(self, kind: str, name: str) -> Installed | None:
        """The installed package of that kind and name."""
        return next((p for p in self.packages if p.kind == kind and p.name == name), None)


def _header(text: str, name: str) -> str:
    match = re.search(_HEADER_RE.format(name=re.escape(name)), text, re.M | re.I)
    if not match:
        return ""
    return re.sub(r"\s*(?:\*/|\?>).*$", "", match.group(1)).strip()


def read_zip_package(data: bytes, kind: str, slug: str) -> dict[str, str]:
    """Read version and requirements from a package zip (plugin header, theme style.css, core version.php).

    Returns ``{"version", "requires_php", "requires_wp", "top", "error"}``; ``error`` explains
    why the zip does not hold ``slug``.
    """
    out = {"version": "", "requires_php": "", "requires_wp": "", "top": "", "error": ""}
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        out["error"] = "not a zip file"
        return out
    with zf:
        names = [n for n in zf.namelist() if not n.startswith("__MACOSX/")]
        tops = {n.split("/", 1)[0] for n in names if "/" in n}
        want = "wordpress" if kind == "core" else slug
        if want not in tops:
            out["error"] = f"the zip holds {', '.join(sorted(tops)) or 'no folder'}, not {want}/"
            return out
        out["top"] = want
        if kind == "core":
            try:
                text = zf.read("wordpress/wp-includes/version.php").decode("utf-8", "replace")
            except KeyError:
                out["error"] = "wordpress/wp-includes/version.php missing"
                return out
            m = re.search(r"\$wp_version\s*=\s*'([^']+)'", text)
            php = re.search(r"\$required_php_version\s*=\s*'([^']+)'", text)
            out["version"] = m.group(1) if m else ""
            out["requires_php"] = php.group(1) if php else ""
            return out
        if kind == "theme":
            try:
                text = zf.read(f"{slug}/style.css")[:8192].decode("utf-8", "replace")
            except KeyError:
                out["error"] = f"{slug}/style.css missing"
                return out
            candidates = [text]
        else:
            candidates = []
            for n in names:
                if n.startswith(f"{slug}/") and n.count("/") == 1 and n.endswith(".php"):
                    head = zf.read(n)[:8192].decode("utf-8", "replace")
                    if _header(head, "Plugin Name"):
                        candidates.insert(0 if n == f"{slug}/{slug}.php" else len(candidates), head)
            if not candidates:
                out["error"] = f"no plugin header in {slug}/*.php"
                return out
        text = candidates[0]
        out["version"] = _header(text, "Version")
        out["requires_php"] = _header(text, "Requires PHP")
        out["requires_wp"] = _header(text, "Requires at least")
    return out


def _newer(required: str, actual: str) -> bool:
    """True when ``required`` is a higher version than ``actual``."""
    r, a = Version.try_parse(required), Version.try_parse(actual)
    return r is not None and a is not None and r > a


def _same_version(a: str, b: str) -> bool:
    va, vb = Version.try_parse(a), Version.try_parse(b)
    return a == b if va is None or vb is None else va == vb


class WordPressDriver:
    """Plans, applies, verifies and rolls back WordPress core, plugin and theme updates."""

    name = "wordpress"

    def __init__(self, params: CmsUpdateParams) -> None:
        self.p = params
        self._http: Any = None

    # ---------------------------------------------------------------- paths
    def root(self, ctx: Context) -> str:
        """The WordPress root (where wp-load.php is)."""
        base = ctx.path.rstrip("/") or "/"
        if not self.p.root:
            return base
        return self.p.root if self.p.root.startswith("/") else f"{base}/{self.p.root.strip('/')}"

    @staticmethod
    def maint_dir(ctx: Context) -> str:
        """``<path>/.maint``."""
        return ctx.path.rstrip("/") + "/.maint"

    def helper_path(self, ctx: Context) -> str:
        """Where apply uploads the helper."""
        return self.maint_dir(ctx) + "/wp_helper.php"

    def snapshot_root(self, ctx: Context) -> str:
        """Directory of all snapshots."""
        d = self.p.snapshot_dir
        if not d:
            return self.maint_dir(ctx) + "/snapshots"
        return d if d.startswith("/") else ctx.path.rstrip("/") + "/" + d

    def snapshot_dir(self, ctx: Context) -> str:
        """This run's snapshot directory."""
        return f"{self.snapshot_root(ctx)}/{ctx.run_id}"

    # ---------------------------------------------------------------- helper
    def call(self, ctx: Context, command: str, args: dict[str, Any] | None = None, *, uploaded: bool) -> dict[str, Any]:
        """Run one helper command; ``{"ok": False, "error": ...}`` when it printed no answer."""
        payload = json.dumps(args or {}, separators=(",", ":"))
        if uploaded:
            argv = [self.p.php, self.helper_path(ctx), self.root(ctx), command, payload]
            res = ctx.run(argv, check=False, timeout=self.p.timeout or ctx.env.command_timeout)
        else:
            argv = [self.p.php, "--", self.root(ctx), command, payload]
            res = ctx.run(
                argv, check=False, stdin=wp_helper_source(), timeout=self.p.timeout or ctx.env.command_timeout
            )
        data = parse_marked_json(res.stdout)
        if data is None:
            return {
                "ok": False,
                "error": f"the PHP helper gave no answer (exit {res.exit_code}): {tail(res.stderr or res.stdout)}",
            }
        return data

    def state(self, ctx: Context, *, uploaded: bool = False) -> WpState:
        """Installed core, plugins and themes (WordPress bootstraps: a fatal error shows here)."""
        data = self.call(ctx, "list", {"readonly": not uploaded}, uploaded=uploaded)
        if not data.get("ok"):
            raise CheckFailed(
                f"cannot read the WordPress state at {self.root(ctx)}: {data.get('error')}", action=ACTION
            )
        core = data.get("core", {})
        root = self.root(ctx)
        core_pkg = Installed(
            CORE, "core", str(core.get("version", "")), root, requires_php=str(core.get("requires_php", ""))
        )
        plugins = [
            Installed(
                str(p["slug"]),
                "plugin",
                str(p.get("version", "")),
                str(p.get("path", "")),
                active=bool(p.get("active")),
                requires_php=str(p.get("requires_php") or ""),
                requires_wp=str(p.get("requires_wp") or ""),
                update_uri=str(p.get("update_uri") or ""),
                file=str(p.get("file", "")),
                extra={"network_active": bool(p.get("network_active"))},
            )
            for p in data.get("plugins", [])
        ]
        themes = [
            Installed(
                str(t["slug"]),
                "theme",
                str(t.get("version", "")),
                str(t.get("path", "")),
                active=bool(t.get("active")),
                requires_php=str(t.get("requires_php") or ""),
                requires_wp=str(t.get("requires_wp") or ""),
                update_uri=str(t.get("update_uri") or ""),
            )
            for t in data.get("themes", [])
        ]
        php = data.get("php", {})
        return WpState(
            core=core_pkg,
            plugins=plugins,
            themes=themes,
            php_version=str(php.get("version", "")),
            extensions=[str(e) for e in php.get("extensions", [])],
            db_version=str(core.get("db_version", "")),
            files_db_version=str(core.get("files_db_version", "")),
            table_prefix=str(data.get("table_prefix", "wp_")),
            db_name=str(data.get("db_name", "")),
            paths={k: str(v) for k, v in data.get("paths", {}).items()},
        )

    # ---------------------------------------------------------------- sources
    def _repo_listing(self, ctx: Context) -> list[str]:
        repo = self.p.repository
        if repo is None:
            return []
        if repo.on == "controller":
            try:
                return sorted(n for n in os.listdir(repo.path) if n.endswith(".zip"))
            except OSError as exc:
                raise CheckFailed(f"repository {repo.path} on the controller: {exc}", action=ACTION) from None
        res = ctx.run(["find", repo.path, "-maxdepth", "1", "-type", "f", "-name", "*.zip"], check=False)
        if not res.ok:
            raise CheckFailed(f"repository {repo.path} on the host: {tail(res.stderr)}", action=ACTION)
        return sorted(line.rsplit("/", 1)[-1] for line in res.stdout.splitlines() if line)

    def _repo_offers(self, pkg: Installed, listing: list[str]) -> list[Offer]:
        repo = self.p.repository
        if repo is None:
            return []
        out = []
        for fname in listing:
            if not fname.startswith(pkg.name + "-"):
                continue
            version = fname[len(pkg.name) + 1 : -4]
            if Version.try_parse(version) is None:
                continue
            out.append(Offer(version, f"repository:{repo.path}", repo.on, f"{repo.path.rstrip('/')}/{fname}"))
        return out

    def _source_offer(self, ctx: Context, pkg: Installed, src: PackageSource) -> Offer:
        if src.url is not None:
            offer = Offer("", f"url:{src.url}", "url", src.url)
        else:
            offer = Offer("", f"path:{src.path}", src.on, str(src.path))
        self._materialize(ctx, pkg, offer)
        offer.version = offer.header_version or ""
        if src.sha256 and offer.sha256 != src.sha256.lower():
            raise CheckFailed(
                f"{pkg.kind} {pkg.name}: the package at {offer.ref} has sha256 {offer.sha256}, "
                f"the source says {src.sha256}",
                action=ACTION,
            )
        return offer

    def _wporg_eligible(self, pkg: Installed) -> bool:
        if not self.p.api_url:
            return False
        if pkg.kind == "core" or not pkg.update_uri:
            return True
        host = urlparse(pkg.update_uri if "//" in pkg.update_uri else "https://" + pkg.update_uri).hostname or ""
        return host in _WPORG_HOSTS

    def _get_json(self, url: str, what: str) -> dict[str, Any] | None:
        import requests

        try:
            resp = requests.get(url, timeout=self.p.api_timeout)
        except requests.RequestException as exc:
            raise CheckFailed(
                f"{what}: the update API at {self.p.api_url} is unreachable: {exc}", action=ACTION
            ) from None
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise CheckFailed(f"{what}: the update API answered HTTP {resp.status_code}", action=ACTION)
        try:
            data = resp.json()
        except ValueError:
            raise CheckFailed(f"{what}: the update API did not answer JSON", action=ACTION) from None
        return data if isinstance(data, dict) else None

    def _api_offers(self, pkg: Installed, php_version: str) -> list[Offer]:
        base = str(self.p.api_url).rstrip("/")
        if pkg.kind == "core":
            url = f"{base}/core/version-check/1.7/?version={urlquote(pkg.version)}&php={urlquote(php_version)}"
            data = self._get_json(url, "WordPress core")
            out: list[Offer] = []
            for item in (data or {}).get("offers", []):
                pkgs = item.get("packages") or {}
                link = pkgs.get("full") or item.get("download")
                version = str(item.get("version") or item.get("current") or "")
                if link and version and not any(_same_version(o.version, version) for o in out):
                    out.append(
                        Offer(version, "wordpress.org", "url", link, requires_php=str(item.get("php_version") or ""))
                    )
            return out
        section = "plugins" if pkg.kind == "plugin" else "themes"
        action = "plugin_information" if pkg.kind == "plugin" else "theme_information"
        url = (
            f"{base}/{section}/info/1.2/?action={action}&request[slug]={urlquote(pkg.name)}&request[fields][versions]=1"
        )
        data = self._get_json(url, f"{pkg.kind} {pkg.name}")
        if not data or "error" in data:
            return []
        latest = str(data.get("version") or "")
        offers = []
        versions = data.get("versions") or {}
        if isinstance(versions, dict):
            for version, link in versions.items():
                if version == "trunk" or not link:
                    continue
                offers.append(Offer(str(version), "wordpress.org", "url", str(link)))
        if latest and data.get("download_link") and not any(_same_version(o.version, latest) for o in offers):
            offers.append(Offer(latest, "wordpress.org", "url", str(data["download_link"])))
        for offer in offers:
            if _same_version(offer.version, latest):
                offer.requires_php = str(data.get("requires_php") or "")
                offer.requires_wp = str(data.get("requires") or "")
        return offers

    def offers(self, ctx: Context, pkg: Installed, listing: list[str], php_version: str) -> list[Offer]:
        """Every version the configured sources offer for ``pkg`` (per-package source wins)."""
        src = self.p.sources.get(pkg.name)
        if src is not None:
            return [self._source_offer(ctx, pkg, src)]
        found = self._repo_offers(pkg, listing)
        if found:
            return found
        if self._wporg_eligible(pkg):
            return self._api_offers(pkg, php_version)
        return []

    def _fetch(self, ctx: Context, offer: Offer) -> bytes:
        if offer.location == "controller":
            try:
                return Path(offer.ref).read_bytes()
            except OSError as exc:
                raise CheckFailed(f"package {offer.ref}: {exc}", action=ACTION) from None
        if offer.location == "host":
            try:
                return ctx.get(offer.ref)
            except MaintkitError as exc:
                raise CheckFailed(f"package {offer.ref} on the host: {exc}", action=ACTION) from None
        import requests

        try:
            resp = requests.get(offer.ref, timeout=self.p.api_timeout)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise CheckFailed(f"download of {offer.ref} failed: {exc}", action=ACTION) from None
        return resp.content

    def _materialize(self, ctx: Context, pkg: Installed, offer: Offer) -> None:
        """Read the offer's zip on the controller: exact version, requirements, sha256, tree hash."""
        if offer.data is not None or offer.sha256 is not None:
            return
        data = self._fetch(ctx, offer)
        info = read_zip_package(data, pkg.kind, pkg.name)
        offer.sha256 = sha256_hex(data)
        if offer.location != "host":
            offer.data = data
        if info["error"]:
            offer.problem = f"package {offer.ref}: {info['error']}"
            return
        offer.header_version = info["version"]
        offer.requires_php = info["requires_php"] or offer.requires_php
        offer.requires_wp = info["requires_wp"] or offer.requires_wp
        offer.tree = zip_tree_hash(data, info["top"]) if pkg.kind != "core" else None

    def _problem(self, pkg: Installed, offer: Offer, state: WpState, core_target: str) -> str | None:
        if offer.problem:
            return offer.problem
        if (
            offer.header_version is not None
            and offer.version
            and not _same_version(offer.header_version, offer.version)
        ):
            return f"the package says version {offer.header_version or '(none)'}, expected {offer.version}"
        if offer.requires_php and _newer(offer.requires_php, state.php_version):
            return f"requires PHP {offer.requires_php}, the host runs PHP {state.php_version}"
        if pkg.kind != "core" and offer.requires_wp and _newer(offer.requires_wp, core_target):
            return f"requires WordPress {offer.requires_wp}, the site runs {core_target}"
        return None

    # ---------------------------------------------------------------- plan
    def in_scope(self, policy: VersionPolicy, pkg: Installed) -> bool:
        """Whether the policy considers ``pkg`` at all."""
        if not policy.in_scope(pkg.name):
            return False
        return policy.level_for(pkg.kind) != "none" or policy.pin_for(pkg.name) is not None

    def plan(self, ctx: Context, lock: VersionLock | None, predicted: list[dict[str, Any]] | None = None) -> UpdatePlan:
        """Read-only: the exact updates (from -> to) for this environment."""
        st = self.state(ctx)
        plan = UpdatePlan(
            self.name,
            installed=st.packages,
            facts={
                "php_version": st.php_version,
                "core_version": st.core.version,
                "db_version": st.db_version,
                "state": st,
            },
        )
        if lock is not None:
            self._plan_promote(ctx, st, lock, plan)
        elif predicted is not None:
            self._plan_predicted(st, predicted, plan)
        else:
            self._plan_policy(ctx, st, plan)
        return plan

    def _plan_policy(self, ctx: Context, st: WpState, plan: UpdatePlan) -> None:
        policy = self.p.policy()
        listing = self._repo_listing(ctx)
        core_target = st.core.version
        for pkg in st.packages:
            if not self.in_scope(policy, pkg):
                continue
            offers = self.offers(ctx, pkg, listing, st.php_version)
            decision = choose(policy, pkg.name, pkg.kind, pkg.version, [o.version for o in offers if o.version])
            if decision.held_back:
                plan.skipped.append(Skipped(pkg.name, pkg.kind, pkg.version, decision.held_back, decision.reason))
            if decision.version is None:
                continue
            offer = next(o for o in offers if o.version == decision.version)
            self._materialize(ctx, pkg, offer)
            problem = self._problem(pkg, offer, st, core_target)
            if problem:
                plan.skipped.append(Skipped(pkg.name, pkg.kind, pkg.version, offer.version, problem, blocking=True))
                continue
            plan.updates.append(Update(pkg, offer.version, offer))
            if pkg.kind == "core":
                core_target = offer.version

    def _plan_predicted(self, st: WpState, predicted: list[dict[str, Any]], plan: UpdatePlan) -> None:
        plan.predicted = True
        for item in predicted:
            pkg = st.find(str(item.get("type")), str(item.get("name")))
            to = str(item.get("to") or "")
            if pkg is not None and to and not _same_version(pkg.version, to):
                plan.updates.append(Update(pkg, to))

    def _plan_promote(self, ctx: Context, st: WpState, lock: VersionLock, plan: UpdatePlan) -> None:
        listing = self._repo_listing(ctx)
        same: list[tuple[Installed, LockedPackage]] = []
        missing: list[str] = []
        core_target = st.core.version
        ordered = sorted(lock.packages.values(), key=lambda lp: (lp.type != "core", lp.type, lp.name))
        for lp in ordered:
            pkg = st.find(lp.type, lp.name)
            if pkg is None:
                missing.append(lp.key)
                continue
            if _same_version(pkg.version, lp.version):
                same.append((pkg, lp))
                continue
            update = self._promote_one(ctx, st, pkg, lp, lock, listing, core_target)
            plan.updates.append(update)
            if pkg.kind == "core":
                core_target = lp.version
        drift = []
        trees = tree_hashes(ctx, [pkg.path for pkg, lp in same if lp.tree and pkg.kind != "core"])
        for pkg, lp in same:
            if lp.tree and pkg.kind != "core" and trees.get(pkg.path) not in (None, lp.tree):
                drift.append({"name": pkg.name, "type": pkg.kind, "version": pkg.version})
        plan.promote = {
            "from_env": lock.env,
            "from_run": lock.run_id,
            "packages": len(lock.packages),
            "not_installed": missing,
            "drift": drift,
        }

    def _promote_one(
        self,
        ctx: Context,
        st: WpState,
        pkg: Installed,
        lp: LockedPackage,
        lock: VersionLock,
        listing: list[str],
        core_target: str,
    ) -> Update:
        cur, target = Version.try_parse(pkg.version), Version.try_parse(lp.version)
        downgrade = cur is not None and target is not None and target < cur
        if downgrade and not self.p.allow_downgrade:
            raise CheckFailed(
                f"{pkg.kind} {pkg.name}: {ctx.env.name} has {pkg.version}, newer than the {lp.version} "
                f"{lock.env} validated (set allow_downgrade to install it anyway)",
                action=ACTION,
            )
        offers = [o for o in self.offers(ctx, pkg, listing, st.php_version) if _same_version(o.version, lp.version)]
        if not offers:
            raise CheckFailed(
                f"{pkg.kind} {pkg.name} {lp.version}: no configured source offers this version any more; "
                f"refusing to install anything else than what {lock.env} validated",
                action=ACTION,
            )
        offer = offers[0]
        self._materialize(ctx, pkg, offer)
        if lp.sha256 and offer.sha256 != lp.sha256:
            raise CheckFailed(
                f"{pkg.kind} {pkg.name} {lp.version}: the package from {offer.source} has sha256 {offer.sha256}, "
                f"not the {lp.sha256} {lock.env} validated: refusing it",
                action=ACTION,
            )
        if lp.tree and offer.tree and lp.tree != offer.tree:
            raise CheckFailed(
                f"{pkg.kind} {pkg.name} {lp.version}: the package from {offer.source} holds other files than "
                f"the one {lock.env} validated (tree {offer.tree[:12]} != {lp.tree[:12]}): refusing it",
                action=ACTION,
            )
        problem = self._problem(pkg, offer, st, core_target)
        if problem:
            raise CheckFailed(f"{pkg.kind} {pkg.name} {lp.version}: {problem}", action=ACTION)
        return Update(
            pkg,
            lp.version,
            offer,
            expected_tree=lp.tree if pkg.kind != "core" else None,
            expected_sha256=lp.sha256,
            operation="downgrade" if downgrade else "update",
        )

    # ---------------------------------------------------------------- apply
    def apply(self, ctx: Context, plan: UpdatePlan) -> list[Change]:
        """Dump the database, snapshot and install every update; undo own work on failure."""
        changes: list[Change] = []
        snap = self.snapshot_dir(ctx)
        try:
            ctx.run(["mkdir", "-p", "--", self.maint_dir(ctx)])  # not 0700: nginx reads its maintenance flag
            mkdir_private(ctx, snap)
            ctx.put(wp_helper_source(), self.helper_path(ctx), mode=0o600)
            logs = self.p.error_logs or []
            ctx.record(error_log_offsets=file_sizes(ctx, logs), snapshot=snap)
            state: WpState = plan.facts["state"]
            if self.p.database != "never":
                changes.append(self._dump(ctx, state, snap))
            workdir = state.paths.get("content", self.root(ctx) + "/wp-content") + "/upgrade"
            if not ctx.run(["test", "-e", workdir], check=False).ok:  # the upgrader leaves it behind
                changes.append(
                    Change(
                        target=workdir,
                        summary="WordPress upgrade working directory",
                        undo=PackageUndo([(None, workdir)]),
                    )
                )
            for update in sorted(plan.updates, key=lambda u: u.kind != "core"):
                self._install(ctx, update, snap, changes)
            if self.p.post_update:
                run_commands(ctx, self.p.post_update, cwd=self.root(ctx), what="post_update")
        except MaintkitError as exc:
            note = ""
            try:
                self.undo(ctx, changes)
            except MaintkitError as undo_exc:
                note = f"; undoing the partial update ALSO failed: {undo_exc}"
            self.cleanup(ctx)
            raise ApplyFailed(f"{exc}{note}", action=ACTION) from exc
        return changes

    def _dump(self, ctx: Context, state: WpState, snap: str) -> Change:
        cnf = f"{snap}/db.cnf"
        res = self.call(ctx, "dbcnf", {"path": cnf}, uploaded=True)
        if not res.get("ok"):
            raise ApplyFailed(
                f"cannot read the database credentials from wp-config.php: {res.get('error')}", action=ACTION
            )
        database = str(res.get("database") or state.db_name)
        prefix = str(res.get("table_prefix") or state.table_prefix)
        dump = f"{snap}/database.sql.gz"
        undo = DbUndo(
            database=database,
            dump=dump,
            defaults_file=cnf,
            tables_before=list_tables(ctx, database, cnf),
            options_table=f"{prefix}options",
            schema_options=["db_version", *self.p.schema_options],
        )
        undo.schema_before = read_options(ctx, undo)
        dump_database(ctx, database, cnf, dump)
        return Change(target=f"database:{database}", summary="dumped before the update", after=dump, undo=undo)

    def _stage_zip(self, ctx: Context, update: Update, snap: str) -> str:
        offer = update.offer
        if offer is None:
            raise ApplyFailed(f"{update.kind} {update.name}: no package to install", action=ACTION)
        if offer.location == "host":
            res = ctx.run(["sha256sum", "--", offer.ref], check=False)
            actual = res.stdout.split(" ", 1)[0] if res.ok else ""
            if offer.sha256 and actual != offer.sha256:
                raise ApplyFailed(
                    f"{offer.ref} changed since it was checked (sha256 {actual or 'unreadable'})", action=ACTION
                )
            return offer.ref
        if offer.data is None:
            offer.data = self._fetch(ctx, offer)
            if offer.sha256 and sha256_hex(offer.data) != offer.sha256:
                raise ApplyFailed(f"{offer.ref} changed since it was checked", action=ACTION)
        path = f"{snap}/packages/{update.name}-{update.to}.zip"
        ctx.run(["mkdir", "-p", "--", f"{snap}/packages"])
        ctx.put(offer.data, path, mode=0o600)
        return path

    def _install(self, ctx: Context, update: Update, snap: str, changes: list[Change]) -> None:
        pkg = update.package
        zip_path = self._stage_zip(ctx, update, snap)
        if pkg.kind == "core":
            self._install_core(ctx, update, zip_path, snap, changes)
            return
        dest = pkg.path
        target = f"{snap}/{pkg.kind}s/{pkg.name}"
        existed = snapshot_path(ctx, dest, target)
        changes.append(
            Change(
                target=pkg.key,
                summary=f"{pkg.kind} {pkg.name} {pkg.version} -> {update.to}",
                before=pkg.version,
                after=update.to,
                undo=PackageUndo([(target if existed else None, dest)]),
            )
        )
        args = {
            "type": pkg.kind,
            "zip": zip_path,
            "slug": pkg.name,
            "active": bool(pkg.active),
            "network_active": bool(pkg.extra.get("network_active")),
        }
        res = self.call(ctx, "install", args, uploaded=True)
        if not res.get("ok"):
            msgs = "; ".join(str(m) for m in res.get("messages", [])[-5:])
            raise ApplyFailed(
                f"{pkg.kind} {pkg.name} {update.to}: install failed: {res.get('error')}"
                + (f" ({msgs})" if msgs else ""),
                action=ACTION,
            )

    def _core_entries(self, ctx: Context) -> list[str]:
        res = ctx.run(["find", self.root(ctx), "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\n"], check=False)
        names = [n for n in res.stdout.splitlines() if n]
        keep = []
        for n in names:
            if n in CORE_ENTRIES_EXCLUDED:
                continue
            if n in ("wp-admin", "wp-includes") or n.endswith(".php") or n in ("license.txt", "readme.html"):
                keep.append(n)
        return keep

    def _install_core(self, ctx: Context, update: Update, zip_path: str, snap: str, changes: list[Change]) -> None:
        root = self.root(ctx)
        entries = self._core_entries(ctx)
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
            raise ApplyFailed(f"core {update.to}: update failed: {res.get('error')}", action=ACTION)
        db = self.call(ctx, "dbupgrade", uploaded=True)
        if not db.get("ok"):
            raise ApplyFailed(f"core {update.to}: database upgrade failed: {db.get('error')}", action=ACTION)

    # ---------------------------------------------------------------- verify
    def verify(self, ctx: Context, plan: UpdatePlan) -> tuple[WpState, dict[str, str | None]]:
        """Read back what is installed (WordPress must bootstrap) and compare it with the plan."""
        try:
            st = self.state(ctx, uploaded=True)
        except CheckFailed as exc:
            raise VerifyFailed(f"after the update: {exc.message}", action=ACTION) from None
        problems = []
        for u in plan.updates:
            now = st.find(u.kind, u.name)
            if now is None:
                problems.append(f"{u.kind} {u.name} is missing after the update")
                continue
            if not _same_version(now.version, u.to):
                problems.append(f"{u.kind} {u.name} is {now.version}, expected {u.to}")
            if u.kind == "plugin" and u.package.active and not now.active:
                problems.append(f"plugin {u.name} was active and is not any more")
            if u.kind == "core" and st.db_version != st.files_db_version:
                problems.append(f"database version {st.db_version} != {st.files_db_version} after the core update")
        paths = [u.package.path for u in plan.updates if u.kind != "core"]
        trees = tree_hashes(ctx, paths)
        for u in plan.updates:
            if u.expected_tree and trees.get(u.package.path) != u.expected_tree:
                problems.append(f"{u.kind} {u.name}: installed files differ from the validated package (tree hash)")
        if problems:
            raise VerifyFailed("; ".join(problems), action=ACTION)
        return st, trees

    def lock_packages(
        self, ctx: Context, st: WpState, plan: UpdatePlan | None, trees: dict[str, str | None] | None = None
    ) -> dict[str, LockedPackage]:
        """Lock entries for every package in policy scope, as installed now."""
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
    def undo(self, ctx: Context, changes: list[Change]) -> dict[str, Any]:
        """Put snapshots back (files first, then the database); no PHP involved."""
        return undo_changes(
            ctx,
            changes,
            undo_db=lambda undo: self._undo_db(ctx, undo),
            post_rollback=self.p.post_rollback,
            cwd=self.root(ctx),
            after_restore=lambda undo: self._remove_new_core_files(ctx, undo.remove_new) if undo.remove_new else None,
        )

    def _remove_new_core_files(self, ctx: Context, before: list[str]) -> None:
        now = self._core_entries(ctx)
        for name in now:
            if name not in before and name.endswith(".php") and name != "wp-config.php":
                ctx.run(["rm", "-f", "--", f"{self.root(ctx)}/{name}"], check=False)

    def _undo_db(self, ctx: Context, undo: DbUndo) -> dict[str, Any]:
        tables = list_tables(ctx, undo.database, undo.defaults_file)
        options = read_options(ctx, undo)
        changed = sorted(set(tables) ^ set(undo.tables_before))
        changed += sorted(
            k for k in set(options) | set(undo.schema_before) if options.get(k) != undo.schema_before.get(k)
        )
        if self.p.database == "always" or changed:
            dropped = restore_database(ctx, undo)
            return {"restored": True, "schema_changed": changed, "dropped_tables": dropped}
        return {"restored": False, "schema_changed": []}

    def cleanup(self, ctx: Context) -> None:
        """Remove the helper, staged packages and the credentials file of this run."""
        snap = self.snapshot_dir(ctx)
        ctx.run(
            ["rm", "-rf", "--", self.helper_path(ctx), f"{snap}/packages", f"{snap}/db.cnf"],
            check=False,
        )

    def prune(self, ctx: Context) -> None:
        """Keep the newest ``keep_snapshots`` run snapshots."""
        root = self.snapshot_root(ctx)
        res = ctx.run(["find", root, "-mindepth", "1", "-maxdepth", "1", "-type", "d", "-printf", "%f\\n"], check=False)
        runs = sorted(n for n in res.stdout.splitlines() if n)
        for old in runs[: max(0, len(runs) - self.p.keep_snapshots)]:
            if old != ctx.run_id:
                ctx.run(["rm", "-rf", "--", f"{root}/{old}"], check=False)


__all__ = ["WordPressDriver", "WpState", "read_zip_package"]
