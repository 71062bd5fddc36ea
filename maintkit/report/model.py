"""The report's data: what a report says about each site over a period (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from maintkit.report.chart import LatencyPoint

__all__ = [
    "Attention",
    "Backup",
    "CertCheck",
    "Certificate",
    "Incident",
    "Latency",
    "Renewal",
    "Report",
    "Rollback",
    "SiteReport",
    "Update",
]


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
