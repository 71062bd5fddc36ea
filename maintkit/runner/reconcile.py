"""Reconciling what a dead run left on a site environment before its expired lock is taken over.

When a run took over a lock whose lease had expired (:mod:`maintkit.runner.locks`), it reads
the dead run's folder in the state store (``runs/<id>/events.jsonl``) and, still holding the
lock, undoes what that run left behind on this environment:

1. the steps of the dead run's unfinished stage here that applied changes (``step.applied``,
   or ``step.failed`` with partial changes) and were not rolled back are rolled back in
   reverse order, from the changes the audit log recorded, by the action's own ``rollback``:
   ``file.content`` (a file it created), ``file.symlink``, ``file.directory`` and
   ``deploy.release`` record enough for that; actions whose rollback has nothing to undo
   (``rollback_kind: noop``) need nothing;
2. maintenance mode that the dead run switched on (its owner record on the host names the
   run) is switched off.

Whatever cannot be undone this way (a file whose previous content is not in the store, a
``command``, a step that was applying when the run died, a run folder missing from the store)
is reported, never guessed: :attr:`Reconciled.incomplete`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maintkit.action import Action, Context
from maintkit.audit import read_events
from maintkit.caches import ProbeCache
from maintkit.errors import MaintkitError
from maintkit.inventory import Environment, Site
from maintkit.registry import default_registry
from maintkit.runner.state import RunState
from maintkit.transport.base import Transport

#: builds the in-memory undo of one recorded change (its ``public()`` form); None: not enough recorded


@dataclass
class DeadStep:
    """A step of the dead run's unfinished stage, as its audit log recorded it."""

    step: str
    action: str
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Reconciled:
    """What reconciling a dead run's leftovers did, and what it could not do."""

    dead_run: str
    rolled_back: list[str] = field(default_factory=list)
    maintenance_off: list[str] = field(default_factory=list)
    #: ``{"step", "action", "why"}`` of every leftover that was not undone
    incomplete: list[dict[str, str]] = field(default_factory=list)

    def not_done(self, step: str, action: str, why: str) -> None:
        """Record a leftover that was not undone."""
        self.incomplete.append({"step": step, "action": action, "why": why})


#: switched off with the maintenance owner record (step 2), not step by step
_MAINTENANCE = ("maintenance.enable",)


def unfinished_stage(events: list[dict[str, Any]], site: str, env: str) -> tuple[list[DeadStep], list[DeadStep]]:
    """The dead run's unfinished stage on ``site``/``env``: (applied and not rolled back, applying when it died).

    Both empty when the stage never started or finished.
    """
    mine = [e for e in events if e.get("site") == site and e.get("env") == env]
    starts = [i for i, e in enumerate(mine) if e.get("event") == "stage.started"]
    if not starts or any(e.get("event") == "stage.finished" for e in mine[starts[-1] :]):
        return [], []
    applied: dict[str, DeadStep] = {}
    pending: dict[str, DeadStep] = {}
    for e in mine[starts[-1] :]:
        kind, step, action = e.get("event"), str(e.get("step", "")), str(e.get("action", ""))
        if kind == "step.checked" and e.get("status") == "needed":
            pending[step] = DeadStep(step, action)
            for other in e.get("chained") or ():  # later steps whose change rode in its round trip
                if isinstance(other, dict):
                    name = str(other.get("step", ""))
                    pending[name] = DeadStep(name, str(other.get("action", "")))
        elif kind in ("step.applied", "step.failed"):
            pending.pop(step, None)
            if e.get("changes"):
                applied[step] = DeadStep(step, action, list(e["changes"]))
        elif kind == "step.rolled_back":
            applied.pop(step, None)
    return list(applied.values()), list(pending.values())


def reconcile(state: RunState, site: Site, env: Environment, transport: Transport, dead_run: str) -> Reconciled:
    """Undo what ``dead_run`` left on ``site``/``env`` (this run holds the lock); what was done and not done."""
    out = Reconciled(dead_run)
    ctx = Context(site=site, env=env, transport=transport, options=state.options, probe_cache=ProbeCache())
    events = _dead_events(state, dead_run, out)
    if events is not None:
        applied, pending = unfinished_stage(events, site.name, env.name)
        for dead in pending:
            if dead.action not in _MAINTENANCE:
                why = f"it was applying when run {dead_run} stopped: its changes are not recorded"
                out.not_done(dead.step, dead.action, why)
        for dead in reversed(applied):
            _undo(state, ctx, dead, out)
    _maintenance_off(state, ctx, out)
    state.probe_cache.invalidate(ctx.host_key)
    return out


def _dead_events(state: RunState, dead_run: str, out: Reconciled) -> list[dict[str, Any]] | None:
    """The dead run's events from the store (pulled first); None (reported) when they are not there."""
    if state.publisher is not None:
        try:
            state.publisher.store.pull()
        except MaintkitError as exc:
            out.not_done("", "", f"the state store could not be read: {exc}")
            return None
    folder = state.history_dir / "runs" / dead_run
    if not (folder / "events.jsonl").is_file():
        out.not_done("", "", f"the run folder of run {dead_run} is not in the state store")
        return None
    return list(read_events(folder))


def _undo(state: RunState, ctx: Context, dead: DeadStep, out: Reconciled) -> None:
    """Roll back one applied step of the dead run from its recorded changes (or report why not)."""
    if dead.action in _MAINTENANCE:
        return
    try:
        cls = default_registry().get(dead.action)
    except MaintkitError as exc:
        out.not_done(dead.step, dead.action, str(exc))
        return
    if cls.rollback_mode() == "noop":
        return
    rebuildable = cls.change_from_record.__func__ is not Action.change_from_record.__func__  # type: ignore[attr-defined]
    changes = [cls.change_from_record(c) for c in dead.changes] if rebuildable else [None]
    if not changes or any(c is None for c in changes):
        why = "its previous state is not recorded in the store" if rebuildable else "it cannot be undone from the store"
        out.not_done(dead.step, dead.action, why)
        return
    action = cls(cls.Params.model_construct(), dead.step)
    try:
        action.rollback(ctx, [c for c in changes if c is not None])
    except MaintkitError as exc:
        out.not_done(dead.step, dead.action, f"rollback failed: {exc}")
        return
    finally:
        ctx.invalidate()
    out.rolled_back.append(dead.step)
    state.emit(
        "lock.reconcile_rolled_back",
        site=ctx.site.name,
        env=ctx.env.name,
        host=ctx.env.display_host,
        dead_run=out.dead_run,
        step=dead.step,
        action=dead.action,
        changes=dead.changes,
    )


def _maintenance_off(state: RunState, ctx: Context, out: Reconciled) -> None:
    """Switch off the maintenance mode the dead run switched on (its owner record names it)."""
    # imported here: a run loads only the actions its playbook names (this one only to take over a lease)
    from maintkit.actions.maintenance.ownership import Leftover, ownership_probe, switch_off_leftover

    try:
        owner = ctx.probe(ownership_probe(ctx.path)).owner
        if owner.get("run_id") != out.dead_run or owner.get("kept"):
            return  # not the dead run's, or left on on purpose by a stage that succeeded
        out.maintenance_off = switch_off_leftover(ctx, Leftover(out.dead_run, "its lease expired", owner))
    except MaintkitError as exc:
        out.not_done("", "maintenance", f"maintenance mode could not be switched off: {exc}")
        return
    finally:
        ctx.invalidate()
    state.emit(
        "lock.reconcile_maintenance_off",
        site=ctx.site.name,
        env=ctx.env.name,
        host=ctx.env.display_host,
        dead_run=out.dead_run,
        markers=out.maintenance_off,
    )


__all__ = ["DeadStep", "Reconciled", "reconcile", "unfinished_stage"]
