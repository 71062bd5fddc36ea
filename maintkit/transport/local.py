"""LocalTransport: the Transport protocol on this machine (``connection: local``).

The design names invoke for local commands; this uses :mod:`subprocess` directly instead:
binary stdin/stdout streaming and killing a whole process group on timeout are simpler
that way, and it is faster (no runner threads polling). Command lines are built by
:func:`maintkit.transport.base.build_command` exactly as for SSH and run with
``/bin/sh -c LINE`` in a new session, so a timeout, or a cancelled
:class:`~maintkit.transport.base.CancelToken` (the call then raises CommandCancelled), can
kill everything the command started.

Files are read and written through the file system (temp file in the same directory,
fsync, ``os.replace``). Under ``become`` when this process is not root, writes and
unreadable reads go through ``sudo -n`` like the SSH transport does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import IO, Protocol

from maintkit.errors import TransportError
from maintkit.results import CommandResult
from maintkit.transport.base import (
    CANCEL_GRACE,
    CancelToken,
    CommandTransport,
    atomic_put_script,
    cancelled_error,
    checked,
    refuse_if_cancelled,
)

__all__ = ["LocalTransport", "Progress", "Running", "atomic_put_script"]

_CHUNK = 65536
_TIMEOUT_CODE = 124
_KILL_GRACE = 3.0


class Running(Protocol):
    """A started command as the machinery drives it: a :class:`subprocess.Popen`, or a session
    a transport opened without a local process (whose ``pid`` is 0 and is never signalled)."""

    @property
    def stdin(self) -> IO[bytes] | None: ...
    @property
    def stdout(self) -> IO[bytes] | None: ...
    @property
    def stderr(self) -> IO[bytes] | None: ...
    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class LocalTransport(CommandTransport):
    """Runs commands with ``/bin/sh -c`` on this machine; every call has a timeout.

    ``name`` is the display name (results, errors). ``become`` wraps commands in
    ``sudo -n`` (as ``sudo_user`` or root) unless a call passes ``sudo=False``.
    ``timeout=None`` in a call means ``command_timeout``.
    """

    def __init__(
        self,
        *,
        name: str = "local",
        become: bool = False,
        sudo_user: str | None = None,
        command_timeout: float = 120,
    ) -> None:
        self.host = name
        self.become = become
        self.sudo_user = sudo_user
        self.command_timeout = float(command_timeout)
        self.round_trips = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalTransport(name={self.host!r}, become={self.become!r})"

    @property
    def connected(self) -> bool:
        """Always True: there is no connection to lose."""
        return True

    # ---------------------------------------------------------------- commands
    def _execute(
        self,
        line: str,
        *,
        timeout: float | None,
        check: bool,
        stdin: bytes | IO[bytes] | None,
        stdout_sink: IO[bytes] | None,
    ) -> CommandResult:
        limit = self.command_timeout if timeout is None else float(timeout)
        token = refuse_if_cancelled(self.host)
        with self._count_lock:
            self.round_trips += 1
        started = time.monotonic()
        proc = self._spawn(line, stdin)
        out: list[bytes] = []
        err: list[bytes] = []
        progress = (Progress(), Progress())  # stdout's, stderr's: one writer each
        threads = [
            threading.Thread(target=_pump, args=(proc.stdout, out, stdout_sink, progress[0]), daemon=True),
            threading.Thread(target=self._pump_stderr, args=(proc, err, progress[1]), daemon=True),
        ]
        if stdin is not None:
            threads.append(threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True))
        for t in threads:
            t.start()
        try:
            code, timed_out, stopped = self._wait(proc, limit, token)
            _drain(threads, progress, started + limit)
        finally:
            self._release(proc)
        if stopped and (code != 0 or timed_out):  # exit 0: it finished before the stop reached it
            raise cancelled_error(self.host)
        self._finished(proc, line, code, timed_out, err)
        raw = b"".join(out)
        result = CommandResult(
            host=self.host,
            command=line,
            exit_code=code,
            stdout="" if stdout_sink is not None else raw.decode("utf-8", "replace"),
            stderr=b"".join(err).decode("utf-8", "replace"),
            duration_ms=(time.monotonic() - started) * 1000.0,
            timed_out=timed_out,
            stdout_bytes=None if stdout_sink is not None else raw,
        )
        return checked(result, limit, check)

    def _spawn(self, line: str, stdin: bytes | IO[bytes] | None) -> Running:
        """Start ``/bin/sh -c LINE`` (:meth:`_argv`) in a session (and process group) of its own."""
        argv = self._argv(line, stdin is not None)
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(self.host, f"cannot start {argv[0]}: {exc}") from None

    # hooks for a transport built on this machinery (the OpenSSH transport runs ``ssh`` here)
    def _argv(self, line: str, has_stdin: bool) -> list[str]:
        """The program that runs ``line``: ``/bin/sh -c LINE``."""
        return ["/bin/sh", "-c", line]

    def _pump_stderr(self, proc: Running, chunks: list[bytes], progress: Progress) -> None:
        """Collect the command's stderr, counting its bytes in ``progress``."""
        _pump(proc.stderr, chunks, None, progress)

    def _finished(self, proc: Running, line: str, code: int, timed_out: bool, err: list[bytes]) -> None:
        """Called once the command ended, before its result is made (nothing to do here)."""

    def _release(self, proc: Running) -> None:
        """Called once the command ended and its output was read (nothing to do here: the
        pumps close the pipes)."""

    def _wait(self, proc: Running, limit: float, token: CancelToken | None) -> tuple[int, bool, bool]:
        """Wait for the command: (exit code, timed out, stopped by ``token``).

        At the deadline, or when ``token`` is cancelled, the command's process group gets
        SIGTERM, then SIGKILL after a grace period.
        """
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            if proc.returncode is None:
                self._kill_group(proc)

        unregister = token.register(stop) if token is not None else None
        try:
            return _exit_code(proc.wait(timeout=limit)), False, stopped.is_set()
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            return _TIMEOUT_CODE, True, stopped.is_set()
        finally:
            if unregister is not None:
                unregister()

    def _kill_group(self, proc: Running) -> None:
        """TERM the command's process group, KILL it if it does not exit in time.

        Under ``become`` when this process is not root, the members sudo started as root are
        signalled through ``sudo -n kill``.
        """
        for sig, grace in ((signal.SIGTERM, CANCEL_GRACE), (signal.SIGKILL, _KILL_GRACE)):
            self._signal_group(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def _signal_group(self, pgid: int, sig: signal.Signals) -> None:
        """Signal a process group; under sudo also as root (sudo's members are not ours to signal)."""
        if pgid <= 1:  # no process of its own (or a bogus id): killpg would reach far more than the command
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        if self._via_sudo():
            argv = ["sudo", "-n", "kill", "-s", sig.name.removeprefix("SIG"), "--", f"-{pgid}"]
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=_KILL_GRACE, check=False)

    # ---------------------------------------------------------------- files
    def _via_sudo(self) -> bool:
        return self.become and os.geteuid() != 0

    def put(self, data: bytes, path: str, *, mode: int | None = None, timeout: float | None = None) -> None:
        """Write ``path`` atomically (temp file in the same directory, fsync, rename).

        Without ``mode`` an existing file keeps its mode (and, as root, its owner); a new
        file gets 0644. Raises :class:`TransportError` when the file cannot be written.
        """
        if mode is not None and not 0 <= mode <= 0o7777:
            raise ValueError(f"invalid file mode {mode!r}")
        if self._via_sudo():
            self.run_shell(atomic_put_script(path, mode), stdin=bytes(data), timeout=timeout)
            return
        try:
            _write_atomic(path, bytes(data), mode)
        except OSError as exc:
            raise TransportError(self.host, f"cannot write {path}: {exc.strerror or exc}") from None

    def get(self, path: str, *, timeout: float | None = None) -> bytes:
        """Read a whole file. Raises :class:`TransportError` when it cannot be read."""
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except PermissionError:
            if self._via_sudo():
                res = self.run(["cat", "--", path], timeout=timeout)
                return res.stdout_bytes or b""
            raise TransportError(self.host, f"cannot read {path}: permission denied") from None
        except OSError as exc:
            raise TransportError(self.host, f"cannot read {path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Nothing to close."""


def _write_atomic(path: str, data: bytes, mode: int | None) -> None:
    directory = os.path.dirname(path) or "."
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    if mode is None:
        mode = (st.st_mode & 0o7777) if st is not None else 0o644
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if st is not None and os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _exit_code(code: int) -> int:
    """Like a shell: a process killed by signal N exits 128+N."""
    return 128 - code if code < 0 else code


class Progress:
    """How many bytes one of a command's pumps has read so far (its progress)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def _join(thread: threading.Thread, timeout: float) -> None:
    """One wait for a pump (a function of its own, so a test can see each wait begin)."""
    thread.join(timeout=timeout)


def _drain(threads: list[threading.Thread], progress: Sequence[Progress], deadline: float) -> None:
    """Wait for a command's pumps once the command ended, so its result holds all it wrote.

    A pump ends at the end of its stream. While output keeps arriving on any of the streams (a
    sender still delivering it: a connection multiplexer behind, a busy machine), the wait goes
    on, up to the command's own deadline. When nothing came on any stream for ``_KILL_GRACE``
    while one is still open (a background process the command left, holding it), every stream
    still open is given up at once: the result is what was read.
    """
    for thread in threads:
        while True:
            seen = sum(p.n for p in progress)
            _join(thread, _KILL_GRACE)
            if not thread.is_alive():
                break
            if sum(p.n for p in progress) == seen or time.monotonic() >= deadline:
                return


def _pump(
    stream: IO[bytes] | None, chunks: list[bytes], sink: IO[bytes] | None, progress: Progress | None = None
) -> None:
    if stream is None:
        return
    with stream:
        while block := os.read(stream.fileno(), _CHUNK):
            if sink is not None:
                sink.write(block)
            else:
                chunks.append(block)
            if progress is not None:
                progress.n += len(block)


def _feed(stream: IO[bytes] | None, data: bytes | IO[bytes]) -> None:
    if stream is None:
        return
    with contextlib.suppress(BrokenPipeError, OSError), stream:
        if isinstance(data, bytes | bytearray | memoryview):
            stream.write(data)
        else:
            while block := data.read(_CHUNK):
                stream.write(block)
