"""Result objects returned by transports, actions and the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from typing import Any


@dataclass(frozen=True)
class CommandResult:
    """What one command did on one host."""

    host: str
    command: str
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0.0
    timed_out: bool = False
    stdout_bytes: bytes | None = None

    @property
    def ok(self) -> bool:
        """True when the command exited 0 and did not time out."""
        return self.exit_code == 0 and not self.timed_out

    @property
    def failed(self) -> bool:
        """The opposite of :attr:`ok`."""
        return not self.ok

    @property
    def why(self) -> str:
        """How the command ended, for a message: ``exit N``, or ``timed out after N s`` (its
        duration; ``timed out`` when none was measured)."""
        if not self.timed_out:
            return f"exit {self.exit_code}"
        return f"timed out after {self.duration_ms / 1000:.1f} s" if self.duration_ms > 0 else "timed out"


@dataclass
class Change:
    """One thing an action changed, with what is needed to undo it.

    ``summary`` and ``before``/``after`` go into the audit log; ``undo`` stays in
    memory (it may hold file contents) and is only handed back to ``rollback``.
    """

    target: str
    summary: str
    before: Any = None
    after: Any = None
    undo: Any = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """The part of the change that is written to the audit log."""
        return {"target": self.target, "summary": self.summary, "before": self.before, "after": self.after}


@dataclass
class Check:
    """The outcome of an action's read-only check.

    ``needed`` is True (would change), False (nothing to do) or None (unknown,
    for example because it depends on an earlier step's change: ``depends_on``).
    ``snapshot`` is private data handed from check to apply.
    """

    needed: bool | None
    reason: str = ""
    diff: str | None = None
    snapshot: Any = field(default=None, repr=False)
    depends_on: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, reason: str = "already in the desired state", **data: Any) -> Check:
        """Nothing to do."""
        return cls(False, reason, data=data)

    @classmethod
    def change(cls, reason: str, diff: str | None = None, snapshot: Any = None, **data: Any) -> Check:
        """Something would change."""
        return cls(True, reason, diff=diff, snapshot=snapshot, data=data)

    @classmethod
    def unknown(cls, reason: str, depends_on: str | None = None) -> Check:
        """The outcome cannot be predicted without running earlier steps."""
        return cls(None, reason, depends_on=depends_on)


class StepStatus(str, Enum):
    """Final status of one step."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    WOULD_CHANGE = "would-change"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"
    NOT_RUN = "not-run"


class SiteStatus(str, Enum):
    """Final status of one site."""

    OK = "ok"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    LOCKED = "locked"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


class RunStatus(StrEnum):
    """Final status of a whole run (``status`` in summary.json and the ``run.finished`` event)."""

    OK = "ok"
    FAILED = "failed"
    LOCKED = "locked"
    INTERRUPTED = "interrupted"


class ExitCode(IntEnum):
    """The exit statuses of the ``maint`` command, defined once."""

    OK = 0
    #: a site failed (after rollback), including a failed cleanup (finalize, lock release)
    FAILED = 1
    #: invalid input (playbook, inventory, flags): nothing ran
    INPUT = 2
    #: a site is locked by another run
    LOCKED = 3
    #: the run was interrupted (Ctrl-C, SIGTERM); the same status as LOCKED
    INTERRUPTED = 3
    #: ``maint audit verify``: the log is intact so far but has no summary
    AUDIT_INCOMPLETE = 4
    #: ``maint run``/``plan``: some hosts could not be reached, and nothing else failed
    #: (the same number as AUDIT_INCOMPLETE, which only ``maint audit verify`` returns)
    UNREACHABLE = 4
    #: ``maint plan --detailed-exitcode``: the plan succeeded and some steps would change
    CHANGES_PENDING = 2


@dataclass
class StepResult:
    """What happened to one step on one site environment."""

    site: str
    env: str
    step: str
    action: str
    status: StepStatus
    reason: str = ""
    changes: list[Change] = field(default_factory=list)
    diff: str | None = None
    depends_on: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    #: the error that failed the step (in memory only; ``error`` is its redacted text)
    exception: Exception | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        """True when the step changed something (and it was not undone)."""
        return self.status is StepStatus.CHANGED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no undo data)."""
        return {
            "site": self.site,
            "env": self.env,
            "step": self.step,
            "action": self.action,
            "status": self.status.value,
            "reason": self.reason,
            "changes": [c.public() for c in self.changes],
            "diff": self.diff,
            "depends_on": self.depends_on,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 1),
            "data": self.data,
        }


@dataclass
class SiteResult:
    """What happened to one site."""

    site: str
    status: SiteStatus
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    duration_ms: float = 0.0
    #: a stage could not start because its host could not be reached (and nothing else failed there)
    unreachable: bool = False

    @property
    def changed(self) -> int:
        """Number of steps that changed something."""
        return sum(1 for s in self.steps if s.changed)

    @property
    def failed(self) -> bool:
        """True when the site did not end OK."""
        return self.status is not SiteStatus.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "site": self.site,
            "status": self.status.value,
            "changed": self.changed,
            "error": self.error,
            "unreachable": self.unreachable,
            "duration_ms": round(self.duration_ms, 1),
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass
class RunResult:
    """What a whole run did."""

    run_id: str
    playbook: str
    check: bool
    status: RunStatus
    sites: list[SiteResult] = field(default_factory=list)
    run_dir: str | None = None
    duration_ms: float = 0.0
    #: what the run could not know and why (a plan's promotion without a version lock)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)  # also accepts the plain string

    @property
    def changed(self) -> int:
        """Total number of changed steps."""
        return sum(s.changed for s in self.sites)

    @property
    def ok(self) -> bool:
        """True when every site ended OK."""
        return self.status is RunStatus.OK

    def count(self, status: StepStatus) -> int:
        """How many steps (of every site) ended with ``status``."""
        return sum(1 for site in self.sites for s in site.steps if s.status is status)

    @property
    def would_change(self) -> int:
        """Steps of a plan that would change something (``unknown`` ones are counted apart)."""
        return self.count(StepStatus.WOULD_CHANGE)

    @property
    def unknown(self) -> int:
        """Steps of a plan whose outcome cannot be predicted (they depend on an earlier change)."""
        return self.count(StepStatus.UNKNOWN)

    @property
    def unreachable(self) -> list[str]:
        """The sites whose host could not be reached."""
        return [s.site for s in self.sites if s.unreachable]

    @property
    def exit_code(self) -> ExitCode:
        """The CLI exit status for this result (docs/cli.md, "Exit status"), by precedence:

        3 interrupted; 1 a site failed for another reason than an unreachable host (or the
        run was halted); 4 some hosts could not be reached and nothing else failed; 3 a lock
        was held; 0 ok.
        """
        if self.status is RunStatus.OK:
            return ExitCode.OK
        if self.status is RunStatus.INTERRUPTED:
            return ExitCode.INTERRUPTED
        if self.status is RunStatus.LOCKED:
            return ExitCode.LOCKED
        failed = [s for s in self.sites if s.status in (SiteStatus.FAILED, SiteStatus.ROLLED_BACK)]
        halted = any(s.status is SiteStatus.SKIPPED for s in self.sites)
        if failed and all(s.unreachable for s in failed) and not halted:
            return ExitCode.UNREACHABLE
        return ExitCode.FAILED

    def plan_exit_code(self) -> ExitCode:
        """``maint plan --detailed-exitcode``: 0 nothing to do, 2 changes pending, 1 any error.

        ``unknown`` steps count as pending: a plan is "nothing to do" only when every step is
        known to be unchanged (or skipped).
        """
        if self.status is not RunStatus.OK:
            return ExitCode.FAILED
        return ExitCode.CHANGES_PENDING if self.would_change or self.unknown else ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "playbook": self.playbook,
            "check": self.check,
            "status": self.status.value,
            "changed": self.changed,
            "would_change": self.would_change,
            "unknown": self.unknown,
            "unreachable": self.unreachable,
            "notes": self.notes,
            "run_dir": self.run_dir,
            "duration_ms": round(self.duration_ms, 1),
            "sites": [s.to_dict() for s in self.sites],
        }
