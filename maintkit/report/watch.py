"""What the scheduled health runs add to a report: uptime, response times, error rates, disks, findings, incidents.

Read from the series of the state store index (``index/<site>/<env>/series/<name>/``, see
docs/health.md), which the watching actions and the health record write:

- **uptime** from ``health``: each point covers the time since the previous point, at most one
  schedule interval (``interval_s``, default 15 minutes) back. A point whose uptime checks failed
  (default: ``http``, the commerce flow) marks its interval down; one whose checks passed marks it
  up; a point where they did not run (switched off, host unreachable) and time no point covers are
  *not measured*, never counted as up. Uptime is up / (up + down) over the period, up to its
  reference time; the share of the period that was measured is given next to it.
- **response times** from ``http``: per day the median of the runs' medians and the 95th
  percentile of the runs' p95 values (runs in which no request got an answer have no time and
  are counted apart); the period's p50/p95 the same way over all runs.
- **4xx/5xx rates** from ``logs`` (sums over the period), **disk trend** from ``host`` (the highest
  ``used_pct`` per day and filesystem), **findings** (the latest point per check) and
  **incidents** (the latest point per incident, those overlapping the period).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from maintkit.report.chart import LatencyPoint, latency_svg, percentile
from maintkit.report.model import DiskTrend, EnvHealth, FindingSummary, HealthIncident
from maintkit.report.reading import as_float, as_int, as_text, parse_ts
from maintkit.state import index

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_UPTIME_CHECKS", "health_of", "index_sites", "uptime"]

DEFAULT_INTERVAL_S = 900.0
DEFAULT_UPTIME_CHECKS: tuple[str, ...] = ("http",)
_PASSED = ("unchanged", "changed", "ok")
_FAILED = ("failed", "rollback-failed")
_SERIES = ("health", "http", "logs", "host", "findings", "incidents")


def index_sites(root: Path) -> list[str]:
    """The sites the index holds a folder for (valid names only), sorted."""
    try:
        names = [p.name for p in index.index_dir(root).iterdir() if p.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in names:
        try:
            out.append(index.check_name(name))
        except index.BadName:
            continue
    return sorted(out)


def _points(root: Path, site: str, env: str, name: str, since: datetime, stop: datetime) -> list[dict[str, Any]]:
    """The points of series ``name`` with ``since <= ts <= stop``, each with its parsed ``_when``."""
    out = []
    for rec in index.series(root, site, env, name, since=since):
        when = parse_ts(rec.get("ts"))
        if when is not None and when <= stop:
            out.append({**rec, "_when": when})
    return out


def _state(point: Mapping[str, Any], checks: Sequence[str] | None) -> bool | None:
    """True up, False down, None not measured, for one ``health`` point."""
    if checks is None:
        ok = point.get("ok")
        return ok if isinstance(ok, bool) else None
    raw = point.get("checks")
    statuses: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    seen = [as_text(statuses.get(c)) for c in checks]
    if any(s in _FAILED for s in seen):
        return False
    return True if any(s in _PASSED for s in seen) else None


def uptime(
    points: Iterable[Mapping[str, Any]],
    start: datetime,
    stop: datetime,
    interval_s: float = DEFAULT_INTERVAL_S,
    checks: Sequence[str] | None = DEFAULT_UPTIME_CHECKS,
) -> tuple[float, float, float]:
    """Seconds up, down and not measured in ``[start, stop]`` from ``health`` points (each with ``_when``)."""
    cap = timedelta(seconds=interval_s)
    up = down = 0.0
    prev: datetime | None = None
    for point in sorted(points, key=lambda p: p["_when"]):
        when: datetime = point["_when"]
        begin = max(when - cap, prev) if prev is not None else when - cap
        prev = when
        covered = (min(when, stop) - max(begin, start)).total_seconds()
        if covered <= 0:
            continue
        state = _state(point, checks)
        if state is True:
            up += covered
        elif state is False:
            down += covered
    total = max(0.0, (stop - start).total_seconds())
    return up, down, max(0.0, total - up - down)


def _day(when: datetime) -> date:
    return when.date()


def _http(h: EnvHealth, points: list[dict[str, Any]], title: str) -> None:
    """Per-day and whole-period p50/p95 from the ``http`` points, and the chart."""
    answered = [p for p in points if as_float(p.get("median_ms")) is not None]
    by_day: dict[date, list[dict[str, Any]]] = {}
    for p in answered:
        by_day.setdefault(_day(p["_when"]), []).append(p)
    for day in sorted(by_day):
        meds = [float(p["median_ms"]) for p in by_day[day]]
        p95s = [as_float(p.get("p95_ms")) or float(p["median_ms"]) for p in by_day[day]]
        when = datetime.combine(day, time(12), points[0]["_when"].tzinfo)
        h.http_points.append(LatencyPoint(when, median(meds), percentile(p95s, 95)))
    if answered:
        h.p50_ms = median(float(p["median_ms"]) for p in answered)
        h.p95_ms = percentile([as_float(p.get("p95_ms")) or float(p["median_ms"]) for p in answered], 95)
    h.http_runs = len(points)
    h.unanswered_runs = len(points) - len(answered)
    h.chart_svg = latency_svg(h.http_points, title=title)


def _logs(h: EnvHealth, points: list[dict[str, Any]]) -> None:
    """Sums of the ``logs`` points, and the paths failing most over the period."""
    failing: Counter[str] = Counter()
    for p in points:
        h.requests += as_int(p.get("requests")) or 0
        h.status_4xx += as_int(p.get("status_4xx")) or 0
        h.status_5xx += as_int(p.get("status_5xx")) or 0
        h.php_fatals += as_int(p.get("php_fatals")) or 0
        for pair in p.get("top_failing") or []:
            if isinstance(pair, list | tuple) and len(pair) == 2:
                failing[as_text(pair[0])] += as_int(pair[1]) or 0
    h.top_failing = failing.most_common(5)


def _disks(points: list[dict[str, Any]]) -> list[DiskTrend]:
    """The highest ``used_pct`` per day and filesystem of the ``host`` points."""
    per: dict[str, dict[date, float]] = {}
    for p in points:
        for disk in p.get("disk") or []:
            if not isinstance(disk, Mapping):
                continue
            used = as_float(disk.get("used_pct"))
            mount = as_text(disk.get("mount") or disk.get("path"))
            if used is None or not mount:
                continue
            days = per.setdefault(mount, {})
            day = _day(p["_when"])
            days[day] = max(used, days.get(day, used))
    return [DiskTrend(m, sorted(days.items())) for m, days in sorted(per.items())]


def _findings(env: str, points: list[dict[str, Any]]) -> list[FindingSummary]:
    """The latest ``findings`` point of each check."""
    latest: dict[str, dict[str, Any]] = {}
    for p in points:
        latest[as_text(p.get("check"))] = p
    out = []
    for check, p in sorted(latest.items()):
        items = [
            {k: as_text(v) for k, v in i.items() if v is not None}
            for i in p.get("items") or []
            if isinstance(i, Mapping)
        ]
        count = as_int(p.get("count"))
        out.append(
            FindingSummary(
                env, check, p["_when"], len(items) if count is None else count, items, as_text(p.get("run_id"))
            )
        )
    return out


def _incidents(env: str, points: list[dict[str, Any]], start: datetime, ref: datetime) -> list[HealthIncident]:
    """The incidents overlapping ``[start, ref]``: the latest point of each (check, opened)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for p in points:
        latest[(as_text(p.get("check")), as_text(p.get("opened")))] = p
    out = []
    for p in latest.values():
        opened, closed = parse_ts(p.get("opened")), parse_ts(p.get("closed"))
        if opened is None or opened > ref or (closed is not None and closed < start):
            continue
        duration = as_float(p.get("duration_s"))
        if closed is None:
            duration = (ref - opened).total_seconds()
        elif duration is None:
            duration = (closed - opened).total_seconds()
        out.append(
            HealthIncident(
                env,
                as_text(p.get("check")),
                opened,
                closed,
                duration,
                as_int(p.get("failures")) or 0,
                as_text(p.get("reason")),
            )
        )
    return sorted(out, key=lambda i: (i.opened or ref, i.check))


def _env_health(
    root: Path,
    site: str,
    env: str,
    period: tuple[datetime, datetime],
    interval_s: float,
    checks: Sequence[str] | None,
) -> EnvHealth | None:
    """What the series of ``site``/``env`` say about ``period`` (start, stop); None when they say nothing."""
    start, stop = period
    read = {name: _points(root, site, env, name, start, stop) for name in _SERIES if name != "health"}
    cap = timedelta(seconds=interval_s)
    health = _points(root, site, env, "health", start - cap, stop)
    inside = {name: [p for p in pts if p["_when"] >= start] for name, pts in read.items()}
    incidents = _points(root, site, env, "incidents", start - timedelta(days=62), stop)
    if not health and not any(inside.values()) and not incidents:
        return None
    h = EnvHealth(env)
    in_period = [p for p in health if p["_when"] >= start]
    h.runs = len(in_period)
    h.failed_runs = sum(1 for p in in_period if p.get("ok") is False)
    h.up_s, h.down_s, h.unmeasured_s = uptime(health, start, stop, interval_s, checks)
    _http(h, inside["http"], f"{site}/{env}: response times per day (p50, p95)")
    _logs(h, inside["logs"])
    h.disks = _disks(inside["host"])
    h.findings = _findings(env, inside["findings"])
    h.incidents = _incidents(env, incidents, start, stop)
    return h


def health_of(
    root: Path,
    site: str,
    period: tuple[datetime, datetime],
    interval_s: float = DEFAULT_INTERVAL_S,
    checks: Sequence[str] | None = DEFAULT_UPTIME_CHECKS,
) -> list[EnvHealth]:
    """Per environment of ``site``: what its health series say about ``period`` (start, stop)."""
    try:
        envs = index.environments(root, site)
    except index.BadName:
        return []
    out = []
    for env in envs:
        h = _env_health(root, site, env, period, interval_s, checks)
        if h is not None:
            out.append(h)
    return out
