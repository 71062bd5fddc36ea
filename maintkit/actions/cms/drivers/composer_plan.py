"""Reading and planning for the composer driver of ``cms.update``.

Plan: ``composer outdated --direct --locked --format=json`` finds direct packages with
newer versions, ``composer show --all NAME`` lists every version, the version policy picks
one per package, and ``composer update PKG:VERSION... --with-all-dependencies --dry-run``
gives the exact ``from -> to`` list including dependencies (and refuses what the host
cannot run, e.g. a ``php`` requirement). Promotion dry-runs exactly the locked versions
and refuses any other operation, a changed reference or a changed package file.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.cms.drivers.base import DriverBase
from maintkit.actions.cms.lock import LockedPackage, VersionLock
from maintkit.actions.cms.params import CmsUpdateParams
from maintkit.actions.cms.plan import Installed, PlanFacts, Skipped, Update, UpdatePlan
from maintkit.actions.cms.policy import Version, choose
from maintkit.errors import CheckFailed, MaintkitError
from maintkit.results import CommandResult

_OP_RE = re.compile(r"^\s*- (Upgrading|Downgrading|Installing|Removing|Updating) (\S+) \((.+?)\)\s*$")


def parse_operations(output: str) -> list[tuple[str, str, str | None, str | None]]:
    """``(operation, name, from, to)`` from the *lock file operations* of composer's output."""
    ops: list[tuple[str, str, str | None, str | None]] = []
    in_lock = "Lock file operations" not in output
    for line in output.splitlines():
        if "Lock file operations" in line:
            in_lock = True
            continue
        if in_lock and ("Package operations" in line or "Installing dependencies from lock file" in line):
            break
        match = _OP_RE.match(line)
        if not match or not in_lock:
            continue
        op, name, versions = match.groups()
        if "=>" in versions:
            a, b = (v.strip() for v in versions.split("=>", 1))
            ops.append((op.lower(), name, a, b))
        elif op in ("Installing",):
            ops.append(("install", name, None, versions.strip()))
        elif op == "Removing":
            ops.append(("remove", name, versions.strip(), None))
        else:
            ops.append((op.lower(), name, None, versions.strip()))
    return ops


def _problem_lines(output: str) -> list[str]:
    return [line.strip().lstrip("- ").strip() for line in output.splitlines() if line.strip().startswith("- ")]


class ComposerPlanner(DriverBase):
    """Reads composer.lock and plans exact composer operations."""

    name: ClassVar[str] = "composer"

    def __init__(self, params: CmsUpdateParams, platform: str) -> None:
        super().__init__(params)
        self.platform = platform

    # ---------------------------------------------------------------- paths / commands
    def project(self, ctx: Context) -> str:
        """The composer project directory."""
        return self.root(ctx)

    def env(self) -> dict[str, str]:
        """Environment for composer: never interactive, plus ``composer_env``."""
        return {"COMPOSER_NO_INTERACTION": "1", **self.p.composer_env}

    def composer(self, ctx: Context, args: list[str], *, timeout: float | None = None) -> CommandResult:
        """Run composer in the project (check=False; callers read the result)."""
        return ctx.run(
            [*self.p.composer, *args],
            cwd=self.project(ctx),
            env=self.env(),
            check=False,
            timeout=timeout or self.p.timeout or ctx.env.command_timeout,
        )

    # ---------------------------------------------------------------- state
    def read_lock_file(self, ctx: Context) -> dict[str, Any]:
        """composer.lock of the project (CheckFailed when missing)."""
        try:
            data = json.loads(ctx.get(f"{self.project(ctx)}/composer.lock"))
        except MaintkitError as exc:
            raise CheckFailed(f"cannot read composer.lock in {self.project(ctx)}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise CheckFailed(f"composer.lock is not JSON: {exc}") from None
        return data if isinstance(data, dict) else {}

    def installed(self, ctx: Context, lock: dict[str, Any] | None = None) -> list[Installed]:
        """Packages of composer.lock (require and require-dev)."""
        lock = lock if lock is not None else self.read_lock_file(ctx)
        out = []
        vendor = f"{self.project(ctx)}/vendor"
        for section in ("packages", "packages-dev"):
            for entry in lock.get(section) or []:
                dist = entry.get("dist") or {}
                source = entry.get("source") or {}
                out.append(
                    Installed(
                        str(entry["name"]),
                        "composer",
                        str(entry.get("version", "")),
                        f"{vendor}/{entry['name']}",
                        extra={
                            "reference": dist.get("reference") or source.get("reference"),
                            "shasum": dist.get("shasum") or None,
                            "dev": section == "packages-dev",
                        },
                    )
                )
        return out

    def _facts(self, ctx: Context) -> PlanFacts:
        res = ctx.run([self.p.php, "-r", "echo PHP_VERSION;"], check=False)
        ver = self.composer(ctx, ["--version", "--no-ansi"], timeout=60)
        match = re.search(r"Composer (?:version )?(\S+)", ver.stdout + ver.stderr)
        return PlanFacts(
            php_version=res.stdout.strip() if res.ok else "",
            php=self.p.php if res.ok else "",
            composer_version=match.group(1) if match else "",
        )

    # ---------------------------------------------------------------- plan
    def plan(
        self, ctx: Context, lock: VersionLock | None, predicted: list[dict[str, Any]] | None = None
    ) -> UpdatePlan[list[Installed]]:
        """Read-only: the exact composer operations for this environment."""
        lockfile = self.read_lock_file(ctx)
        installed = self.installed(ctx, lockfile)
        plan = UpdatePlan(self.name, installed, installed=installed, facts=self._facts(ctx))
        if self.p.database == "always" and not self.p.db_name:
            raise CheckFailed("database: always needs db_name for composer platforms")
        if lock is not None:
            self._plan_promote(ctx, installed, lock, plan)
        elif predicted is not None:
            plan.predicted = True
            by_name = {p.name: p for p in installed}
            for item in predicted:
                name = str(item.get("name"))
                to = item.get("to")
                pkg = by_name.get(name) or Installed(name, "composer", "", "")
                if (to or None) != (pkg.version or None):
                    plan.updates.append(Update(pkg, str(to or ""), operation="remove" if not to else "update"))
        else:
            self._plan_policy(ctx, installed, plan)
        return plan

    def _outdated(self, ctx: Context) -> list[dict[str, Any]]:
        res = self.composer(ctx, ["outdated", "--direct", "--locked", "--format=json", "--no-ansi"])
        if not res.ok:
            raise CheckFailed(f"composer outdated failed: {tail(res.stderr or res.stdout)}")
        try:
            data = json.loads(res.stdout or "{}")
        except json.JSONDecodeError:
            raise CheckFailed(f"composer outdated did not print JSON: {tail(res.stdout)}") from None
        if isinstance(data, list):
            return []
        return list(data.get("locked") or data.get("installed") or [])

    def _versions(self, ctx: Context, name: str) -> list[str]:
        res = self.composer(ctx, ["show", "--all", name, "--format=json", "--no-ansi"])
        if not res.ok:
            raise CheckFailed(f"composer show --all {name} failed: {tail(res.stderr or res.stdout)}")
        try:
            data = json.loads(res.stdout)
        except json.JSONDecodeError:
            return []
        return [str(v) for v in data.get("versions", []) if not str(v).startswith("dev-")]

    def _plan_policy(self, ctx: Context, installed: list[Installed], plan: UpdatePlan[list[Installed]]) -> None:
        policy = self.p.policy()
        by_name = {p.name: p for p in installed}
        targets: dict[str, str] = {}
        for entry in self._outdated(ctx):
            name = str(entry.get("name"))
            pkg = by_name.get(name)
            if pkg is None or not policy.in_scope(name):
                continue
            if policy.level_for("composer") == "none" and policy.pin_for(name) is None:
                continue
            decision = choose(policy, name, "composer", pkg.version, self._versions(ctx, name))
            if decision.held_back:
                plan.skipped.append(Skipped(name, "composer", pkg.version, decision.held_back, decision.reason))
            if decision.version is None:
                continue
            targets[name] = decision.version
        while targets:
            ok, output = self._dry_run(ctx, targets)
            if ok:
                self._ops_to_updates(parse_operations(output), by_name, plan)
                return
            blamed = self._blame(output, targets, plan)
            if not blamed:
                raise CheckFailed(f"composer cannot apply the updates: {tail('; '.join(_problem_lines(output)), 800)}")
            for name in blamed:
                targets.pop(name, None)

    def _blame(self, output: str, targets: dict[str, str], plan: UpdatePlan[list[Installed]]) -> list[str]:
        """Candidates composer names as unsatisfiable: skipped (blocking), so the rest can go on."""
        blamed = []
        lines = _problem_lines(output)
        for name, version in targets.items():
            for line in lines:
                if re.search(rf"(^|\s){re.escape(name)}\[?\s*v?{re.escape(version)}\b.*requires", line) or (
                    f"{name} {version} requires" in line
                ):
                    pkg_version = next((p.version for p in plan.installed if p.name == name), "")
                    plan.skipped.append(Skipped(name, "composer", pkg_version, version, line, blocking=True))
                    blamed.append(name)
                    break
        return blamed

    def _dry_run(self, ctx: Context, targets: dict[str, str]) -> tuple[bool, str]:
        args = ["update", *[f"{n}:{v}" for n, v in targets.items()], "--with-all-dependencies", "--dry-run"]
        res = self.composer(ctx, [*args, "--no-ansi", "--no-audit", "--no-scripts", *self.p.update_args])
        return res.ok, res.stderr + "\n" + res.stdout

    def _ops_to_updates(
        self,
        ops: list[tuple[str, str, str | None, str | None]],
        by_name: dict[str, Installed],
        plan: UpdatePlan[list[Installed]],
    ) -> None:
        for op, name, _frm, to in ops:
            pkg = by_name.get(name) or Installed(name, "composer", "", "")
            operation = {"install": "install", "remove": "remove", "downgrading": "downgrade"}.get(op, "update")
            plan.updates.append(Update(pkg, to or "", operation=operation))

    def _plan_promote(
        self, ctx: Context, installed: list[Installed], lock: VersionLock, plan: UpdatePlan[list[Installed]]
    ) -> None:
        by_name = {p.name: p for p in installed}
        targets: dict[str, str] = {}
        for lp in lock.packages.values():
            if lp.type != "composer":
                continue
            pkg = by_name.get(lp.name)
            same_ref = pkg is not None and (not lp.reference or pkg.extra.get("reference") in (None, lp.reference))
            if pkg is not None and pkg.version == lp.version and same_ref:
                continue
            cur, target = Version.try_parse(pkg.version if pkg else ""), Version.try_parse(lp.version)
            if cur is not None and target is not None and target < cur and not self.p.allow_downgrade:
                raise CheckFailed(
                    f"composer {lp.name}: {ctx.env.name} has {cur}, newer than the {lp.version} {lock.env} validated"
                )
            self._check_offered(ctx, lp, lock)
            targets[lp.name] = lp.version
        plan.promote = {
            "from_env": lock.env,
            "from_run": lock.run_id,
            "packages": len(lock.packages),
            "schema_changed": lock.schema_changed,
        }
        if not targets:
            return
        ok, output = self._dry_run(ctx, targets)
        if not ok:
            raise CheckFailed(
                f"composer cannot install what {lock.env} validated: {tail('; '.join(_problem_lines(output)), 800)}"
            )
        ops = parse_operations(output)
        for op, name, _frm, to in ops:
            locked = lock.packages.get(f"composer:{name}")
            if op == "remove" and locked is None:
                continue
            if locked is None or to is None or locked.version != to:
                raise CheckFailed(
                    f"composer would change {name} to {to or '(removed)'}, which {lock.env} did not validate"
                )
        self._ops_to_updates(ops, by_name, plan)
        for update in plan.updates:
            entry = lock.packages.get(f"composer:{update.name}")
            if entry is not None:
                update.expected_tree = entry.tree

    def _check_offered(self, ctx: Context, lp: LockedPackage, lock: VersionLock) -> None:
        res = self.composer(ctx, ["show", "--all", lp.name, lp.version, "--format=json", "--no-ansi"])
        if not res.ok:
            raise CheckFailed(
                f"composer {lp.name} {lp.version}: no repository offers this version any more; "
                f"refusing to install anything else than what {lock.env} validated"
            )
        try:
            dist = (json.loads(res.stdout).get("dist") or {}) if res.stdout.strip() else {}
        except json.JSONDecodeError:
            dist = {}
        ref = dist.get("reference")
        if lp.reference and ref and ref != lp.reference:
            raise CheckFailed(
                f"composer {lp.name} {lp.version}: the repository now offers reference {ref}, "
                f"not the {lp.reference} {lock.env} validated: refusing it"
            )
        url = str(dist.get("url") or "")
        if lp.shasum and url.startswith("/"):
            sha = ctx.run(["sha1sum", "--", url], check=False)
            actual = sha.stdout.split(" ", 1)[0] if sha.ok else ""
            if actual != lp.shasum:
                raise CheckFailed(
                    f"composer {lp.name} {lp.version}: the package {url} has sha1 {actual or '(unreadable)'}, "
                    f"not the {lp.shasum} {lock.env} validated: refusing it"
                )


__all__ = ["ComposerPlanner", "parse_operations"]
