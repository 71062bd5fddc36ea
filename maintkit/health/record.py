"""The health record: one ``health`` point per site and environment after a watching playbook's run.

A point says which checks (steps) ran and how they ended::

    {"run_id": "...", "ok": false, "failed": ["http"], "checks": {"http": "failed", "ssl": "unchanged"}}

A site whose stage could not start (the host did not answer, the lock could not be taken) gets
the pseudo-check ``stage`` for the environment where it stopped; environments after it were not
checked and get no point. Sites locked by another run, interrupted or never started get no
point: they say nothing about the shop's health.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from maintkit.actions.watch.common import HEALTH
from maintkit.results import RunResult, SiteResult, SiteStatus, StepStatus
from maintkit.state.index import append_series

#: the check a point names when the environment's stage could not start
STAGE = "stage"
#: step statuses that fail a check
FAILING = frozenset({StepStatus.FAILED, StepStatus.ROLLBACK_FAILED, StepStatus.ROLLED_BACK})
#: step statuses that pass a check (read-only steps end "unchanged"; "changed" counts as passing)
PASSING = frozenset({StepStatus.UNCHANGED, StepStatus.CHANGED})
#: sites whose run says nothing about their health
_SILENT = frozenset({SiteStatus.LOCKED, SiteStatus.INTERRUPTED, SiteStatus.SKIPPED})


class _Env(Protocol):
    name: str


class _PlannedStep(Protocol):
    @property
    def step(self) -> Any: ...


class _PlannedStage(Protocol):
    @property
    def env(self) -> _Env: ...

    @property
    def steps(self) -> Sequence[_PlannedStep]: ...


@dataclass
class EnvHealth:
    """The health of one site environment in one run: the ``health`` point and the failures' reasons."""

    site: str
    env: str
    checks: dict[str, str]
    failed: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    #: when the point was written (its ``ts``), set by :func:`write_health`
    ts: str = ""

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failed

    def point(self, run_id: str) -> dict[str, Any]:
        """The ``health`` series point."""
        return {"run_id": run_id, "ok": self.ok, "failed": list(self.failed), "checks": dict(self.checks)}


def _env_health(site: SiteResult, env: str, step_ids: list[str]) -> EnvHealth:
    """The health of ``env`` from the steps of ``site`` that ran there."""
    ran = {s.step: s for s in site.steps if s.env == env}
    checks = {sid: (ran[sid].status.value if sid in ran else StepStatus.NOT_RUN.value) for sid in step_ids}
    failed = [sid for sid in step_ids if sid in ran and ran[sid].status in FAILING]
    reasons = {sid: ran[sid].error or ran[sid].reason or ran[sid].status.value for sid in failed}
    return EnvHealth(site.site, env, checks, failed, reasons)


def health_of(result: RunResult, plans: Mapping[str, Sequence[_PlannedStage]]) -> list[EnvHealth]:
    """The health of every site environment the run checked (see the module docstring)."""
    out: list[EnvHealth] = []
    for site in result.sites:
        if site.status in _SILENT:
            continue
        reached = {s.env for s in site.steps}
        for planned in plans.get(site.site, []):
            env, ids = planned.env.name, [ps.step.id for ps in planned.steps]
            if env in reached:
                out.append(_env_health(site, env, ids))
                continue
            if site.status is not SiteStatus.OK:  # the stage where the site stopped; later ones were not checked
                checks = {STAGE: StepStatus.FAILED.value, **dict.fromkeys(ids, StepStatus.NOT_RUN.value)}
                reason = site.error or "the stage could not start"
                out.append(EnvHealth(site.site, env, checks, [STAGE], {STAGE: reason}))
            break
    return out


def write_health(root: Path, run_id: str, health: EnvHealth, redact: Any = None) -> list[Path]:
    """Append ``health``'s point to the ``health`` series; sets ``health.ts``; the paths written."""
    from maintkit.state.index import now_iso

    health.ts = now_iso()
    point = {**health.point(run_id), "ts": health.ts}
    clean = redact(point) if redact is not None else point
    return append_series(root, health.site, health.env, HEALTH, clean)


__all__ = ["FAILING", "PASSING", "STAGE", "EnvHealth", "health_of", "write_health"]
