"""Incidents: a check that failed ``after`` runs in a row is down until it passes again.

The ``incidents`` series of a site environment holds one point per failing run of an open
incident and one when it closes; the latest point of an incident (its ``check`` and ``opened``)
is its current state::

    {"check": "http", "site": "shop", "env": "production", "state": "open",
     "opened": "2026-03-01T10:00:00+00:00", "closed": null, "failures": 2,
     "reason": "1 of 1 checks failed: GET https://shop.example/: status 500 (expected 200)",
     "run_id": "...", "duration_s": null}

``opened`` is the time of the first failing run of the streak, ``closed`` the time of the
first run in which the check passed again, ``duration_s`` the seconds between them.
A check that is skipped or could not run neither extends nor closes an incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from maintkit.actions.watch.common import HEALTH, INCIDENTS
from maintkit.health.record import PASSING, EnvHealth
from maintkit.state.index import append_series, series

#: how far back runs and incidents are read (a watch that did not run for longer starts afresh)
WINDOW = timedelta(days=62)


@dataclass(frozen=True)
class Transition:
    """An incident that opened (``down``) or closed (``recovered``) in this run: what alerts are about."""

    kind: str
    incident: dict[str, Any]


def _when(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def open_incidents(root: Path, site: str, env: str, since: datetime | None = None) -> dict[str, dict[str, Any]]:
    """The open incidents of ``site``/``env`` by check: the latest point of each incident, if it is open."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for point in series(root, site, env, INCIDENTS, since):
        latest[(str(point.get("check")), str(point.get("opened")))] = point
    return {check: p for (check, _), p in latest.items() if p.get("state") == "open"}


def _streak(points: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    """The trailing points in which ``check`` failed, oldest first."""
    out: list[dict[str, Any]] = []
    for point in reversed(points):
        if check not in (point.get("failed") or []):
            break
        out.append(point)
    return out[::-1]


def _point(health: EnvHealth, run_id: str, check: str, **fields: Any) -> dict[str, Any]:
    base = {"check": check, "site": health.site, "env": health.env, "run_id": run_id, "closed": None}
    return {**base, "duration_s": None, **fields, "ts": health.ts}


def update_incidents(
    root: Path, run_id: str, health: EnvHealth, after: int, redact: Any = None
) -> tuple[list[Transition], list[Path]]:
    """Open, extend and close the incidents of ``health``'s environment; the transitions and paths written.

    ``health`` must already be written to the ``health`` series (:func:`~maintkit.health.record.write_health`).
    """
    since = _when(health.ts) - WINDOW if health.ts else datetime.now(UTC) - WINDOW
    current = open_incidents(root, health.site, health.env, since)
    history = series(root, health.site, health.env, HEALTH, since)
    changes: list[tuple[str | None, dict[str, Any]]] = []
    for check in health.failed:
        reason = health.reasons.get(check, "")
        if check in current:
            was = current[check]
            failures = int(was.get("failures") or 0) + 1
            changes.append((None, _point(health, run_id, check, state="open", opened=was.get("opened"),
                                         failures=failures, reason=reason)))  # fmt: skip
            continue
        streak = _streak(history, check)
        if len(streak) >= after:
            opened = str(streak[0].get("ts") or health.ts)
            changes.append(("down", _point(health, run_id, check, state="open", opened=opened,
                                           failures=len(streak), reason=reason)))  # fmt: skip
    for check, was in current.items():
        if health.checks.get(check) in {s.value for s in PASSING}:
            opened = str(was.get("opened"))
            duration = (_when(health.ts) - _when(opened)).total_seconds()
            changes.append(("recovered", _point(health, run_id, check, state="closed", opened=opened,
                            closed=health.ts, failures=was.get("failures"), reason=was.get("reason"),
                            duration_s=round(duration, 1))))  # fmt: skip
    return _write(root, health, changes, redact)


def _write(
    root: Path, health: EnvHealth, changes: list[tuple[str | None, dict[str, Any]]], redact: Any
) -> tuple[list[Transition], list[Path]]:
    transitions: list[Transition] = []
    paths: list[Path] = []
    for kind, point in changes:
        clean = redact(point) if redact is not None else point
        paths += append_series(root, health.site, health.env, INCIDENTS, clean)
        if kind is not None:
            transitions.append(Transition(kind, clean))
    return transitions, paths


__all__ = ["WINDOW", "Transition", "open_incidents", "update_incidents"]
