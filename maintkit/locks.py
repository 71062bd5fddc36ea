"""Site locks and run ownership: one place for the runner, the actions and ``maint unlock``.

A run takes an environment's lock by creating ``<path>/.maint/lock`` with ``mkdir`` (atomic)
and writing ``holder.json`` inside: the run id, who ran it, since when, and on which controller
in which process (with the process start time, so a recycled pid is not mistaken for the run).
The holder is written to a temporary file first and renamed into the lock directory, so a
failed write (a full disk) never leaves an empty lock directory behind.

The same holder record says whether a run is gone (:func:`liveness`): its ``summary.json``
exists, or its process on this controller is gone, or (for another controller) it is older
than a stale age. Maintenance mode records its owner the same way.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from maintkit.probes.maintenance import json_record
from maintkit.transport.base import quote

#: exit status of the lock script when another run holds the lock
LOCK_EXIT = 75
#: exit status of the lock script when the lock cannot be created (disk full, permissions)
LOCK_FAILED_EXIT = 70
#: a holder on another controller counts as gone after this long (``maint unlock --older-than``)
DEFAULT_STALE_AGE = timedelta(hours=6)
LOCKED_MARK = "MAINT-LOCKED"


def lock_dir(path: str) -> str:
    """The lock directory of an environment whose path is ``path``."""
    return path.rstrip("/") + "/.maint/lock"


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


def acquire_script(path: str, holder: dict[str, Any]) -> str:
    """Shell script taking the lock of ``path`` with ``holder`` (run as a batch preamble).

    Exit 0: taken. Exit :data:`LOCK_EXIT`: held by another run (prints :data:`LOCKED_MARK`
    and the holder). Exit :data:`LOCK_FAILED_EXIT`: could not be taken; the error text
    (for example "No space left on device") is printed and nothing is left behind.
    """
    d = quote(path.rstrip("/") + "/.maint")
    lock = quote(lock_dir(path))
    tmp = quote(f"{path.rstrip('/')}/.maint/.holder.{holder.get('run_id', 'run')}.tmp")
    fail = f"exit {LOCK_FAILED_EXIT}"
    return (
        "exec 2>&1\n"
        f"mkdir -p -- {d} || {fail}\n"
        f"if ! printf '%s\\n' {quote(json.dumps(holder))} | cat > {tmp}; then rm -f -- {tmp}; {fail}; fi\n"
        f"if out=$(mkdir -- {lock} 2>&1); then\n"
        f"  if ! mv -f -- {tmp} {lock}/holder.json; then rm -rf -- {lock}; rm -f -- {tmp}; {fail}; fi\n"
        f"elif [ -d {lock} ]; then rm -f -- {tmp}; echo {LOCKED_MARK}; cat -- {lock}/holder.json 2>/dev/null; "
        f"exit {LOCK_EXIT}\n"
        f"else rm -f -- {tmp}; printf '%s\\n' \"$out\"; {fail}; fi"
    )


def release_script(path: str, run_id: str) -> str:
    """Shell script removing the lock of ``path`` only while ``run_id`` holds it."""
    d = quote(lock_dir(path))
    return f"if grep -qF -- {quote(run_id)} {d}/holder.json 2>/dev/null; then rm -rf -- {d}; fi"


def read_script(path: str) -> str:
    """Shell script printing the holder of ``path``'s lock; exit 4 when it is not locked."""
    d = quote(lock_dir(path))
    return f"[ -d {d} ] || exit 4; cat -- {d}/holder.json 2>/dev/null; true"


def clear_script(path: str, run_id: str | None) -> str:
    """Shell script removing ``path``'s lock if it is still held by ``run_id`` (None: no holder file).

    Exit 0 removed, 4 not locked, 6 the holder changed meanwhile (nothing removed), 5 removal failed.
    """
    d = quote(lock_dir(path))
    same = f"grep -qF -- {quote(run_id)} {d}/holder.json" if run_id else f"[ ! -s {d}/holder.json ]"
    return f"[ -d {d} ] || exit 4; {same} 2>/dev/null || exit 6; rm -rf -- {d} || exit 5"


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
) -> Liveness:
    """Is the run that wrote ``record`` (a lock holder or a maintenance owner) known to be gone?

    Gone when: the record is empty; ``lock_run_id`` is given (the run id in the lock directory
    now, ``""`` when unlocked) and differs from the record's run; the run's ``summary.json``
    exists in ``state_dir``; its process on this controller is gone; or, when ``stale_after``
    is given, the record is older than that. Otherwise it counts as alive.
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
    since = _since(record)
    if stale_after is not None and since is not None:
        age = (now or datetime.now(UTC)) - since
        if age > stale_after:
            return Liveness(True, f"held since {record.get('since')}, longer than {_age(stale_after)}")
    where = record.get("controller") or "an unknown controller"
    return Liveness(False, f"it runs on {where}, where this machine cannot tell whether it is still running")


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
    "DEFAULT_STALE_AGE",
    "LOCKED_MARK",
    "LOCK_EXIT",
    "LOCK_FAILED_EXIT",
    "Liveness",
    "acquire_script",
    "clear_script",
    "describe",
    "liveness",
    "lock_dir",
    "owner_record",
    "parse_age",
    "parse_holder",
    "process_start",
    "read_script",
    "release_script",
]
