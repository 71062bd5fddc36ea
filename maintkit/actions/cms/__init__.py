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

from typing import Any

from maintkit.action import Action, Context
from maintkit.actions.cms.drivers import ComposerDriver, Driver, WordPressDriver
from maintkit.actions.cms.drivers.base import lock_schema
from maintkit.actions.cms.isolate import carried_holds, restrict, skip_held
from maintkit.actions.cms.lock import VersionLock, mark_rolled_back, promotion_lock, write_lock
from maintkit.actions.cms.params import CmsUpdateParams, effective_params
from maintkit.actions.cms.plan import ACTION, PlanFacts, UpdatePlan
from maintkit.actions.cms.policy import VersionPolicy
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.probes import Probe
from maintkit.probes.cms import WP_CLI_PROBE
from maintkit.results import Change, Check, StepStatus

COMPOSER_PLATFORMS = ("composer", "magento", "shopware", "laravel", "drupal", "bedrock")


def platform_of(ctx: Context) -> str:
    """The environment's platform (falls back to the site's)."""
    return str(ctx.env.platform or ctx.site.platform)


def driver_probes(platform: str) -> list[Probe[Any]]:
    """The read-only probes of the driver for ``platform`` (none for a platform without a driver)."""
    if platform == "wordpress":
        return list(WordPressDriver.host_probes)
    if platform in COMPOSER_PLATFORMS:
        return list(ComposerDriver.host_probes)
    return []


def make_driver(ctx: Context, params: CmsUpdateParams) -> Driver[Any]:
    """The driver for the environment's platform; CheckFailed for platforms without one."""
    platform = platform_of(ctx)
    if platform == "wordpress":
        return WordPressDriver(params)
    if platform in COMPOSER_PLATFORMS:
        return ComposerDriver(params, platform)
    raise CheckFailed(
        f"cms.update has no driver for platform {platform!r} (wordpress, {', '.join(COMPOSER_PLATFORMS)})"
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
) -> tuple[Driver[Any], UpdatePlan[Any] | None]:
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
    plan = driver.plan(ctx, lock, predicted)
    skip_held(ctx, plan, retry=effective.retry_held)  # versions an earlier run held back wait for a newer one
    return driver, plan


def _updates_text(plan: UpdatePlan[Any], limit: int = 8) -> str:
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
        self._applied: tuple[Driver[Any], UpdatePlan[Any]] | None = None
        #: set by the runner's isolation: only these updates (``type:name`` -> version) this time
        self.isolation_subset: dict[str, str] | None = None

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        platform = platform_of(ctx)
        out = driver_probes(platform)
        if platform == "wordpress":  # the installed state its check reads (a WordPress boot)
            out.append(WordPressDriver(effective_params(ctx, self.params)).state_probe(ctx))
        return out

    def check(self, ctx: Context) -> Check:
        driver, plan = compute_plan(ctx, self.params)
        if plan is None:
            return Check.unknown(
                f"unknown: installs what the {ctx.stage_promote} stage's cms.update validates",
                depends_on=ctx.stage_promote,
            )
        if self.isolation_subset is not None:
            restrict(plan, self.isolation_subset)
        driver.read_probes(ctx, plan)
        if driver.p.on_incompatible == "fail" and plan.blocking:
            raise CheckFailed(
                "refusing candidates the host cannot run: " + "; ".join(s.line() for s in plan.blocking),
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
        if ctx.direct_update:
            reason += " (without trying on staging first: direct_updates)"
        return Check.change(reason, diff=plan.diff(), snapshot=(driver, plan), **data)

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        driver, plan = check.snapshot
        if plan.predicted:
            raise ApplyFailed("no version lock to promote (the plan was only predicted)")
        self._applied = (driver, plan)
        changes: list[Change] = driver.apply(ctx, plan)
        ctx.record(updates=[u.public() for u in plan.updates])
        if ctx.direct_update:  # the site has no staging (direct_updates: true): the report warns
            ctx.record(untried="updated without trying on staging first")
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
        driver: Driver[Any],
        plan: UpdatePlan[Any],
        state: Any,
        trees: dict[str, str | None],
    ) -> None:
        if state is None:
            state = plan.state
        updated_plan = plan if self._applied is not None else None
        packages = driver.lock_packages(ctx, state, updated_plan, trees)
        lock = VersionLock(
            site=ctx.site.name,
            env=ctx.env.name,
            run_id=ctx.run_id,
            platform=platform_of(ctx),
            driver=driver.name,
            packages=packages,
            held=carried_holds(ctx, plan),
            **lock_schema(driver, self._applied is not None),
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
        driver.finish(ctx)


__all__ = [
    "COMPOSER_PLATFORMS",
    "WP_CLI_PROBE",
    "CmsUpdate",
    "CmsUpdateParams",
    "ComposerDriver",
    "Driver",
    "PlanFacts",
    "UpdatePlan",
    "VersionPolicy",
    "WordPressDriver",
    "compute_plan",
    "driver_probes",
    "make_driver",
    "platform_of",
    "predicted_updates",
]
