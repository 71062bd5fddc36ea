"""One command run by the start-up daemon: a fresh fork of it, made into the caller's process.

The daemon never runs a command itself; each command runs in a child forked from it, which
first becomes what a ``maint`` process started by the caller would be: its own session, the
caller's standard streams (passed over the socket), working directory (a descriptor, so a
renamed folder still works), umask, environment and arguments, and signal handlers as Python
sets them at start-up. Then :func:`maintkit.cli.main.main` runs, and the child ends the way an
interpreter does: non-daemon threads joined, ``atexit`` handlers run, streams flushed.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

__all__ = ["become"]

#: what the child exits with when it could not become the caller's process (EX_SOFTWARE)
SETUP_FAILED = 70
#: what it exits with when interrupted before the command started (maint's "interrupted")
INTERRUPTED = 3
#: the daemon's own stream objects, kept alive so that collecting them never closes 0, 1 or 2
_KEPT: list[TextIO] = []


def become(umask: int, fds: Sequence[int], inherited: Sequence[int]) -> NoReturn:
    """Run the caller's command in this freshly forked child and exit with its status.

    ``fds`` are the caller's stdin, stdout, stderr, working directory and the command itself (a
    memory file: arguments, environment, stream encodings, which the daemon never read);
    ``inherited`` the daemon's own descriptors (its socket, its other callers), closed first.
    The daemon forked with the signals blocked: the handlers are reset before they are let in,
    so a signal sent at once reaches the command, never the daemon's handlers.
    """
    code = SETUP_FAILED
    try:
        _reset_signals()
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.setsid()
        with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
            comm.write("maint")  # what ps, top and pgrep show for the run
        command = _read_command(fds[4])
        _take_streams(fds, command.get("streams") or [])
        os.umask(umask)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(command["env"]).items()})
        time.tzset()
        sys.argv = [str(a) for a in command["argv"]]
        main_module = sys.modules.get("__main__")
        if main_module is not None:
            main_module.__package__ = command.get("main_package")
        code = _run()
        _finish()
    except KeyboardInterrupt:  # Ctrl-C before the command started: nothing ran
        code = INTERRUPTED
        with contextlib.suppress(OSError):
            os.write(2, b"interrupted\n")
    except BaseException:
        with contextlib.suppress(Exception):
            os.write(2, f"maint: the daemon could not run this command:\n{traceback.format_exc()}".encode())
    finally:
        os._exit(code)


def _read_command(fd: int) -> dict[str, Any]:
    """The command's memory file, read whole and closed."""
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    command = json.loads(b"".join(chunks))
    if not isinstance(command, dict) or not isinstance(command.get("argv"), list):
        raise ValueError("a malformed command")
    return command


def _take_streams(fds: Sequence[int], streams: Sequence[Any]) -> None:
    """The caller's descriptors become 0, 1 and 2 (and the working directory), with new stream
    objects in the caller's encodings."""
    stdin, stdout, stderr, cwd = fds[:4]
    os.fchdir(cwd)
    for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
        os.dup2(fd, target)
    for fd in set(fds[:4]) - {0, 1, 2}:
        os.close(fd)
    _KEPT.extend(s for s in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__) if s)
    (in_enc, in_err), (out_enc, out_err), (err_enc, _) = _encodings(streams)
    sys.stdin = open(0, encoding=in_enc, errors=in_err, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding=out_enc, errors=out_err, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding=err_enc, errors="backslashreplace", closefd=False)  # noqa: SIM115
    for name in ("stdin", "stdout", "stderr"):  # the originals too, as a fresh interpreter has them
        setattr(sys, f"__{name}__", getattr(sys, name))


def _encodings(streams: Sequence[Any]) -> list[tuple[str, str]]:
    """(encoding, errors) of the caller's stdin, stdout and stderr; the daemon's where not given."""
    default = (sys.stdout.encoding, sys.stdout.errors) if sys.stdout else ("utf-8", "strict")
    found = []
    for given in [*streams, None, None, None][:3]:
        enc, err = given if isinstance(given, list) and len(given) == 2 else (None, None)
        found.append((str(enc or default[0]), str(err or default[1])))
    return found


def _reset_signals() -> None:
    """Handlers as Python's start-up leaves them, then the signals let in (the mask emptied)."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _run() -> int:
    """The ``maint`` command, and the exit status an interpreter would give it."""
    from maintkit.cli.main import main

    try:
        main()
    except SystemExit as exc:
        return _status(exc.code)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _status(code: object) -> int:
    """``sys.exit(code)`` as the interpreter turns it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _finish() -> None:
    """What an interpreter does at exit before it goes: threads joined, atexit run, streams flushed."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
