"""Site locks and run ownership: one place for the runner, the actions and ``maint unlock``.

A run takes an environment's lock by creating ``<path>/.maint/lock`` with ``mkdir`` (atomic)
and writing ``holder.json`` inside: the run id, who ran it, since when, and on which controller
in which process (with the process start time, so a recycled pid is not mistaken for the run).
The holder is written into the new lock directory by the shell's printf builtin; when that
fails (a full disk), the directory is removed again, so nothing is left behind. A run first only looks
at the lock (:func:`peek_script`, read-only) and takes it when it has something to change.

Every holder has a lease (docs/state.md#leases): ``lease`` seconds, ``expires`` (UTC ISO) and
``expires_epoch``, both from the HOST's clock (the one clock every controller shares), and a
``gen`` token. The run renews the lease while it holds the lock; a lock whose lease has expired
is taken over by the next run, from any controller. Whoever supersedes a holder generation
(a renewal, a takeover, a release, ``maint unlock``) first creates ``lock/claim.<gen>`` with
``mkdir`` (atomic) and then checks that the holder is still the one it read: of two takers of
one expired lock exactly one wins, and a renewal and a takeover never both succeed.

The same holder record says whether a run is gone (:func:`liveness`): its ``summary.json``
exists, or its process on this controller is gone, or its lease has expired, or (for a holder
without a lease on another controller) it is older than a stale age. Maintenance mode records
its owner the same way.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from maintkit.lock_shell import (
    DEFAULT_LEASE,
    LOCK_FAILED_EXIT,
    NOW_MARK,
    RELEASE_MARGIN,
    TAKEN_MARK,
    TAKEOVER,
    lock_dir,
    lock_vars,
    now_and_expiry,
    release_in_lease,
    stamp_function,
)
from maintkit.probes.maintenance import json_record
from maintkit.transport.base import quote

#: exit status of the lock script when another run holds the lock
LOCK_EXIT = 75
#: a holder on another controller counts as gone after this long (``maint unlock --older-than``)
DEFAULT_STALE_AGE = timedelta(hours=6)
LOCKED_MARK = "MAINT-LOCKED"
#: printed by the read-only lock check (:func:`peek_script`), followed by the holder, when a lock exists
SEEN_MARK = "MAINT-LOCK-SEEN"
#: exit status of the renew/release/clear scripts when another run holds the lock or is taking it over
LOST_EXIT = 6


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` on this machine (clock ticks since boot), if readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def owner_record(run_id: str, **extra: Any) -> dict[str, Any]:
    """Who this process is: run id, controller, pid and its start time, since when (plus ``extra``)."""
    pid = os.getpid()
    return {
        "run_id": run_id,
        **extra,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "controller": socket.gethostname(),
        "pid": pid,
        "pid_start": process_start(pid),
    }


def lock_token(run_id: str, path: str) -> str:
    """The ``gen`` token of ``run_id``'s lock on the environment at ``path`` (kept by every renewal)."""
    return hashlib.sha256(f"{run_id}\0{path}".encode()).hexdigest()[:20]


def leased(holder: dict[str, Any], path: str, lease: int) -> dict[str, Any]:
    """``holder`` with its lease: ``lease`` seconds and the ``gen`` token (the host adds ``expires``)."""
    return {**holder, "lease": int(lease), "gen": lock_token(str(holder.get("run_id", "")), path)}


def acquire_script(path: str, holder: dict[str, Any]) -> str:
    """Shell script taking the lock of ``path`` with ``holder`` (run as a batch preamble).

    ``holder`` should carry a lease (:func:`leased`); the host adds ``expires``. Exit 0: taken
    (after :data:`TAKEN_MARK` and the dead holder when an expired lease was taken over). Exit
    :data:`LOCK_EXIT`: held by another run (prints :data:`LOCKED_MARK`, the holder and the
    host's clock). Exit :data:`LOCK_FAILED_EXIT`: could not be taken; the error text (for
    example "No space left on device") is printed and nothing is left behind.

    Programs on a free lock: ``mkdir`` (the lock) and nothing else; the holder is written into
    the new directory by the printf builtin. A reader between the two sees a lock whose holder
    is not written yet, as it would see an unreadable holder: locked, by an unknown run. An
    expired lease's holder is replaced atomically (a temporary file renamed over it).
    """
    base = path.rstrip("/") + "/.maint"
    tmp = quote(f"{base}/.holder.{holder.get('gen') or holder.get('run_id', 'run')}.tmp")
    fail = f"exit {LOCK_FAILED_EXIT}"
    return (
        "exec 2>&1\n"
        f"[ -d {quote(base)} ] || mkdir -p -- {quote(base)} || {fail}\n"
        + stamp_function(holder)
        + lock_vars(path)
        + f"T={tmp}; n=0\n"
        "while :; do\n"
        '  if out=$(exec mkdir -- "$L" 2>&1); then\n'
        '    stamp "$L/holder.json" && exit 0\n'
        f'    rm -rf -- "$L"; {fail}\n'
        '  elif [ -d "$L" ]; then\n' + TAKEOVER + f'    echo {LOCKED_MARK}; cat -- "$L/holder.json" 2>/dev/null; echo; '
        f'echo "{NOW_MARK}$now"; exit {LOCK_EXIT}\n'
        "  fi\n"
        '  n=$((n + 1)); [ "$n" -lt 3 ] || break\n'  # the lock vanished between mkdir and the test: again
        "done\n"
        f"printf '%s\\n' \"$out\"; {fail}"
    )


def peek_script(path: str) -> str:
    """Read-only shell: is ``path`` locked? Prints nothing when it is not; else :data:`SEEN_MARK`,
    the holder and the host's clock. Always exits 0; runs no command when there is no lock."""
    d = quote(lock_dir(path))
    return (
        f"if [ -d {d} ]; then echo {SEEN_MARK}; cat -- {d}/holder.json 2>/dev/null; echo; "
        f'echo "{NOW_MARK}$(date -u +%s)"; fi; true'
    )


def takeover_due(holder: dict[str, Any], host_clock: int | None) -> bool:
    """Would :func:`acquire_script` take this lock over? Its holder has a lease (a ``gen`` and an
    ``expires_epoch``) that has ended by the host's clock. A holder without a lease never is."""
    ends = expires_epoch(holder)
    gen = holder.get("gen")
    return bool(gen) and isinstance(gen, str) and ends is not None and host_clock is not None and host_clock >= ends


def renew_script(path: str, gen: str, lease: int) -> str:
    """Shell script extending the lease of the lock generation ``gen`` by ``lease`` seconds from now.

    Exit 0: renewed (prints ``@@expires ISO EPOCH``). :data:`LOST_EXIT`: another run holds the
    lock now (prints its holder). 4: the lock is gone. 7: a taker is looking at it right now
    (try again). Anything else: the renewal failed (try again).
    """
    tmp = quote(f"{path.rstrip('/')}/.maint/.holder.{gen}.renew")
    g = quote(gen)
    return (
        "exec 2>&1\n" + lock_vars(path) + f"T={tmp}\n"
        '[ -d "$L" ] || exit 4\n'
        f'fields; [ "$hg" = {g} ] || {{ cat -- "$L/holder.json" 2>/dev/null; exit {LOST_EXIT}; }}\n'
        f'claim {g} || {{ [ -d "$L/claim."{g} ] && exit 7; exit {LOCK_FAILED_EXIT}; }}\n'
        f'fields; if [ "$hg" != {g} ]; then rmdir -- "$L/claim."{g}; exit {LOST_EXIT}; fi\n'
        + now_and_expiry(lease)
        + 'if sed -e "s/\\"expires\\": \\"[^\\"]*\\"/\\"expires\\": \\"$iso\\"/" '
        '-e "s/\\"expires_epoch\\": [0-9]*/\\"expires_epoch\\": $exp/" -- "$L/holder.json" > "$T" '
        '&& mv -f -- "$T" "$L/holder.json"; then\n'
        f'  rmdir -- "$L/claim."{g}; echo "@@expires $iso $exp"; exit 0\n'
        "fi\n"
        f'rm -f -- "$T"; rmdir -- "$L/claim."{g}; exit {LOCK_FAILED_EXIT}'
    )


def release_script(path: str, run_id: str) -> str:
    """Shell script removing the lock of ``path`` only while ``run_id`` holds it.

    Exit 0: removed (or there was no lock). :data:`LOST_EXIT`: another run holds it now, or is
    taking it over (its lease ran out); nothing removed. Programs: ``rm`` alone while the lease
    has more than :data:`RELEASE_MARGIN` seconds left and the login shell is bash; else ``mkdir``
    (the claim) and ``rm``.
    """
    g = quote(lock_token(run_id, path))
    return (
        lock_vars(path) + '[ -d "$L" ] || exit 0\n'
        f'fields; if [ "$hg" = {g} ]; then\n' + release_in_lease(g) + f"  if ! claim {g}; then\n"
        f'    [ -d "$L/claim."{g} ] && exit {LOST_EXIT}\n'
        f'    mkdir -- "$L/claim."{g} && rmdir -- "$L/claim."{g}; exit 1\n'  # prints why (a read-only disk)
        "  fi\n"
        f'  fields; [ "$hg" = {g} ] && {{ rm -rf -- "$L"; exit $?; }}\n'
        f'  rmdir -- "$L/claim."{g}; exit {LOST_EXIT}\n'
        "fi\n"
        # a holder written without a lease (an older maintkit) is matched by its run id
        f'fields; if [ -z "$hg" ] && grep -qF -- {quote(run_id)} "$L/holder.json" 2>/dev/null; then\n'
        '  rm -rf -- "$L"; exit $?\n'
        "fi\n"
        f"exit {LOST_EXIT}"
    )


def read_script(path: str) -> str:
    """Shell script printing the holder of ``path``'s lock and the host's clock; exit 4 when it is not locked."""
    d = quote(lock_dir(path))
    return f'[ -d {d} ] || exit 4; cat -- {d}/holder.json 2>/dev/null; echo; echo "{NOW_MARK}$(date -u +%s)"; true'


def clear_script(path: str, run_id: str | None, gen: str | None = None) -> str:
    """Shell script removing ``path``'s lock if it is still held by ``run_id`` (None: no holder file).

    With ``gen`` (a leased holder) the generation is claimed first, so a renewal or a takeover
    running at the same moment is never undone. Exit 0 removed, 4 not locked, 6 the holder
    changed meanwhile (nothing removed), 5 removal failed.
    """
    d = quote(lock_dir(path))
    if gen:
        g = quote(gen)
        return (
            lock_vars(path) + '[ -d "$L" ] || exit 4\n'
            f'fields; [ "$hg" = {g} ] && claim {g} || exit 6\n'
            f'fields; [ "$hg" = {g} ] || {{ rmdir -- "$L/claim."{g}; exit 6; }}\n'
            'rm -rf -- "$L" || exit 5'
        )
    same = f"grep -qF -- {quote(run_id)} {d}/holder.json" if run_id else f"[ ! -s {d}/holder.json ]"
    return f"[ -d {d} ] || exit 4; {same} 2>/dev/null || exit 6; rm -rf -- {d} || exit 5"


def host_now(text: str) -> int | None:
    """The host's clock (epoch seconds) that a lock script printed in ``text``, if any."""
    for line in text.splitlines():
        if line.startswith(NOW_MARK) and line[len(NOW_MARK) :].strip().isdigit():
            return int(line[len(NOW_MARK) :].strip())
    return None


def parse_holder(text: str) -> dict[str, Any]:
    """The holder record in ``text`` (its first JSON line); empty when there is none."""
    return json_record(text)


def describe(holder: dict[str, Any]) -> str:
    """``run X by A since S (playbook P)``, or ``an unknown holder``."""
    if not holder:
        return "an unknown holder"
    return (
        f"run {holder.get('run_id', '?')} by {holder.get('actor', '?')} since {holder.get('since', '?')} "
        f"(playbook {holder.get('playbook', '?')})"
    )


@dataclass(frozen=True)
class Liveness:
    """Whether the run of a holder/owner record is known to be gone, and why (or why not)."""

    dead: bool
    why: str


def _since(record: dict[str, Any]) -> datetime | None:
    try:
        since = datetime.fromisoformat(str(record.get("since")))
    except ValueError:
        return None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def _process(record: dict[str, Any]) -> Liveness | None:
    """The verdict from the record's process, when it ran on this controller."""
    pid = record.get("pid")
    if record.get("controller") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Liveness(True, f"process {pid} on this machine is gone")
    except PermissionError:
        pass
    started = record.get("pid_start")
    if started and process_start(pid) not in (None, started):
        return Liveness(True, f"process {pid} on this machine is gone (the pid now belongs to another process)")
    return Liveness(False, f"process {pid} on this machine is still running")


def liveness(
    record: dict[str, Any],
    state_dir: Path,
    *,
    lock_run_id: str | None = None,
    stale_after: timedelta | None = None,
    now: datetime | None = None,
    host_clock: int | None = None,
) -> Liveness:
    """Is the run that wrote ``record`` (a lock holder or a maintenance owner) known to be gone?

    Gone when: the record is empty; ``lock_run_id`` is given (the run id in the lock directory
    now, ``""`` when unlocked) and differs from the record's run; the run's ``summary.json``
    exists in ``state_dir``; its process on this controller is gone; its lease has expired by
    ``host_clock`` (the host's epoch seconds; a holder with a lease is alive until then); or,
    for a record without a lease and when ``stale_after`` is given, the record is older than
    that. Otherwise it counts as alive.
    """
    if not record:
        return Liveness(True, "no holder information")
    run_id = str(record.get("run_id", ""))
    if lock_run_id is not None and lock_run_id != run_id:
        return Liveness(
            True, f"its lock is gone: run {lock_run_id} holds it now" if lock_run_id else "its lock is gone"
        )
    if run_id and (state_dir / "runs" / run_id / "summary.json").is_file():
        return Liveness(True, "its run has finished")
    verdict = _process(record)
    if verdict is not None:
        return verdict
    lease = lease_verdict(record, host_clock)
    if lease is not None:
        return lease
    since = _since(record)
    if stale_after is not None and since is not None:
        age = (now or datetime.now(UTC)) - since
        if age > stale_after:
            return Liveness(True, f"held since {record.get('since')}, longer than {_age(stale_after)}")
    where = record.get("controller") or "an unknown controller"
    return Liveness(False, f"it runs on {where}, where this machine cannot tell whether it is still running")


def expires_epoch(record: dict[str, Any]) -> int | None:
    """When the lease of a holder record ends (host clock, epoch seconds); None without a lease."""
    value = record.get("expires_epoch")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def lease_verdict(record: dict[str, Any], host_clock: int | None) -> Liveness | None:
    """The verdict of the record's lease at ``host_clock``; None without a lease or a clock."""
    ends = expires_epoch(record)
    if ends is None or host_clock is None:
        return None
    if host_clock >= ends:
        return Liveness(True, f"its lease expired at {record.get('expires') or ends}")
    return Liveness(False, f"its lease runs until {record.get('expires') or ends}, {ends - host_clock}s from now")


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def parse_age(text: str) -> timedelta:
    """``90s``, ``30m``, ``6h``, ``2d`` (or plain seconds) as a timedelta; ValueError otherwise."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    unit = units.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    if not number.isdigit():
        raise ValueError(f"not an age: {text!r} (use e.g. 90s, 30m, 6h, 2d)")
    return timedelta(seconds=int(number) * (unit or 1))


__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_STALE_AGE",
    "LOCKED_MARK",
    "LOCK_EXIT",
    "LOCK_FAILED_EXIT",
    "LOST_EXIT",
    "NOW_MARK",
    "RELEASE_MARGIN",
    "SEEN_MARK",
    "TAKEN_MARK",
    "Liveness",
    "acquire_script",
    "clear_script",
    "describe",
    "expires_epoch",
    "host_now",
    "lease_verdict",
    "leased",
    "liveness",
    "lock_dir",
    "lock_token",
    "owner_record",
    "parse_age",
    "parse_holder",
    "peek_script",
    "process_start",
    "read_script",
    "release_script",
    "renew_script",
    "takeover_due",
]
