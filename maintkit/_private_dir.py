"""Directories only their owner may use, and the cache folder they live under: where live
connections and the start-up daemon's socket are kept (standard library only, so the ``maint``
console script can read it before anything else is imported).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping

__all__ = ["cache_home", "dir_problem", "make_private_dir"]


def cache_home(environ: Mapping[str, str]) -> str:
    """``$XDG_CACHE_HOME`` when it is an absolute path, else ``$HOME/.cache`` (``~/.cache``)."""
    cache = environ.get("XDG_CACHE_HOME") or ""
    if os.path.isabs(cache):
        return cache
    return os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")


def dir_problem(path: str | os.PathLike[str]) -> str:
    """Why ``path`` must not hold sockets only its owner may use ("" when it may).

    Refused: a symbolic link, anything but a directory, a directory owned by another user, or
    one with any permission for group or others.
    """
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != os.geteuid():
        return f"it is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    if st.st_mode & 0o077:
        return f"its mode is {stat.S_IMODE(st.st_mode):04o}; only you may use it (chmod 700 {os.fspath(path)})"
    return ""


def make_private_dir(path: str | os.PathLike[str]) -> str:
    """Create ``path`` (0700, its parents too) if missing; return :func:`dir_problem` of it."""
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(os.fspath(path)), mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError, OSError):
        os.mkdir(path, mode=0o700)
    return dir_problem(path)
