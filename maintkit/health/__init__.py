"""Watching playbooks (``alerts:`` set, like the built-in ``health``): what a run leaves after its checks.

After every real run of a watching playbook (never a plan), :func:`after_run`, called by the
runner, so library users get it too:

1. writes one ``health`` point per site environment checked (:mod:`.record`);
2. opens, extends and closes incidents: a check that failed ``alerts.after`` runs in a row
   (default 2) opens one, the first run in which it passes again closes it (:mod:`.incidents`);
3. sends one alert when an incident opens and one when it closes, through the playbook's
   ``notify:`` entries with ``alert`` in ``on`` (:mod:`.alerts`);
4. when asked (``extra["metrics"]`` = a file, ``extra["pushgateway"]`` = a URL: ``maint run
   --metrics FILE --pushgateway URL``), writes and pushes the run's metrics (:mod:`.metrics`).

Everything written goes into the run's state store (published with the run) and is redacted;
every alert and metrics output is an event of the run's audit log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maintkit.health.alerts import Alert, send_alerts
from maintkit.health.incidents import Transition, open_incidents, update_incidents
from maintkit.health.record import EnvHealth, health_of, write_health
from maintkit.notify import display_url
from maintkit.playbook import Playbook
from maintkit.results import RunResult


@dataclass
class HealthRun:
    """What :func:`after_run` recorded and sent."""

    envs: list[EnvHealth] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    #: check names with an open incident, by (site, env), after this run
    open: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: what to tell the operator: alerts sent, metrics written or pushed
    notes: list[str] = field(default_factory=list)
    #: what went wrong (a failed alert, metrics not written): shown as errors
    problems: list[str] = field(default_factory=list)


def _record(run: HealthRun, root: Path, run_id: str, after: int, redactor: Any, written: Callable[..., Any]) -> None:
    for health in run.envs:
        written(write_health(root, run_id, health, redactor.redact))
        transitions, paths = update_incidents(root, run_id, health, after, redactor.redact)
        written(paths)
        run.transitions += transitions
        run.open[(health.site, health.env)] = sorted(open_incidents(root, health.site, health.env))


def _alerts(run: HealthRun, playbook: Playbook, redactor: Any, environ: Mapping[str, str], emit: Any) -> None:
    run.alerts = send_alerts(playbook, run.transitions, redactor, environ)
    for alert in run.alerts:
        where = f"{alert.check} on {alert.site}/{alert.env}"
        emit("health.alert", site=alert.site, env=alert.env, check=alert.check, kind=alert.kind,
             sent=[{"target": s.target, "ok": s.ok, "detail": s.detail} for s in alert.sent])  # fmt: skip
        if not alert.sent:
            run.notes.append(f"alert {alert.kind}: {where} (no alert target: notify with on: [alert])")
        for sent in alert.sent:
            if sent.ok:
                run.notes.append(f"alert {alert.kind}: {where} sent to {sent.target}")
            else:
                run.problems.append(f"alert {alert.kind}: {where} to {sent.target} FAILED: {sent.detail}")


def _metrics(run: HealthRun, root: Path, run_id: str, playbook: str, extra: Mapping[str, Any], emit: Any) -> None:
    from maintkit.health.metrics import build_registry, push_metrics, samples, write_metrics

    file, gateway = extra.get("metrics"), extra.get("pushgateway")
    if not file and not gateway:
        return
    per_env = [(h, samples(root, run_id, h, run.open.get((h.site, h.env), []))) for h in run.envs]
    registry = build_registry(per_env)
    if file:
        try:
            emit("health.metrics", file=str(write_metrics(file, registry)))
            run.notes.append(f"metrics written to {file}")
        except OSError as exc:
            run.problems.append(f"metrics not written to {file}: {exc.strerror or exc}")
    if gateway:
        target = display_url(str(gateway))
        try:
            push_metrics(str(gateway), registry, playbook)
            emit("health.metrics", pushgateway=target)
            run.notes.append(f"metrics pushed to {target}")
        except OSError as exc:  # urllib's URLError/HTTPError are OSErrors
            run.problems.append(f"metrics not pushed to {target}: {getattr(exc, 'reason', None) or exc}")


def after_run(
    playbook: Playbook,
    result: RunResult,
    plans: Mapping[str, Sequence[Any]],
    root: Path,
    redactor: Any,
    *,
    environ: Mapping[str, str] | None = None,
    emit: Callable[..., Any] | None = None,
    written: Callable[..., Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> HealthRun | None:
    """Record, alert and export a watching playbook's run (see the module docstring); None otherwise.

    ``plans`` is the runner's plan (site -> planned stages); ``root`` the state store's root;
    ``emit(event, **fields)`` writes events into the run's log; ``written(paths)`` hands the
    files written to the runner, which publishes them with the run.
    """
    if playbook.alerts is None or result.check:
        return None
    say = emit or (lambda event, **fields: None)
    keep = written or (lambda paths: None)
    run = HealthRun(envs=health_of(result, plans))
    try:
        _record(run, root, result.run_id, playbook.alerts.after, redactor, keep)
    except (OSError, ValueError) as exc:
        run.problems.append(f"health record not written: {exc}")
        say("health.failed", error=str(exc))
    say("health.recorded", envs=[{"site": h.site, "env": h.env, "ok": h.ok, "failed": h.failed} for h in run.envs])
    _alerts(run, playbook, redactor, os.environ if environ is None else environ, say)
    _metrics(run, root, result.run_id, playbook.name, extra or {}, say)
    return run


__all__ = ["Alert", "EnvHealth", "HealthRun", "Transition", "after_run", "health_of"]
