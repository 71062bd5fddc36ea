"""The run's side of site locks: take one in the stage's first batch, read the answer, release it.

The lock scripts, holder records and liveness rules live in :mod:`maintkit.locks`, shared
with the actions and ``maint unlock``.
"""

from __future__ import annotations

from maintkit import locks as site_locks
from maintkit._text import tail
from maintkit.errors import LockHeld, MaintkitError
from maintkit.inventory import Environment, Site
from maintkit.runner.state import RunState
from maintkit.transport.base import Transport

#: the locks a site holds, in the order taken: (environment, its transport)
Held = list[tuple[Environment, Transport]]

#: how a batch reports that its preamble (the lock script) failed
_PREAMBLE_FAILED = "__preamble_failed__"


def lock_script(state: RunState, site: Site, env: Environment) -> str:
    """The script that takes ``env``'s lock for this run (sent as the preamble of the stage's batch)."""
    holder = site_locks.owner_record(
        state.run_id, actor=state.actor, playbook=state.playbook.name, site=site.name, env=env.name
    )
    return site_locks.acquire_script(env.path, holder)


def lock_error(state: RunState, site: Site, env: Environment, output: str) -> LockHeld:
    """The LockHeld error for a lock another run holds, saying whether it looks stale and what to do."""
    holder = site_locks.parse_holder(output.split(site_locks.LOCKED_MARK, 1)[-1])
    verdict = site_locks.liveness(holder, state.state_dir, stale_after=site_locks.DEFAULT_STALE_AGE)
    msg = f"{site.name}/{env.name} is locked by {site_locks.describe(holder)}"
    if verdict.dead:
        msg += (
            f"; the lock looks stale ({verdict.why}). If no run is active, clear it with: "
            f"maint unlock {site.name} --env {env.name}"
        )
    else:
        msg += f". Wait for it to finish, or if it died: maint unlock {site.name} --env {env.name}"
    return LockHeld(msg, holder, verdict.dead)


def settle_lock(
    state: RunState, site: Site, env: Environment, transport: Transport, head: str, *, took: bool, held: Held
) -> None:
    """Read the batch's answer to the lock script: raise when the lock is held or failed, else record it."""
    if site_locks.LOCKED_MARK in head:
        raise lock_error(state, site, env, head)
    if head.startswith(_PREAMBLE_FAILED):
        code, _, text = head.partition("\n")
        detail = tail(text, 300) or f"exit status {code.rpartition(':')[2]}"
        raise MaintkitError(f"{site.name}/{env.name}: cannot take the lock: {detail}")
    if took:
        held.append((env, transport))
        state.emit("lock.acquired", site=site.name, env=env.name, host=env.display_host)


def release_lock(state: RunState, site: Site, env: Environment, transport: Transport) -> str | None:
    """Release the lock; the error (naming site and environment) when that failed."""
    try:
        transport.run_shell(site_locks.release_script(env.path, state.run_id), check=True, timeout=30)
        state.emit("lock.released", site=site.name, env=env.name, host=env.display_host)
    except MaintkitError as exc:
        state.emit("lock.release_failed", site=site.name, env=env.name, host=env.display_host, error=str(exc))
        return f"could not release the lock of {site.name}/{env.name}: {exc}"
    return None


__all__ = ["Held", "lock_error", "lock_script", "release_lock", "settle_lock"]
