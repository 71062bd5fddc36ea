"""Streams of one SSH command channel: stdin fed in chunks without blocking, stdout/stderr collected.

The channel is the SSH library's session channel (``send``, ``recv``, ``send_ready``...);
nothing here imports the library: the exceptions that mean "the connection was closed under
us" are given by the transport (:class:`Stdin`'s ``lost_errors``).

Every command line starts with :data:`PGID_PREFIX`: the remote shell, which sshd starts as
the leader of a new session and process group, prints its pid on stderr first.
:class:`Output` takes that line out of stderr and keeps the pid (:class:`Stop`), so that a
cancelled command's whole process group can be signalled on the host.

How SSHTransport bounds a command (a cut network must fail, never hang):

* connect: ``connect_timeout`` bounds the TCP connect, the SSH banner, authentication and
  each session open;
* command: ``timeout`` (default ``command_timeout``) is a deadline for the whole command.
  On expiry the remote process group gets SIGTERM (an SSH ``signal`` request, honoured by
  OpenSSH 7.9+), the channel is closed and the result has ``timed_out=True``, exit 124
  (raised as CommandFailed with ``check=True``, returned otherwise). A timeout says
  nothing about the connection: if the network is cut, the next command fails with
  HostUnreachable when no session can be opened within ``connect_timeout``;
* connection: after ``keepalive_interval * keepalive_count_max`` seconds without a packet
  from the server (default 5 x 3; keepalives that want a reply are sent meanwhile) the
  connection is closed and a running command fails at once with ConnectionLost, long
  before its deadline (:mod:`maintkit.transport.keepalive`).

Cancellation: a command run under a cancelled :class:`~maintkit.transport.base.CancelToken`
raises CommandCancelled. Its process group on the host (every command line first prints the
remote shell's pid: :mod:`maintkit.transport.ssh_channel`) gets SIGTERM at once (a ``signal``
request), then over a new channel SIGTERM again and SIGKILL after ``CANCEL_GRACE`` seconds.
"""

from __future__ import annotations

import contextlib
import re
import select
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from maintkit.errors import TransportError
from maintkit.results import CommandResult
from maintkit.transport.base import checked
from maintkit.transport.keepalive import WATCHER

__all__ = [
    "CHUNK",
    "NO_STATUS",
    "PGID_PREFIX",
    "TIMEOUT_CODE",
    "Disconnected",
    "LocalIOError",
    "Output",
    "Stdin",
    "Stop",
    "command_line",
    "pump",
    "run_on",
    "stop_command",
]

CHUNK = 32768
_SEND_BURST = 16  # stdin chunks sent per loop turn before reading output again
_POLL = 0.5  # longest wait between checks of the connection while a command runs
NO_STATUS = 255  # exit code when the server sent no exit status (killed by a signal)
TIMEOUT_CODE = 124
#: shell that prints the remote process group (the login shell's pid) on stderr before the command
PGID_PREFIX = "printf '\\037maint-pgid=%s\\037\\n' \"$$\" >&2; "
_PGID_LINE = re.compile(rb"\x1fmaint-pgid=(\d+)\x1f\n")
_PGID_SEARCH = 4096  # stderr bytes searched for the pgid line before giving up on it


class Stop:
    """The remote process group of one running command, and its cancellation.

    ``pgid`` is set once the command printed it (``known`` is then set); ``requested`` once
    the command was asked to stop; ``gave_up`` when waiting for the channel to close after the
    process group was killed makes no sense any more (a process outside the group holds it open).
    """

    def __init__(self) -> None:
        self.pgid: int | None = None
        self.known = threading.Event()
        self.requested = False
        self.gave_up = threading.Event()

    def found(self, pgid: int) -> None:
        """Record the remote process group."""
        self.pgid = pgid
        self.known.set()


class LocalIOError(Exception):
    """Reading stdin or writing the stdout sink failed on this machine (not the connection)."""

    def __init__(self, exc: OSError) -> None:
        self.exc = exc
        super().__init__(str(exc))


class Disconnected(Exception):
    """The SSH connection died while a command ran."""


class Stdin:
    """Feeds bytes or a binary file to a channel in chunks, without ever blocking."""

    def __init__(self, data: bytes | IO[bytes] | None, lost_errors: tuple[type[BaseException], ...] = ()) -> None:
        self._file: IO[bytes] | None = None
        self._buf = memoryview(b"")
        self._lost = lost_errors
        if isinstance(data, bytes | bytearray | memoryview):
            self._buf = memoryview(bytes(data))
        elif data is not None:
            self._file = data
        self.done = data is None

    def push(self, chan: Any) -> None:
        """Send what the channel's window allows; send EOF once everything is sent."""
        for _ in range(_SEND_BURST):
            if self.done or not chan.send_ready():
                return
            if not self._buf and not self._refill():
                self.finish(chan)
                return
            try:
                sent = chan.send(self._buf[:CHUNK])
            except self._lost:  # the connection was closed under us
                raise Disconnected() from None
            except OSError:  # the remote side closed the channel: it reads no more
                if not chan.get_transport().is_active():
                    raise Disconnected() from None
                self.done = True
                return
            self._buf = self._buf[sent:]

    def _refill(self) -> bool:
        if self._file is None:
            return False
        try:
            block = self._file.read(CHUNK)
        except OSError as exc:
            raise LocalIOError(exc) from None
        self._buf = memoryview(block or b"")
        return bool(block)

    def finish(self, chan: Any) -> None:
        """Send EOF on stdin."""
        self.done = True
        with contextlib.suppress(OSError, *self._lost):
            chan.shutdown_write()


class Output:
    """Collects stdout (or streams it to a sink) and stderr."""

    def __init__(self, sink: IO[bytes] | None) -> None:
        self.sink = sink
        self.out = bytearray()
        self.err = bytearray()
        #: the command's process group (from the pgid line) and its cancellation
        self.stop = Stop()
        self._seeking = True  # the pgid line is still to be found
        self._head = bytearray()

    def result(
        self, host: str, line: str, code: int, timed_out: bool, *, started: float, limit: float, check: bool
    ) -> CommandResult:
        """The CommandResult of the command (started at monotonic ``started``, deadline ``limit`` s).

        With ``check``, a timeout or a non-zero exit raises :class:`CommandFailed` carrying it.
        """
        self._flush_head()
        streamed = self.sink is not None
        result = CommandResult(
            host=host,
            command=line,
            exit_code=code,
            stdout="" if streamed else self.out.decode("utf-8", "replace"),
            stderr=self.err.decode("utf-8", "replace"),
            duration_ms=(time.monotonic() - started) * 1000.0,
            timed_out=timed_out,
            stdout_bytes=None if streamed else bytes(self.out),
        )
        return checked(result, limit, check)

    def drain(self, chan: Any) -> None:
        """Read everything that has arrived on both streams."""
        while chan.recv_ready():
            block = chan.recv(CHUNK)
            if not block:
                break
            if self.sink is None:
                self.out += block
            else:
                try:
                    self.sink.write(block)
                except OSError as exc:
                    raise LocalIOError(exc) from None
        while chan.recv_stderr_ready():
            block = chan.recv_stderr(CHUNK)
            if not block:
                break
            if self._seeking:
                self._find_pgid(block)
            else:
                self.err += block

    def _find_pgid(self, block: bytes) -> None:
        """Take the pgid line out of the first stderr bytes (whatever a login script printed before it stays)."""
        self._head += block
        match = _PGID_LINE.search(self._head)
        if match is None and len(self._head) < _PGID_SEARCH:
            return
        self._seeking = False
        if match is not None:
            self.stop.found(int(match.group(1)))
            del self._head[match.start() : match.end()]
        self._flush_head()

    def _flush_head(self) -> None:
        self.err += self._head
        self._head.clear()


def pump(
    chan: Any,
    alive: Callable[[], bool],
    stdin: Stdin,
    output: Output,
    deadline: float,
    terminate: Callable[[], None],
    stop: Stop | None = None,
) -> tuple[int, bool]:
    """Feed stdin and collect output of a running command until it ends: (exit code, timed out).

    At the deadline ``terminate`` is called (it signals the remote command) and the result is
    ``(TIMEOUT_CODE, True)``; :class:`Disconnected` is raised when ``alive`` says the connection died.
    When ``stop.gave_up`` is set (a cancelled command whose channel stays open), the result is
    ``(NO_STATUS, False)`` at once.
    """
    poller = select.poll()  # poll, not select: no FD_SETSIZE limit in a busy process
    poller.register(chan.fileno(), select.POLLIN)
    while True:
        output.drain(chan)
        stdin.push(chan)
        ended = chan.eof_received or chan.closed
        if ended and chan.exit_status_ready():
            output.drain(chan)
            break
        if stop is not None and stop.gave_up.is_set():
            output.drain(chan)
            return NO_STATUS, False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            terminate()
            output.drain(chan)
            return TIMEOUT_CODE, True
        if not alive():
            raise Disconnected()
        wait = min(remaining, _POLL)
        if not stdin.done:
            wait = 0.0 if chan.send_ready() else min(wait, 0.005)
        if ended:  # all output is in; only the exit status is missing
            chan.status_event.wait(wait)
        elif wait > 0:
            poller.poll(wait * 1000.0)
    if chan.exit_status < 0:
        if not alive():
            raise Disconnected()
        return NO_STATUS, False
    return int(chan.exit_status), False


def end_timed_out(chan: Any, stop: Stop, signal_term: Callable[[], None], kill_group: Callable[[int], None]) -> None:
    """End a command at its deadline (:func:`pump`'s ``terminate``): ``signal_term()`` (an SSH
    ``signal`` request, which sshd refuses for a key's forced command and versions before 7.9
    ignore), then, when the command's process group is known and its channel still open,
    ``kill_group(pgid)`` over a new channel as for a cancelled command (SIGTERM, SIGKILL after
    the grace period). A command that timed out never goes on running on the host while its
    step is failed and rolled back."""
    signal_term()
    _kill_if_running(chan, stop, kill_group)


def _kill_if_running(chan: Any, stop: Stop, kill_group: Callable[[int], None]) -> None:
    """``kill_group(pgid)`` when the command's process group is known and its channel still open."""
    if stop.pgid is not None and not (chan.closed or chan.exit_status_ready()):
        kill_group(stop.pgid)


def stop_command(
    chan: Any, stop: Stop, signal_term: Callable[[], None], kill_group: Callable[[int], None], wait_pgid: float
) -> None:
    """Stop the command running on ``chan`` (called by a cancelled token, in a thread of its own).

    At once ``signal_term()`` (an SSH ``signal`` request: sshd sends SIGTERM to the command's
    process group with the login user's rights). Then, once the process group is known
    (within ``wait_pgid`` seconds), ``kill_group(pgid)`` over a new channel: SIGTERM to
    whatever is left of the group and SIGKILL after a grace period. Should the channel stay
    open a second after that (a process that left the group holds it), the command is given
    up on (``stop.gave_up``).
    """
    stop.requested = True
    signal_term()
    stop.known.wait(wait_pgid)
    _kill_if_running(chan, stop, kill_group)
    if not chan.status_event.wait(1.0):
        stop.gave_up.set()


def run_on(
    chan: Any,
    alive: Callable[[], bool],
    host: str,
    line: str,
    io: tuple[Stdin, Output],
    deadline: float,
    terminate: Callable[[], None],
    exec_errors: tuple[type[BaseException], ...],
) -> tuple[int, bool]:
    """Execute ``line`` on an open channel and :func:`pump` it: (exit code, timed out).

    ``exec_errors`` are the library's errors for a command the server did not start: after the
    deadline they mean a timeout, on a dead connection :class:`Disconnected`, else a refusal.
    A cancelled command (``output.stop``) is followed as :func:`pump` says.
    """
    # exec_command waits for the server's reply without a timeout: the shared watch (one thread
    # for every command's deadline) closes the channel at the deadline so a cut network cannot hang here.
    watchdog = WATCHER.at(deadline, chan.close)
    try:
        chan.exec_command(line)
    except exec_errors:
        if time.monotonic() >= deadline:
            return TIMEOUT_CODE, True
        if not alive():
            raise Disconnected() from None
        raise TransportError(host, "the server refused to run the command") from None
    finally:
        watchdog.cancel()
    # Without stdin the command line itself redirects it (see SSHTransport._execute): no EOF
    # is sent, because paramiko may put an EOF on the wire after the channel's CLOSE when a
    # fast command ends at once, and sshd then drops the whole connection ("ieof packet
    # referred to nonexistent channel").
    stdin, output = io
    return pump(chan, alive, stdin, output, deadline, terminate, output.stop)


def command_line(line: str, has_stdin: bool) -> str:
    """What is sent to the server for ``line``: the pgid line first; stdin closed unless fed."""
    return PGID_PREFIX + line if has_stdin else f"exec </dev/null; {PGID_PREFIX}{line}"
