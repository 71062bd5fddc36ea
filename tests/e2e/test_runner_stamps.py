"""An ActionError raised without naming its action, site and environment gets them from the runner.

Actions raise ``CheckFailed("...")`` and the like without ``action=``: the stage stamps the
action, site and environment on every ActionError it catches from a step's phases (check,
apply, verify, rollback, finalize), once, and never overwrites what the action named itself.
The raised objects are kept by the test action, so the test sees exactly what was stamped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from maintkit.action import Action, Context, Params
from maintkit.errors import ActionError, ApplyFailed, CheckFailed, NotReversible, VerifyFailed
from maintkit.registry import Registry
from maintkit.results import Change, Check, RunResult, SiteStatus, StepStatus
from tests import runs

WHERE = ("test.raising", "shop", "production")


class RaisingParams(Params):
    #: the phase that raises: check, apply, verify, rollback, not-reversible, finalize, named
    phase: str


class Raising(Action[RaisingParams]):
    """Raises an ActionError without ``action=`` in one phase, and keeps what it raised."""

    name: ClassVar[str] = "test.raising"
    Params: ClassVar[type[RaisingParams]] = RaisingParams
    reversible: ClassVar[bool] = True
    raised: ClassVar[list[ActionError]] = []

    def _raise(self, error: ActionError) -> None:
        Raising.raised.append(error)
        raise error

    def check(self, ctx: Context) -> Check:
        if self.params.phase == "check":
            self._raise(CheckFailed("cannot read the state"))
        if self.params.phase == "named":
            self._raise(CheckFailed("named its own action", action="custom.name"))
        return Check.change("would change")

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        if self.params.phase == "apply":
            self._raise(ApplyFailed("the write failed"))
        return [Change("target", "changed")]

    def verify(self, ctx: Context) -> None:
        if self.params.phase in ("verify", "rollback", "not-reversible"):
            self._raise(VerifyFailed("not what was promised"))

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        if self.params.phase == "rollback":
            self._raise(ApplyFailed("the undo failed"))
        if self.params.phase == "not-reversible":
            self._raise(NotReversible("cannot be undone"))

    def finalize(self, ctx: Context, changes: list[Change], ok: bool) -> None:
        if self.params.phase == "finalize":
            self._raise(ApplyFailed("the cleanup failed"))


def run(tmp_path: Path, phase: str) -> RunResult:
    """One step of ``test.raising`` raising in ``phase``, on site ``shop`` (production in ``tmp_path/site``)."""
    Raising.raised.clear()
    site = tmp_path / "site"
    site.mkdir()
    inv = runs.write_inventory(tmp_path, runs.one_site(runs.local_env(site)))
    registry = Registry()
    registry.register(Raising)
    text = f"""\
name: stamps
stages:
  - env: production
    steps:
      - {{id: raise, action: test.raising, with: {{phase: {phase}}}}}
"""
    return runs.run(text, inv, tmp_path / "state", registry=registry)


def stamps() -> list[tuple[str, str, str]]:
    return [(e.action, e.site, e.env) for e in Raising.raised]


def events(result: RunResult, name: str) -> list[dict[str, Any]]:
    """The audit events called ``name`` of the run that gave ``result``."""
    return [e for e in runs.events(result.run_dir or "") if e["event"] == name]


def test_check_error_is_stamped_and_kept_on_the_step(tmp_path: Path) -> None:
    res = run(tmp_path, "check")
    step = res.sites[0].steps[0]
    assert (res.exit_code, step.status, step.error) == (1, StepStatus.FAILED, "check: cannot read the state")
    assert stamps() == [WHERE]
    assert step.exception is Raising.raised[0]
    failed = events(res, "step.failed")
    assert [(e["phase"], e["error"]) for e in failed] == [("check", "check: cannot read the state")]


def test_apply_error_is_stamped(tmp_path: Path) -> None:
    res = run(tmp_path, "apply")
    step = res.sites[0].steps[0]
    assert (step.status, step.error) == (StepStatus.FAILED, "apply: the write failed")
    assert stamps() == [WHERE]
    assert step.exception is Raising.raised[0]


def test_verify_error_is_stamped(tmp_path: Path) -> None:
    res = run(tmp_path, "verify")
    assert res.sites[0].status is SiteStatus.ROLLED_BACK
    assert stamps() == [WHERE]
    assert res.sites[0].steps[0].exception is Raising.raised[0]


def test_rollback_error_is_stamped(tmp_path: Path) -> None:
    res = run(tmp_path, "rollback")
    site = res.sites[0]
    assert (site.status, site.steps[0].error) == (SiteStatus.FAILED, "rollback: the undo failed")
    assert [type(e) for e in Raising.raised] == [VerifyFailed, ApplyFailed]
    assert stamps() == [WHERE, WHERE]
    assert [e["error"] for e in events(res, "step.rollback_failed")] == ["the undo failed"]


def test_not_reversible_error_is_stamped(tmp_path: Path) -> None:
    res = run(tmp_path, "not-reversible")
    site = res.sites[0]
    assert (site.status, site.steps[0].reason) == (SiteStatus.FAILED, "not reversible: cannot be undone")
    assert [type(e) for e in Raising.raised] == [VerifyFailed, NotReversible]
    assert stamps() == [WHERE, WHERE]


def test_finalize_error_is_stamped(tmp_path: Path) -> None:
    res = run(tmp_path, "finalize")
    site = res.sites[0]
    assert (res.exit_code, site.status) == (1, SiteStatus.FAILED)
    assert site.error == "finalize of step raise failed: the cleanup failed"
    assert stamps() == [WHERE]
    assert [e["error"] for e in events(res, "step.finalize_failed")] == ["the cleanup failed"]


def test_an_action_named_by_the_error_is_kept(tmp_path: Path) -> None:
    res = run(tmp_path, "named")
    assert res.sites[0].steps[0].status is StepStatus.FAILED
    assert stamps() == [("custom.name", "shop", "production")]
