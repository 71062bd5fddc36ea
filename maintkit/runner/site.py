"""One site's pipeline: its stages in order, then every lock released, whatever happened.

The site's status is decided once, after cleanup, by :class:`~maintkit.runner.outcome.SiteVerdict`;
the site error names the step (or stage) that caused the failure, then what else went wrong.
"""

from __future__ import annotations

import time

from maintkit.action import monotonic_ms
from maintkit.errors import HostUnreachable, LockHeld, MaintkitError, TransportError
from maintkit.inventory import Site
from maintkit.results import SiteResult, SiteStatus, StepStatus
from maintkit.runner.isolate import run_stage_isolated
from maintkit.runner.locks import Held, release_lock
from maintkit.runner.outcome import SiteVerdict, add_error
from maintkit.runner.plan import PlannedStage
from maintkit.runner.state import RunState


def run_site(state: RunState, site: Site, stages: list[PlannedStage]) -> SiteResult:
    """Run every stage of one site; a failed stage stops the site before the next one."""
    return _SiteRun(state, site, stages).run()


class _SiteRun:
    """The stages of one site, the locks it holds and the facts its status is decided from."""

    def __init__(self, state: RunState, site: Site, stages: list[PlannedStage]) -> None:
        self.state, self.site, self.stages = state, site, stages
        self.result = SiteResult(site.name, SiteStatus.OK)
        self.verdict = SiteVerdict()
        self.held: Held = []
        self.current = ""  # the environment of the stage running now
        self.cause: tuple[str, str] | None = None  # (env, why) of a stage that could not start

    def run(self) -> SiteResult:
        started = time.monotonic()
        result, verdict = self.result, self.verdict
        self.state.emit("site.started", site=self.site.name)
        try:
            self._stages()
        except LockHeld as exc:
            verdict.locked = True
            result.error = str(exc)
        except MaintkitError as exc:
            verdict.start_failed = True
            result.error = add_error(result.error, str(exc))
            why = "the host could not be reached" if isinstance(exc, TransportError) else "the stage could not start"
            self.cause = (self.current, f"{why}: {exc}")
            result.unreachable = isinstance(exc, HostUnreachable)
        except Exception as exc:  # a bug must not leave locks behind
            verdict.start_failed = True
            result.error = add_error(result.error, f"internal error: {type(exc).__name__}: {exc}")
            self.cause = (self.current, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            for env, transport in reversed(self.held):
                self.state.interrupts.activity.doing(self.site.name, env.name, "releasing the lock")
                self._cleanup(release_lock(self.state, self.site, env, transport))
                self.state.interrupts.activity.doing(self.site.name, env.name, None)
        verdict.step_failed = any(s.status is StepStatus.FAILED for s in result.steps)
        result.status = verdict.status
        result.unreachable = result.unreachable and not verdict.cleanup_failed and result.status is SiteStatus.FAILED
        self._record_not_run()
        if result.error is None:
            failed = next((s for s in result.steps if s.status is StepStatus.FAILED), None)
            result.error = f"step {failed.step} failed: {failed.error}" if failed else None
        result.duration_ms = monotonic_ms(started)
        self.state.emit(
            "site.finished",
            site=self.site.name,
            status=result.status.value,
            changes=result.changed,
            error=result.error,
            duration_ms=round(result.duration_ms, 1),
        )
        return result

    def _stages(self) -> None:
        for planned in self.stages:
            if self.state.stop.is_set():
                self.verdict.interrupted = True
                return
            self.current = planned.env.name
            outcome = run_stage_isolated(self.state, self.site, planned, self.result, self.held)
            for error in outcome.cleanup_errors:
                self._cleanup(error)
            self.verdict.stage = outcome.steps
            if outcome.status is not SiteStatus.OK:
                return

    def _cleanup(self, error: str | None) -> None:
        """A cleanup that failed (finalize, lock release) fails the site, with the reason."""
        if error is not None:
            self.verdict.cleanup_failed = True
            self.result.error = add_error(self.result.error, error)

    def _record_not_run(self) -> None:
        """Every planned step appears in the audit log: the ones never reached say why."""
        result, cause = self.result, self.cause
        reached = {(s.env, s.step) for s in result.steps}
        why = {
            SiteStatus.INTERRUPTED: "the run was interrupted",
            SiteStatus.LOCKED: "the site is locked by another run",
        }.get(result.status, "an earlier step failed")
        if cause is not None and result.status is not SiteStatus.INTERRUPTED:
            why = f"stage {cause[0]} did not run: {cause[1]}"
        for planned in self.stages:
            for ps in planned.steps:
                if (planned.env.name, ps.step.id) not in reached:
                    reason = cause[1] if cause is not None and planned.env.name == cause[0] else why
                    self.state.emit(
                        "step.not_run",
                        site=self.site.name,
                        env=planned.env.name,
                        step=ps.step.id,
                        action=ps.action.name,
                        status="not-run",
                        reason=reason,
                    )


__all__ = ["run_site"]
