"""The two maintenance actions: ``maintenance.enable`` and ``maintenance.disable``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from maintkit.action import Action, Context
from maintkit.actions.maintenance.markers import (
    MaintenanceParams,
    Marker,
    marker_state,
    site_probe,
    switch_off,
    switch_on,
)
from maintkit.actions.maintenance.ownership import (
    Leftover,
    drop_owner,
    find_leftover,
    owner_path,
    ownership_probe,
    write_owner,
)
from maintkit.errors import ApplyFailed, RollbackFailed
from maintkit.probes import Probe
from maintkit.results import Change, Check, StepStatus

# ---------------------------------------------------------------------------- enable


class MaintenanceEnableParams(MaintenanceParams):
    """Parameters of ``maintenance.enable``."""

    keep: bool = Field(False, description="Keep maintenance on after a successful stage (never after a failure)")
    retry_after: int = Field(300, ge=1, description="Seconds clients should wait (Laravel --retry; flag file info)")


@dataclass(frozen=True)
class _EnablePlan:
    """What ``maintenance.enable`` will do: switch ``off`` markers on, take ``taken`` over."""

    off: list[Marker]
    taken: list[Marker]
    leftover: Leftover | None = None


class MaintenanceEnable(Action[MaintenanceEnableParams]):
    """Switch maintenance mode on; it is switched off again at the end of the stage (rollback/finalize).

    Maintenance left on by a run that is gone is taken over: switched off at the end of the stage.
    """

    name = "maintenance.enable"
    Params = MaintenanceEnableParams
    summary = "Switch maintenance mode on (WordPress, Magento, Laravel, nginx flag); off again at stage end."
    rollback_kind = "undo"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [site_probe(ctx, self.params), ownership_probe(ctx.path)]

    def check(self, ctx: Context) -> Check:
        on, off = marker_state(ctx, self.params)
        left = find_leftover(ctx) if on else None
        if left is not None:
            reason = (
                f"maintenance is on, left by run {left.run_id} ({left.why}): "
                f"{'would take it over' if ctx.check_mode else 'taking it over'}, "
                "it is switched off at the end of the stage"
            )
            if off:
                reason += "; would switch on: " + ", ".join(m.label for m in off)
            diff = "".join(f"+{m.path}\n" for m in off)
            return Check.change(reason, diff=diff or None, snapshot=_EnablePlan(off, on, left))
        if not off:
            return Check.ok("maintenance is on: " + ", ".join(m.label for m in on))
        diff = "".join(f"+{m.path}\n" for m in off)
        return Check.change(
            "would switch on: " + ", ".join(m.label for m in off), diff=diff, snapshot=_EnablePlan(off, [])
        )

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        p = self.params
        plan: _EnablePlan = check.snapshot
        write_owner(ctx, p, [*plan.taken, *plan.off])  # before anything is on: a killed run is always owned
        changes: list[Change] = []
        if plan.leftover is not None:
            left = plan.leftover
            ctx.event(
                "maintenance.leftover",
                step=self.step_id,
                previous_run=left.run_id,
                why=left.why,
                markers=[m.path for m in plan.taken],
                outcome="taken-over",
            )
            for marker in plan.taken:
                before = f"on (run {left.run_id})"
                changes.append(
                    Change(marker.path, f"{marker.label} taken over", before=before, after="on", undo=marker)
                )
        for marker in plan.off:
            try:
                switch_on(ctx, marker, p, p.retry_after)
            except Exception:
                self._off(ctx, changes)  # our own partial work, and what we took over
                raise
            changes.append(Change(marker.path, f"{marker.label} on", before="off", after="on", undo=marker))
        ctx.record(
            maintenance="on",
            markers=[c.target for c in changes],
            taken_over_from=plan.leftover.run_id if plan.leftover else None,
        )
        return changes

    def _off(self, ctx: Context, changes: list[Change]) -> list[str]:
        errors: list[str] = []
        for change in reversed(changes):
            try:
                switch_off(ctx, change.undo, self.params)
            except ApplyFailed as exc:
                errors.append(exc.message)
        if not errors:
            drop_owner(ctx, self.params, ctx.run_id)
        return errors

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Switch off exactly what this step switched on (and what it took over)."""
        errors = self._off(ctx, changes)
        if errors:
            raise RollbackFailed("; ".join(errors))

    def finalize(self, ctx: Context, changes: list[Change], ok: bool) -> None:
        """At the end of the stage: maintenance off, unless ``keep`` and the stage succeeded."""
        if ok and self.params.keep:
            write_owner(ctx, self.params, [c.undo for c in changes], kept=True)
            return
        errors = self._off(ctx, changes)
        ctx.event("maintenance.finalized", step=self.step_id, maintenance="off", ok=ok, errors=errors or None)
        if errors:
            raise ApplyFailed("could not switch maintenance off: " + "; ".join(errors))


# ---------------------------------------------------------------------------- disable


class MaintenanceDisableParams(MaintenanceParams):
    """Parameters of ``maintenance.disable``."""

    retry_after: int = Field(300, ge=1, description="Used when rollback switches maintenance on again")


@dataclass(frozen=True)
class _DisablePlan:
    """What ``maintenance.disable`` will switch off, and whose maintenance it was."""

    on: list[Marker]
    owner: dict[str, Any]
    leftover: Leftover | None = None


class MaintenanceDisable(Action[MaintenanceDisableParams]):
    """Switch maintenance mode off (every marker found). Rollback switches it on again."""

    name = "maintenance.disable"
    Params = MaintenanceDisableParams
    summary = "Switch maintenance mode off (reversible: rollback switches it on again)."
    rollback_kind = "undo"

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        return [site_probe(ctx, self.params), ownership_probe(ctx.path)]

    def check(self, ctx: Context) -> Check:
        on, _ = marker_state(ctx, self.params)
        if on:
            own = ctx.probe(ownership_probe(ctx.path))
            left = find_leftover(ctx, own)
            diff = "".join(f"-{m.path}\n" for m in on)
            reason = "would switch off: " + ", ".join(m.label for m in on)
            if left is not None:
                reason += f" (left on by run {left.run_id}, which is gone: {left.why})"
            return Check.change(reason, diff=diff, snapshot=_DisablePlan(on, own.owner, left))
        enabling = self._pending_enable(ctx)
        if enabling is not None:
            return Check.change(
                f"would switch off the maintenance mode that step {enabling} switches on", snapshot=_DisablePlan([], {})
            )
        return Check.ok("maintenance is off")

    @staticmethod
    def _pending_enable(ctx: Context) -> str | None:
        """Plan mode: an earlier maintenance.enable step of this environment that would switch it on."""
        for res in reversed(ctx.prior):
            if (
                res.env == ctx.env.name
                and res.action == MaintenanceEnable.name
                and res.status is StepStatus.WOULD_CHANGE
            ):
                return res.step
        return None

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        plan: _DisablePlan = check.snapshot
        if plan.leftover is not None:
            ctx.event(
                "maintenance.leftover",
                step=self.step_id,
                previous_run=plan.leftover.run_id,
                why=plan.leftover.why,
                markers=[m.path for m in plan.on],
                outcome="switched-off",
            )
        changes: list[Change] = []
        for marker in plan.on:
            old = switch_off(ctx, marker, self.params)
            changes.append(
                Change(marker.path, f"{marker.label} off", before="on", after="off", undo=(marker, old, plan.owner))
            )
        if plan.owner:
            drop_owner(ctx, self.params, None)  # maintenance is off: nobody owns it any more
        ctx.record(
            maintenance="off",
            markers=[c.target for c in changes],
            left_by=plan.leftover.run_id if plan.leftover else None,
        )
        return changes

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Switch maintenance on again, as it was (with its owner record)."""
        owner: dict[str, Any] = {}
        for change in reversed(changes):
            marker, old, owner = change.undo
            switch_on(
                ctx, marker, self.params, self.params.retry_after, content=old if marker.kind != "laravel" else None
            )
        if owner:
            target = owner_path(ctx.path)
            ctx.put((json.dumps(owner) + "\n").encode(), target, mode=0o644)


__all__ = [
    "MaintenanceDisable",
    "MaintenanceDisableParams",
    "MaintenanceEnable",
    "MaintenanceEnableParams",
]
