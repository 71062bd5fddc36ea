"""Streams of one SSH command channel: stdin fed in chunks without blocking, stdout/stderr collected.

The channel is the SSH library's session channel (``send``, ``recv``, ``send_ready``...);
nothing here imports the library: the exceptions that mean "the connection was closed under
us" are given by the transport (:class:`Stdin`'s ``lost_errors``).
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable
from typing import IO, Any

from maintkit._text import head
from maintkit.errors import CommandFailed
from maintkit.results import CommandResult

__all__ = ["CHUNK", "NO_STATUS", "TIMEOUT_CODE", "Disconnected", "LocalIOError", "Output", "Stdin", "pump"]

CHUNK = 32768
_SEND_BURST = 16  # stdin chunks sent per loop turn before reading output again
_POLL = 0.5  # longest wait between checks of the connection while a command runs
NO_STATUS = 255  # exit code when the server sent no exit status (killed by a signal)
TIMEOUT_CODE = 124


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

    def result(
        self, host: str, line: str, code: int, timed_out: bool, *, started: float, limit: float, check: bool
    ) -> CommandResult:
        """The CommandResult of the command (started at monotonic ``started``, deadline ``limit`` s).

        With ``check``, a timeout or a non-zero exit raises :class:`CommandFailed` carrying it.
        """
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
        if check and timed_out:
            raise CommandFailed(result, f"command timed out after {limit:g} s: {head(line, 200)}")
        if check and code != 0:
            raise CommandFailed(result)
        return result

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
            self.err += block


def pump(
    chan: Any, alive: Callable[[], bool], stdin: Stdin, output: Output, deadline: float, terminate: Callable[[], None]
) -> tuple[int, bool]:
    """Feed stdin and collect output of a running command until it ends: (exit code, timed out).

    At the deadline ``terminate`` is called (it signals the remote command) and the result is
    ``(TIMEOUT_CODE, True)``; :class:`Disconnected` is raised when ``alive`` says the connection died.
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
