"""Metrics of a health run for Prometheus: an OpenMetrics text file and a Pushgateway push.

Built with prometheus-client in a registry of their own, from the run's health record and the
series points the run's checks wrote (``http``, ``host``, ``logs``, ``findings``). Labels are
``site``, ``env`` and ``check`` (plus ``mount``, ``quantile``, ``severity`` where said); no
secret can reach them. The names are documented in docs/health.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from maintkit._fs import write_text_atomic
from maintkit.actions.watch.common import FINDINGS, HOST, HTTP, LOGS, SEVERITIES
from maintkit.health.record import FAILING, PASSING, EnvHealth
from maintkit.state.index import series

#: name -> (help, extra label names)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "maint_health_up": ("1 when every check of the site environment passed in the last health run", ()),
    "maint_health_run_timestamp_seconds": ("When the last health run recorded the site environment (Unix time)", ()),
    "maint_check_up": ("1 when the check passed, 0 when it failed (skipped checks have no sample)", ("check",)),
    "maint_incident_open": ("1 while the check has an open incident", ("check",)),
    "maint_http_latency_ms": ("Response time of the smoke check's requests, by quantile (1 = max)", ("quantile",)),
    "maint_http_requests": ("Requests the smoke check made", ()),
    "maint_http_requests_failed": ("Paths and flows of the smoke check that failed", ()),
    "maint_disk_used_ratio": ("Used share of the filesystem's space", ("mount",)),
    "maint_disk_inodes_used_ratio": ("Used share of the filesystem's inodes", ("mount",)),
    "maint_disk_free_bytes": ("Free bytes of the filesystem", ("mount",)),
    "maint_load1": ("Load average over one minute", ()),
    "maint_cpus": ("CPUs of the host", ()),
    "maint_memory_used_ratio": ("Used share of the host's memory", ()),
    "maint_db_up": ("1 when the database answered", ()),
    "maint_fpm_listen_queue": ("Requests waiting for a php-fpm worker", ()),
    "maint_fpm_max_children_reached": ("Times php-fpm reached max_children", ()),
    "maint_logs_requests": ("Access log requests since the previous scan", ()),
    "maint_logs_4xx_rate": ("Share of 4xx answers since the previous scan", ()),
    "maint_logs_5xx_rate": ("Share of 5xx answers since the previous scan", ()),
    "maint_logs_slow_requests": ("Slow requests since the previous scan", ()),
    "maint_php_fatals": ("New PHP fatal errors since the previous scan", ()),
    "maint_findings": ("Findings of a security check, by severity (of the listed items)", ("check", "severity")),
    "maint_findings_all": ("Findings of a security check, all of them", ("check",)),
}

Sample = tuple[str, dict[str, str], float]

#: (metric, field of the point, divisor) of each series
_DISK = (
    ("maint_disk_used_ratio", "used_pct", 100.0),
    ("maint_disk_inodes_used_ratio", "inodes_pct", 100.0),
    ("maint_disk_free_bytes", "free_bytes", 1.0),
)
_HOST = (
    ("maint_load1", "load1", 1.0),
    ("maint_cpus", "cpus", 1.0),
    ("maint_memory_used_ratio", "mem_used_pct", 100.0),
    ("maint_db_up", "db_ok", 1.0),
)
_FPM = (
    ("maint_fpm_listen_queue", "listen_queue", 1.0),
    ("maint_fpm_max_children_reached", "max_children_reached", 1.0),
)
_LOGS = (
    ("maint_logs_requests", "requests", 1.0),
    ("maint_logs_4xx_rate", "rate_4xx", 1.0),
    ("maint_logs_5xx_rate", "rate_5xx", 1.0),
    ("maint_logs_slow_requests", "slow", 1.0),
    ("maint_php_fatals", "php_fatals", 1.0),
)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return float(value) if isinstance(value, int | float) else None


def _this_run(root: Path, site: str, env: str, name: str, run_id: str) -> list[dict[str, Any]]:
    since = datetime.now(UTC) - timedelta(days=1)
    return [p for p in series(root, site, env, name, since) if p.get("run_id") == run_id]


def _http(point: Mapping[str, Any]) -> Iterable[Sample]:
    for quantile, key in (("0.5", "median_ms"), ("0.95", "p95_ms"), ("1", "max_ms")):
        if (v := _num(point.get(key))) is not None:
            yield "maint_http_latency_ms", {"quantile": quantile}, v
    for name, key in (("maint_http_requests", "count"), ("maint_http_requests_failed", "failed")):
        if (v := _num(point.get(key))) is not None:
            yield name, {}, v


def _host(point: Mapping[str, Any]) -> Iterable[Sample]:
    for disk in point.get("disk") or []:
        mount = {"mount": str(disk.get("mount") or disk.get("path") or "")}
        for name, key, scale in _DISK:
            if (v := _num(disk.get(key))) is not None:
                yield name, mount, round(v / scale, 6)
    for name, key, scale in _HOST:
        if (v := _num(point.get(key))) is not None:
            yield name, {}, round(v / scale, 6)
    fpm = point.get("fpm") or {}
    for name, key, scale in _FPM:
        if (v := _num(fpm.get(key))) is not None:
            yield name, {}, round(v / scale, 6)


def _logs(point: Mapping[str, Any]) -> Iterable[Sample]:
    for name, key, scale in _LOGS:
        if (v := _num(point.get(key))) is not None:
            yield name, {}, round(v / scale, 6)


def _findings(points: list[dict[str, Any]]) -> Iterable[Sample]:
    last = {str(p.get("check")): p for p in points}
    for check, point in sorted(last.items()):
        items = [i for i in point.get("items") or [] if isinstance(i, dict)]
        for severity in SEVERITIES:
            count = sum(1 for i in items if i.get("severity") == severity)
            yield "maint_findings", {"check": check, "severity": severity}, float(count)
        yield "maint_findings_all", {"check": check}, float(_num(point.get("count")) or 0)


def _checks(health: EnvHealth, open_checks: Iterable[str]) -> Iterable[Sample]:
    yield "maint_health_up", {}, 1.0 if health.ok else 0.0
    if health.ts:
        when = datetime.fromisoformat(health.ts.replace("Z", "+00:00"))
        yield "maint_health_run_timestamp_seconds", {}, when.timestamp()
    passing, failing = {s.value for s in PASSING}, {s.value for s in FAILING}
    for check, status in health.checks.items():
        if status in passing or status in failing:
            yield "maint_check_up", {"check": check}, 1.0 if status in passing else 0.0
    for check in sorted(open_checks):
        yield "maint_incident_open", {"check": check}, 1.0


def samples(root: Path, run_id: str, health: EnvHealth, open_checks: Iterable[str]) -> list[Sample]:
    """Every sample of one site environment (without its ``site``/``env`` labels)."""
    out = list(_checks(health, open_checks))
    site, env = health.site, health.env
    if http := _this_run(root, site, env, HTTP, run_id):
        out += _http(http[-1])
    if host := _this_run(root, site, env, HOST, run_id):
        out += _host(host[-1])
    if logs := _this_run(root, site, env, LOGS, run_id):
        out += _logs(logs[-1])
    out += _findings(_this_run(root, site, env, FINDINGS, run_id))
    return out


def build_registry(per_env: Iterable[tuple[EnvHealth, list[Sample]]]) -> Any:
    """A fresh prometheus-client registry holding the samples of every site environment."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    gauges: dict[str, Any] = {}
    for health, found in per_env:
        for name, labels, value in found:
            if name not in gauges:
                text, extra = METRICS[name]
                gauges[name] = Gauge(name, text, ["site", "env", *extra], registry=registry)
            gauges[name].labels(site=health.site, env=health.env, **labels).set(value)
    return registry


def openmetrics_text(registry: Any) -> str:
    """The registry in the OpenMetrics text format (ends with ``# EOF``)."""
    from prometheus_client.openmetrics import exposition

    generate: Any = exposition.generate_latest  # untyped in prometheus-client
    return str(generate(registry).decode("utf-8"))


def write_metrics(path: str | os.PathLike[str], registry: Any) -> Path:
    """Write the registry atomically to ``path`` (mode 0644, for node_exporter's textfile collector)."""
    target = Path(path)
    write_text_atomic(target, openmetrics_text(registry), mode=0o644)
    return target


def push_metrics(url: str, registry: Any, playbook: str, timeout: float = 10.0) -> None:
    """Push the registry to a Pushgateway (PUT: replaces the group ``job=maint``, ``playbook=NAME``)."""
    from prometheus_client import push_to_gateway

    push_to_gateway(url, job="maint", registry=registry, grouping_key={"playbook": playbook}, timeout=timeout)


__all__ = ["METRICS", "build_registry", "openmetrics_text", "push_metrics", "samples", "write_metrics"]
