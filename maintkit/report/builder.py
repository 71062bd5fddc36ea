"""Build a client report from the run folders of a period.

The report reads only the audit log (``events.jsonl`` of each run folder), so it shows
what really happened. It is tolerant of missing fields: an action that records less
just contributes less. Per site it gathers:

- updates applied (``cms.update`` step data ``updates``: package, from, to),
- rollbacks and why (``step.rolled_back`` events and the failure that caused them),
- backups taken, verified and copied off-site (``backup.*`` step data),
- certificates (``ssl.*`` step data ``cert``; renewals from ``renewed``) and the certificate
  history of the period from the state index (``index/<site>/<env>/certs.jsonl``),
- smoke check response times (``http.check`` step data ``requests``: url, status, latency_ms),
- incidents (failed steps and sites that did not end ok),
- what needs attention next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from maintkit.report.attention import attention_for
from maintkit.report.families import (
    collect_backups,
    collect_certs,
    collect_latency,
    deploys_of,
    held_text,
    updates_of,
)
from maintkit.report.history import cert_history
from maintkit.report.model import Incident, Report, Rollback, SiteReport, Takeover
from maintkit.report.reading import RunState, StepState, as_text, parse_ts, runs_in_period
from maintkit.report.verdict import failure_cause, report_verdict, site_verdict
from maintkit.report.visual import visual_diffs
from maintkit.report.watch import DEFAULT_INTERVAL_S, DEFAULT_UPTIME_CHECKS, health_of, index_sites

__all__ = ["build_report"]


def _period(since: date | None, until: date | None, now: datetime) -> tuple[date, date, datetime, datetime]:
    until = until or now.date()
    since = since or (until - timedelta(days=30))
    start = datetime.combine(since, time.min, UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, UTC)
    return since, until, start, end


def build_report(
    state_dir: str | Path,
    *,
    since: date | None = None,
    until: date | None = None,
    sites: Iterable[str] | None = None,
    now: datetime | None = None,
    group: str | None = None,
    health_interval: timedelta = timedelta(seconds=DEFAULT_INTERVAL_S),
    uptime_checks: Sequence[str] | None = DEFAULT_UPTIME_CHECKS,
) -> Report:
    """Gather the report of ``state_dir``'s runs between ``since`` and ``until`` (inclusive dates, UTC).

    ``state_dir`` is a state store's root (``runs/`` and ``index/``): ``.maint`` or a pulled store.

    ``sites`` limits the report to these site names, ``group`` to the runs of one run group (the
    shards of one fleet run). Defaults: the 30 days up to today. ``health_interval`` is the
    schedule of the health runs (the most one point covers), ``uptime_checks`` the checks whose
    failure marks an interval down (None: any failed check); see :mod:`maintkit.report.watch`.
    """
    now = now or datetime.now(UTC)
    since, until, start, end = _period(since, until, now)
    ref = min(now, end)
    wanted = set(sites) if sites is not None else None
    state = Path(state_dir)
    per_site: dict[str, list[StepState]] = {}
    reports: dict[str, SiteReport] = {}
    runs = failed_runs = 0
    for run in runs_in_period(state, start, end, group):
        runs += not run.check
        failed_runs += (not run.check) and any(s[0] not in ("ok", "skipped") for s in run.site_status.values())
        for st in run.steps.values():
            if wanted is None or st.site in wanted:
                per_site.setdefault(st.site, []).append(st)
        _add_site_runs(reports, run, wanted)
        _add_rollbacks(reports, run, wanted)
        _add_takeovers(reports, run, wanted)
    for site_name, steps in per_site.items():
        _add_step_facts(reports.setdefault(site_name, SiteReport(site_name)), steps, ref)
    if group is None:  # the series are not per run group
        for name in index_sites(state):
            if wanted is None or name in wanted:
                health = health_of(state, name, (start, ref), health_interval.total_seconds(), uptime_checks)
                if health:
                    reports.setdefault(name, SiteReport(name)).health = health
    for rep in reports.values():
        rep.cert_history = cert_history(state, rep.name, start, end)
        rep.visual = visual_diffs(state, per_site.get(rep.name, []))
        rep.attention = attention_for(rep, ref)
        rep.verdict = site_verdict(rep)
    ordered = [reports[k] for k in sorted(reports)]
    report = Report(since, until, now, ref, ordered, runs, failed_runs, str(state))
    report.health_interval_s = health_interval.total_seconds()
    report.verdict = report_verdict(report)
    return report


def _add_site_runs(reports: dict[str, SiteReport], run: RunState, wanted: set[str] | None) -> None:
    """Count ``run`` for each site it finished (plans only make the site appear), with its incidents."""
    for site_name, (status, error, when) in run.site_status.items():
        if wanted is not None and site_name not in wanted:
            continue
        rep = reports.setdefault(site_name, SiteReport(site_name))
        if run.check:
            continue
        rep.runs += 1
        rep.last_run, rep.last_status = when or run.started, status
        if status not in ("ok", "skipped"):
            rep.failed_runs += 1
        rep.changed_steps += sum(1 for s in run.steps.values() if s.site == site_name and s.status == "changed")
        _add_incidents(rep, run, site_name, status, error, when)


def _add_takeovers(reports: dict[str, SiteReport], run: RunState, wanted: set[str] | None) -> None:
    """The locks of dead runs ``run`` took over, with what it rolled back and what it could not."""
    for site_name, env, ev in run.takeovers:
        if wanted is not None and site_name not in wanted:
            continue
        rep = reports.setdefault(site_name, SiteReport(site_name))
        rep.takeovers.append(
            Takeover(
                env,
                as_text(ev.get("dead_run")),
                parse_ts(ev.get("ts")),
                [as_text(s) for s in ev.get("rolled_back") or []],
                bool(ev.get("maintenance_off")),
                [as_text(s) for s in ev.get("incomplete") or []],
                run.run_id,
            )
        )


def _add_rollbacks(reports: dict[str, SiteReport], run: RunState, wanted: set[str] | None) -> None:
    """The rollbacks ``run`` made after a failure, per site and environment, with the reason.

    A site that ended ``rolled-back`` with nothing to undo (the failure came before any change)
    is listed too: the run rolled back, it just had nothing to take back.
    """
    if run.check:
        return
    undone_by = dict(run.rolled_back)
    for site_name, (status, _, _when) in run.site_status.items():
        if status == "rolled-back" and not any(k[0] == site_name for k in undone_by):
            env = next((s.env for s in run.steps.values() if s.site == site_name and s.status == "failed"), "")
            undone_by[(site_name, env)] = []
    for (site_name, env), undone in undone_by.items():
        if wanted is not None and site_name not in wanted:
            continue
        rep = reports.setdefault(site_name, SiteReport(site_name))
        why, cause, broke = _failure_reason(run, site_name, env)
        updates = [
            f"{u.package} {u.from_version} -> {u.to_version}"
            for st in run.steps.values()
            if st.site == site_name and st.env == env and st.rolled_back
            for u in (updates_of(st) if st.action == "cms.update" else deploys_of(st))
        ]
        rep.rollbacks.append(
            Rollback(
                env,
                [s for s, _, _ in undone] or ["nothing had been changed yet"],
                why,
                (undone[-1][1] if undone else None) or run.site_status.get(site_name, ("", "", None))[2] or run.started,
                run.run_id,
                all(ok for _, _, ok in undone),
                cause=cause,
                production_changed=any(
                    s.site == site_name and s.env == "production" and s.status == "changed" for s in run.steps.values()
                ),
                updates=updates,
                broke=broke,
            )
        )


def _add_step_facts(rep: SiteReport, steps: list[StepState], ref: datetime) -> None:
    """What the site's steps recorded: updates, hand rollbacks, backups, certificates, latency."""
    real = [s for s in steps if not _is_plan(s)]
    for st in real:
        applied = st.status == "changed" or st.rolled_back or st.status == "rolled-back"
        if st.action == "cms.update":
            rep.held += [held_text(h) for h in st.data.get("held") or [] if isinstance(h, dict)]
        if st.action == "cms.update" and applied:
            rep.updates.extend(updates_of(st))
        elif st.action == "deploy.release" and applied:
            rep.updates.extend(deploys_of(st))
        elif st.action == "deploy.rollback" and st.status == "changed":
            frm, to = as_text(st.data.get("rolled_back_from")), as_text(st.data.get("release"))
            rep.rollbacks.append(
                Rollback(st.env, [f"release {frm} -> {to}"], "rolled back by hand (maint rollback)", st.when, st.run_id)
            )
    rep.checked = _checked(real)
    rep.backups = collect_backups(real)
    rep.certificates, rep.renewals = collect_certs(steps, ref)
    rep.latency = collect_latency(real, f"{rep.name}: smoke check response times")


def _checked(steps: list[StepState]) -> bool | None:
    """Whether the latest production smoke check passed; elsewhere only a pass counts (a failure there was caught)."""
    checks = [s for s in steps if s.action == "http.check" and s.status in ("unchanged", "changed", "failed")]
    prod = [s for s in checks if s.env == "production"]
    if not checks:
        return None
    last = max(prod or checks, key=lambda s: s.when or datetime.min.replace(tzinfo=UTC))
    return last.status != "failed" if prod else (True if last.status != "failed" else None)


def _is_plan(st: StepState) -> bool:
    return st.status in ("would-change", "unknown")


def _failure_reason(run: RunState, site: str, env: str) -> tuple[str, str, str]:
    """Why ``site``'s stage on ``env`` failed: the technical reason, the owner's words, and the page named."""
    for st in run.steps.values():
        if st.site == site and st.env == env and st.status == "failed":
            label = st.step if st.step == st.action else f"{st.step} ({st.action})"
            cause, page = failure_cause(st)
            return f"step {label} failed: {st.error or st.reason}", cause, page
    status = run.site_status.get(site)
    if status and status[0] == "interrupted":
        return "the run was interrupted", "the run was interrupted", ""
    why = status[1] if status and status[1] else "a later step failed"
    return why, why, ""


def _add_incidents(rep: SiteReport, run: RunState, site: str, status: str, error: str, when: datetime | None) -> None:
    failed = [s for s in run.steps.values() if s.site == site and s.status in ("failed", "rollback-failed")]
    for st in failed:
        rep.incidents.append(
            Incident(st.when, run.run_id, run.playbook, st.env, st.step, st.status, st.error or st.reason)
        )
    if not failed and status not in ("ok", "skipped"):
        rep.incidents.append(Incident(when or run.started, run.run_id, run.playbook, "", "", status, error))
