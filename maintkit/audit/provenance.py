"""Where a playbook came from: the git commit of the repository holding it, and whether it is dirty.

git runs without the user's or the system's git configuration (``GIT_CONFIG_GLOBAL=/dev/null``,
``GIT_CONFIG_NOSYSTEM=1``): a ``~/.gitconfig`` (an excludes file, say) must not change what is
recorded about the playbook.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["GIT_ENV", "git_provenance"]

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
    if not start.is_dir():
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
