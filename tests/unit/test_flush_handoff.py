"""cache.clear's WordPress flush handed off to the step that already flushed (``flushed_by``).

The decision only reads the stage's earlier step results: these are built here, and every case
where the flush must run again (a change after the flushing step, a failed or unknown step,
the stage before, another root, rewrite rules not flushed, another user) is one case.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from maintkit.action import Context
from maintkit.actions.cache.params import PlatformTarget
from maintkit.actions.cache.platform import flushed_by
from maintkit.results import StepResult, StepStatus

ROOT = "/srv/shop"
FLUSHED = {"root": ROOT, "cache": True, "rewrite": True}


def result(step: str, status: StepStatus, env: str = "production", **data: Any) -> StepResult:
    return StepResult("shop", env, step, "cms.update" if step == "update" else "command", status, data=data)


def ctx(*prior: StepResult) -> Context:
    return cast(Context, SimpleNamespace(prior=list(prior), env=SimpleNamespace(name="production")))


BACKUP = result("backup", StepStatus.CHANGED)
UPDATE = result("update", StepStatus.CHANGED, platform_flushed=FLUSHED)


@pytest.mark.parametrize(
    ("prior", "expected"),
    [
        ([BACKUP, UPDATE], "update"),
        ([BACKUP, UPDATE, result("note", StepStatus.UNCHANGED), result("skip", StepStatus.SKIPPED)], "update"),
        ([BACKUP, UPDATE, result("edit", StepStatus.CHANGED)], None),
        ([UPDATE, result("odd", StepStatus.UNKNOWN)], None),
        ([UPDATE, result("broke", StepStatus.FAILED)], None),
        ([result("update", StepStatus.WOULD_CHANGE)], None),  # plan mode: nothing flushed yet
        ([result("update", StepStatus.CHANGED)], None),  # flush_caches off: nothing recorded
        ([result("update", StepStatus.CHANGED, platform_flushed={**FLUSHED, "root": "/srv/other"})], None),
        ([result("update", StepStatus.CHANGED, env="staging", platform_flushed=FLUSHED)], None),
        ([BACKUP], None),
        ([], None),
    ],
    ids=[
        "right-after",
        "unchanged-and-skipped-between",
        "a-change-after",
        "unknown-after",
        "failed-after",
        "plan-mode",
        "not-flushed",
        "another-root",
        "the-stage-before",
        "no-update",
        "first-step",
    ],
)
def test_which_earlier_flush_counts(prior: list[StepResult], expected: str | None) -> None:
    assert flushed_by(ctx(*prior), PlatformTarget(), ROOT + "/") == expected


def test_rewrite_rules_must_have_been_flushed_when_asked_for() -> None:
    partial = result("update", StepStatus.CHANGED, platform_flushed={**FLUSHED, "rewrite": False})
    assert flushed_by(ctx(partial), PlatformTarget(), ROOT) is None
    assert flushed_by(ctx(partial), PlatformTarget(rewrite=False), ROOT) == "update"


def test_a_flush_as_another_user_always_runs() -> None:
    assert flushed_by(ctx(UPDATE), PlatformTarget(run_as="www-data"), ROOT) is None
