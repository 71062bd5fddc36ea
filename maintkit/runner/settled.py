"""What the index remembers of a stage: did it finish here, with these very steps, last time?

A stage that last finished without a failure on an environment, with the same rendered steps
(:func:`fingerprint`: the environment's host, user and path, every step's id, action, ``when:``
and parameters), has most likely nothing to change now: idempotent steps left the host as
wanted. A stage that never did (new steps, new parameters, a new environment, or the last run
of the playbook there failed) most likely has. The runner uses that guess for its lock only
(:meth:`~maintkit.runner.stage.StageLock.early`): a stage expected to change takes the lock in
its first round trip instead of reading first and locking before its first change. The steps'
checks and changes are the same either way; a wrong guess costs one round trip (the release).

The fingerprints of the stages that finished are written with the run's record in the index
(``settled`` in ``runs.jsonl``, :func:`maintkit.state.index.record_runs`).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from maintkit.audit.redact import Redactor
from maintkit.state.index import settled_stages

if TYPE_CHECKING:
    from maintkit.runner.plan import PlannedStage
    from maintkit.runner.state import RunState

#: why the lock of a stage that never settled with these steps is taken in its first round trip
NEVER_SETTLED = "this stage has not finished here with these steps before"


def fingerprint(planned: PlannedStage, redactor: Redactor | None = None) -> str | None:
    """A digest of what the stage will do on its environment; None when it has no step that may
    change anything, or a parameter cannot be written as JSON (no guess then). What is hashed
    is masked first by ``redactor`` (the run's; by default one that knows the process's
    secrets), as every record the run keeps: the index never holds a digest of a secret, and a
    changed secret alone is not a new stage."""
    if all(ps.skip is not None or ps.action.changes_nothing() for ps in planned.steps):
        return None
    env = planned.env
    try:
        steps = [
            [ps.step.id, ps.action.name, ps.step.when, ps.skip is not None, ps.action.params.model_dump(mode="json")]
            for ps in planned.steps
        ]
        what = (redactor or Redactor()).mask([env.name, env.host, env.user, env.port, env.path, steps])
        text = json.dumps(what, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def never_settled(state: RunState, site: str, planned: PlannedStage, digest: str | None) -> str | None:
    """:data:`NEVER_SETTLED` when the last run of this playbook on the stage's environment did
    not settle the stage with fingerprint ``digest``; None when it did, or there is no guess."""
    if digest is None:
        return None
    try:
        seen = settled_stages(state.history_dir, site, planned.env.name, state.playbook.name)
    except (OSError, ValueError):  # an unreadable index, a name it cannot hold: no guess
        return None
    return None if digest in seen else NEVER_SETTLED


__all__ = ["NEVER_SETTLED", "fingerprint", "never_settled"]
