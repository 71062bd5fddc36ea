"""Which steps a run executes: ``--steps``, ``--skip-steps`` and ``--start-at``, and promotions it needs.

The selection is decided once per run, from the playbook alone (every site skips the same
steps). A skipped step still appears in the audit log: a ``step.skipped`` event whose reason
names the flag (``--steps``, ``--skip-steps``, ``--start-at STEP``), so a resumed run is
recorded as one.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from maintkit._yaml import printable
from maintkit.errors import ConfigError, Problem
from maintkit.playbook import Stage

#: the action whose version lock a promoting stage installs
PROMOTING_ACTIONS = frozenset({"cms.update", "compat.check"})


@dataclass(frozen=True)
class StepSelection:
    """``--steps`` (only these), ``--skip-steps`` (not these) and ``--start-at`` (resume at this one)."""

    steps: tuple[str, ...] = ()
    skip_steps: tuple[str, ...] = ()
    start_at: str | None = None

    def __bool__(self) -> bool:
        return bool(self.steps or self.skip_steps or self.start_at)

    def public(self) -> dict[str, object]:
        """What the audit log records of the selection (``run.started``)."""
        out: dict[str, object] = {}
        if self.steps:
            out["steps"] = list(self.steps)
        if self.skip_steps:
            out["skip_steps"] = list(self.skip_steps)
        if self.start_at:
            out["start_at"] = self.start_at
        return out


@dataclass
class Skips:
    """Why each step of the run's stages is skipped, by (stage env, step id); absent: it runs."""

    reasons: dict[tuple[str, str], str] = field(default_factory=dict)

    def reason(self, env: str, step_id: str) -> str | None:
        """The reason step ``step_id`` of stage ``env`` is skipped, or None when it runs."""
        return self.reasons.get((env, step_id))


def _unknown(flag: str, wanted: str, known: list[str], where: str) -> Problem:
    close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return Problem(flag, None, "", f"no step {printable(repr(wanted), 80)} in {where}{hint}")


def check_ids(selection: StepSelection, stages: list[Stage]) -> None:
    """Every id the flags name is a step of the run's stages; else ConfigError with did-you-mean."""
    known = list(dict.fromkeys(s.id for stage in stages for s in stage.steps))
    where = "the stages this run executes (" + ", ".join(s.env for s in stages) + ")"
    problems = [
        _unknown(flag, wanted, known, where)
        for flag, ids in (("--steps", selection.steps), ("--skip-steps", selection.skip_steps))
        for wanted in ids
        if wanted not in known
    ]
    if selection.start_at and selection.start_at not in known:
        problems.append(_unknown("--start-at", selection.start_at, known, where))
    if problems:
        raise ConfigError(problems)


def skipped_steps(selection: StepSelection, stages: list[Stage]) -> Skips:
    """The steps the selection skips in ``stages`` (the run's stages, in order).

    ``--start-at STEP``: the first of ``stages`` that has STEP starts at it; every stage
    before that one is skipped whole; later stages run whole. ``--steps`` and
    ``--skip-steps`` apply to every stage.
    """
    check_ids(selection, stages)
    skips = Skips()
    started = selection.start_at is None
    for stage in stages:
        for step in stage.steps:
            if not started and step.id == selection.start_at:
                started = True
            why = None
            if not started:
                why = f"--start-at {selection.start_at}"
            elif step.id in selection.skip_steps:
                why = "--skip-steps"
            elif selection.steps and step.id not in selection.steps:
                why = "--steps (not selected)"
            if why is not None:
                skips.reasons[(stage.env, step.id)] = why
    return skips


def missing_promotions(stages: list[Stage], skips: Skips, promote_from: bool) -> list[tuple[str, str]]:
    """(stage env, source env) of each promoting stage of this run without a version lock to promote.

    A stage with ``promote: SOURCE`` installs what SOURCE's ``cms.update`` validated in this
    run, or the lock of ``--promote-from RUN``. Without ``--promote-from``, SOURCE's stage must
    run in this run with its ``cms.update`` step.
    """
    if promote_from:
        return []
    missing = []
    for stage in stages:
        if not stage.promote or not any(
            s.action in PROMOTING_ACTIONS and skips.reason(stage.env, s.id) is None for s in stage.steps
        ):
            continue
        source = next((s for s in stages if s.env == stage.promote), None)
        validates = source is not None and any(
            s.action == "cms.update" and skips.reason(source.env, s.id) is None for s in source.steps
        )
        if not validates:
            missing.append((stage.env, stage.promote))
    return missing


def promotion_message(env: str, source: str) -> str:
    """What a promoting stage without a lock lacks, and the two ways out."""
    return (
        f"no validated version lock: stage {env} promotes what {source} validated, but {source}'s "
        f"cms.update does not run in this run; run {source} first or pass --promote-from RUN_ID "
        f"(the {source} run; see `maint runs`)"
    )


__all__ = ["Skips", "StepSelection", "check_ids", "missing_promotions", "promotion_message", "skipped_steps"]
