"""Run a stage, and isolate its bad updates when it rolled back after a ``cms.update`` step.

The search itself (:mod:`maintkit.runner.isolation`) and the cms family it needs are imported
only when a stage with a ``cms.update`` step rolled back, so a run that updates nothing does
not load them.
"""

from __future__ import annotations

from maintkit.inventory import Site
from maintkit.results import SiteResult, SiteStatus
from maintkit.runner.locks import Held
from maintkit.runner.plan import PlannedStage
from maintkit.runner.stage import StageOutcome, run_stage
from maintkit.runner.state import RunState

#: the action whose updates are isolated
UPDATE_ACTION = "cms.update"


def run_stage_isolated(
    state: RunState, site: Site, planned: PlannedStage, result: SiteResult, held: Held
) -> StageOutcome:
    """Run one stage; when it failed after several updates, isolate the bad ones (see :mod:`.isolation`)."""
    mark, error_before = len(result.steps), result.error
    outcome = run_stage(state, site, planned, result, held)
    if outcome.steps is not SiteStatus.ROLLED_BACK or state.check:
        return outcome
    if not any(s.action == UPDATE_ACTION for s in result.steps[mark:]):
        return outcome
    from maintkit.runner.isolation import isolate

    return isolate(state, site, planned, result, held, mark, error_before, outcome)


__all__ = ["UPDATE_ACTION", "run_stage_isolated"]
