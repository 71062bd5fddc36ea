"""One stage (environment) of one site: prefetch with the lock, the steps, rollback, finalize.

The stage sends one batch that takes the environment's lock and reads every probe its steps
declared, runs the steps, applies the ``on_failure`` policy of a failed step (rolling back
the applied steps in reverse order), rolls back on an interrupt, and finalizes every step
that changed something. It ends with a :class:`StageOutcome`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from maintkit.action import Context, monotonic_ms
from maintkit.errors import MaintkitError, NotReversible
from maintkit.inventory import Site
from maintkit.probes import Probe, run_batch
from maintkit.results import SiteResult, SiteStatus, StepStatus
from maintkit.runner.locks import Held, lock_script, settle_lock
from maintkit.runner.outcome import SiteVerdict
from maintkit.runner.plan import PlannedStage
from maintkit.runner.state import RunState
from maintkit.runner.step import Applied, run_step, stamp
from maintkit.templating import Secrets
from maintkit.transport.base import Transport


@dataclass
class StageOutcome:
    """How a stage ended: what its steps and rollback left, and the cleanups that failed."""

    steps: SiteStatus
    #: finalize failures, each naming its step
    cleanup_errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> SiteStatus:
        """The stage's status (a failed finalize fails an ok or rolled-back stage)."""
        return SiteVerdict(stage=self.steps, cleanup_failed=bool(self.cleanup_errors)).status


def run_stage(state: RunState, site: Site, planned: PlannedStage, result: SiteResult, held: Held) -> StageOutcome:
    """Run one stage of one site; raises LockHeld or MaintkitError when the stage cannot start."""
    env = planned.env
    base = base_context(state, site, planned, state.pool.get(env))
    state.emit("stage.started", site=site.name, env=env.name, host=env.display_host, promote=planned.stage.promote)
    step_probes = declared_probes(planned, base)
    prefetch(state, site, planned, base, held, step_probes)
    applied: list[Applied] = []
    status = SiteStatus.OK
    for i, ps in enumerate(planned.steps):
        if state.stop.is_set():
            status = SiteStatus.INTERRUPTED
            break
        # after a change, this step's probes (for verify) and every later step's are read
        # again in the same round trip as the change, or in one batch right after it
        base.refresh = [p for group in step_probes[i:] for p in group]
        state.interrupts.activity.doing(site.name, env.name, f"running step {ps.step.id}")
        policy = run_step(state, site, planned, ps, base, result, applied)
        if policy is not None and state.stop.is_set():  # stopped by an interrupt: rolled back below
            status = SiteStatus.INTERRUPTED
            break
        if policy is not None:
            status = on_failure(state, site, planned, applied, policy)
            break
    if status is SiteStatus.INTERRUPTED and not state.check:
        status = on_failure(state, site, planned, applied, "rollback", interrupted=True)
    outcome = StageOutcome(status, finalize(state, applied, ok=status is SiteStatus.OK))
    state.emit("stage.finished", site=site.name, env=env.name, status=outcome.status.value)
    state.interrupts.activity.doing(site.name, env.name, None)
    state.publish(f"maint run {state.run_id}: {site.name}/{env.name} {outcome.status.value}")
    return outcome


def base_context(state: RunState, site: Site, planned: PlannedStage, transport: Transport) -> Context:
    """The context every step of the stage starts from."""
    secrets = planned.render_context.get("secrets")
    used: Mapping[str, str] = secrets.used if isinstance(secrets, Secrets) else {}

    def emit(event: str, **fields: Any) -> None:
        state.emit(event, site=site.name, env=planned.env.name, host=planned.env.display_host, **fields)

    return Context(
        site=site,
        env=planned.env,
        transport=transport,
        options=state.options,
        stage_promote=planned.stage.promote,
        probe_cache=state.probe_cache,
        emit=emit,
        secrets=used,
        stop_requested=state.stop.is_set,
    )


def declared_probes(planned: PlannedStage, base: Context) -> list[list[Probe[Any]]]:
    """The read-only probes each step declares (an action that cannot tell yet gives none)."""
    out: list[list[Probe[Any]]] = []
    for ps in planned.steps:
        if ps.skip is not None:  # not run: nothing to read for it
            out.append([])
            continue
        try:
            out.append(list(ps.action.probes(replace(base, step_id=ps.step.id))))
        except MaintkitError:
            out.append([])
    return out


def prefetch(
    state: RunState,
    site: Site,
    planned: PlannedStage,
    base: Context,
    held: Held,
    step_probes: list[list[Probe[Any]]],
) -> None:
    """One round trip: take the environment's lock (not in plan mode, once per run) and read every probe."""
    probes = [p for group in step_probes for p in group]
    already = any(e is planned.env for e, _ in held)
    preamble = None if (state.check or already) else lock_script(state, site, planned.env)
    raw, head = run_batch(base.transport, probes, preamble=preamble, timeout=planned.env.command_timeout or 600)
    if settle_lock(state, site, planned.env, base.transport, head, took=preamble is not None, held=held):
        # an expired lock was taken over and the dead run's leftovers undone: read the probes again
        raw, _ = run_batch(base.transport, probes, timeout=planned.env.command_timeout or 600)
    for key, value in raw.items():
        state.probe_cache.put(base.host_key, key, value)


def on_failure(
    state: RunState,
    site: Site,
    planned: PlannedStage,
    applied: list[Applied],
    policy: str,
    interrupted: bool = False,
) -> SiteStatus:
    """Apply a failure policy: ``rollback`` undoes the applied steps in reverse order; else stop."""
    final = SiteStatus.INTERRUPTED if interrupted else SiteStatus.FAILED
    if policy != "rollback":
        return final
    ok = True
    for entry in reversed(applied):
        if entry.rolled_back:
            continue
        ok = rollback_one(state, site, planned, entry) and ok
    if interrupted:
        return SiteStatus.INTERRUPTED
    return SiteStatus.ROLLED_BACK if ok else SiteStatus.FAILED


def rollback_one(state: RunState, site: Site, planned: PlannedStage, entry: Applied) -> bool:
    """Roll back one applied step; False when it could not be undone."""
    res = entry.result
    started = time.monotonic()
    state.interrupts.activity.doing(site.name, planned.env.name, f"rolling back step {res.step}")
    where = {
        "site": site.name,
        "env": planned.env.name,
        "host": planned.env.display_host,
        "step": res.step,
        "action": res.action,
    }
    try:
        entry.planned.action.rollback(entry.ctx, entry.changes)
    except NotReversible as exc:
        stamp(exc, action=res.action, site=site.name, env=planned.env.name)
        res.reason = f"not reversible: {exc}"
        state.emit("step.not_reversible", **where, error=str(exc))
        return False
    except MaintkitError as exc:
        stamp(exc, action=res.action, site=site.name, env=planned.env.name)
        if res.status is not StepStatus.FAILED:
            res.status = StepStatus.ROLLBACK_FAILED
        res.error = f"rollback: {exc}"
        state.emit("step.rollback_failed", **where, error=str(exc))
        return False
    finally:
        entry.ctx.invalidate()
    entry.rolled_back = True
    if res.status is not StepStatus.FAILED:
        res.status = StepStatus.ROLLED_BACK
    res.reason = "rolled back"
    state.emit(
        "step.rolled_back",
        **where,
        status="rolled-back",
        changes=[c.public() for c in entry.changes],
        duration_ms=round(monotonic_ms(started), 1),
    )
    return True


def finalize(state: RunState, applied: list[Applied], ok: bool) -> list[str]:
    """Finalize every step that changed something; the errors (each naming its step)."""
    errors: list[str] = []
    for entry in reversed(applied):
        state.interrupts.activity.doing(entry.result.site, entry.result.env, f"finalizing step {entry.result.step}")
        try:
            entry.planned.action.finalize(entry.ctx, entry.changes, ok)
        except MaintkitError as exc:
            stamp(exc, action=entry.result.action, site=entry.result.site, env=entry.result.env)
            state.emit(
                "step.finalize_failed",
                site=entry.result.site,
                env=entry.result.env,
                step=entry.result.step,
                action=entry.result.action,
                error=str(exc),
            )
            errors.append(f"finalize of step {entry.result.step} failed: {exc}")
    return errors


__all__ = ["StageOutcome", "base_context", "declared_probes", "finalize", "on_failure", "prefetch", "run_stage"]
