"""One stage (environment) of one site: the first read, the lock, the steps, rollback, finalize.

The stage sends one batch that reads every probe its steps declared and looks at the
environment's lock without taking it (a lock another run holds is refused there). The steps
are checked on what it read; the lock is taken only when a step has to change something, in
one round trip that also reads every probe again under the lock. When what the steps before
it read has changed meanwhile, the stage checks its steps again from the first; when only
what that step read reads differently, its check runs again. A stage that changes nothing
therefore costs one round trip and never locks.

Then it applies the ``on_failure`` policy of a failed step (rolling back the applied steps
in reverse order), rolls back on an interrupt, and finalizes every step that changed
something. It ends with a :class:`StageOutcome`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from maintkit.action import Context, monotonic_ms
from maintkit.errors import MaintkitError, NotReversible
from maintkit.inventory import Site
from maintkit.probes import Probe, RawOutput, run_batch
from maintkit.results import SiteResult, SiteStatus, StepStatus
from maintkit.runner.chain import Chain, lock_read, read_ahead
from maintkit.runner.locks import Held, lock_script, peek_script, read_lock, settle_lock
from maintkit.runner.outcome import SiteVerdict
from maintkit.runner.plan import PlannedStage
from maintkit.runner.settled import fingerprint, never_settled
from maintkit.runner.state import RunState
from maintkit.runner.step import Applied, LockAnswer, refresh, run_step, stamp
from maintkit.templating import Secrets, expression_references
from maintkit.transport.base import Transport, cancellable


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
    gate = StageLock(state, site, planned, base, held, declared_probes(planned, base))
    gate.first_read()
    applied: list[Applied] = []
    status = run_steps(state, site, planned, base, result, applied, gate)
    if status is SiteStatus.INTERRUPTED and not state.check:
        status = on_failure(state, site, planned, applied, "rollback", interrupted=True)
    outcome = StageOutcome(status, finalize(state, applied, ok=status is SiteStatus.OK))
    if outcome.status is SiteStatus.OK and gate.fingerprint is not None:
        state.settled.setdefault((site.name, env.name), []).append(gate.fingerprint)
    locked = any(e is env for e, _ in held)
    state.emit("stage.finished", site=site.name, env=env.name, status=outcome.status.value, locked=locked)
    state.interrupts.activity.doing(site.name, env.name, None)
    state.publish(f"maint run {state.run_id}: {site.name}/{env.name} {outcome.status.value}")
    return outcome


def run_steps(
    state: RunState,
    site: Site,
    planned: PlannedStage,
    base: Context,
    result: SiteResult,
    applied: list[Applied],
    gate: StageLock,
) -> SiteStatus:
    """Run the stage's steps in order (from the first again when the lock's re-read says so).

    Steps whose change already ran in an earlier step's round trip (:mod:`maintkit.runner.chain`)
    are recorded even after a failure or an interrupt, before the failure's policy applies."""
    start, i, failed = len(result.steps), 0, None
    chain = Chain(state, planned, gate.step_probes, base, gate.first)
    while i < len(planned.steps):
        ps, owed = planned.steps[i], chain.owes(i)
        if not owed and (failed is not None or state.stop.is_set()):
            break
        # after a change, this step's probes (for verify) and the later ones it may affect are
        # read again in the same round trip as the change (see read_ahead)
        base.refresh = read_ahead(planned, gate.step_probes, i)
        state.interrupts.activity.doing(site.name, planned.env.name, f"running step {ps.step.id}")
        if not owed:
            prefetch(state, base, gate.step_probes, i)
        mark = len(result.steps)
        hook = gate.hook(i, result, mark)
        policy = run_step(state, site, planned, ps, base, result, applied, before_change=hook, chain=(chain, i))
        if gate.recheck:  # the lock was just taken and the facts had changed: check every step again
            gate.recheck = False
            del result.steps[start:]
            i = 0
            continue
        failed = failed if failed is not None else policy
        i += 1
    if state.stop.is_set():  # stopped by an interrupt: rolled back by the caller
        return SiteStatus.INTERRUPTED
    return SiteStatus.OK if failed is None else on_failure(state, site, planned, applied, failed)


def prefetch(state: RunState, base: Context, step_probes: list[list[Probe[Any]]], i: int) -> None:
    """Before step ``i`` is checked: when a change dropped what it declared, read that with the
    rest of :func:`read_ahead`'s probes not cached (``base.refresh``), in one round trip."""
    if not all(state.probe_cache.has(base.host_key, p.key) for p in step_probes[i]):
        refresh(state, base)


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
        direct_update=planned.direct,
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
    ids = {ps.step.id: i for i, ps in enumerate(planned.steps)}
    for i, ps in enumerate(planned.steps):
        # a ``when:`` asking will_change('id') runs that step's check: it reads its probes too
        for step_id in predicted_steps(ps.step.when) if ps.skip is None else ():
            j = ids.get(step_id)
            if j is not None and j != i:
                out[i] += [p for p in out[j] if p not in out[i]]
    return out


@functools.lru_cache(maxsize=256)
def predicted_steps(when: str | None) -> tuple[str, ...]:
    """The step ids a ``when:`` expression asks ``will_change()`` about (none when it cannot tell)."""
    if not when:
        return ()
    try:
        refs = expression_references(when)
    except MaintkitError:
        return ()
    return tuple(names[0] for kind, names in refs if kind == "will_change" and names)


class StageLock:
    """The stage's reads and its environment's lock: read-only first, locked only for a change.

    :meth:`first_read` is the stage's first round trip: every probe its steps declared and,
    in run mode while the run does not hold the lock yet, a read-only look at the lock. A lock
    another run holds is refused there (LockHeld, the holder named); an expired lease is taken
    over at once (the takeover undoes what the dead run left, before anything is checked).
    The hook run before a step's first change (:meth:`hook`) takes the lock and reads every
    probe again in one round trip, and tells the step whether its check stands, runs again on
    the fresh values, or the stage checks every step again (:attr:`recheck`) because what the
    steps before it read has changed.
    """

    def __init__(
        self,
        state: RunState,
        site: Site,
        planned: PlannedStage,
        base: Context,
        held: Held,
        step_probes: list[list[Probe[Any]]],
    ) -> None:
        self.state, self.site, self.planned, self.base, self.held = state, site, planned, base, held
        self.step_probes = step_probes
        #: the lock still has to be taken before a change (never in plan mode)
        self.pending = not state.check and not any(e is planned.env for e, _ in held)
        #: what the first read saw, by probe key (compared with the read under the lock)
        self.first: dict[str, RawOutput] = {}
        #: set when the lock was taken and the steps must be checked again from the first
        self.recheck = False
        #: what the stage will do, as the index remembers stages (None in plan mode: nothing is remembered)
        self.fingerprint = None if state.check else fingerprint(planned, state.events.redactor)

    @property
    def probes(self) -> list[Probe[Any]]:
        """Every probe of the stage, in step order."""
        return [p for group in self.step_probes for p in group]

    def first_read(self) -> None:
        """One round trip: every probe, and (when the lock is still to be taken) the lock, read-only;
        or, when a step expects to change (:meth:`early`), the lock taken and the probes of the
        steps up to that one read under it (its change reads the later ones again anyway)."""
        early = self.early() if self.pending else None
        if early is not None:
            self.take(None, early=early)
            return
        env = self.planned.env
        preamble = peek_script(env) if self.pending else None
        raw, head = run_batch(self.base.transport, self.probes, preamble=preamble, timeout=self._timeout)
        self.first = raw
        self._keep(raw)
        if self.pending and read_lock(self.state, self.site, env, head):
            self.take(None)

    def early(self) -> tuple[int | None, str] | None:
        """The first step (run unconditionally) that expects to change, and why; else, when the
        stage never finished here with these steps (:mod:`maintkit.runner.settled`), the whole
        stage (None: every probe read under the lock); None: no change is expected."""
        for i, ps in enumerate(self.planned.steps):
            if ps.skip is not None or ps.step.when is not None:
                continue
            try:
                why = ps.action.expects_change(replace(self.base, step_id=ps.step.id))
            except MaintkitError:
                why = None
            if why:
                return i, why
        why = never_settled(self.state, self.site.name, self.planned, self.fingerprint)
        return (None, why) if why else None

    def hook(self, index: int, result: SiteResult, mark: int) -> Callable[[], LockAnswer] | None:
        """What step ``index`` runs before its first change (None when there is no lock to take).

        ``mark`` is where the step's result starts in ``result.steps``: when the lock cannot be
        taken, that result is dropped, so the step is reported as not run, with the reason.
        """
        if not self.pending:
            return None

        def before_change() -> LockAnswer:
            try:
                answer = self.take(index)
            except BaseException:
                del result.steps[mark:]
                raise
            self.recheck = answer == "restart"
            return answer

        return before_change

    def take(self, index: int | None, early: tuple[int | None, str] | None = None) -> LockAnswer:
        """Take the lock and read again, in one round trip (never cancelled: a lock taken must be
        known), the probes of the steps up to step ``index`` (None: before any step, every probe),
        or up to the step ``early`` names (its index, and why it expects a change: in the audit
        log); its change reads the later steps' probes anyway.

        ``restart`` when a fact the steps before ``index`` read has changed (or an expired lock
        was taken over): the stage checks its steps again from the first; ``recheck`` when
        anything step ``index`` read reads differently (its check runs again); else ``go``.
        """
        state, site, env, transport = self.state, self.site, self.planned.env, self.base.transport
        upto = index if index is not None else (early[0] if early else None)
        step = self.planned.steps[upto].step.id if upto is not None else None
        state.interrupts.activity.doing(site.name, env.name, "taking the lock")
        # what the steps up to this one read (later steps' probes are read after its change); a
        # re-read before a change leaves out the costly reads only checks need (Probe.reread)
        if early is not None and upto is None:  # the whole stage: a read-only step's command runs once
            probes = lock_read(self.planned, self.step_probes)
        else:
            groups = self.step_probes if upto is None else self.step_probes[: upto + 1]
            probes = [p for g in groups for p in g if index is None or type(p).reread]
        with cancellable(None):
            raw, head = run_batch(transport, probes, preamble=lock_script(state, site, env), timeout=self._timeout)
            why = early[1] if early else None
            took_over = settle_lock(
                state, site, env, transport, head, took=True, held=self.held, for_step=step, early=why
            )
            self.pending = False
            if took_over:  # the dead run's leftovers were undone: read again
                raw, _ = run_batch(transport, self.probes, timeout=self._timeout)
        self._keep(raw)
        # everything else was read without the lock (the later steps' first reads, and what any
        # check asked for on its own): read again when needed
        state.probe_cache.invalidate(self.base.host_key, keep=set(raw))
        if index is None:
            return "go"
        state.interrupts.activity.doing(site.name, env.name, f"running step {step}")
        changed = [
            ps.step.id
            for ps, group in zip(self.planned.steps[:index], self.step_probes, strict=False)
            if not all(self._same(p, raw) for p in group if type(p).reread)
        ]
        if not (changed or took_over):  # its own check runs again when anything it read reads differently
            own = [p for p in self.step_probes[index] if type(p).reread]
            return "recheck" if any(raw.get(p.key) != self.first.get(p.key) for p in own) else "go"
        why = "an expired lock was taken over" if took_over else "what the checks read changed before the lock"
        where = {"site": site.name, "env": env.name, "host": env.display_host}
        state.emit("stage.rechecked", **where, for_step=step, reason=why, changed_steps=changed)
        return "restart"

    def _same(self, probe: Probe[Any], raw: dict[str, RawOutput]) -> bool:
        """Did ``probe`` read the same under the lock as on the first read?"""
        before, after = self.first.get(probe.key), raw.get(probe.key)
        if before is None or after is None:
            return before is after
        return probe.unchanged(before, after)

    def _keep(self, raw: dict[str, RawOutput]) -> None:
        for key, value in raw.items():
            self.state.probe_cache.put(self.base.host_key, key, value)

    @property
    def _timeout(self) -> float:
        return self.planned.env.command_timeout or 600


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
        res.data.update(entry.ctx.data)  # what the rollback recorded (cms.update: ``rollback``)
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


__all__ = [
    "StageLock",
    "StageOutcome",
    "base_context",
    "declared_probes",
    "finalize",
    "on_failure",
    "prefetch",
    "read_ahead",
    "run_stage",
    "run_steps",
]
