"""Build a client report from the run folders of a period.

The report reads only the audit log (``events.jsonl`` of each run folder), so it shows
what really happened. It is tolerant of missing fields: an action that records less
just contributes less. Per site it gathers:

- updates applied (``cms.update`` step data ``updates``: package, from, to),
- rollbacks and why (``step.rolled_back`` events and the failure that caused them),
- backups taken, verified and copied off-site (``backup.*`` step data),
- certificates (``ssl.*`` step data ``cert``; renewals from ``renewed``),
- smoke check response times (``http.check`` step data ``requests``: url, status, latency_ms),
- incidents (failed steps and sites that did not end ok),
- what needs attention next.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from maintkit.report.chart import LatencyPoint, latency_svg, percentile

CERT_WARN_DAYS = 30
BACKUP_MAX_AGE = timedelta(hours=48)
_STEP_EVENTS = ("step.checked", "step.applied", "step.verified", "step.failed", "step.skipped")


@dataclass
class Update:
    """One package (or core) updated on one environment."""

    env: str
    package: str
    from_version: str
    to_version: str
    when: datetime | None
    run_id: str
    kind: str = ""
    rolled_back: bool = False


@dataclass
class Rollback:
    """Steps undone after a failure, and why."""

    env: str
    steps: list[str]
    why: str
    when: datetime | None
    run_id: str
    ok: bool = True


@dataclass
class Backup:
    """One backup taken (and maybe verified and copied off-site)."""

    env: str
    id: str
    when: datetime | None
    size_bytes: int | None
    parts: list[str]
    verified: bool | None
    offsite: str | None
    run_id: str

    def age(self, ref: datetime) -> timedelta | None:
        """How old the backup was at ``ref``."""
        return ref - self.when if self.when else None


@dataclass
class Certificate:
    """The latest facts about one served certificate."""

    name: str
    not_after: datetime | None
    issuer: str
    serial: str
    checked: datetime | None
    days_left: float | None
    ok: bool = True


@dataclass
class Renewal:
    """A certificate renewal."""

    name: str
    when: datetime | None
    from_not_after: str
    to_not_after: str


@dataclass
class Latency:
    """Smoke check response times of a site over the period."""

    samples: int
    median_ms: float
    p95_ms: float
    slowest_url: str
    slowest_ms: float
    errors: int
    points: list[LatencyPoint]
    chart_svg: str


@dataclass
class Incident:
    """A failed step or a site run that did not end ok."""

    when: datetime | None
    run_id: str
    playbook: str
    env: str
    step: str
    status: str
    error: str


@dataclass
class Attention:
    """Something to do next."""

    level: str  # "urgent" | "soon"
    message: str


@dataclass
class SiteReport:
    """Everything the report says about one site."""

    name: str
    runs: int = 0
    failed_runs: int = 0
    changed_steps: int = 0
    last_run: datetime | None = None
    last_status: str | None = None
    updates: list[Update] = field(default_factory=list)
    rollbacks: list[Rollback] = field(default_factory=list)
    backups: list[Backup] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    renewals: list[Renewal] = field(default_factory=list)
    latency: Latency | None = None
    incidents: list[Incident] = field(default_factory=list)
    attention: list[Attention] = field(default_factory=list)


@dataclass
class Report:
    """A report over a period."""

    since: date
    until: date
    generated: datetime
    reference: datetime
    sites: list[SiteReport]
    runs: int
    failed_runs: int
    state_dir: str

    @property
    def attention_count(self) -> int:
        """Number of attention items over all sites."""
        return sum(len(s.attention) for s in self.sites)


# ----------------------------------------------------------------------------- helpers
def parse_ts(value: Any) -> datetime | None:
    """An aware datetime from an ISO string, a ``YYYYmmddTHHMMSSZ`` run id prefix or an epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = datetime.strptime(text.split("-")[0], "%Y%m%dT%H%M%SZ")
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data and data[key] not in (None, ""):
            return data[key]
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------- reading runs
@dataclass
class _Step:
    """The last known state of one step of one run."""

    run_id: str
    playbook: str
    site: str
    env: str
    step: str
    action: str
    status: str = ""
    when: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    reason: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    rolled_back: bool = False


@dataclass
class _Run:
    run_id: str
    playbook: str
    check: bool
    started: datetime | None
    steps: dict[tuple[str, str, str], _Step] = field(default_factory=dict)
    site_status: dict[str, tuple[str, str, datetime | None]] = field(default_factory=dict)
    rolled_back: dict[tuple[str, str], list[tuple[str, datetime | None, bool]]] = field(default_factory=dict)


def _read_run(run_dir: Path, meta: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> _Run:
    run = _Run(
        run_id=str(meta.get("run_id") or run_dir.name),
        playbook=_text(meta.get("playbook")),
        check=bool(meta.get("check")),
        started=parse_ts(meta.get("started")) or parse_ts(run_dir.name),
    )
    for ev in events:
        name = ev.get("event", "")
        site, env = _text(ev.get("site")), _text(ev.get("env"))
        when = parse_ts(ev.get("ts"))
        if name == "run.started":
            run.playbook = run.playbook or _text(ev.get("playbook"))
            run.check = bool(ev.get("check", run.check))
            run.started = run.started or when
        elif name in _STEP_EVENTS and site:
            key = (site, env, _text(ev.get("step")))
            st = run.steps.get(key) or _Step(run.run_id, run.playbook, site, env, key[2], _text(ev.get("action")))
            run.steps[key] = st
            st.status = _text(ev.get("status")) or st.status
            st.when = when or st.when
            if isinstance(ev.get("data"), Mapping):
                st.data.update(ev["data"])
            st.error = _text(ev.get("error")) or st.error
            st.reason = _text(ev.get("reason")) or st.reason
            if ev.get("changes"):
                st.changes = list(ev["changes"])
        elif name in ("step.rolled_back", "step.rollback_failed") and site:
            key = (site, env, _text(ev.get("step")))
            undone = run.steps.get(key)
            ok = name == "step.rolled_back"
            if undone is not None:
                undone.rolled_back = ok
            run.rolled_back.setdefault((site, env), []).append((_text(ev.get("step")), when, ok))
        elif name in ("site.finished", "site.skipped") and site:
            run.site_status[site] = (_text(ev.get("status")), _text(ev.get("error")), when)
    return run


def _runs_in_period(state_dir: Path, start: datetime, end: datetime) -> Iterator[_Run]:
    from maintkit.audit import list_runs, read_events

    for meta in reversed(list_runs(state_dir)):  # oldest first
        run_id = str(meta.get("run_id", ""))
        started = parse_ts(meta.get("started")) or parse_ts(run_id)
        if started is None or not (start <= started < end):
            continue
        run_dir = state_dir / "runs" / run_id
        yield _read_run(run_dir, meta, read_events(run_dir))


# ----------------------------------------------------------------------------- per action family
def _updates(st: _Step) -> list[Update]:
    raw = st.data.get("updates") or st.data.get("updated") or []
    if isinstance(raw, Mapping):  # {"akismet": {"from": "1", "to": "2"}} or {"akismet": ["1", "2"]}
        items = []
        for pkg, v in raw.items():
            if isinstance(v, Mapping):
                items.append({"package": pkg, **v})
            elif isinstance(v, list | tuple) and len(v) == 2:
                items.append({"package": pkg, "from": v[0], "to": v[1]})
        raw = items
    out = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        package = _text(_first(item, "package", "name", "slug", "plugin"))
        if not package:
            continue
        out.append(
            Update(
                env=st.env,
                package=package,
                from_version=_text(_first(item, "from", "from_version", "before", "old")) or "?",
                to_version=_text(_first(item, "to", "to_version", "after", "new", "version")) or "?",
                when=st.when,
                run_id=st.run_id,
                kind=_text(_first(item, "kind", "type")),
                rolled_back=st.rolled_back or st.status == "rolled-back",
            )
        )
    return out


def _short(commit: Any) -> str:
    text = _text(commit)
    return text[:7] if len(text) >= 12 and all(c in "0123456789abcdef" for c in text) else text


def _deploys(st: _Step) -> list[Update]:
    """A deployed release, as an update of the site's code: previous release -> ref (commit)."""
    out = []
    for change in st.changes:
        after = change.get("after") if isinstance(change, Mapping) else None
        if not isinstance(after, Mapping) or not after.get("commit"):
            continue
        before = change.get("before") if isinstance(change.get("before"), Mapping) else {}
        ref = _text(st.data.get("ref"))
        commit = _short(after.get("commit"))
        prev = _short(before.get("commit")) if before else ""
        out.append(
            Update(
                env=st.env,
                package="code (release)",
                from_version=prev or "none",
                to_version=f"{ref} ({commit})" if ref and ref != commit else commit,
                when=st.when,
                run_id=st.run_id,
                kind="deploy",
                rolled_back=st.rolled_back or st.status == "rolled-back",
            )
        )
    return out


def _backup_items(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = data.get("backup") or data.get("backups") or data.get("verified") or data.get("copied") or data.get("copy")
    if isinstance(raw, Mapping):
        return [raw]
    if isinstance(raw, list):
        return [b for b in raw if isinstance(b, Mapping)]
    return [data] if _first(data, "backup_id", "id", "archive") else []


def _backup_id(item: Mapping[str, Any]) -> str:
    return _text(_first(item, "id", "backup_id", "name", "archive", "path"))


def _parts(item: Mapping[str, Any]) -> list[str]:
    items = item.get("items")
    if isinstance(items, list) and items:
        kinds = [_text(i.get("type") or i.get("kind")) for i in items if isinstance(i, Mapping)]
        return list(dict.fromkeys(k for k in kinds if k))
    parts = item.get("parts")
    if isinstance(parts, list):
        return [_text(p.get("kind") or p.get("name")) if isinstance(p, Mapping) else _text(p) for p in parts]
    if isinstance(parts, Mapping):
        return [str(k) for k in parts]
    found = []
    if item.get("files") not in (None, False, 0, []):
        found.append("files")
    if item.get("database") not in (None, False, 0, []):
        found.append("database")
    return found


def _size(item: Mapping[str, Any]) -> int | None:
    size = _int(_first(item, "size_bytes", "bytes", "size", "total_bytes"))
    listed = item.get("items") or item.get("parts")
    if size is None and isinstance(listed, list):
        sizes = [_int(_first(p, "size_bytes", "bytes", "size")) for p in listed if isinstance(p, Mapping)]
        known = [s for s in sizes if s is not None]
        size = sum(known) if known else None
    return size


def _collect_backups(steps: list[_Step]) -> list[Backup]:
    backups: dict[str, Backup] = {}
    order: list[str] = []
    for st in steps:
        family = st.action.split(".", 1)[-1] if st.action.startswith("backup.") else ""
        if not family or st.status in ("skipped", "unknown", "would-change", "not-run"):
            continue
        if st.status == "failed" and family != "verify":
            continue
        for item in _backup_items(st.data):
            bid = _backup_id(item) or f"{st.run_id}:{st.step}"
            b = backups.get(bid)
            if b is None and family in ("create", "verify", "copy"):
                b = Backup(
                    env=st.env,
                    id=bid,
                    when=parse_ts(_first(item, "created", "created_at", "ts", "when", "time")) or st.when,
                    size_bytes=_size(item),
                    parts=_parts(item),
                    verified=None,
                    offsite=None,
                    run_id=st.run_id,
                )
                backups[bid] = b
                order.append(bid)
            if b is None:
                continue
            b.size_bytes = b.size_bytes if b.size_bytes is not None else _size(item)
            b.parts = b.parts or _parts(item)
            verified = item.get("verified")
            if verified is None and item.get("verified_at"):
                verified = True
            if family == "verify":
                ok = item.get("ok")
                b.verified = st.status in ("changed", "unchanged") and ok is not False
            elif isinstance(verified, bool):
                b.verified = verified if b.verified is None else (b.verified or verified)
            offsite = _first(item, "offsite", "remote", "destination", "copied_to", "copy")
            if family == "copy" and offsite is None:
                offsite = _first(st.data, "destination", "remote", "target") or "yes"
            if offsite:
                b.offsite = _offsite_text(offsite)
    return [backups[i] for i in order]


def _offsite_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return _text(_first(value, "url", "path", "host", "destination")) or "yes"
    return "yes"


def _cert_name(cert: Mapping[str, Any]) -> str:
    name = _text(cert.get("server_name") or cert.get("host"))
    port = cert.get("port")
    if name and port and int(port) != 443:
        return f"{name}:{port}"
    return name or _text(cert.get("subject")) or "certificate"


def _collect_certs(steps: list[_Step], ref: datetime) -> tuple[list[Certificate], list[Renewal]]:
    latest: dict[str, Certificate] = {}
    renewals: list[Renewal] = []
    for st in steps:
        if not st.action.startswith("ssl."):
            continue
        cert = st.data.get("cert")
        if isinstance(cert, Mapping):
            name = _cert_name(cert)
            not_after = parse_ts(cert.get("not_after"))
            latest[name] = Certificate(
                name=name,
                not_after=not_after,
                issuer=_text(cert.get("issuer")),
                serial=_text(cert.get("serial")),
                checked=st.when,
                days_left=(not_after - ref).total_seconds() / 86400 if not_after else _float(cert.get("days_left")),
                ok=st.status != "failed" and bool(cert.get("chain_ok", True)) and bool(cert.get("covers_name", True)),
            )
        renewed = st.data.get("renewed")
        if isinstance(renewed, Mapping) and st.status in ("changed",):
            lineage = st.data.get("lineage")
            if isinstance(cert, Mapping):
                name = _cert_name(cert)
            elif isinstance(lineage, Mapping) and lineage.get("names"):
                name = _text(lineage["names"][0])
            else:
                name = st.step
            frm, to = renewed.get("from") or {}, renewed.get("to") or {}
            renewals.append(
                Renewal(
                    name=name,
                    when=st.when,
                    from_not_after=_text(frm.get("not_after") if isinstance(frm, Mapping) else frm),
                    to_not_after=_text(to.get("not_after") if isinstance(to, Mapping) else to),
                )
            )
    return sorted(latest.values(), key=lambda c: c.name), renewals


def _collect_latency(steps: list[_Step], title: str) -> Latency | None:
    points: list[LatencyPoint] = []
    all_ms: list[float] = []
    slowest = ("", -1.0)
    errors = 0
    for st in steps:
        if st.action != "http.check":
            continue
        reqs = st.data.get("requests")
        if not isinstance(reqs, list):
            continue
        run_ms = []
        for r in reqs:
            if not isinstance(r, Mapping):
                continue
            ms = _float(_first(r, "latency_ms", "ms", "elapsed_ms"))
            status = _int(r.get("status"))
            if status is None or status >= 400 or r.get("ok") is False:
                errors += 1
            if ms is None:
                continue
            run_ms.append(ms)
            if ms > slowest[1]:
                slowest = (_text(r.get("url")), ms)
        if run_ms and st.when is not None:
            points.append(LatencyPoint(st.when, median(run_ms), percentile(run_ms, 95)))
        all_ms.extend(run_ms)
    if not all_ms:
        return None
    return Latency(
        samples=len(all_ms),
        median_ms=median(all_ms),
        p95_ms=percentile(all_ms, 95),
        slowest_url=slowest[0],
        slowest_ms=slowest[1],
        errors=errors,
        points=points,
        chart_svg=latency_svg(points, title=title),
    )


def _attention(site: SiteReport, ref: datetime) -> list[Attention]:
    out: list[Attention] = []
    for cert in site.certificates:
        if cert.days_left is not None and cert.days_left < 0:
            out.append(Attention("urgent", f"certificate {cert.name} expired on {cert.not_after:%Y-%m-%d}"))
        elif cert.days_left is not None and cert.days_left < CERT_WARN_DAYS:
            when = f" on {cert.not_after:%Y-%m-%d}" if cert.not_after else ""
            level = "urgent" if cert.days_left < 14 else "soon"
            out.append(
                Attention(level, f"certificate {cert.name} expires in {int(cert.days_left)} days{when}: renew it")
            )
        elif not cert.ok:
            out.append(Attention("urgent", f"certificate {cert.name} failed its last check"))
    verified = [b for b in site.backups if b.verified and b.when is not None]
    recent = [b for b in verified if b.when is not None and ref - b.when <= BACKUP_MAX_AGE]
    if not recent:
        if verified:
            last = max(b.when for b in verified if b.when is not None)
            out.append(
                Attention(
                    "urgent",
                    f"no verified backup in the last 48 hours (last verified backup {last:%Y-%m-%d %H:%M} UTC)",
                )
            )
        elif site.backups:
            out.append(
                Attention("urgent", "no verified backup in the last 48 hours (backups were taken but not verified)")
            )
        else:
            out.append(Attention("urgent", "no verified backup in the last 48 hours (none in this period)"))
    if site.last_status and site.last_status not in ("ok",):
        out.append(Attention("urgent", f"the last run ended {site.last_status}: see the incidents below"))
    for u in site.updates:
        if u.rolled_back:
            out.append(
                Attention(
                    "soon",
                    f"the update of {u.package} {u.from_version} -> {u.to_version} on {u.env} was rolled back: "
                    "investigate before retrying",
                )
            )
    for rb in site.rollbacks:
        if not rb.ok:
            out.append(
                Attention("urgent", f"a rollback on {rb.env} failed ({', '.join(rb.steps)}): check the site by hand")
            )
    return out


# ----------------------------------------------------------------------------- build
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
) -> Report:
    """Gather the report of ``state_dir``'s runs between ``since`` and ``until`` (inclusive dates, UTC).

    ``sites`` limits the report to these site names. Defaults: the 30 days up to today.
    """
    now = now or datetime.now(UTC)
    since, until, start, end = _period(since, until, now)
    ref = min(now, end)
    wanted = set(sites) if sites is not None else None
    state = Path(state_dir)
    per_site: dict[str, list[_Step]] = {}
    reports: dict[str, SiteReport] = {}
    runs = failed_runs = 0
    for run in _runs_in_period(state, start, end):
        runs += not run.check
        failed_runs += (not run.check) and any(s[0] not in ("ok", "skipped") for s in run.site_status.values())
        for st in run.steps.values():
            if wanted is None or st.site in wanted:
                per_site.setdefault(st.site, []).append(st)
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
        for (site_name, env), undone in run.rolled_back.items():
            if (wanted is not None and site_name not in wanted) or run.check:
                continue
            rep = reports.setdefault(site_name, SiteReport(site_name))
            why = _failure_reason(run, site_name, env)
            rep.rollbacks.append(
                Rollback(
                    env,
                    [s for s, _, _ in undone],
                    why,
                    undone[-1][1] or run.started,
                    run.run_id,
                    all(ok for _, _, ok in undone),
                )
            )
    for site_name, steps in per_site.items():
        rep = reports.setdefault(site_name, SiteReport(site_name))
        real = [s for s in steps if not _is_plan(s)]
        for st in real:
            applied = st.status == "changed" or st.rolled_back or st.status == "rolled-back"
            if st.action == "cms.update" and applied:
                rep.updates.extend(_updates(st))
            elif st.action == "deploy.release" and applied:
                rep.updates.extend(_deploys(st))
            elif st.action == "deploy.rollback" and st.status == "changed":
                frm, to = _text(st.data.get("rolled_back_from")), _text(st.data.get("release"))
                rep.rollbacks.append(
                    Rollback(
                        st.env, [f"release {frm} -> {to}"], "rolled back by hand (maint rollback)", st.when, st.run_id
                    )
                )
        rep.backups = _collect_backups(real)
        rep.certificates, rep.renewals = _collect_certs(steps, ref)
        rep.latency = _collect_latency(real, f"{site_name}: smoke check response times")
    for rep in reports.values():
        rep.attention = _attention(rep, ref)
    ordered = [reports[k] for k in sorted(reports)]
    return Report(since, until, now, ref, ordered, runs, failed_runs, str(state))


def _is_plan(st: _Step) -> bool:
    return st.status in ("would-change", "unknown")


def _failure_reason(run: _Run, site: str, env: str) -> str:
    for st in run.steps.values():
        if st.site == site and st.env == env and st.status == "failed":
            label = st.step if st.step == st.action else f"{st.step} ({st.action})"
            return f"step {label} failed: {st.error or st.reason}"
    status = run.site_status.get(site)
    if status and status[0] == "interrupted":
        return "the run was interrupted"
    return status[1] if status and status[1] else "a later step failed"


def _add_incidents(rep: SiteReport, run: _Run, site: str, status: str, error: str, when: datetime | None) -> None:
    failed = [s for s in run.steps.values() if s.site == site and s.status in ("failed", "rollback-failed")]
    for st in failed:
        rep.incidents.append(
            Incident(st.when, run.run_id, run.playbook, st.env, st.step, st.status, st.error or st.reason)
        )
    if not failed and status not in ("ok", "skipped"):
        rep.incidents.append(Incident(when or run.started, run.run_id, run.playbook, "", "", status, error))
