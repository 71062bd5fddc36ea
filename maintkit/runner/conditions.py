"""``when:`` conditions: what they see of earlier steps, and their evaluation (honest in plan mode)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from maintkit.action import Context
from maintkit.results import SiteResult, StepStatus
from maintkit.runner.plan import PlannedStage, PlannedStep
from maintkit.templating import TemplateError, evaluate


class _Fact:
    """What ``when:`` sees of one earlier step: ``status`` and ``changed``."""

    def __init__(self, status: str, changed: bool) -> None:
        self.status = status
        self.changed = changed


class _Facts:
    """Attribute and item access for ``when:`` (``steps.update.changed``, ``steps['command#2']``).

    A plain dict would resolve ``steps.update`` to ``dict.update``."""

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = dict(items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._items[name]
        except KeyError:
            raise AttributeError(f"no step {name!r} has run yet") from None

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items


class _Verdict:
    """What ``will_change('id')`` says of a later step: true when it would change (or cannot tell).

    ``.schema`` is true when it would change and its check does not say ``schema_changed: false``
    (cms.update says so from the promoted version lock): a maintenance window only for updates
    that change the database. ``on_unknown`` is called when the answer is a guess.
    """

    def __init__(self, needed: bool | None, data: Mapping[str, Any], on_unknown: Callable[[], None]) -> None:
        self._needed = needed
        self._schema = data.get("schema_changed")
        self._on_unknown = on_unknown

    def __bool__(self) -> bool:
        return self._needed is not False

    @property
    def schema(self) -> bool:
        """Would the step change the database schema? Unknown counts as yes."""
        if self._needed is False:
            return False
        if not isinstance(self._schema, bool):
            self._on_unknown()
            return True
        return self._schema


def _stage_facts(result: SiteResult) -> dict[str, dict[str, _Fact]]:
    """The facts of every step run so far, by environment and step id."""
    stages: dict[str, dict[str, _Fact]] = {}
    for r in result.steps:
        stages.setdefault(r.env, {})[r.step] = _Fact(
            status=r.status.value, changed=r.status in (StepStatus.CHANGED, StepStatus.WOULD_CHANGE)
        )
    return stages


def evaluate_when(
    ps: PlannedStep, planned: PlannedStage, result: SiteResult, ctx: Context, *, check: bool
) -> bool | None:
    """Whether step ``ps`` runs: True, False, or None when plan mode cannot tell yet.

    In plan mode a condition that reads a step which would change (or is unknown), or whose
    ``will_change()`` cannot be predicted, is unknown rather than a guess.
    """
    if not ps.step.when:
        return True
    stages = _stage_facts(result)
    here = stages.get(planned.env.name, {})
    if check and any(
        r.status in (StepStatus.WOULD_CHANGE, StepStatus.UNKNOWN) and r.step in ps.step.when for r in result.steps
    ):
        return None
    unknown: list[str] = []

    def will_change(step_id: str) -> _Verdict:
        """Read-only check of a later step of this stage: would it change anything (``.schema``: the schema)?"""
        later = next((p for p in planned.steps if p.step.id == step_id), None)
        if later is None:
            raise TemplateError(f"will_change: no step {step_id!r} in stage {planned.env.name!r}")
        verdict = later.action.check(replace(ctx, step_id=step_id))
        if verdict.needed is None:
            unknown.append(step_id)
        return _Verdict(verdict.needed, verdict.data, lambda: unknown.append(step_id))

    context = {
        **planned.render_context,
        "steps": _Facts(here),
        "stages": _Facts({env: _Facts(steps) for env, steps in stages.items()}),
        "will_change": will_change,
    }
    value = bool(evaluate(ps.step.when, context))
    return None if (check and unknown) else value


__all__ = ["evaluate_when"]
