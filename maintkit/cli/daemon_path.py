"""Where this user's start-up daemon of this installation listens, and whether to offer it a command.

Read by the console script on every ``maint`` command before anything else is imported, so it
imports no more than ``os`` and ``zlib``: when no daemon runs, a command pays one ``stat``.

One socket per user and per installation: ``$XDG_CACHE_HOME/maintkit/daemon/d-<hash>.sock``
(default ``~/.cache/maintkit/daemon``), in a folder only its owner may use
(:func:`maintkit._private_dir.dir_problem`). The hash (two checksums, not a security measure:
the daemon also refuses a caller whose interpreter or start-up differs) is of the interpreter,
its environment (``sys.prefix``) and the package's folder, so two virtual environments never
share a daemon.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Mapping, Sequence

from maintkit._private_dir import cache_home

__all__ = ["ENV_SWITCH", "daemon_dir", "offered_socket", "package_dir", "socket_path", "switched_off"]

#: ``MAINT_DAEMON=0`` (or off, no, false): run every command in its own process
ENV_SWITCH = "MAINT_DAEMON"
_OFF = frozenset({"0", "off", "no", "false"})


def switched_off(environ: Mapping[str, str]) -> bool:
    """Whether ``MAINT_DAEMON`` says not to use a daemon."""
    return environ.get(ENV_SWITCH, "").strip().lower() in _OFF


def package_dir() -> str:
    """The folder of the maintkit package this process runs."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def daemon_dir(environ: Mapping[str, str]) -> str:
    """``$XDG_CACHE_HOME/maintkit/daemon``, or ``~/.cache/maintkit/daemon``."""
    return os.path.join(cache_home(environ), "maintkit", "daemon")


def socket_path(environ: Mapping[str, str]) -> str:
    """The socket of this installation's daemon for the user of ``environ``."""
    key = f"{os.path.realpath(sys.executable)}\0{sys.prefix}\0{package_dir()}".encode()
    return os.path.join(daemon_dir(environ), f"d-{zlib.crc32(key):08x}{zlib.adler32(key):08x}.sock")


def offered_socket(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The socket to offer this command to; None when no daemon is there or it must not be used
    (``MAINT_DAEMON=0``, or the command is ``maint daemon ...`` itself)."""
    if switched_off(environ) or list(argv[1:2]) == ["daemon"]:
        return None
    path = socket_path(environ)
    return path if os.path.exists(path) else None
