"""``deploy.rollback``: switch ``current`` back to the previous good release and mark the current one bad."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maintkit.action import Action, Context
from maintkit.actions.deploy.layout import (
    Paths,
    append_log,
    carrying,
    check_layout,
    entry,
    fresh_state,
    log_after_switch,
    run_after_switch,
    switch_current,
)
from maintkit.actions.deploy.params import DeployRollbackParams
from maintkit.errors import ApplyFailed, CheckFailed, RollbackFailed, VerifyFailed
from maintkit.probes import Probe
from maintkit.probes.deploy import LOG, MARKER, DeployState, ReleaseLayout
from maintkit.results import Change, Check


@dataclass
class _Switched:
    from_release: str
    from_commit: str | None
    to_release: str
    to_commit: str | None


def _match_release(state: DeployState, to: str) -> str:
    if to in state.releases:
        return to
    found = sorted(
        {n for n in state.releases if n.startswith(to)}
        | {n for n, r in state.releases.items() if r.commit and len(to) >= 7 and r.commit.startswith(to)}
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckFailed(f"no release matches {to!r} (known: {', '.join(sorted(state.releases)) or 'none'})")
    raise CheckFailed(f"{to!r} matches several releases: {', '.join(found)}; give the full release name")


class DeployRollback(Action[DeployRollbackParams]):
    """Switch ``current`` back to the previous good release (or ``to``) and mark the old one bad.

    Pure filesystem over SSH: it never asks the application anything, so it works when the
    application is fatally broken. ``after_switch`` runs afterwards (e.g. reload php-fpm).
    Without ``to`` every run steps back one release; with ``to`` it is idempotent.
    """

    name = "deploy.rollback"
    Params = DeployRollbackParams
    summary = "Switch current back to the previous good release and mark the current one bad (reversible)."
    rollback_kind = "undo"

    def __init__(self, params: DeployRollbackParams, step_id: str | None = None) -> None:
        super().__init__(params, step_id)
        self._done: _Switched | None = None

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        """The release layout of the environment."""
        return [ReleaseLayout(ctx.path)]

    def _target(self, state: DeployState) -> str:
        to = self.params.to
        if to is None:
            target = state.previous_good()
            if target is None:
                raise CheckFailed("no earlier good release to roll back to")
            return target
        name = _match_release(state, to)
        rel = state.releases[name]
        if not rel.complete:
            raise CheckFailed(f"release {name} is half-built (no {MARKER}); cannot switch to it")
        if state.status_of(name) == "bad" and name != state.current_release:
            raise CheckFailed(f"release {name} is marked bad in {LOG}; deploy its commit again instead")
        return name

    def check(self, ctx: Context) -> Check:
        """Which release current would switch to; unchanged when it already points there."""
        state = ctx.probe(ReleaseLayout(ctx.path))
        check_layout(state, ctx.path)
        cur = state.current_release
        if cur is None:
            raise CheckFailed(f"{ctx.path}/current does not point at a release ({state.current or 'missing'})")
        target = self._target(state)
        data = {"current": cur, "release": target, "commit": state.releases[target].commit}
        if target == cur:
            return Check.ok(f"current is already {target}", **data)
        snap = _Switched(cur, state.current_commit, target, state.releases[target].commit)
        return Check.change(
            f"switch current from {cur} to {target}; mark {cur} bad",
            diff=f"-current -> releases/{cur}\n+current -> releases/{target}\n",
            snapshot=snap,
            **data,
        )

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        """Switch current, log both releases, run after_switch.

        From the switch on, every failure carries the Change of the switch (this action's own
        record, not parsed output), so the runner switches current back.
        """
        snap: _Switched = check.snapshot
        switch_current(ctx, snap.to_release)
        change = Change(
            Paths(ctx.path).current,
            f"rolled back {snap.from_release} -> {snap.to_release}",
            before={"release": snap.from_release, "commit": snap.from_commit},
            after={"release": snap.to_release, "commit": snap.to_commit},
            undo=snap,
        )
        what = f"switched to {snap.to_release}"
        with carrying([change], what):
            ctx.record(release=snap.to_release, commit=snap.to_commit, rolled_back_from=snap.from_release)
            entries = [
                entry(ctx, "bad", snap.from_release, snap.from_commit, reason="rolled back"),
                entry(ctx, "rolled-back", snap.to_release, snap.to_commit, reason=f"from {snap.from_release}"),
            ]
            log_after_switch(ctx, entries, change, what)
            failures = run_after_switch(ctx, self.params.after_switch)
        if failures:
            raise ApplyFailed(
                f"{what}, but after_switch failed: {'; '.join(failures)}",
                details={"switched": True},
                changes=[change],
            )
        self._done = snap
        return [change]

    def verify(self, ctx: Context) -> None:
        """current points at the release it was switched to."""
        snap = self._done
        state = fresh_state(ctx)
        if snap is not None and state.current_release != snap.to_release:
            raise VerifyFailed(f"current points at {state.current_release}, expected {snap.to_release}")

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Switch current forward again to the release it was rolled back from."""
        for change in reversed(changes):
            snap: _Switched = change.undo
            state = fresh_state(ctx)
            if state.current_release not in (snap.to_release, snap.from_release):
                raise RollbackFailed(f"current points at {state.current_release}; not switching it back")
            switch_current(ctx, snap.from_release)
            append_log(ctx, [entry(ctx, "deployed", snap.from_release, snap.from_commit, reason="rollback undone")])
            failures = run_after_switch(ctx, self.params.after_switch)
            if failures:
                raise RollbackFailed(
                    f"switched back to {snap.from_release}, but after_switch failed: {'; '.join(failures)}"
                )


__all__ = ["DeployRollback"]
