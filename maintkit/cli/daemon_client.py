"""Handing a ``maint`` command to the start-up daemon, and asking it for its status or to stop.

Standard library only (the console script imports this before anything else). A command is
handed over only when this user's daemon of this installation is there and takes it
(:func:`hand_over`); whatever goes wrong before it has taken the command, the command runs in
this process as it would without a daemon. Once taken, the run is a child of the daemon with
this process's arguments, environment, working directory, umask and standard streams; this
process forwards the signals a terminal or a scheduler sends (SIGINT, SIGTERM, SIGHUP,
SIGQUIT) and ends with the run's exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from maintkit.cli.daemon_wire import WireError, build, peer_uid, receive, send, socket_path

__all__ = ["FORWARDED", "LOST", "hand_over", "request"]

#: the signals passed on to the run (SIGWINCH: the terminal was resized, for the live view)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH)
#: exit status when the daemon went away before it said how the run ended (as "interrupted")
LOST = 3
#: seconds to wait for the daemon to take a command or answer a question: longer than the daemon
#: waits for a caller's request (``daemon_server.REQUEST_TIMEOUT``), so a daemon held up by one
#: stalled caller still answers in time. Past it the command runs here; had the daemon started
#: it after all, that run finds its caller gone and is stopped (SIGTERM: it rolls back)
ANSWER_TIMEOUT = 10.0


def hand_over(argv: Sequence[str], environ: Mapping[str, str], path: str) -> int | None:
    """Run ``argv`` in the daemon at ``path`` (:func:`~maintkit.cli.daemon_path.offered_socket`);
    its exit status, or None when it did not take the command."""
    sock = _connect(path)
    if sock is None:
        return None
    with sock:
        try:
            taken = _offer(sock, argv, environ)
        except _Lost as exc:
            sys.stderr.write(f"maint: {exc}; it may be running\n")
            return LOST
        if taken is None:
            return None
        pid, pidfd = taken
        try:
            return _wait(sock, pid, pidfd)
        finally:
            if pidfd is not None:
                os.close(pidfd)


def request(op: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """Ask the daemon ``op`` (``status`` or ``stop``); its answer, or None when none runs."""
    sock = _connect(socket_path(environ))
    if sock is None:
        return None
    with sock:
        try:
            send(sock, {"op": op})
            answer, _ = receive(sock)
        except (OSError, WireError, ValueError):
            return None
    return answer


def _connect(path: str) -> socket.socket | None:
    """A connection to the socket at ``path``; None when there is none, or its folder is unsafe."""
    from maintkit._private_dir import dir_problem

    if not os.path.exists(path) or dir_problem(os.path.dirname(path)):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(ANSWER_TIMEOUT)
    try:
        sock.connect(path)
        if peer_uid(sock) != os.getuid():  # only a daemon of this user is ever handed a command
            raise OSError("a daemon of another user")
    except OSError:
        sock.close()
        return None
    return sock


def _offer(sock: socket.socket, argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, int | None] | None:
    """Offer the command; once the daemon says it is ready, tell it to go: (run pid, its pidfd).

    None when the daemon refused or did not answer before it was told to go (it then never
    starts the command, so running it here is safe). Once told, the command is the daemon's:
    a failure from then on is :class:`_Lost`.
    """
    try:
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    payload = -1
    try:
        payload = _payload(argv, environ)
        mask = os.umask(0o022)
        os.umask(mask)
        send(sock, {"op": "run", "umask": mask, **build()}, (0, 1, 2, cwd, payload))
        ready, _ = receive(sock)
    except (OSError, WireError, ValueError):
        return None
    finally:
        for fd in (cwd, payload):
            if fd >= 0:
                os.close(fd)
    if not ready.get("ready"):
        return None
    try:
        send(sock, {"op": "go"})
        answer, fds = receive(sock, maxfds=1)
    except (OSError, WireError, ValueError) as exc:
        raise _Lost(f"the daemon went away as it started the command ({exc})") from None
    if not isinstance(answer.get("pid"), int):
        for fd in fds:
            os.close(fd)
        raise _Lost(f"the daemon did not start the command: {answer.get('why') or answer}")
    return answer["pid"], (fds[0] if fds else None)


def _payload(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The command's arguments, environment and stream encodings in an anonymous memory file.

    The daemon passes it on to the run unread: what the environment holds (secrets) never
    enters the daemon's own memory.
    """
    streams = [[getattr(s, "encoding", None), getattr(s, "errors", None)] for s in (sys.stdin, sys.stdout, sys.stderr)]
    body = json.dumps({
        "argv": list(argv), "env": dict(environ), "streams": streams,
        "main_package": getattr(sys.modules.get("__main__"), "__package__", None),  # click names the program by it
    }).encode()  # fmt: skip
    fd = os.memfd_create("maint-command", os.MFD_CLOEXEC)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Lost(Exception):
    """The daemon took the command and then went away before it said how the run started."""


def _wait(sock: socket.socket, pid: int, pidfd: int | None) -> int:
    """Forward signals to the run until the daemon says how it ended; return that exit status."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    sock.settimeout(None)
    try:
        answer, _ = receive(sock)
        status = answer.get("status")
    except (OSError, WireError, ValueError):
        status = None
    if not isinstance(status, int):
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the run has ended
        sys.stderr.write("maint: the daemon went away; the run's exit status is unknown\n")
        return LOST
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    if status < 0:  # killed by a signal: end the same way, as a shell reports it
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-status, signal.SIG_DFL)
            os.kill(os.getpid(), -status)
        return 128 - status
    return status
