"""What the watch actions share: the series they write into the state store, and how.

Every watch action is read-only: ``check()`` gathers facts, records them with
``ctx.record(...)``, writes one point of its series with :func:`write_point` (never in plan
mode) and returns ``Check.ok`` or raises ``CheckFailed``. The series names and the fields of
their points are the contract documented in ``docs/health.md``; reports read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maintkit.state.index import append_series, latest_point

if TYPE_CHECKING:
    from maintkit.action import Context

#: ``http.check``: {run_id, playbook, ok, count, failed, median_ms, p95_ms, max_ms}
HTTP = "http"
#: ``host.health``: {run_id, status, disk: [...], load1, cpus, mem_used_pct, fpm, db_ok}
HOST = "host"
#: ``logs.scan``: {run_id, requests, status_4xx, status_5xx, slow, rate_4xx, rate_5xx, top_failing, php_fatals}
LOGS = "logs"
#: integrity/admins/vuln/malware: {run_id, check, count, items: [{severity, title, path?, ..., advice}]}
FINDINGS = "findings"
#: one point per health run per site/env: {run_id, ok, failed: [step ids], checks: {step id: status}}
HEALTH = "health"
#: alert state per check: {check, site, env, state: open|closed, opened, closed, failures, reason}
INCIDENTS = "incidents"
#: internal state of logs.scan (offset and inode of each log)
LOGS_OFFSETS = "logs-offsets"
#: internal state of admins.audit (the acknowledged administrators)
ADMINS_BASELINE = "admins-baseline"

#: the ``check`` field of a ``findings`` point
FINDING_CHECKS = ("integrity", "admins", "vuln", "malware")
#: severities of a finding, worst first
SEVERITIES = ("critical", "high", "medium", "low")
#: at most this many items in a ``findings`` point (``count`` is the true total)
MAX_ITEMS = 200


def write_point(ctx: Context, name: str, point: Mapping[str, Any]) -> list[Path]:
    """Append ``point`` (with ``run_id`` of this run) to the series ``name`` of this site/env.

    Nothing is written in plan mode; the point is redacted and the paths written are handed to
    the runner to publish (see :meth:`maintkit.action.Context.write_index`). ``ts`` is added
    by :func:`maintkit.state.index.append_series` unless the point carries one.
    """
    data = {"run_id": ctx.options.run_id, **dict(point)}

    def writer(root: Path, site: str, env: str, record: Mapping[str, Any]) -> list[Path]:
        return append_series(root, site, env, name, record)

    return ctx.write_index(writer, data)


def last_point(ctx: Context, name: str) -> dict[str, Any] | None:
    """The latest point of the series ``name`` of this site/env, or None when there is none."""
    return latest_point(ctx.options.history, ctx.site.name, ctx.env.name, name)


def http_point(ctx: Context, *, ok: bool, count: int, failed: int, latency: Mapping[str, Any]) -> list[Path]:
    """Write the ``http`` point of one ``http.check`` (latencies null when no request got an answer)."""
    point = {"playbook": ctx.options.playbook, "ok": ok, "count": count, "failed": failed}
    point.update({k: latency.get(k) for k in ("median_ms", "p95_ms", "max_ms")})
    return write_point(ctx, HTTP, point)


def findings_point(check: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``findings`` point for ``check``: the true ``count``, at most :data:`MAX_ITEMS` items, worst first."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    ordered = sorted(items, key=lambda item: rank.get(str(item.get("severity")), len(SEVERITIES)))
    return {"check": check, "count": len(items), "items": ordered[:MAX_ITEMS]}


__all__ = [
    "ADMINS_BASELINE",
    "FINDINGS",
    "FINDING_CHECKS",
    "HEALTH",
    "HOST",
    "HTTP",
    "INCIDENTS",
    "LOGS",
    "LOGS_OFFSETS",
    "MAX_ITEMS",
    "SEVERITIES",
    "findings_point",
    "http_point",
    "last_point",
    "write_point",
]
