"""One bad package never blocks the good ones: a failed stage retried with subsets of its updates.

:func:`isolate` follows a stage (run by :mod:`maintkit.runner.isolate`); when it rolled back
after a ``cms.update`` step updated several packages and that step or a later one failed
(``http.check``, ``compat.check``, ``visual.check``...), it retries the whole stage with subsets of those
updates, chosen by
:class:`~maintkit.actions.cms.isolate.Isolation` (``isolate: bisect``, the default, or
``one-by-one``; ``none`` keeps the all-or-nothing rollback). A subset that passes stays
installed and the next subset is tried on top of it; a package that fails alone is held back
with the failing check's message. The attempts are bounded (``2*log2(n)+2`` for bisect).

The stage then ends ``ok`` when something was kept (the site's results show the last passing
attempt; the update step lists the kept updates and the held ones), else rolled back as
before. The version lock lists only the kept versions as validated and the held ones with
their reasons. Every attempt is in the audit log (``isolation.started``, ``isolation.attempt``,
then ``step.isolated``). A stage with one package behaves as it always did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from maintkit._text import head
from maintkit.action import Context
from maintkit.actions.cms import CmsUpdate, platform_of
from maintkit.actions.cms.isolate import Isolation, final_lock, held_entry, held_line, max_attempts, update_key
from maintkit.actions.cms.lock import HeldPackage, VersionLock, lock_path, merge_schema, read_lock, write_lock
from maintkit.actions.cms.params import effective_params
from maintkit.errors import MaintkitError
from maintkit.inventory import Site
from maintkit.report.reading import StepState
from maintkit.report.verdict import failure_cause, page_name
from maintkit.results import SiteResult, SiteStatus, StepResult, StepStatus
from maintkit.runner.locks import Held
from maintkit.runner.plan import PlannedStage, PlannedStep
from maintkit.runner.stage import StageOutcome, base_context, run_stage
from maintkit.runner.state import RunState

_SMOKE = re.compile(r"smoke (\S+): HTTP (\d+)")
_PHASE = re.compile(r"^(check|apply|verify|step): ")


def failure_reason(res: StepResult) -> str:
    """Why a step failed, in words a shop owner reads (``the cart answered HTTP 500``)."""
    failures = res.data.get("failures")
    if res.action == "http.check" and isinstance(failures, list):
        st = StepState("", "", res.site, res.env, res.step, res.action, res.status.value, None, res.data)
        cause, _page = failure_cause(st)
        if cause:
            return cause
    for text in failures if isinstance(failures, list) else []:
        found = _SMOKE.search(str(text))
        if found:
            return f"{page_name(found.group(1))} answered HTTP {found.group(2)}"
    lines = (res.error or res.reason or "failed").strip().splitlines() or ["failed"]
    return head(_PHASE.sub("", lines[0]), 160)


@dataclass
class Target:
    """What isolation works on: the update step, its updates and the first failure."""

    ps: PlannedStep
    mode: str
    updates: list[dict[str, Any]]
    reason: str
    failed_step: str


def isolation_target(
    state: RunState, site: Site, planned: PlannedStage, steps: list[StepResult], outcome: StageOutcome
) -> Target | None:
    """The update step to isolate when this stage's failure calls for it, else None (today's rollback)."""
    if state.check or state.stop.is_set() or planned.stage.promote or outcome.cleanup_errors:
        return None
    if outcome.steps is not SiteStatus.ROLLED_BACK:
        return None
    failed = next((s for s in steps if s.status is StepStatus.FAILED), None)
    update = next((s for s in steps if s.action == CmsUpdate.name and isinstance(s.data.get("updates"), list)), None)
    if failed is None or update is None or len(update.data["updates"]) < 2:
        return None
    if steps.index(failed) < steps.index(update):
        return None
    ps = next(p for p in planned.steps if p.step.id == update.step)
    if not isinstance(ps.action, CmsUpdate):
        return None
    ctx = base_context(state, site, planned, state.pool.get(planned.env))
    try:
        mode = effective_params(ctx, ps.action.params).isolate
    except MaintkitError:
        return None
    if mode is None:  # composer packages share one composer.lock: all or nothing unless asked
        mode = "bisect" if platform_of(ctx) == "wordpress" else "none"
    if mode == "none":
        return None
    return Target(ps, mode, [dict(u) for u in update.data["updates"]], failure_reason(failed), failed.step)


def isolate(
    state: RunState,
    site: Site,
    planned: PlannedStage,
    result: SiteResult,
    held: Held,
    mark: int,
    error_before: str | None,
    outcome: StageOutcome,
) -> StageOutcome:
    """After a stage ran (its steps from ``result.steps[mark]``): isolate its bad updates if its failure asks for it."""
    target = isolation_target(state, site, planned, result.steps[mark:], outcome)
    if target is None:
        return outcome
    return _Isolator(state, site, planned, result, held, target, mark, error_before, outcome).run()


@dataclass
class _Isolator:
    """The attempts of one isolation and what they leave."""

    state: RunState
    site: Site
    planned: PlannedStage
    result: SiteResult
    held: Held
    target: Target
    mark: int
    error_before: str | None
    first: StageOutcome
    cleanup_errors: list[str] = field(default_factory=list)
    #: the results of the latest attempt that passed, and the lock it wrote
    passed: tuple[list[StepResult], VersionLock | None] | None = None

    def run(self) -> StageOutcome:
        t = self.target
        first_steps = self.result.steps[self.mark :]
        self.cleanup_errors = list(self.first.cleanup_errors)
        by_key = {update_key(u): u for u in t.updates}
        iso = Isolation(list(by_key), t.reason, t.mode)
        self._emit(
            "isolation.started",
            mode=t.mode,
            packages=[_label(u) for u in t.updates],
            max_attempts=max_attempts(t.mode, len(by_key)),
            failed_step=t.failed_step,
            reason=t.reason,
        )
        subset = iso.next_subset()
        while subset is not None:
            outcome, why = self._attempt(iso.attempts + 1, [by_key[k] for k in subset], iso.kept)
            if outcome.steps not in (SiteStatus.OK, SiteStatus.ROLLED_BACK) or self.state.stop.is_set():
                self.result.steps[self.mark : self.mark] = first_steps  # the first failure, then this attempt
                return outcome  # interrupted, or a rollback failed: no further attempt on this site
            subset = iso.tell(outcome.steps is SiteStatus.OK, why or t.reason)
        iso.finish()
        return self._conclude(iso, by_key, first_steps)

    def _attempt(self, number: int, updates: list[dict[str, Any]], kept: list[str]) -> tuple[StageOutcome, str | None]:
        """One more run of the stage with only ``updates`` (on top of the ``kept`` ones, already installed);
        how it ended and why it failed."""
        subset = {update_key(u): str(u.get("to")) for u in updates}
        steps = []
        for ps in self.planned.steps:
            action = type(ps.action)(ps.action.params, ps.step.id)  # fresh: no state from the earlier attempt
            if ps.step.id == self.target.ps.step.id and isinstance(action, CmsUpdate):
                action.isolation_subset = subset
            steps.append(replace(ps, action=action))
        del self.result.steps[self.mark :]  # each attempt sees only its own steps (conditions, compat.check)
        outcome = run_stage(self.state, self.site, replace(self.planned, steps=steps), self.result, self.held)
        self.cleanup_errors += outcome.cleanup_errors
        attempt_steps = self.result.steps[self.mark :]
        failed = next((s for s in attempt_steps if s.status is StepStatus.FAILED), None)
        why = failure_reason(failed) if failed else None
        passed = outcome.steps is SiteStatus.OK
        if passed:
            lock = self._current_lock()
            earlier = self.passed[1] if self.passed is not None else None
            if lock is not None and earlier is not None:  # a schema change kept by an earlier attempt still counts
                lock = lock.model_copy(update=merge_schema(earlier, lock))
            self.passed = (attempt_steps, lock)
        self._emit(
            "isolation.attempt",
            attempt=number,
            packages=[_label(u) for u in updates],
            kept_before=len(kept),
            status="passed" if passed else outcome.steps.value,
            failed_step=failed.step if failed else None,
            reason=why,
        )
        return outcome, why

    def _conclude(
        self, iso: Isolation, by_key: dict[str, dict[str, Any]], first_steps: list[StepResult]
    ) -> StageOutcome:
        """Keep the results of the last passing attempt (or the first failure), write the lock, say what was held."""
        run_id = self.state.run_id
        held = {key: held_entry(by_key[key], why, run_id) for key, why in iso.held.items()}
        kept = [by_key[k] for k in by_key if k in iso.kept]
        shown = self.passed[0] if self.passed is not None and kept else first_steps
        self.result.steps[self.mark :] = shown
        update = next(s for s in shown if s.step == self.target.ps.step.id)
        lines = [held_line(h) for h in held.values()]
        update.data.update(
            updates=kept,
            held=[h.model_dump(by_alias=True) for h in held.values()],
            isolation={"mode": iso.mode, "retries": iso.attempts, "max_retries": iso.limit},
        )
        kept_text = ", ".join(_label(u) for u in kept) or "nothing"
        update.reason = f"kept {kept_text}; held back: {'; '.join(lines)}"
        status = SiteStatus.OK if kept else self.first.steps
        if kept:
            self.result.error = self.error_before
        self._write_lock(kept, held)
        self._emit(
            "step.isolated",
            step=update.step,
            action=update.action,
            status="changed" if kept else "rolled-back",
            reason=update.reason,
            data={"updates": kept, "held": update.data["held"], "isolation": update.data["isolation"]},
        )
        return StageOutcome(status, self.cleanup_errors)

    def _current_lock(self) -> VersionLock | None:
        if self.state.options.run_dir is None:
            return None
        try:
            return read_lock(lock_path(self.state.options.run_dir, self.site.name))
        except MaintkitError:
            return None

    def _write_lock(self, kept: list[dict[str, Any]], held: dict[str, HeldPackage]) -> None:
        """The lock of the stage: the kept versions validated (or rolled back when none), the held ones listed."""
        base = self.passed[1] if self.passed is not None and kept else self._current_lock()
        if base is None:
            return
        lock = final_lock(base, kept, held, "validated" if kept else "rolled-back")
        ctx: Context = base_context(self.state, self.site, self.planned, self.state.pool.get(self.planned.env))
        write_lock(replace(ctx, step_id=self.target.ps.step.id), lock)

    def _emit(self, event: str, **fields: Any) -> None:
        env = self.planned.env
        self.state.emit(event, site=self.site.name, env=env.name, host=env.display_host, **fields)


def _label(update: dict[str, Any]) -> str:
    """``shop-cart 1.2.0``."""
    return f"{update.get('name')} {update.get('to')}"


__all__ = ["Target", "failure_reason", "isolate", "isolation_target"]
