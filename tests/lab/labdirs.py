"""Lab folders and sudo rules that name the process that made them, and the sweep of those whose
process is gone.

A lab's servers live in folders under /tmp and its login user gets a NOPASSWD sudo rule in
``/etc/sudoers.d`` for as long as the lab runs; the lab removes both when it ends. A test run
that is killed (a CI run stopped by hand, a benchmark interrupted) never gets there: one such
run left 15 GB of site folders in /tmp and a passwordless root rule for the lab's login user.
So each folder made by :func:`lab_tmpdir` holds an owner file, and each sudo rule an owner
comment, with the process id and start time of the process that made it. The first lab
folder a process makes sweeps first (:func:`sweep`): a folder or rule whose owner is not
running any more (the same id with another start time is another process) goes, unless a
live process still names the folder on its command line or works in it. Folders and rules
without an owner are never touched: they are not this suite's, or from before the owner file.
With ``MAINTKIT_LAB_KEEP=1`` nothing is swept (the folders are kept for debugging).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from tests.lab.procs import same_process, start_time, uses_path

#: the owner file inside a lab folder, and the start of the owner line of a sudo rule
OWNER_FILE = ".maintkit-lab-owner"
OWNER_COMMENT = "# maintkit lab owner: "
#: what the sweep looks at (the prefixes the lab's folders and rules are made with)
FOLDER_PATTERNS = ("maintkit-lab-*", "maintkit-ssh-*", "maintkit-mariadb-template-*", "maintkit-monthly-*")
SUDOERS_DIR = Path("/etc/sudoers.d")
SUDOERS_PATTERN = "maintkit-lab-*"

_swept = False
_sweep_lock = threading.Lock()


def owner_of(pid: int | None = None) -> str | None:
    """``"<pid> <start time>"`` of a running process, this one by default (None when it is not
    running)."""
    pid = os.getpid() if pid is None else pid
    start = start_time(pid)
    return None if start is None else f"{pid} {start}"


def _alive(owner: str) -> bool:
    pid, _, start = owner.strip().partition(" ")
    return pid.isdigit() and same_process(int(pid), start)


def _folder_owner(folder: Path) -> str | None:
    """The owner line of a lab folder this user made: never a link, nor another user's folder
    (anyone can make folders in /tmp)."""
    try:
        st = folder.lstat()
        if not folder.is_dir() or folder.is_symlink() or st.st_uid != os.getuid():
            return None
        return (folder / OWNER_FILE).read_text()
    except OSError:
        return None


def _rule_owner(rule: Path) -> str | None:
    try:
        first = rule.read_text().split("\n", 1)[0]
    except OSError:
        return None
    return first[len(OWNER_COMMENT) :] if first.startswith(OWNER_COMMENT) else None


def sweep(tmp: Path = Path("/tmp"), sudoers: Path = SUDOERS_DIR) -> list[Path]:
    """Remove the lab folders under ``tmp`` and the lab sudo rules in ``sudoers`` whose owner is
    gone (a folder a live process still uses is kept); what was removed."""
    removed: list[Path] = []
    for pattern in FOLDER_PATTERNS:
        for folder in sorted(tmp.glob(pattern)):
            owner = _folder_owner(folder)
            if owner is None or _alive(owner) or uses_path(str(folder)):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for rule in sorted(sudoers.glob(SUDOERS_PATTERN)) if sudoers.is_dir() else []:
        owner = _rule_owner(rule)
        if owner is not None and not _alive(owner):
            rule.unlink(missing_ok=True)
            removed.append(rule)
    return removed


def sweep_once() -> None:
    """:func:`sweep` the first time a process asks (the lab folders' makers call this); never
    with ``MAINTKIT_LAB_KEEP=1``, which keeps the folders for debugging."""
    global _swept
    with _sweep_lock:
        if not _swept and os.environ.get("MAINTKIT_LAB_KEEP") != "1":
            _swept = True
            sweep()


def lab_tmpdir(prefix: str, mode: int = 0o700) -> Path:
    """A new folder ``/tmp/<prefix>XXXX`` with this process's owner file (after a first sweep);
    ``mode`` 0o755 lets the lab's servers (web, database users) reach it."""
    sweep_once()
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    (path / OWNER_FILE).write_text(f"{owner_of()}\n")
    path.chmod(mode)
    return path


def sudo_rule(text: str) -> str:
    """A sudo rule's text with this process's owner comment first."""
    return f"{OWNER_COMMENT}{owner_of()}\n{text}"
