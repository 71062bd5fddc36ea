"""The one place that decides a site's status, and from the sites, the run's status.

A stage reports what its steps and rollback left (``ok``, ``failed``, ``rolled-back``,
``interrupted``); the site adds what happened around the stages (the lock was held, a stage
could not start, the run was stopped before a stage, a cleanup failed, a step failed under
``on_failure: continue``). :class:`SiteVerdict` turns those facts into one status.
"""

from __future__ import annotations

from dataclasses import dataclass

from maintkit.results import RunStatus, SiteResult, SiteStatus


@dataclass
class SiteVerdict:
    """The facts a site's (or a stage's) status is decided from."""

    #: what the last stage's steps and rollback left
    stage: SiteStatus = SiteStatus.OK
    #: the run was stopped before a stage started
    interrupted: bool = False
    #: another run holds a lock of the site
    locked: bool = False
    #: a stage could not start (host unreachable, the lock could not be taken, an internal error)
    start_failed: bool = False
    #: a cleanup failed: a finalize (maintenance off) or a lock release
    cleanup_failed: bool = False
    #: a step failed and its policy let the stage go on
    step_failed: bool = False

    @property
    def status(self) -> SiteStatus:
        """The status these facts give: a failed cleanup or step turns ok (or rolled-back) into failed."""
        if self.locked:
            return SiteStatus.LOCKED
        if self.start_failed:
            return SiteStatus.FAILED
        if self.interrupted:
            return SiteStatus.INTERRUPTED
        if self.cleanup_failed and self.stage in (SiteStatus.OK, SiteStatus.ROLLED_BACK):
            return SiteStatus.FAILED
        if self.step_failed and self.stage is SiteStatus.OK:
            return SiteStatus.FAILED
        return self.stage


def add_error(current: str | None, error: str) -> str:
    """The site error: the first cause, then what else went wrong."""
    return f"{current}; also: {error}" if current else error


def run_status(results: list[SiteResult], *, stopped: bool, halted: bool) -> RunStatus:
    """The run's status from its sites: interrupted, failed, locked or ok (in that order)."""
    statuses = {r.status for r in results}
    if stopped or SiteStatus.INTERRUPTED in statuses:
        return RunStatus.INTERRUPTED
    if statuses & {SiteStatus.FAILED, SiteStatus.ROLLED_BACK}:
        return RunStatus.FAILED
    if SiteStatus.LOCKED in statuses:
        return RunStatus.LOCKED
    if SiteStatus.SKIPPED in statuses and halted:
        return RunStatus.FAILED
    return RunStatus.OK


def counts_as_failed(status: SiteStatus) -> bool:
    """Whether a site with ``status`` counts towards ``max_fail_percentage``."""
    return status in (SiteStatus.FAILED, SiteStatus.ROLLED_BACK)


__all__ = ["SiteVerdict", "add_error", "counts_as_failed", "run_status"]
