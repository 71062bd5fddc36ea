"""Commands on a live OpenSSH master without starting ``ssh``: a session opened in-process.

OpenSSH's control protocol (PROTOCOL.mux) lets any process that may open the control socket
ask the master for a new session: a hello, a ``MUX_C_NEW_SESSION`` request carrying the
command, then the caller's stdin, stdout and stderr passed as file descriptors (``SCM_RIGHTS``).
The master runs the command on its authenticated connection, wires the remote streams to those
descriptors, and reports the exit status on the socket. That is exactly what an ``ssh`` client
does over a master (``ssh -S SOCK HOST CMD``), minus starting that client: about 6 ms of CPU per
command on a 2-core machine, more than the session itself costs (about 3 ms).

:func:`open_session` raises :class:`MuxUnavailable` whenever nothing can have run on the host
(no master, a socket that does not speak the protocol, a refused session): the transport then
starts ``ssh`` as before, which reports what is wrong in its own words. Once the master said the
session is open, the command may be running: a session that ends without an exit status
(the master died, the connection broke) reads as ``ssh``'s exit status 255. The exit status
can come while the command's output is still on its way (sshd sends it when the command ends,
and the output follows as the channel's window allows): the control connection is kept until
the caller has read the output (:meth:`MuxSession.release`), because the master closes the
session's streams, dropping what it has not delivered, when the connection hangs up.

The same strictness holds as for ``ssh``: the master is the one the transport opened or found
with its own options (host key policy, key, known_hosts; the socket's name is a hash of them),
the socket lives in the private control directory, no TTY, no forwarding, no escape character
and no environment is asked for. The command line never appears in a local process list.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import IO

from maintkit.transport.openssh_control import CONTROL_TIMEOUT, mux_frame, mux_hello, mux_read
from maintkit.transport.ssh_channel import Stop

__all__ = ["MuxSession", "MuxUnavailable", "open_session"]

_NEW_SESSION, _SESSION_OPENED, _EXIT_MESSAGE = 0x10000002, 0x80000006, 0x80000004
_NO_ESCAPE = 0xFFFFFFFF
#: what a session that ended without an exit status reads as (ssh's own failure status)
LOST_STATUS = 255


class MuxUnavailable(Exception):
    """The master could not be asked for a session; nothing ran on the host."""


def _request(request_id: int, command: str) -> bytes:
    """``MUX_C_NEW_SESSION``: no TTY, X11, agent or subsystem, no escape character, no TERM, no env.

    Its strings are length-prefixed exactly as a message is (:func:`mux_frame`).
    """
    return (
        struct.pack(">II", _NEW_SESSION, request_id)
        + mux_frame(b"")  # reserved
        + struct.pack(">IIIII", 0, 0, 0, 0, _NO_ESCAPE)
        + mux_frame(b"")  # TERM
        + mux_frame(command.encode("utf-8", "surrogateescape"))
    )


class MuxSession:
    """One command running through a master: the streams and exit status of a finished ``ssh``.

    Quacks like the :class:`subprocess.Popen` of an ``ssh`` client for the transport's machinery
    (``stdin``/``stdout``/``stderr``, ``wait``, ``poll``, ``returncode``); there is no local
    process, so :attr:`pid` is 0 and must never be signalled: :meth:`end` stops waiting instead.
    """

    pid = 0

    def __init__(self, conn: socket.socket, stdin: IO[bytes] | None, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        self._conn = conn
        #: the command's process group on the host (from the pid line it prints first)
        self.remote = Stop()
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None
        self.lost = False
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        """The exit status once known (None while the command runs)."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; ``subprocess.TimeoutExpired`` when it is not known within ``timeout``."""
        with self._lock:
            while self.returncode is None:
                try:
                    ready, _, _ = select.select([self._conn], [], [], timeout)
                except (OSError, ValueError):  # the socket was closed by end()
                    ready = [self._conn]
                if not ready:
                    raise subprocess.TimeoutExpired("ssh (control master session)", timeout or 0.0)
                self._read_one()
            return self.returncode

    def _read_one(self) -> None:
        try:
            self._conn.settimeout(CONTROL_TIMEOUT)  # a message, once begun, arrives whole
            message = mux_read(self._conn)
        except (OSError, ValueError):
            self._lose()
            return
        if len(message) >= 12 and struct.unpack(">I", message[:4])[0] == _EXIT_MESSAGE:
            # the connection stays open (see release): the output may still be on its way
            self.returncode = struct.unpack(">I", message[8:12])[0] & 0xFF
        # anything else (a TTY allocation failure we never asked for) is not the end

    def _lose(self) -> None:
        self.lost = True
        self.returncode = LOST_STATUS
        with contextlib.suppress(OSError):
            self._conn.close()

    def release(self) -> None:
        """Hang up the control connection, once the command's output has been read.

        The master sends the exit status as soon as sshd does, while the command's output may
        still be in its buffers on the way to our pipes; a hang-up makes it close the session's
        streams and drop that output (an ``ssh`` client likewise waits for the master to hang up).
        """
        with contextlib.suppress(OSError):
            self._conn.close()

    def end(self) -> None:
        """Stop waiting for the exit status (the remote group was stopped, or is given up):
        a :meth:`wait` in progress returns at once; the control connection is closed."""
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)
        if self._lock.acquire(timeout=CONTROL_TIMEOUT):  # a waiter, woken above, reads the end first
            try:
                if self.returncode is None:
                    self._lose()
            finally:
                self._lock.release()


def open_session(sock: Path, command: str, has_stdin: bool) -> MuxSession:
    """Ask the master on ``sock`` to run ``command`` (sent as ``ssh`` sends a remote command).

    Raises :class:`MuxUnavailable` when the master cannot be asked or refuses: nothing ran.
    """
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ours: list[int] = []
    theirs: list[int] = []
    try:
        conn.settimeout(CONTROL_TIMEOUT)
        conn.connect(str(sock))
        mux_hello(conn)
        if has_stdin:
            read_in, write_in = os.pipe()
            theirs.append(read_in)
            ours.append(write_in)
        else:
            theirs.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        for _ in range(2):
            read_end, write_end = os.pipe()
            ours.append(read_end)
            theirs.append(write_end)
        conn.sendall(mux_frame(_request(1, command)))
        for fd in theirs:
            socket.send_fds(conn, [b"\0"], [fd])
        reply = mux_read(conn)
        if len(reply) < 12 or struct.unpack(">II", reply[:8]) != (_SESSION_OPENED, 1):
            raise MuxUnavailable(_refusal(reply))
    except (OSError, ValueError) as exc:
        _close(conn, ours, theirs)
        raise MuxUnavailable(str(exc) or type(exc).__name__) from None
    except BaseException:
        _close(conn, ours, theirs)
        raise
    for fd in theirs:  # the master holds its own copies now
        os.close(fd)
    stdin = os.fdopen(ours.pop(0), "wb") if has_stdin else None
    return MuxSession(conn, stdin, os.fdopen(ours[0], "rb", buffering=0), os.fdopen(ours[1], "rb", buffering=0))


def _refusal(reply: bytes) -> str:
    """The reason a master gave for not opening the session (its failure message's text)."""
    if len(reply) >= 12:
        size = struct.unpack(">I", reply[8:12])[0]
        text = reply[12 : 12 + size].decode("utf-8", "replace")
        if text:
            return f"the control master refused the session: {text}"
    return "the control master refused the session"


def _close(conn: socket.socket, *fds: list[int]) -> None:
    with contextlib.suppress(OSError):
        conn.close()
    for group in fds:
        for fd in group:
            with contextlib.suppress(OSError):
                os.close(fd)
