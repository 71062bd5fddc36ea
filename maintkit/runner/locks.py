"""The run's side of site locks: look at one read-only, take it before a change, read the answer, release it.

A stage's first batch only looks at the environment's lock (:func:`peek_script`,
:func:`read_lock`): a lock another run holds is refused there, exactly as if the stage had
tried to take it. The lock is taken (:func:`lock_script`, :func:`settle_lock`) only when a
step has to change something, or at once when it is an expired lease to take over.

The lock scripts, holder records, leases and liveness rules live in :mod:`maintkit.locks`,
shared with the actions and ``maint unlock``. Every lock the run holds has a lease that
:mod:`maintkit.runner.lease` renews; a lock whose lease has expired is taken over, after the
dead run's leftovers on that environment were reconciled (:mod:`maintkit.runner.reconcile`).
"""

from __future__ import annotations

from maintkit import locks as site_locks
from maintkit._text import tail
from maintkit.errors import CommandFailed, LockHeld, MaintkitError
from maintkit.inventory import Environment, Site
from maintkit.runner.lease import Lease
from maintkit.runner.reconcile import Reconciled, reconcile
from maintkit.runner.state import RunState
from maintkit.transport.base import Transport

#: the locks a site holds, in the order taken: (environment, its transport)
Held = list[tuple[Environment, Transport]]

#: how a batch reports that its preamble (the lock script) failed
_PREAMBLE_FAILED = "__preamble_failed__"


def lease_of(env: Environment) -> int:
    """The lease of ``env``'s lock in seconds (inventory ``lock_lease``, default 600)."""
    return int(env.lock_lease or site_locks.DEFAULT_LEASE)


def lock_script(state: RunState, site: Site, env: Environment) -> str:
    """The script that takes ``env``'s lock for this run (sent as the preamble of the stage's batch)."""
    holder = site_locks.owner_record(
        state.run_id, actor=state.actor, playbook=state.playbook.name, site=site.name, env=env.name
    )
    return site_locks.acquire_script(env.path, site_locks.leased(holder, env.path, lease_of(env)))


def peek_script(env: Environment) -> str:
    """The read-only look at ``env``'s lock (sent as the preamble of the stage's first batch)."""
    return site_locks.peek_script(env.path)


def read_lock(state: RunState, site: Site, env: Environment, head: str) -> bool:
    """Read the first batch's look at the lock: False when nobody holds it.

    True when its holder's lease has expired: the stage takes it over now, before any check
    (the takeover undoes what the dead run left). Raises :class:`LockHeld`, with the message
    a refused lock script gives, when another run holds it; MaintkitError when the batch failed.
    """
    if head.startswith(_PREAMBLE_FAILED):
        code, _, text = head.partition("\n")
        detail = tail(text, 300) or f"exit status {code.rpartition(':')[2]}"
        raise MaintkitError(f"{site.name}/{env.name}: cannot read the lock: {detail}")
    if site_locks.SEEN_MARK not in head:
        return False
    seen = head.split(site_locks.SEEN_MARK, 1)[1]
    if site_locks.takeover_due(site_locks.parse_holder(seen), site_locks.host_now(seen)):
        return True
    raise lock_error(state, site, env, seen)


def lock_error(state: RunState, site: Site, env: Environment, output: str) -> LockHeld:
    """The LockHeld error for a lock another run holds, saying whether it looks stale and what to do."""
    holder = site_locks.parse_holder(output.split(site_locks.LOCKED_MARK, 1)[-1])
    clock = site_locks.host_now(output)
    verdict = site_locks.liveness(holder, state.history_dir, stale_after=site_locks.DEFAULT_STALE_AGE, host_clock=clock)
    msg = f"{site.name}/{env.name} is locked by {site_locks.describe(holder)}"
    if verdict.dead:
        msg += (
            f"; the lock looks stale ({verdict.why}). If no run is active, clear it with: "
            f"maint unlock {site.name} --env {env.name}"
        )
    else:
        msg += f". Wait for it to finish, or if it died: maint unlock {site.name} --env {env.name}"
        lease = site_locks.lease_verdict(holder, clock)
        if lease is not None:
            msg += f" ({lease.why}: a later run takes the lock over then)"
    return LockHeld(msg, holder, verdict.dead)


def settle_lock(
    state: RunState,
    site: Site,
    env: Environment,
    transport: Transport,
    head: str,
    *,
    took: bool,
    held: Held,
    for_step: str | None = None,
    early: str | None = None,
) -> bool:
    """Read the batch's answer to the lock script: raise when the lock is held or failed, else record it.

    True when an expired lock was taken over: the dead run's leftovers were reconciled, so
    the probes read in the same batch are out of date and must be read again. ``for_step``:
    the step whose change needed the lock (in ``lock.acquired``); ``early``: why the stage took
    it in its first round trip, before any check (see :meth:`~maintkit.action.Action.expects_change`).
    """
    if site_locks.LOCKED_MARK in head:
        raise lock_error(state, site, env, head)
    if head.startswith(_PREAMBLE_FAILED):
        code, _, text = head.partition("\n")
        detail = tail(text, 300) or f"exit status {code.rpartition(':')[2]}"
        raise MaintkitError(f"{site.name}/{env.name}: cannot take the lock: {detail}")
    if not took:
        return False
    held.append((env, transport))
    state.leases.hold(
        Lease(
            site.name,
            env.name,
            env.display_host,
            env.path,
            site_locks.lock_token(state.run_id, env.path),
            lease_of(env),
            transport,
            state.emit,
            state.stop.set,
        )
    )
    if site_locks.TAKEN_MARK not in head:
        where = {"site": site.name, "env": env.name, "host": env.display_host}
        extra = {"for_step": for_step} if for_step else {}
        state.emit("lock.acquired", **where, lease=lease_of(env), **extra, **({"early": early} if early else {}))
        return False
    take_over(state, site, env, transport, head)
    return True


def take_over(state: RunState, site: Site, env: Environment, transport: Transport, head: str) -> Reconciled:
    """Reconcile what the dead holder in ``head`` left on ``env``, then record the takeover."""
    dead = site_locks.parse_holder(head.split(site_locks.TAKEN_MARK, 1)[1])
    done = reconcile(state, site, env, transport, str(dead.get("run_id", "")))
    where = {"site": site.name, "env": env.name, "host": env.display_host}
    if done.incomplete:
        state.emit(
            "lock.reconcile_incomplete",
            **where,
            dead_run=done.dead_run,
            steps=[i["step"] for i in done.incomplete if i["step"]],
            problems=done.incomplete,
        )
    state.emit(
        "lock.taken_over",
        **where,
        lease=lease_of(env),
        dead_run=done.dead_run,
        dead_controller=dead.get("controller"),
        dead_pid=dead.get("pid"),
        dead_actor=dead.get("actor"),
        dead_since=dead.get("since"),
        expired_at=dead.get("expires"),
        host_clock=site_locks.host_now(head),
        rolled_back=done.rolled_back,
        maintenance_off=done.maintenance_off,
        incomplete=[i["step"] or i["why"] for i in done.incomplete],
    )
    return done


def release_lock(state: RunState, site: Site, env: Environment, transport: Transport) -> str | None:
    """Release the lock (its lease renewal stopped first); the error (naming site and environment) when that failed."""
    renewals = state.leases.drop(site.name, env.name)
    where = {"site": site.name, "env": env.name, "host": env.display_host}
    try:
        transport.run_shell(site_locks.release_script(env.path, state.run_id), check=True, timeout=30)
    except CommandFailed as exc:
        if exc.result.exit_code != site_locks.LOST_EXIT:
            state.emit("lock.release_failed", **where, error=str(exc))
            return f"could not release the lock of {site.name}/{env.name}: {exc}"
        state.emit("lock.lost", **where, renewals=renewals)
        return f"the lock of {site.name}/{env.name} was taken over by another run (this run's lease ran out)"
    except MaintkitError as exc:
        state.emit("lock.release_failed", **where, error=str(exc))
        return f"could not release the lock of {site.name}/{env.name}: {exc}"
    state.emit("lock.released", **where, renewals=renewals)
    return None


__all__ = [
    "Held",
    "lease_of",
    "lock_error",
    "lock_script",
    "peek_script",
    "read_lock",
    "release_lock",
    "settle_lock",
    "take_over",
]
