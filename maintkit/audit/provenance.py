"""Where a playbook came from: the git commit of the repository holding it, and whether it is dirty.

git runs without the user's or the system's git configuration (``GIT_CONFIG_GLOBAL=/dev/null``,
``GIT_CONFIG_NOSYSTEM=1``): a ``~/.gitconfig`` (an excludes file, say) must not change what is
recorded about the playbook.

GitPython costs a run about 50 ms of imports and git a few processes: :class:`PendingProvenance`
computes it in a thread of its own that starts once the run's first connection is under way, and
the run joins it before its first audit event (every event carries the commit).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["GIT_ENV", "PendingProvenance", "git_provenance"]

#: Environment for every git command: no global or system configuration is read.
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git_provenance(path: Path) -> dict[str, Any]:
    """Git commit of the repository containing ``path``.

    Returns ``{"commit": sha or None, "dirty": bool, "repo": root or None}``. ``dirty``
    is true when tracked files have uncommitted changes, or when ``path`` itself is a
    file git does not track. Not a repository (or git missing): commit and repo are None.
    Only the repository's own configuration is read (see :data:`GIT_ENV`).
    """
    none: dict[str, Any] = {"commit": None, "dirty": False, "repo": None}
    path = Path(path)
    start = path.parent if path.is_file() else path
    if not start.is_dir() or not _may_be_in_repository(start):
        return none
    try:
        import git
    except ImportError:  # GitPython raises ImportError when the git executable is missing
        return none
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError):
        return none
    try:
        repo.git.update_environment(**GIT_ENV)  # before the first git command runs
        return _facts(repo, path)
    except (git.exc.GitError, OSError, ValueError):
        return none
    finally:
        repo.close()


def _may_be_in_repository(start: Path) -> bool:
    """Whether ``start`` or a parent holds a ``.git`` or is a git directory (or ``GIT_DIR`` is set).

    A few ``stat`` calls that spare a playbook outside any repository GitPython's import; where
    this says True, GitPython decides.
    """
    if os.environ.get("GIT_DIR"):
        return True
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return True
        if all((folder / name).exists() for name in ("HEAD", "objects", "refs")):
            return True
    return False


def _facts(repo: Any, path: Path) -> dict[str, Any]:
    """Commit, dirtiness and root of an open ``git.Repo``."""
    root = repo.working_tree_dir
    try:
        commit: str | None = repo.head.commit.hexsha
    except ValueError:  # a repository without commits
        commit = None
    dirty = bool(repo.is_dirty(untracked_files=False))
    if not dirty and path.is_file() and root is not None:
        rel = path.resolve().relative_to(Path(root).resolve()).as_posix()
        dirty = rel in repo.untracked_files
    return {"commit": commit, "dirty": dirty, "repo": str(root) if root is not None else None}


class PendingProvenance:
    """:func:`git_provenance` of ``path`` computed in a background thread; :meth:`result` joins it.

    The thread waits until ``after`` is set (the run's first connection is under way), at most
    ``wait`` seconds, so that GitPython never delays the first packet. No ``path`` (a playbook
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
