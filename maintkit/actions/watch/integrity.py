"""``integrity.check``: WordPress files against known checksums (read-only).

What it compares (see docs/security.md, "integrity.check"):

- core files against the WordPress.org checksums API for the installed version and locale
  (``wp-content/`` is left to the plugin and lock checks);
- each plugin against its wordpress.org checksum file (a 404: not on wordpress.org, said so);
- every other plugin and theme against the tree hash of the newest validated version lock
  that holds its installed version (premium plugins no public API knows);
- PHP files under the uploads folder, always critical.

Severities: PHP in uploads and any change matching the ``critical`` globs (payment plugins,
checkout templates) are critical; other modified files, missing PHP files and added PHP files
are high; missing other files medium; added other files low. Critical or high fails the step.
One ``findings`` point (``check: integrity``) is written per run, also when clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, ValidationError

from maintkit.action import Action, Context, Params
from maintkit.actions.cms.drivers.wordpress_plan import WordPressPlanner
from maintkit.actions.cms.lock import read_lock
from maintkit.actions.watch.checksums import (
    LOCK_SECTION,
    Globs,
    Section,
    Tree,
    TreeDiff,
    compare,
    core_checksums,
    display,
    host_script,
    parse_sections,
    plugin_checksums,
)
from maintkit.actions.watch.common import FINDINGS, findings_point, write_point
from maintkit.errors import CheckFailed
from maintkit.results import Change, Check
from maintkit.state import index

VARS_KEY = "integrity"
DEFAULT_CRITICAL = [
    "wp-content/plugins/*pay*/**",
    "wp-content/plugins/*stripe*/**",
    "wp-content/plugins/*mollie*/**",
    "wp-content/plugins/*klarna*/**",
    "wp-content/plugins/*checkout*/**",
    "wp-content/plugins/woocommerce/includes/gateways/**",
    "**/checkout/**",
    "**/woocommerce/templates/checkout/**",
]
DEFAULT_IGNORE = [
    "wp-config.php",
    ".htaccess",
    "**/.htaccess",
    ".user.ini",
    "php.ini",
    "robots.txt",
    "favicon.ico",
    "sitemap*.xml",
    ".well-known/**",
    ".maint/**",
    ".git/**",
    "wp-content/cache/**",
    "wp-content/upgrade/**",
    "wp-content/debug.log",
    "**/.DS_Store",
    "error_log",
]
PHP_EXTENSIONS = ["php", "phtml", "phar", "pht", "phps", "php3", "php4", "php5", "php7", "php8"]
ADVICE = {
    "uploads": "PHP has no place in uploads: compare with a backup, remove it, look for how it got there",
    "modified": "compare with the official file (or the validated package) and restore it; then find the cause",
    "added": "find out who added it; a PHP file nobody knows is a backdoor until proven otherwise",
    "missing": "restore it from the official package or the last backup",
    "lock": "files differ from the package validated by cms.update: reinstall that version or find the change",
}


class IntegrityParams(Params):
    """Parameters of ``integrity.check`` (also read from the ``integrity`` variable, step parameters winning)."""

    core: bool = Field(True, description="Check core files against the WordPress.org checksums API")
    plugins: bool = Field(True, description="Check plugins against their wordpress.org checksum files")
    locks: bool = Field(True, description="Check plugins and themes against the last validated version locks")
    uploads: bool = Field(True, description="Report PHP files under the uploads folder")
    core_checksums_url: str = Field(
        "https://api.wordpress.org/core/checksums/1.0/", description="Core checksums API (?version=&locale=)"
    )
    plugin_checksums_url: str = Field(
        "https://downloads.wordpress.org/plugin-checksums", description="Base URL of <slug>/<version>.json files"
    )
    timeout: float = Field(20.0, gt=0, description="Seconds per checksum request")
    critical: list[str] = Field(default_factory=list, description="More globs whose changes are critical")
    ignore: list[str] = Field(default_factory=list, description="More globs never reported (relative to the root)")
    defaults: bool = Field(True, description="Use the built-in critical and ignore globs too")
    php_extensions: list[str] = Field(default_factory=lambda: list(PHP_EXTENSIONS), description="What counts as PHP")
    root: str | None = Field(None, description="WordPress root (default: cms_update.root, else the env path)")
    php: str | None = Field(None, description="PHP CLI on the host (default: cms_update.php, else php)")


def effective(ctx: Context, params: IntegrityParams) -> IntegrityParams:
    """The ``integrity`` variable of the site/environment under the step's explicit parameters."""
    base = ctx.vars.get(VARS_KEY) or {}
    if not isinstance(base, dict):
        raise CheckFailed(f"variable {VARS_KEY} must be a mapping of integrity.check parameters")
    try:
        return IntegrityParams.model_validate({**base, **params.model_dump(exclude_unset=True)})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CheckFailed(f"invalid integrity.check settings ({VARS_KEY} variable and step): {problems}") from None


def wp_planner(ctx: Context, root: str | None, php: str | None) -> WordPressPlanner:
    """A reader of the WordPress site through the PHP helper (cms_update's php/root unless given).

    Read-only: it never starts PHP with the compiled-code cache (which writes under ``.maint``)."""
    return WordPressPlanner.read_only(ctx, {k: v for k, v in (("root", root), ("php", php)) if v})


# ----------------------------------------------------------------------------- locks
@dataclass
class LockedTree:
    """The tree hash a validated lock recorded for one package version."""

    version: str
    tree: str
    run_id: str
    env: str


def locked_trees(ctx: Context) -> dict[str, list[LockedTree]]:
    """Per package key, the validated lock entries with a tree hash: this env's first, newest first."""
    root, site = ctx.options.history, ctx.site.name
    records: list[tuple[bool, str, dict[str, Any], str]] = []
    for env in index.environments(root, site):
        recs = index.version_locks(root, site, env)
        rolled = {r.get("run_id") for r in recs if r.get("status") != "validated"}
        for r in recs:
            if r.get("status") == "validated" and r.get("run_id") not in rolled and r.get("file"):
                records.append((env != ctx.env.name, str(r.get("ts", "")), r, env))
    records.sort(key=lambda x: x[1], reverse=True)
    records.sort(key=lambda x: x[0])
    out: dict[str, list[LockedTree]] = {}
    for _other, _ts, rec, env in records:
        try:
            lock = read_lock(root / str(rec["file"]))
        except CheckFailed:
            continue
        if lock.status != "validated" or lock.site != site:
            continue
        for key, pkg in lock.packages.items():
            if pkg.tree:
                out.setdefault(key, []).append(LockedTree(pkg.version, pkg.tree, lock.run_id, env))
    return out


# ----------------------------------------------------------------------------- findings
@dataclass
class Scan:
    """What one integrity run looks at and what it found."""

    root: str
    site: dict[str, Any]
    critical: Globs
    ignore: Globs
    php_ext: tuple[str, ...]
    trees: list[Tree] = field(default_factory=list)
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)  # tree name -> {path: md5}
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)  # tree name -> package facts
    locked: list[tuple[dict[str, Any], LockedTree]] = field(default_factory=list)
    unverified: list[dict[str, str]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)

    def rel(self, path: str) -> str:
        """``path`` relative to the WordPress root (absolute when outside it)."""
        prefix = self.root.rstrip("/") + "/"
        return path[len(prefix) :] if path.startswith(prefix) else path

    def is_php(self, path: str) -> bool:
        """Whether the file name has a PHP extension."""
        return path.rsplit(".", 1)[-1].lower() in self.php_ext if "." in path else False

    def add(self, severity: str, title: str, path: str, advice: str, **extra: Any) -> None:
        """One finding."""
        self.items.append({"severity": severity, "title": title, "path": display(path), **extra, "advice": advice})


def _severity(scan: Scan, kind: str, path: str) -> str:
    if scan.critical.match(path):
        return "critical"
    if kind == "modified":
        return "high"
    if kind == "missing":
        return "high" if scan.is_php(path) else "medium"
    return "high" if scan.is_php(path) else "low"


def _report_diff(scan: Scan, diff: TreeDiff, prefix: str, what: str, facts: dict[str, Any]) -> None:
    for kind, paths in (("modified", diff.modified), ("added", diff.added), ("missing", diff.missing)):
        for rel in paths:
            path = f"{prefix}{rel}"
            if scan.ignore.match(path):
                continue
            scan.add(_severity(scan, kind, path), f"{what} file {kind}", path, ADVICE[kind], **facts)


def _report_sections(scan: Scan, sections: dict[str, Section]) -> None:
    for tree in scan.trees:
        sec = sections.get(tree.name, Section(missing=True))
        if tree.names_only is not None:
            for rel in sec.names:
                path = f"{scan.rel(tree.path)}/{rel}"
                if not scan.ignore.match(path):
                    scan.add("critical", "PHP file in uploads", path, ADVICE["uploads"])
            continue
        facts = scan.packages[tree.name]
        if sec.missing:
            raise CheckFailed(f"cannot read {tree.path} on the host")
        expected = scan.expected[tree.name]
        prefix = "" if tree.name == "core" else scan.rel(tree.path) + "/"
        _report_diff(scan, compare(expected, sec.hashes), prefix, str(facts["kind"]), facts["facts"])
    hashes = sections.get(LOCK_SECTION, Section()).lines
    for i, (pkg, locked) in enumerate(scan.locked):
        got = hashes[i] if i < len(hashes) else "missing"
        if got == locked.tree:
            continue
        path = scan.rel(str(pkg.get("path", "")))
        severity = "critical" if scan.critical.match(path, folder=True) else "high"
        facts = {"package": str(pkg["slug"]), "version": locked.version, "lock_run": locked.run_id}
        title = f"{pkg['kind']} files differ from the lock validated in run {locked.run_id}"
        if got == "missing":
            title = f"{pkg['kind']} folder missing"
        scan.add(severity, title, path, ADVICE["lock"], **facts)


# ----------------------------------------------------------------------------- planning
def _plan_core(ctx: Context, scan: Scan, p: IntegrityParams) -> None:
    core = scan.site.get("core", {})
    version, locale = str(core.get("version", "")), str(scan.site.get("locale") or "en_US")
    sums = core_checksums(ctx, p.core_checksums_url, version, locale, p.timeout)
    if sums is None:
        raise CheckFailed(
            f"no core checksums for WordPress {version} ({locale}) at {p.core_checksums_url}: "
            "core cannot be verified (set core: false to skip it)"
        )
    content = scan.rel(str(scan.site.get("paths", {}).get("content", scan.root + "/wp-content")))
    expected = {k: v for k, v in sums.items() if not k.startswith("wp-content/")}
    scan.trees.append(Tree("core", scan.root, prune=sorted({"wp-content", content, ".maint", ".git"})))
    scan.expected["core"] = expected
    scan.packages["core"] = {"kind": "core", "facts": {"package": "wordpress", "version": version}}


def _plan_packages(ctx: Context, scan: Scan, p: IntegrityParams) -> None:
    locks = locked_trees(ctx) if p.locks else {}
    packages = [{**pl, "kind": "plugin"} for pl in scan.site.get("plugins", [])]
    packages += [{**th, "kind": "theme"} for th in scan.site.get("themes", [])]
    for pkg in packages:
        slug, version, kind = str(pkg["slug"]), str(pkg.get("version", "")), str(pkg["kind"])
        in_folder = kind == "theme" or "/" in str(pkg.get("file", ""))
        if kind == "plugin" and p.plugins and in_folder and version:
            sums = plugin_checksums(ctx, p.plugin_checksums_url, slug, version, p.timeout)
            if sums is not None:
                name = f"plugin:{slug}"
                scan.trees.append(Tree(name, str(pkg["path"])))
                scan.expected[name] = dict(sums)
                scan.packages[name] = {"kind": "plugin", "facts": {"package": slug, "version": version}}
                continue
        entry = next((e for e in locks.get(f"{kind}:{slug}", []) if e.version == version), None)
        if entry is not None:
            scan.locked.append((pkg, entry))
            continue
        known = sorted({e.version for e in locks.get(f"{kind}:{slug}", [])})
        why = "not on wordpress.org" if kind == "plugin" and p.plugins else "no public checksums"
        why += f"; validated locks hold {', '.join(known)}" if known else "; in no validated version lock"
        scan.unverified.append({"package": slug, "kind": kind, "version": version, "reason": why})


def plan_scan(ctx: Context, p: IntegrityParams) -> Scan:
    """Read the site (PHP helper), fetch its checksums and decide what to hash on the host."""
    planner = wp_planner(ctx, p.root, p.php)
    data = planner.call(ctx, "siteinfo", {"readonly": True}, uploaded=False)
    if not data.get("ok"):
        raise CheckFailed(f"cannot read the WordPress site at {planner.root(ctx)}: {data.get('error')}")
    root = str(data.get("paths", {}).get("abspath") or planner.root(ctx)).rstrip("/") or "/"
    critical = [*(DEFAULT_CRITICAL if p.defaults else []), *p.critical]
    ignore = [*(DEFAULT_IGNORE if p.defaults else []), *p.ignore]
    ext = tuple(e.lower().lstrip(".") for e in p.php_extensions)
    scan = Scan(root, data, Globs(critical), Globs(ignore), ext)
    if p.core:
        _plan_core(ctx, scan, p)
    _plan_packages(ctx, scan, p)
    uploads = str(data.get("uploads") or "")
    if p.uploads and uploads:
        scan.trees.append(Tree("uploads", uploads, names_only=list(ext)))
    return scan


def run_scan(ctx: Context, scan: Scan) -> None:
    """Hash every tree on the host in one round trip and turn the differences into findings."""
    script = host_script(scan.trees, [str(pkg["path"]) for pkg, _ in scan.locked])
    res = ctx.run_shell(script, check=False)
    if res.exit_code != 0 or res.stdout_bytes is None:
        raise CheckFailed(f"hashing the site's files failed ({res.why}): {res.stderr[-400:]}")
    _report_sections(scan, parse_sections(res.stdout_bytes))


# ----------------------------------------------------------------------------- the action
def _summary(scan: Scan) -> str:
    parts = []
    if "core" in scan.packages:
        version, locale = scan.packages["core"]["facts"]["version"], scan.site.get("locale") or "en_US"
        parts.append(f"core {version} ({locale}): {len(scan.expected['core'])} files")
    api = [n.split(":", 1)[1] for n in scan.packages if n.startswith("plugin:")]
    if api:
        parts.append(f"{len(api)} plugin(s) against wordpress.org ({', '.join(sorted(api))})")
    if scan.locked:
        parts.append(f"{len(scan.locked)} package(s) against validated locks")
    if scan.unverified:
        names = ", ".join(f"{u['kind']} {u['package']} {u['version']}" for u in scan.unverified)
        parts.append(f"not verifiable: {names}")
    return "; ".join(parts)


def _counts(items: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item["severity"]] = counts.get(item["severity"], 0) + 1
    return counts


class IntegrityCheck(Action[IntegrityParams]):
    """Compare a WordPress site's files with official checksums and validated locks (read-only)."""

    name = "integrity.check"
    Params = IntegrityParams
    summary = "WordPress core, plugin and package files against checksums and validated locks (read-only)."
    rollback_kind = "noop"
    rollback_reason = "a check changes nothing"

    def check(self, ctx: Context) -> Check:
        platform = str(ctx.env.platform or ctx.site.platform)
        if platform != "wordpress":
            return Check.ok(f"skipped: integrity.check covers WordPress sites (platform {platform})")
        p = effective(ctx, self.params)
        scan = plan_scan(ctx, p)
        run_scan(ctx, scan)
        point = findings_point("integrity", scan.items)
        counts = _counts(scan.items)
        ctx.record(
            integrity={"summary": _summary(scan), "counts": counts, "unverified": scan.unverified},
            findings=point["items"],
            findings_count=point["count"],
        )
        write_point(ctx, FINDINGS, point)
        head = ", ".join(f"{counts[s]} {s}" for s in ("critical", "high", "medium", "low") if s in counts)
        shown = "; ".join(f"{i['severity']}: {i['title']} {i['path']}" for i in point["items"][:5])
        if counts.get("critical") or counts.get("high"):
            more = f" and {point['count'] - 5} more" if point["count"] > 5 else ""
            raise CheckFailed(
                f"{point['count']} integrity finding(s) ({head}): {shown}{more}",
                details={"findings": point["items"][:50], "count": point["count"]},
            )
        if scan.items:
            return Check.ok(f"warning: {point['count']} finding(s) ({head}): {shown}; {_summary(scan)}")
        return Check.ok(f"0 findings; {_summary(scan)}")

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Nothing to undo: integrity.check never changes anything."""


__all__ = ["DEFAULT_CRITICAL", "DEFAULT_IGNORE", "IntegrityCheck", "IntegrityParams", "locked_trees"]
