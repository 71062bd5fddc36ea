"""``cms.update``: update WordPress or composer-based shops by version policy, and promote them.

On a stage without ``promote:`` (staging) the step updates every package the version
policy allows (exact ``from -> to`` in the check and the diff), verifies what is really
installed afterwards (never trusting exit codes) and writes the version lock
``<run_dir>/locks/<site>.json``. On a stage with ``promote: staging`` it installs exactly
that lock (or the lock of ``--promote-from RUN``) and refuses anything else. Rollback
restores the snapshots of the replaced code and, when the schema changed, the database
dump taken before the update, over SSH without running PHP.

The driver follows the environment's platform: ``wordpress``, or ``composer`` for
composer, magento, shopware, laravel, drupal and bedrock.
"""

from __future__ import annotations

from typing import Any, Protocol

from maintkit.action import Action, Context
from maintkit.actions.cms.common import ACTION, UpdatePlan
from maintkit.actions.cms.composer import ComposerDriver
from maintkit.actions.cms.lock import VersionLock, mark_rolled_back, promotion_lock, write_lock
from maintkit.actions.cms.params import CmsUpdateParams, effective_params
from maintkit.actions.cms.policy import VersionPolicy
from maintkit.actions.cms.wordpress import WordPressDriver
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.probes import CommandProbe, Probe
from maintkit.results import Change, Check, StepStatus

COMPOSER_PLATFORMS = ("composer", "magento", "shopware", "laravel", "drupal", "bedrock")
WP_CLI_PROBE = CommandProbe(("sh", "-c", "command -v wp >/dev/null 2>&1 && wp --version 2>/dev/null || true"))


class Driver(Protocol):
    """What a cms driver offers the action (WordPressDriver, ComposerDriver)."""

    name: str

    def plan(self, ctx: Context, lock: VersionLock | None, predicted: list[dict[str, Any]] | None = None) -> UpdatePlan:
        """Read-only plan."""

    def apply(self, ctx: Context, plan: UpdatePlan) -> list[Change]:
        """Install the plan."""

    def verify(self, ctx: Context, plan: UpdatePlan) -> tuple[Any, dict[str, str | None]]:
        """Read back; returns (state, tree hashes)."""

    def lock_packages(
        self, ctx: Context, state: Any, plan: UpdatePlan | None, trees: dict[str, str | None] | None = None
    ) -> Any:
        """Lock entries for the installed state."""

    def undo(self, ctx: Context, changes: list[Change]) -> dict[str, Any]:
        """Roll back."""

    def cleanup(self, ctx: Context) -> None:
        """Remove temporary files."""

    def prune(self, ctx: Context) -> None:
        """Drop old snapshots."""


def platform_of(ctx: Context) -> str:
    """The environment's platform (falls back to the site's)."""
    return str(ctx.env.platform or ctx.site.platform)


def make_driver(ctx: Context, params: CmsUpdateParams) -> WordPressDriver | ComposerDriver:
    """The driver for the environment's platform; CheckFailed for platforms without one."""
    platform = platform_of(ctx)
    if platform == "wordpress":
        return WordPressDriver(params)
    if platform in COMPOSER_PLATFORMS:
        return ComposerDriver(params, platform)
    raise CheckFailed(
        f"cms.update has no driver for platform {platform!r} (wordpress, {', '.join(COMPOSER_PLATFORMS)})",
        action=ACTION,
    )


def predicted_updates(ctx: Context) -> list[dict[str, Any]] | None:
    """Plan mode: the updates the promoted stage's cms.update would make (from its check data)."""
    for res in reversed(ctx.prior):
        if res.env == ctx.stage_promote and res.action == ACTION:
            if res.status in (StepStatus.WOULD_CHANGE, StepStatus.UNCHANGED):
                updates = res.data.get("updates")
                return list(updates) if isinstance(updates, list) else []
            return None
    return None


def compute_plan(
    ctx: Context, params: CmsUpdateParams | dict[str, Any] | None = None
) -> tuple[WordPressDriver | ComposerDriver, UpdatePlan | None]:
    """The candidates cms.update would install here (read-only), shared with compat.check.

    Returns ``(driver, None)`` when the plan cannot be known yet: a promoting stage in plan
    mode before its source stage's cms.update ran.
    """
    effective = effective_params(ctx, params)
    driver = make_driver(ctx, effective)
    lock, _path = promotion_lock(ctx, driver.name)
    predicted = None
    if ctx.stage_promote and lock is None:
        predicted = predicted_updates(ctx)
        if predicted is None:
            return driver, None
    return driver, driver.plan(ctx, lock, predicted)


def _updates_text(plan: UpdatePlan, limit: int = 8) -> str:
    parts = [f"{u.name} {u.package.version or '(new)'} -> {u.to or '(removed)'}" for u in plan.updates[:limit]]
    more = len(plan.updates) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


class CmsUpdate(Action[CmsUpdateParams]):
    """Update CMS core, plugins, themes or composer packages; promote exactly what staging validated."""

    name = "cms.update"
    Params = CmsUpdateParams
    summary = "Update WordPress/composer packages by version policy, verify, lock; promote exactly that lock."
    rollback_kind = "undo"

    def __init__(self, params: CmsUpdateParams, step_id: str | None = None) -> None:
        super().__init__(params, step_id)
        self._applied: tuple[WordPressDriver | ComposerDriver, UpdatePlan] | None = None

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [WP_CLI_PROBE] if platform_of(ctx) == "wordpress" else []

    def check(self, ctx: Context) -> Check:
        driver, plan = compute_plan(ctx, self.params)
        if plan is None:
            return Check.unknown(
                f"unknown: installs what the {ctx.stage_promote} stage's cms.update validates",
                depends_on=ctx.stage_promote,
            )
        if isinstance(driver, WordPressDriver):
            wp_cli = ctx.probe(WP_CLI_PROBE).stdout.strip()
            if wp_cli:
                plan.facts["wp_cli"] = wp_cli
        if driver.p.on_incompatible == "fail" and plan.blocking:
            raise CheckFailed(
                "refusing candidates the host cannot run: " + "; ".join(s.line() for s in plan.blocking),
                action=self.name,
                details={"skipped": [s.public() for s in plan.skipped]},
            )
        data = plan.data()
        if not plan.updates:
            if not ctx.check_mode and not ctx.stage_promote:
                self._write_lock(ctx, driver, plan, None, {})
            skipped = f"; skipped: {'; '.join(s.line() for s in plan.skipped)}" if plan.skipped else ""
            what = f"matches the {ctx.stage_promote} lock" if ctx.stage_promote else "nothing to update"
            return Check.ok(what + skipped, **data)
        reason = f"{len(plan.updates)} update(s): {_updates_text(plan)}"
        if plan.predicted:
            reason += f" (what {ctx.stage_promote} would validate; its lock does not exist yet)"
        if plan.blocking:
            reason += f"; skipped: {'; '.join(s.line() for s in plan.blocking)}"
        return Check.change(reason, diff=plan.diff(), snapshot=(driver, plan), **data)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        driver, plan = check.snapshot
        if plan.predicted:
            raise ApplyFailed("no version lock to promote (the plan was only predicted)", action=self.name)
        self._applied = (driver, plan)
        changes: list[Change] = driver.apply(ctx, plan)
        ctx.record(updates=[u.public() for u in plan.updates])
        return changes

    def verify(self, ctx: Context) -> None:
        if self._applied is None:
            super().verify(ctx)
            return
        driver, plan = self._applied
        state, trees = driver.verify(ctx, plan)
        if not ctx.stage_promote:
            self._write_lock(ctx, driver, plan, state, trees)
        else:
            ctx.record(promoted={"from_env": ctx.stage_promote, "packages": [u.public() for u in plan.updates]})

    def _write_lock(
        self,
        ctx: Context,
        driver: WordPressDriver | ComposerDriver,
        plan: UpdatePlan,
        state: Any,
        trees: dict[str, str | None],
    ) -> None:
        if state is None:
            state = plan.facts.get("state") if isinstance(driver, WordPressDriver) else plan.installed
        updated_plan = plan if self._applied is not None else None
        packages = driver.lock_packages(ctx, state, updated_plan, trees)
        lock = VersionLock(
            site=ctx.site.name,
            env=ctx.env.name,
            run_id=ctx.run_id,
            platform=platform_of(ctx),
            driver=driver.name,
            packages=packages,
        )
        path = write_lock(ctx, lock)
        if path is not None:
            ctx.record(lock=str(path), locked_packages=len(packages))

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        driver = self._applied[0] if self._applied else make_driver(ctx, effective_params(ctx, self.params))
        try:
            report = driver.undo(ctx, changes)
        finally:
            mark_rolled_back(ctx)
        ctx.event("cms.rolled_back", step=self.step_id, **report)
        ctx.record(rollback=report)

    def finalize(self, ctx: Context, changes: list[Change], ok: bool) -> None:
        driver = self._applied[0] if self._applied else make_driver(ctx, effective_params(ctx, self.params))
        driver.cleanup(ctx)
        driver.prune(ctx)


__all__ = [
    "CmsUpdate",
    "CmsUpdateParams",
    "ComposerDriver",
    "UpdatePlan",
    "VersionPolicy",
    "WordPressDriver",
    "compute_plan",
    "make_driver",
    "predicted_updates",
]
