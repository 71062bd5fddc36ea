"""The report's data: what a report says about each site over a period (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from maintkit.errors import MaintkitError
from maintkit.report.chart import LatencyPoint
from maintkit.report.visual import VisualDiff

__all__ = [
    "Attention",
    "Backup",
    "Branding",
    "CertCheck",
    "Certificate",
    "DiskTrend",
    "EnvHealth",
    "FindingSummary",
    "HealthIncident",
    "Incident",
    "Latency",
    "Renewal",
    "Report",
    "ReportError",
    "Rollback",
    "SiteReport",
    "Update",
    "Verdict",
]


class ReportError(MaintkitError):
    """A report cannot be made as asked: a broken or unsafe template, a refused logo, no PDF printer."""


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
    #: a first deploy (no earlier release): the site went online, nothing was updated
    initial: bool = False
    #: updated without trying on staging first (the site's ``direct_updates: true``)
    untried: bool = False


@dataclass
class Rollback:
    """Steps undone after a failure, and why."""

    env: str
    steps: list[str]
    why: str
    when: datetime | None
    run_id: str
    ok: bool = True
    #: what failed, in words a shop owner reads ("the cart answered HTTP 500"); empty when unknown
    cause: str = ""
    #: the run also changed the production environment of the site (False: production untouched)
    production_changed: bool = False
    #: the updates this rollback undid (``package from -> to``)
    updates: list[str] = field(default_factory=list)
    #: the page a failed check named ("the cart"), when a smoke check caused the rollback
    broke: str = ""


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
class CertCheck:
    """One certificate check or renewal from the state index (the certificate history)."""

    when: datetime
    env: str
    name: str
    event: str  # "checked" | "renewed"
    serial: str
    not_after: datetime | None
    days_left: float | None
    run_id: str
    problems: str = ""


@dataclass
class Renewal:
    """A certificate renewal."""

    name: str
    when: datetime | None
    from_not_after: str
    to_not_after: str


@dataclass
class Latency:
    """Smoke check response times of a site over the period (only answered requests have one)."""

    #: answered requests; 0 when every request was refused or timed out (the times are then None)
    samples: int
    median_ms: float | None
    p95_ms: float | None
    slowest_url: str
    slowest_ms: float | None
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
class Verdict:
    """A plain-language verdict: one line a shop owner reads first, and how good it is."""

    level: str  # "ok" | "warn" | "bad"
    text: str


@dataclass
class HealthIncident:
    """An incident of the watching checks (the ``incidents`` series): a check down for a while."""

    env: str
    check: str
    opened: datetime | None
    closed: datetime | None
    duration_s: float | None
    failures: int
    reason: str

    @property
    def open(self) -> bool:
        """Still open at the end of the period."""
        return self.closed is None


@dataclass
class FindingSummary:
    """The latest ``findings`` point of one security check on one environment."""

    env: str
    check: str
    when: datetime | None
    count: int
    items: list[dict[str, str]]
    run_id: str

    @property
    def worst(self) -> str:
        """The worst severity among the listed items ("" when clean)."""
        order = ("critical", "high", "medium", "low")
        found = {str(i.get("severity", "")) for i in self.items}
        return next((s for s in order if s in found), "low" if self.count else "")


@dataclass
class DiskTrend:
    """The highest ``used_pct`` per day of one filesystem (from the ``host`` series)."""

    mount: str
    days: list[tuple[date, float]]

    @property
    def first(self) -> float:
        """The first day's maximum."""
        return self.days[0][1]

    @property
    def last(self) -> float:
        """The last day's maximum."""
        return self.days[-1][1]

    @property
    def peak(self) -> float:
        """The highest value of the period."""
        return max(v for _, v in self.days)


@dataclass
class EnvHealth:
    """What the scheduled health runs of one environment say about the period."""

    env: str
    runs: int = 0
    failed_runs: int = 0
    #: seconds the shop answered, did not, and was not measured (inside the period, up to its reference time)
    up_s: float = 0.0
    down_s: float = 0.0
    unmeasured_s: float = 0.0
    #: response times over the period from the ``http`` series (None: no answered request)
    p50_ms: float | None = None
    p95_ms: float | None = None
    http_points: list[LatencyPoint] = field(default_factory=list)
    chart_svg: str = ""
    #: ``http`` points of the period, and those in which no request got an answer
    http_runs: int = 0
    unanswered_runs: int = 0
    requests: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    top_failing: list[tuple[str, int]] = field(default_factory=list)
    php_fatals: int = 0
    disks: list[DiskTrend] = field(default_factory=list)
    findings: list[FindingSummary] = field(default_factory=list)
    incidents: list[HealthIncident] = field(default_factory=list)

    @property
    def measured_s(self) -> float:
        """Seconds covered by a health run."""
        return self.up_s + self.down_s

    @property
    def uptime_pct(self) -> float | None:
        """Share of the measured time the shop was up, in percent (None: nothing measured)."""
        return 100.0 * self.up_s / self.measured_s if self.measured_s > 0 else None

    @property
    def coverage_pct(self) -> float | None:
        """Share of the period a health run covered, in percent."""
        total = self.measured_s + self.unmeasured_s
        return 100.0 * self.measured_s / total if total > 0 else None

    @property
    def rate_4xx(self) -> float | None:
        """4xx answers per request over the period (None without requests)."""
        return self.status_4xx / self.requests if self.requests else None

    @property
    def rate_5xx(self) -> float | None:
        """5xx answers per request over the period (None without requests)."""
        return self.status_5xx / self.requests if self.requests else None


@dataclass
class Branding:
    """White-label: the agency's name and logo (a ``data:`` URI) shown on the report."""

    agency: str = ""
    logo_uri: str = ""


@dataclass
class Takeover:
    """A lock of a dead run taken over: what its unfinished stage left, undone or not."""

    env: str
    dead_run: str
    when: datetime | None
    rolled_back: list[str]
    maintenance_off: bool
    incomplete: list[str]
    run_id: str


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
    #: every certificate check of the period recorded in the state index, oldest first
    cert_history: list[CertCheck] = field(default_factory=list)
    latency: Latency | None = None
    incidents: list[Incident] = field(default_factory=list)
    #: locks of dead runs taken over in the period, with what was reconciled
    takeovers: list[Takeover] = field(default_factory=list)
    #: whether the latest smoke check (``http.check``) of the period passed (None: no check ran)
    checked: bool | None = None
    #: what the scheduled health runs say, per environment (from the state index's series)
    health: list[EnvHealth] = field(default_factory=list)
    #: screenshots that differed from before an update (visual.check)
    visual: list[VisualDiff] = field(default_factory=list)
    attention: list[Attention] = field(default_factory=list)
    verdict: Verdict = field(default_factory=lambda: Verdict("ok", ""))
    #: package versions held back by isolation (``shop-cart 1.2.0 (the cart answered HTTP 500)``)
    held: list[str] = field(default_factory=list)


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
    verdict: Verdict = field(default_factory=lambda: Verdict("ok", ""))
    #: seconds one health run's point covers at most (the schedule interval)
    health_interval_s: float = 900.0

    @property
    def attention_count(self) -> int:
        """Number of attention items over all sites."""
        return sum(len(s.attention) for s in self.sites)
