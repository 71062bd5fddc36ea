"""Where a playbook came from: the git commit of the repository holding it, and whether it is dirty.

git runs without the user's or the system's git configuration (``GIT_CONFIG_GLOBAL=/dev/null``,
``GIT_CONFIG_NOSYSTEM=1``): a ``~/.gitconfig`` (an excludes file, say) must not change what is
recorded about the playbook.

The facts come from the git command itself, three or four processes started side by side
(a few milliseconds), not from GitPython, whose import alone costs a run about 50-70 ms: the run
joins them before its first audit event (every event carries the commit), and over connections
that are already open (``maint daemon``, OpenSSH masters) that join is on the way to the first
command. :class:`PendingProvenance` asks in a thread of its own, once the run's first connection
is under way. Only the playbook's own file is checked for being untracked (GitPython listed
every untracked file of the repository to answer that).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["GIT_ENV", "GIT_TIMEOUT", "PendingProvenance", "git_provenance"]

#: Environment for every git command: no global or system configuration is read.
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
#: seconds git has to answer (a hung filesystem must not hold the run): then no provenance is recorded
GIT_TIMEOUT = 10.0


#: what :func:`git_provenance` records outside a repository
_NONE: dict[str, Any] = {"commit": None, "dirty": False, "repo": None}
#: git, with pathspecs taken literally and no optional lock (the user's own git may run meanwhile)
_GIT = ("git", "--literal-pathspecs", "--no-optional-locks")
#: the questions asked of every repository, at once (each one git process)
_QUESTIONS = {
    "where": ("rev-parse", "--is-bare-repository", "--show-toplevel"),  # bare: prints true, then fails
    "head": ("rev-parse", "-q", "--verify", "HEAD^{commit}"),  # no commit yet: exit 1, nothing printed
    "status": ("status", "--porcelain", "-z", "--untracked-files=no"),  # tracked changes, staged or not
}


def git_provenance(path: Path) -> dict[str, Any]:
    """Git commit of the repository containing ``path``.

    Returns ``{"commit": sha or None, "dirty": bool, "repo": root or None}``. ``dirty``
    is true when tracked files have uncommitted changes, or when ``path`` itself is a
    file git does not track (nor ignore). Not a repository (or git missing, failing or taking
    longer than :data:`GIT_TIMEOUT`): commit and repo are None. A repository without a work
    tree: its commit, not dirty, no root. Only the repository's own configuration is read (see
    :data:`GIT_ENV`).
    """
    path = Path(path)
    book = path.is_file()
    start = path.parent if book else path
    if not start.is_dir() or not _may_be_in_repository(start):
        return dict(_NONE)
    commands = {name: [*_GIT, *argv] for name, argv in _QUESTIONS.items()}
    if book:  # is the playbook itself tracked? (a literal name: no glob, no pathspec magic)
        commands["untracked"] = [*_GIT, "ls-files", "-z", "--others", "--exclude-standard", "--", path.name]
    answers = _ask(start, commands)
    return dict(_NONE) if answers is None else _facts(answers)


def _ask(start: Path, commands: dict[str, list[str]]) -> dict[str, tuple[int, bytes]] | None:
    """Run ``commands`` in ``start`` side by side; ``{name: (exit status, stdout)}``, or None
    when git cannot be started or one of them outlives :data:`GIT_TIMEOUT` (all are then killed)."""
    env = {**os.environ, **GIT_ENV}
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, argv in commands.items():
            running[name] = subprocess.Popen(
                argv, cwd=start, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        deadline = time.monotonic() + GIT_TIMEOUT
        out: dict[str, tuple[int, bytes]] = {}
        for name, proc in running.items():
            stdout, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            out[name] = (proc.returncode, stdout)
        return out
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _facts(answers: dict[str, tuple[int, bytes]]) -> dict[str, Any]:
    """Commit, dirtiness and root from git's answers (see :data:`_QUESTIONS`)."""
    where_code, where = answers["where"]
    head_code, head = answers["head"]
    commit = head.strip().decode("ascii", "replace") if head_code == 0 and head.strip() else None
    if where_code != 0:  # not a repository, or one git refuses (another user's), or bare
        if where.startswith(b"true\n"):
            return {"commit": commit, "dirty": False, "repo": None}
        return dict(_NONE)
    if not where.startswith(b"false\n") or not where.endswith(b"\n"):
        return dict(_NONE)
    root = os.fsdecode(where[len(b"false\n") : -1])  # the path as printed: it may hold a newline
    dirty = False
    for name in ("status", "untracked"):
        code, listed = answers.get(name, (0, b""))
        if code != 0:
            return dict(_NONE)
        dirty = dirty or bool(listed)
    return {"commit": commit, "dirty": dirty, "repo": root}


def _may_be_in_repository(start: Path) -> bool:
    """Whether ``start`` or a parent holds a ``.git`` or is a git directory (or ``GIT_DIR`` is set).

    A few ``stat`` calls that spare a playbook outside any repository git's processes; where
    this says True, git decides.
    """
    if os.environ.get("GIT_DIR"):
        return True
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return True
        if all((folder / name).exists() for name in ("HEAD", "objects", "refs")):
            return True
    return False


class PendingProvenance:
    """:func:`git_provenance` of ``path`` computed in a background thread; :meth:`result` joins it.

    The thread waits until ``after`` is set (the run's first connection is under way), at most
    ``wait`` seconds, so that git's processes never delay the first packet. No ``path`` (a playbook
    built in code): the result is ``{}`` at once.
    """

    def __init__(self, path: Path | None, after: threading.Event | None = None, wait: float = 5.0) -> None:
        self._path, self._after, self._wait = path, after, wait
        self._value: dict[str, Any] = {}
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if path is not None:
            self._thread = threading.Thread(target=self._compute, name="maint-provenance", daemon=True)
            self._thread.start()

    def _compute(self) -> None:
        if self._after is not None:
            self._after.wait(self._wait)
        try:
            assert self._path is not None
            self._value = git_provenance(self._path)
        except BaseException as exc:  # raised again by result(), in the run's thread
            self._error = exc

    def result(self) -> dict[str, Any]:
        """``{"commit", "dirty", "repo"}`` (see :func:`git_provenance`), or ``{}`` without a path."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
