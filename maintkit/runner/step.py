"""One step on one site environment: ``when``, check, apply, verify, and the step's failure.

A step ends with its :class:`~maintkit.results.StepResult` filled in and its audit events
written; when it fails in run mode, :func:`run_step` returns the ``on_failure`` policy the
stage must apply (``rollback`` or ``stop``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from maintkit.action import Context, monotonic_ms
from maintkit.errors import ActionError, MaintkitError
from maintkit.inventory import Site
from maintkit.probes import run_batch
from maintkit.results import Change, Check, SiteResult, StepResult, StepStatus
from maintkit.runner.chain import Chain, Link
from maintkit.runner.conditions import evaluate_when
from maintkit.runner.plan import PlannedStage, PlannedStep, skipped_note
from maintkit.runner.state import RunState
from maintkit.transport.base import cancellable

#: what the stage's lock hook tells a step that has to change: go on with its check, check again
#: (on what was read under the lock), or end unrecorded (the stage checks its steps from the first)
LockAnswer = Literal["go", "recheck", "restart"]


@dataclass
class Applied:
    """A step that changed something: what the stage may roll back and must finalize."""

    planned: PlannedStep
    ctx: Context
    changes: list[Change]
    result: StepResult
    rolled_back: bool = False


def stamp(exc: BaseException, *, action: str, site: str, env: str) -> None:
    """Fill in the action, site and environment of an ActionError that does not name them yet."""
    if not isinstance(exc, ActionError):
        return
    exc.action = exc.action or action
    exc.site = exc.site or site
    exc.env = exc.env or env


def record(
    state: RunState, res: StepResult, event: str, host: str, status_override: str | None = None, **extra: Any
) -> None:
    """Write one step event with the step's result fields."""
    state.emit(
        event,
        site=res.site,
        env=res.env,
        host=host,
        step=res.step,
        action=res.action,
        status=status_override or res.status.value,
        reason=res.reason,
        changes=[c.public() for c in res.changes],
        duration_ms=round(res.duration_ms, 1),
        error=res.error,
        depends_on=res.depends_on,
        data=res.data or None,
        **extra,
    )


def refresh(state: RunState, ctx: Context) -> None:
    """Read the probes of this and later steps that the change left unknown, in one round trip."""
    missing = [p for p in ctx.refresh if not state.probe_cache.has(ctx.host_key, p.key)]
    if missing:
        raw, _ = run_batch(ctx.transport, missing, timeout=ctx.env.command_timeout or 600.0)
        for key, value in raw.items():
            state.probe_cache.put(ctx.host_key, key, value)


def run_step(
    state: RunState,
    site: Site,
    planned: PlannedStage,
    ps: PlannedStep,
    base: Context,
    result: SiteResult,
    applied: list[Applied],
    before_change: Callable[[], LockAnswer] | None = None,
    chain: tuple[Chain, int] | None = None,
) -> str | None:
    """Run one step; the ``on_failure`` policy to apply when it failed in run mode, else None.

    Its commands run under the run's cancel token: an interrupt stops the one running now.
    ``before_change`` runs when the check says the step has to change something, before that is
    recorded (the stage takes its lock there, reading every probe again); its answer says
    whether the check stands, runs again on those values, or the step ends unrecorded and the
    stage checks its steps again from the first.

    ``chain`` is the stage's :class:`~maintkit.runner.chain.Chain` and this step's index: a
    step whose change rode in an earlier step's round trip takes the check it was planned on
    and replays that change; a step that changes may carry later steps' changes in its own.
    """
    with cancellable(state.interrupts.token):
        step = _StepRun(state, site, planned, ps, base, result, applied)
        step.before_change, step.chain = before_change, chain
        return step.run()


class _StepRun:
    """The phases of one step, sharing its result, context and start time."""

    def __init__(
        self,
        state: RunState,
        site: Site,
        planned: PlannedStage,
        ps: PlannedStep,
        base: Context,
        result: SiteResult,
        applied: list[Applied],
    ) -> None:
        self.state, self.site, self.planned, self.ps = state, site, planned, ps
        self.site_result, self.applied = result, applied
        self.host = planned.env.display_host
        self.res = StepResult(site.name, planned.env.name, ps.step.id, ps.action.name, StepStatus.NOT_RUN)
        result.steps.append(self.res)
        self.started = time.monotonic()
        self.ctx = replace(base, step_id=ps.step.id, prior=result.steps[:-1], data={}, primed=set())
        self.before_change: Callable[[], LockAnswer] | None = None
        self.chain: tuple[Chain, int] | None = None
        self.links: list[Link] = []

    def run(self) -> str | None:
        if self.ps.skip is not None:  # --steps, --skip-steps, --start-at: audited as skipped, with the flag
            self.res.status, self.res.reason = StepStatus.SKIPPED, self.ps.skip
            record(self.state, self.res, "step.skipped", self.host, skipped_by=self.ps.skip.split()[0])
            return None
        try:
            when = evaluate_when(self.ps, self.planned, self.site_result, self.ctx, check=self.state.check)
        except MaintkitError as exc:
            return self._fail(exc)
        if when is None:
            self.res.status, self.res.reason = StepStatus.UNKNOWN, "unknown: its condition depends on an earlier step"
            record(self.state, self.res, "step.checked", self.host)
            return None
        if not when:
            self.res.status, self.res.reason = StepStatus.SKIPPED, f"condition false: {self.ps.step.when}"
            record(self.state, self.res, "step.skipped", self.host)
            return None
        replayed = self.chain[0].replay(self.chain[1], self.ctx) if self.chain else None
        if replayed is not None:  # its change already ran, planned on this check
            return None if self._settled(replayed) else self._apply(replayed)
        chk, policy = self._checked()
        if chk is None:
            return policy
        if self.before_change is not None and chk.needed is not False and not self.state.check:
            answer = self.before_change()
            if answer == "restart":
                return None  # the lock was taken and what earlier steps read had changed: the stage checks again
            if answer == "recheck":
                chk, policy = self._checked()  # what it read reads differently under the lock
                if chk is None:
                    return policy
        if self.chain and chk.needed is True and not self.state.check:
            self.links = self.chain[0].lead(self.chain[1], self.ctx, chk)
        if self._settled(chk):
            return None
        return self._apply(chk)

    def _checked(self) -> tuple[Check | None, str | None]:
        """The check; (None, the failure's policy) when it failed."""
        try:
            return self._check(), None
        except MaintkitError as exc:
            self.res.data.update(self.ctx.data)
            return None, self._fail(self._stamped(exc))

    def _check(self) -> Check:
        """The action's check; in plan mode, unknown when it depends on a step that would change."""
        pending = self.ctx.pending_step() if self.state.check else None
        try:
            if self.state.check and pending and self.ps.action.depends_on_previous:
                return Check.unknown(f"unknown: depends on step {pending}", depends_on=pending)
            return self.ps.action.check(self.ctx)
        except MaintkitError as exc:
            if self.state.check and pending:
                return Check.unknown(f"unknown: depends on step {pending} ({exc})", depends_on=pending)
            raise

    def _settled(self, chk: Check) -> bool:
        """Record the check; True when the step ends here (plan mode, or nothing to do)."""
        res = self.res
        res.reason, res.diff, res.depends_on = chk.reason, chk.diff, chk.depends_on
        res.reason += skipped_note(self.planned, self.ps)
        res.data.update(chk.data)
        res.data.update(self.ctx.data)
        if self.state.check:
            res.status = {True: StepStatus.WOULD_CHANGE, False: StepStatus.UNCHANGED, None: StepStatus.UNKNOWN}[
                chk.needed
            ]
            res.duration_ms = monotonic_ms(self.started)
            record(self.state, res, "step.checked", self.host, diff=chk.diff if self.state.options.diff else None)
            return True
        if chk.needed is False:
            res.status = StepStatus.UNCHANGED
            res.duration_ms = monotonic_ms(self.started)
            record(self.state, res, "step.checked", self.host)
            return True
        chained = [{"step": ln.planned.step.id, "action": ln.planned.action.name} for ln in self.links]
        extra = {"chained": chained} if chained else {}
        record(self.state, res, "step.checked", self.host, status_override="needed", **extra)
        return False

    def _apply(self, chk: Check) -> str | None:
        """Apply, then verify; partial changes of a failed apply are kept for the rollback.

        The change is recorded (for the rollback, the audit log and the state store) as soon as
        apply returns, before any read after it: a read that fails then (an interrupt that stops
        the next command, a lost connection) fails the step, whose change is still rolled back."""
        res, ctx, ps = self.res, self.ctx, self.ps
        entry: Applied | None = None
        try:
            ctx.invalidate()  # apply reads fresh state; only what it reads after its change survives it
            changes = ps.action.apply(ctx, chk)
            res.changes = changes
            entry = Applied(ps, ctx, changes, res)
            self.applied.append(entry)
            res.status = StepStatus.CHANGED
            res.data.update(ctx.data)
            record(self.state, res, "step.applied", self.host, diff=chk.diff if self.state.options.diff else None)
            # the store learns of every change at once: a run taking over after this one died undoes it
            self.state.publish(f"maint run {self.state.run_id}: {res.site}/{res.env} step {res.step} applied")
            self.state.probe_cache.invalidate(ctx.host_key, keep=ctx.primed)
            refresh(self.state, ctx)
            ps.action.verify(ctx)
            res.data.update(ctx.data)
        except MaintkitError as exc:
            ctx.invalidate()
            partial = list(getattr(exc, "changes", None) or [])
            if entry is None and partial:  # apply changed something, then failed: undo that too
                res.changes = partial
                self.applied.append(Applied(ps, ctx, partial, res))
            return self._fail(self._stamped(exc))
        res.duration_ms = monotonic_ms(self.started)
        record(self.state, res, "step.verified", self.host)
        return None

    def _stamped(self, exc: MaintkitError) -> MaintkitError:
        stamp(exc, action=self.ps.action.name, site=self.site.name, env=self.planned.env.name)
        return exc

    def _fail(self, exc: MaintkitError) -> str | None:
        """Record the failure; the ``on_failure`` policy the stage must apply (None: go on)."""
        res = self.res
        phase = getattr(exc, "phase", "step")
        res.status = StepStatus.FAILED
        res.error = f"{phase}: {exc}"
        res.exception = exc
        res.duration_ms = monotonic_ms(self.started)
        details = getattr(exc, "details", None)
        if details:
            res.data.update(details)
        record(self.state, res, "step.failed", self.host, phase=phase)
        if self.state.check:
            return None
        if self.site_result.error is None:  # the site error names the step whose failure was the cause
            self.site_result.error = f"step {res.step} failed: {res.error}"
        policy = self.ps.step.on_failure or self.state.playbook.on_failure
        return None if policy == "continue" else policy


__all__ = ["Applied", "LockAnswer", "record", "refresh", "run_step", "stamp"]
