"""Reading and planning for the WordPress driver of ``cms.update``.

It needs no wp-cli: a small PHP helper shipped in the package (maintkit/php/wp_helper.php)
drives WordPress's own API with the site's PHP CLI. Read-only calls pipe the helper
through stdin (``php -- <root> list < helper``), so plan mode writes nothing; apply
uploads it to ``<path>/.maint/wp_helper.php`` (0600) and finalize removes it.

A WordPress boot is the driver's most expensive operation: the read-only state is read once
and kept in the run's probe cache (under ``wp.list:<php>:<root>``) next to the host's probes,
so ``compat.check``, a ``when: will_change('update')`` and ``cms.update`` of one stage share
one boot. cms.update declares that read as a probe (:class:`~maintkit.probes.cms.HelperRead`),
so the runner reads it with the stage's first read or with an earlier step's change, never in
a round trip of its own. The runner drops that cache with every change on the host, so a read
after any change is fresh.

:class:`WordPressPlanner` reads the installed state and plans by version policy, from a
predicted list (plan mode before the source stage ran) or from a version lock (promotion);
:class:`~maintkit.actions.cms.drivers.wordpress.WordPressDriver` adds installing,
verifying and rolling back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from maintkit._text import tail
from maintkit.action import Context
from maintkit.actions.cms.drivers.base import DriverBase
from maintkit.actions.cms.drivers.php_cache import cache_dir, helper_command
from maintkit.actions.cms.drivers.wordpress_sources import WpSources
from maintkit.actions.cms.drivers.wordpress_state import (
    JSON_MARKER,
    Stopwatch,
    WpState,
    parse_marked_json,
    same_version,
    state_from_helper,
    wp_helper_source,
)
from maintkit.actions.cms.lock import LockedPackage, VersionLock
from maintkit.actions.cms.params import CmsUpdateParams, effective_params
from maintkit.actions.cms.plan import Installed, PlanFacts, Skipped, Update, UpdatePlan
from maintkit.actions.cms.policy import Version, VersionPolicy, choose
from maintkit.actions.cms.security import security_policy
from maintkit.actions.cms.snapshots import cached_tree_hashes
from maintkit.errors import CheckFailed
from maintkit.probes import Probe, RawOutput
from maintkit.probes.cms import WP_CLI_PROBE, HelperRead


def helper_answer(stdout: str, exit_code: int, stderr: str) -> dict[str, Any]:
    """The helper's JSON answer out of its output; ``{"ok": False, "error": ...}`` without one."""
    data = parse_marked_json(stdout)
    if data is None:
        return {"ok": False, "error": f"the PHP helper gave no answer (exit {exit_code}): {tail(stderr or stdout)}"}
    return data


class WordPressPlanner(DriverBase):
    """Reads WordPress core, plugins and themes through the PHP helper and plans their updates."""

    name: ClassVar[str] = "wordpress"
    host_probes: ClassVar[tuple[Probe[Any], ...]] = (WP_CLI_PROBE,)

    def __init__(self, params: CmsUpdateParams) -> None:
        super().__init__(params)
        self.sources = WpSources(params)
        self.clock = Stopwatch()

    @classmethod
    def read_only(cls, ctx: Context, explicit: Mapping[str, Any] | None) -> Self:
        """A reader for the read-only checks: the ``cms_update`` settings under ``explicit``,
        never with the compiled-code cache (it writes under ``.maint``)."""
        return cls(effective_params(ctx, {**(explicit or {}), "php_cache": False}))

    # ---------------------------------------------------------------- paths
    def helper_path(self, ctx: Context) -> str:
        """Where apply uploads the helper."""
        return self.maint_dir(ctx) + "/wp_helper.php"

    # ---------------------------------------------------------------- helper
    def helper_argv(self, ctx: Context, command: str, args: dict[str, Any] | None, *, uploaded: bool) -> list[str]:
        """The argv of one helper command (the uploaded helper, else the helper on stdin), through
        the compiled-code cache on a real run."""
        cache = None if ctx.check_mode or not self.p.php_cache else cache_dir(ctx)
        script = self.helper_path(ctx) if uploaded else None
        return helper_command(self.p.php, self.root(ctx), command, args or {}, cache, script=script)

    def call(self, ctx: Context, command: str, args: dict[str, Any] | None = None, *, uploaded: bool) -> dict[str, Any]:
        """Run one helper command; ``{"ok": False, "error": ...}`` when it printed no answer."""
        argv = self.helper_argv(ctx, command, args, uploaded=uploaded)
        stdin = None if uploaded else wp_helper_source()
        with self.clock.boot():
            res = ctx.run(argv, check=False, stdin=stdin, timeout=self.p.timeout or ctx.env.command_timeout)
        return helper_answer(res.stdout, res.exit_code, res.stderr)

    def state(self, ctx: Context, *, uploaded: bool = False) -> WpState:
        """Installed core, plugins and themes (WordPress bootstraps: a fatal error shows here).

        The read-only read (``uploaded=False``) is shared through the run's probe cache until
        the next change on the host; ``uploaded=True`` (after a change) always reads afresh."""
        data = self.call(ctx, "list", {"readonly": False}, uploaded=True) if uploaded else self._shared_list(ctx)
        if not data.get("ok"):
            raise CheckFailed(f"cannot read the WordPress state at {self.root(ctx)}: {data.get('error')}")
        return state_from_helper(data, self.root(ctx))

    def state_probe(self, ctx: Context) -> HelperRead:
        """The read-only ``list`` as a probe: cms.update declares it, so the runner reads it with
        the stage's other probes (or after an earlier step's change) instead of on its own."""
        argv = self.helper_argv(ctx, "list", {"readonly": True}, uploaded=False)
        return HelperRead(tuple(argv), name=f"{self.p.php}:{self.root(ctx)}")

    def _shared_list(self, ctx: Context) -> dict[str, Any]:
        """The helper's read-only ``list`` answer, from the probe cache when nothing changed since."""
        key = self.state_probe(ctx).key
        cached = ctx.probe_cache.get(ctx.host_key, key)
        if cached is not None:
            data = helper_answer(cached.stdout, cached.exit_code, "")
            if data.get("ok"):
                return data
        data = self.call(ctx, "list", {"readonly": True}, uploaded=False)
        if data.get("ok"):  # a failed read is not kept: the next step tries again
            ctx.probe_cache.put(ctx.host_key, key, RawOutput(f"{JSON_MARKER}{json.dumps(data)}\n", 0))
        return data

    def read_probes(self, ctx: Context, plan: UpdatePlan[WpState]) -> None:
        """Add the wp-cli version (when wp-cli is installed) to the plan's facts."""
        wp_cli = ctx.probe(WP_CLI_PROBE).stdout.strip()
        if wp_cli:
            plan.facts.wp_cli = wp_cli

    # ---------------------------------------------------------------- plan
    def in_scope(self, policy: VersionPolicy, pkg: Installed) -> bool:
        """Whether the policy considers ``pkg`` at all."""
        if not policy.in_scope(pkg.name):
            return False
        return policy.level_for(pkg.kind) != "none" or policy.pin_for(pkg.name) is not None

    def plan(
        self, ctx: Context, lock: VersionLock | None, predicted: list[dict[str, Any]] | None = None
    ) -> UpdatePlan[WpState]:
        """Read-only: the exact updates (from -> to) for this environment."""
        st = self.state(ctx)
        facts = PlanFacts(
            php_version=st.php_version, php=self.p.php, core_version=st.core.version, db_version=st.db_version
        )
        plan = UpdatePlan(self.name, st, installed=st.packages, facts=facts)
        if lock is not None:
            self._plan_promote(ctx, st, lock, plan)
        elif predicted is not None:
            self._plan_predicted(st, predicted, plan)
        else:
            self._plan_policy(ctx, st, plan)
        return plan

    def _plan_policy(self, ctx: Context, st: WpState, plan: UpdatePlan[WpState]) -> None:
        policy = security_policy(ctx, self.p, st.packages)
        listing = self.sources.repo_listing(ctx)
        core_target = st.core.version
        for pkg in st.packages:
            if not self.in_scope(policy, pkg):
                continue
            with self.clock.part("sources"):
                offers = self.sources.offers(ctx, pkg, listing, st.php_version)
            decision = choose(policy, pkg.name, pkg.kind, pkg.version, [o.version for o in offers if o.version])
            if decision.held_back:
                plan.skipped.append(Skipped(pkg.name, pkg.kind, pkg.version, decision.held_back, decision.reason))
            if decision.version is None:
                continue
            offer = next(o for o in offers if o.version == decision.version)
            with self.clock.part("sources"):
                self.sources.materialize(ctx, pkg, offer)
            problem = self.sources.problem(pkg, offer, st, core_target)
            if problem:
                plan.skipped.append(Skipped(pkg.name, pkg.kind, pkg.version, offer.version, problem, blocking=True))
                continue
            plan.updates.append(Update(pkg, offer.version, offer, reason=decision.security))
            if pkg.kind == "core":
                core_target = offer.version

    def _plan_predicted(self, st: WpState, predicted: list[dict[str, Any]], plan: UpdatePlan[WpState]) -> None:
        plan.predicted = True
        for item in predicted:
            pkg = st.find(str(item.get("type")), str(item.get("name")))
            to = str(item.get("to") or "")
            if pkg is not None and to and not same_version(pkg.version, to):
                plan.updates.append(Update(pkg, to))

    def _plan_promote(self, ctx: Context, st: WpState, lock: VersionLock, plan: UpdatePlan[WpState]) -> None:
        listing = self.sources.repo_listing(ctx)
        same: list[tuple[Installed, LockedPackage]] = []
        missing: list[str] = []
        core_target = st.core.version
        ordered = sorted(lock.packages.values(), key=lambda lp: (lp.type != "core", lp.type, lp.name))
        for lp in ordered:
            pkg = st.find(lp.type, lp.name)
            if pkg is None:
                missing.append(lp.key)
                continue
            if same_version(pkg.version, lp.version):
                same.append((pkg, lp))
                continue
            update = self._promote_one(ctx, st, pkg, lp, lock, listing, core_target)
            plan.updates.append(update)
            if pkg.kind == "core":
                core_target = lp.version
        drift = []
        trees = cached_tree_hashes(ctx, [pkg.path for pkg, lp in same if lp.tree and pkg.kind != "core"])
        for pkg, lp in same:
            if lp.tree and pkg.kind != "core" and trees.get(pkg.path) not in (None, lp.tree):
                drift.append({"name": pkg.name, "type": pkg.kind, "version": pkg.version})
        plan.promote = {
            "from_env": lock.env,
            "from_run": lock.run_id,
            "packages": len(lock.packages),
            "not_installed": missing,
            "drift": drift,
            "schema_changed": lock.schema_changed,
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
                f"{lock.env} validated (set allow_downgrade to install it anyway)"
            )
        offers = [
            o for o in self.sources.offers(ctx, pkg, listing, st.php_version) if same_version(o.version, lp.version)
        ]
        if not offers:
            raise CheckFailed(
                f"{pkg.kind} {pkg.name} {lp.version}: no configured source offers this version any more; "
                f"refusing to install anything else than what {lock.env} validated"
            )
        offer = offers[0]
        with self.clock.part("sources"):
            self.sources.materialize(ctx, pkg, offer)
        if lp.sha256 and offer.sha256 != lp.sha256:
            raise CheckFailed(
                f"{pkg.kind} {pkg.name} {lp.version}: the package from {offer.source} has sha256 {offer.sha256}, "
                f"not the {lp.sha256} {lock.env} validated: refusing it"
            )
        if lp.tree and offer.tree and lp.tree != offer.tree:
            raise CheckFailed(
                f"{pkg.kind} {pkg.name} {lp.version}: the package from {offer.source} holds other files than "
                f"the one {lock.env} validated (tree {offer.tree[:12]} != {lp.tree[:12]}): refusing it"
            )
        problem = self.sources.problem(pkg, offer, st, core_target)
        if problem:
            raise CheckFailed(f"{pkg.kind} {pkg.name} {lp.version}: {problem}")
        return Update(
            pkg,
            lp.version,
            offer,
            expected_tree=lp.tree if pkg.kind != "core" else None,
            expected_sha256=lp.sha256,
            operation="downgrade" if downgrade else "update",
        )


__all__ = ["WordPressPlanner", "helper_answer"]
