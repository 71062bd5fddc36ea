"""``deploy.release``: a git commit into a new release, built, then ``current`` switched atomically."""

from __future__ import annotations

import contextlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from maintkit.action import Action, Context
from maintkit.actions.deploy.build import abort_if_stopping, fetch_code, link_shared, run_build
from maintkit.actions.deploy.git import display_url, local_repo_path, resolve_commit
from maintkit.actions.deploy.host import discard, remove_dirs
from maintkit.actions.deploy.layout import (
    Paths,
    append_log,
    carrying,
    check_layout,
    entry,
    fresh_state,
    log_after_switch,
    now,
    run_after_switch,
    switch_current,
)
from maintkit.actions.deploy.params import DeployReleaseParams
from maintkit.errors import ApplyFailed, MaintkitError, RollbackFailed, VerifyFailed
from maintkit.ids import stamp
from maintkit.probes import Probe
from maintkit.probes.deploy import MARKER, DeployState, ReleaseLayout
from maintkit.results import Change, Check


@dataclass
class _Plan:
    commit: str
    state: DeployState
    deploy: bool
    partials: list[str]


@dataclass
class _Deployed:
    release: str
    commit: str
    previous: str | None  # previous release name
    previous_target: str | None  # raw previous link target (None: there was no current)
    previous_commit: str | None


class DeployRelease(Action[DeployReleaseParams]):
    """Deploy a git commit into ``<path>/releases/<time>-<sha7>``, build it, switch ``current`` atomically.

    The ref is resolved on the controller; the release is built before the switch (a failing
    build removes it and never touches ``current``); after the switch ``after_switch`` runs
    (e.g. reload php-fpm so OPcache drops old files). Unchanged when ``current`` already holds
    the commit. Keeps ``keep`` releases, never deleting current or the rollback target, and
    removes half-built leftovers of interrupted runs. Rollback switches back and marks the
    release bad in ``<path>/.maint/releases.jsonl``.
    """

    name = "deploy.release"
    Params = DeployReleaseParams
    summary = "Deploy a git ref into a new release, build, switch current atomically (reversible)."
    rollback_kind = "undo"

    def __init__(self, params: DeployReleaseParams, step_id: str | None = None) -> None:
        super().__init__(params, step_id)
        self._last: _Deployed | None = None

    @property
    def transfer(self) -> str:
        """The effective transfer mode."""
        p = self.params
        return p.transfer or ("archive" if local_repo_path(p.repo) is not None else "clone")

    def probes(self, ctx: Context) -> list[Probe[Any]]:
        """The release layout of the environment."""
        return [ReleaseLayout(ctx.path)]

    def check(self, ctx: Context) -> Check:
        """Resolve the ref; unchanged when current holds that commit and nothing needs cleaning up."""
        p = self.params
        commit = resolve_commit(ctx, p.repo, p.ref, transfer=self.transfer)
        state = ctx.probe(ReleaseLayout(ctx.path))
        check_layout(state, ctx.path)
        partials = state.partials()
        cur = state.current_release
        data = {"commit": commit, "ref": p.ref, "current": cur}
        if state.current_commit == commit:
            prune = state.prune_plan(p.keep)
            plan = _Plan(commit, state, False, partials)
            if not partials and not prune:
                return Check.ok(f"current is {cur} at {commit[:7]} ({p.ref})", release=cur, **data)
            reason = _cleanup_reason(partials, prune)
            return Check.change(reason, diff=_diff(None, None, partials, prune), snapshot=plan, release=cur, **data)
        was = f"{cur} ({(state.current_commit or '?')[:7]})" if cur else (state.current or "nothing")
        plan = _Plan(commit, state, True, partials)
        reason = f"deploy {commit[:7]} ({p.ref}) over {was}"
        if partials:
            reason += f"; remove {len(partials)} half-built release(s)"
        return Check.change(reason, diff=_diff(was, commit, partials, []), snapshot=plan, **data)

    # ---- apply ------------------------------------------------------------------------------
    def apply(self, ctx: Context, check: Check) -> list[Change]:
        """Remove leftovers, deploy and switch, then prune beyond ``keep``."""
        plan: _Plan = check.snapshot
        paths = Paths(ctx.path)
        changes: list[Change] = []
        if plan.partials:
            remove_dirs(ctx, [paths.release(n) for n in plan.partials])
            changes.append(Change(paths.releases, f"removed {len(plan.partials)} half-built release(s)", plan.partials))
        if plan.deploy:
            changes.append(self._deploy(ctx, plan))
        # once current is switched, a failed prune must still tell the runner about the switch
        with carrying(changes, changes[-1].summary) if plan.deploy else contextlib.nullcontext():
            pruned = fresh_state(ctx).prune_plan(self.params.keep)
            if pruned:
                remove_dirs(ctx, [paths.release(n) for n in pruned])
                changes.append(Change(paths.releases, f"removed {len(pruned)} old release(s)", pruned))
        return changes

    def _deploy(self, ctx: Context, plan: _Plan) -> Change:
        name = _release_name(plan.commit, plan.state)
        self._write_release(ctx, plan.commit, name)
        state = plan.state
        deployed = _Deployed(name, plan.commit, state.current_release, state.current, state.current_commit)
        switch_current(ctx, name)
        self._last = deployed
        change = Change(
            Paths(ctx.path).current,
            f"deployed {name} ({plan.commit[:7]})",
            before={"release": deployed.previous, "commit": deployed.previous_commit},
            after={"release": name, "commit": plan.commit},
            undo=deployed,
        )
        self._after_switch(ctx, deployed, change)
        return change

    def _write_release(self, ctx: Context, commit: str, name: str) -> None:
        """Make ``releases/<name>`` complete (code, shared links, build, marker) or remove it."""
        p = self.params
        paths = Paths(ctx.path)
        rdir = paths.release(name)
        ctx.record(commit=commit, release=name, ref=p.ref)
        ctx.run(["mkdir", "-p", "--", paths.releases, paths.shared, paths.meta])
        ctx.run(["mkdir", "--", rdir])
        try:
            fetch_code(ctx, p.repo, self.transfer, commit, rdir)
            self._link_shared(ctx, rdir)
            run_build(ctx, p, rdir, name, commit)
            abort_if_stopping(ctx, "before the switch")
            marker = {
                "release": name,
                "commit": commit,
                "ref": p.ref,
                "built_at": now().isoformat(timespec="microseconds"),
                "run_id": ctx.run_id,
            }
            ctx.put(json.dumps(marker, sort_keys=True).encode() + b"\n", posixpath.join(rdir, MARKER), mode=0o644)
        except BaseException:
            discard(ctx, rdir)
            raise

    def _link_shared(self, ctx: Context, rdir: str) -> None:
        # a method of its own: the command-construction tests call it with a recording transport
        link_shared(ctx, self.params, rdir)

    def _after_switch(self, ctx: Context, deployed: _Deployed, change: Change) -> None:
        """Log the switch and run after_switch; a failing after_switch switches back at once."""
        p = self.params
        name = deployed.release
        what = f"switched current to {name}"
        with carrying([change], what):
            log = entry(
                ctx, "deployed", name, deployed.commit, ref=p.ref, repo=display_url(p.repo), previous=deployed.previous
            )
            log_after_switch(ctx, [log], change, what)
            failures = run_after_switch(ctx, p.after_switch)
            if failures:
                self._undo(ctx, deployed, reason="after_switch failed")
        if failures:  # switched back already: the error carries no change
            raise ApplyFailed(f"after_switch failed, switched back: {'; '.join(failures)}")

    # ---- verify / rollback ------------------------------------------------------------------
    def verify(self, ctx: Context) -> None:
        """current holds the deployed release and commit, and no half-built release remains."""
        deployed = self._last
        state = fresh_state(ctx)
        if deployed is not None and (
            state.current_release != deployed.release or state.current_commit != deployed.commit
        ):
            raise VerifyFailed(
                f"current points at {state.current_release or state.current}, expected {deployed.release}"
            )
        if state.partials():
            raise VerifyFailed(f"half-built releases remain: {', '.join(state.partials())}")

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        """Switch current back to what it was and mark the deployed release bad."""
        for change in reversed(changes):
            if isinstance(change.undo, _Deployed):
                self._undo(ctx, change.undo, reason=f"rolled back by run {ctx.run_id}")

    @classmethod
    def change_from_record(cls, record: dict[str, Any]) -> Change | None:
        """The switch of ``current`` (the release deployed and the one before), as recorded;
        ``removed N release(s)`` records have nothing to undo."""
        before, after = record.get("before"), record.get("after")
        if not isinstance(after, dict) or not isinstance(before, dict) or not after.get("release"):
            return None
        prev = before.get("release")
        deployed = _Deployed(
            str(after["release"]),
            str(after.get("commit") or ""),
            prev,
            f"releases/{prev}" if prev else None,
            before.get("commit"),
        )
        return Change(record["target"], str(record.get("summary")), before, after, undo=deployed)

    def _undo(self, ctx: Context, deployed: _Deployed, reason: str) -> None:
        state = fresh_state(ctx)
        if state.current_release == deployed.release:
            try:
                switch_current(ctx, deployed.previous, deployed.previous_target)
            except MaintkitError as exc:
                raise RollbackFailed(f"cannot switch current back from {deployed.release}: {exc}") from exc
        elif state.current != deployed.previous_target:
            raise RollbackFailed(
                f"current points at {state.current or 'nothing'}, not at {deployed.release} which this run deployed; "
                "not touching it"
            )
        entries = [entry(ctx, "bad", deployed.release, deployed.commit, reason=reason)]
        if deployed.previous is not None:
            entries.append(
                entry(
                    ctx, "rolled-back", deployed.previous, deployed.previous_commit, reason=f"from {deployed.release}"
                )
            )
        append_log(ctx, entries)
        ctx.invalidate()
        failures = run_after_switch(ctx, self.params.after_switch) if deployed.previous_target else []
        if failures:
            raise RollbackFailed(
                f"switched back to {deployed.previous}, but after_switch failed: {'; '.join(failures)}"
            )


def _release_name(commit: str, state: DeployState) -> str:
    base = f"{stamp(now())}-{commit[:7]}"
    name, n = base, 1
    while name in state.releases:
        n += 1
        name = f"{base}-{n}"
    return name


def _cleanup_reason(partials: list[str], prune: list[str]) -> str:
    parts = []
    if partials:
        parts.append(f"remove {len(partials)} half-built release(s) left by an interrupted run")
    if prune:
        parts.append(f"remove {len(prune)} old release(s) beyond keep")
    return "; ".join(parts)


def _diff(was: str | None, commit: str | None, partials: list[str], prune: list[str]) -> str:
    lines = []
    if commit is not None:
        lines += [f"-current -> {was}", f"+current -> releases/<new>-{commit[:7]}"]
    lines += [f"-releases/{n} (half-built)" for n in partials]
    lines += [f"-releases/{n}" for n in prune]
    return "\n".join(lines) + "\n"


__all__ = ["DeployRelease"]
