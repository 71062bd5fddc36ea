"""LocalTransport: run the same actions on this machine (``connection: local``).

It uses :mod:`subprocess` directly rather than invoke: binary stdin/stdout streaming and
killing a whole process group on timeout are simpler and faster that way. Command lines are
built by :func:`maintkit.transport.base.build_command`, exactly as for SSH.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO

from maintkit.errors import CommandFailed, TransportError
from maintkit.results import CommandResult
from maintkit.transport.base import DEFAULT_TIMEOUT, build_command

_CHUNK = 65536


class LocalTransport:
    """Runs commands with ``sh -c`` on this machine; every call has a timeout."""

    def __init__(self, *, name: str = "local", become: bool = False, sudo_user: str | None = None) -> None:
        self.host = name
        self.become = become
        self.sudo_user = sudo_user
        self.round_trips = 0
        self.connected = True

    # ---------------------------------------------------------------- commands
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        stdin: bytes | IO[bytes] | None = None,
        stdout_sink: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        sudo: bool | None = None,
    ) -> CommandResult:
        """Run an argument list (quoted)."""
        line = build_command(list(argv), cwd=cwd, env=env, sudo=self._sudo(sudo), sudo_user=self.sudo_user)
        return self._execute(line, timeout=timeout, check=check, stdin=stdin, stdout_sink=stdout_sink)

    def run_shell(
        self,
        script: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
        stdin: bytes | IO[bytes] | None = None,
        stdout_sink: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        sudo: bool | None = None,
    ) -> CommandResult:
        """Run an explicit shell script."""
        line = build_command(script=script, cwd=cwd, env=env, sudo=self._sudo(sudo), sudo_user=self.sudo_user)
        return self._execute(line, timeout=timeout, check=check, stdin=stdin, stdout_sink=stdout_sink)

    def _sudo(self, sudo: bool | None) -> bool:
        return self.become if sudo is None else sudo

    def _execute(
        self,
        line: str,
        *,
        timeout: float,
        check: bool,
        stdin: bytes | IO[bytes] | None,
        stdout_sink: IO[bytes] | None,
    ) -> CommandResult:
        self.round_trips += 1
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", line],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(self.host, f"cannot start /bin/sh: {exc}") from None
        out_chunks: list[bytes] = []
        err_chunks: list[bytes] = []
        threads = [
            threading.Thread(target=_pump_out, args=(proc.stdout, out_chunks, stdout_sink), daemon=True),
            threading.Thread(target=_pump_out, args=(proc.stderr, err_chunks, None), daemon=True),
        ]
        if stdin is not None:
            threads.append(threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True))
        for t in threads:
            t.start()
        # Waiting on the output pumps (a lock wait) instead of Popen.wait(timeout), which polls
        # with sleeps of up to 50 ms: that alone made every local command ~10 ms slower.
        deadline = started + timeout
        for t in threads[:2]:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        timed_out = False
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            code = 124
        for t in threads:
            t.join(timeout=5)
        raw = b"".join(out_chunks)
        result = CommandResult(
            host=self.host,
            command=line,
            exit_code=code,
            stdout="" if stdout_sink is not None else raw.decode("utf-8", "replace"),
            stderr=b"".join(err_chunks).decode("utf-8", "replace"),
            duration_ms=(time.monotonic() - started) * 1000.0,
            timed_out=timed_out,
            stdout_bytes=None if stdout_sink is not None else raw,
        )
        if timed_out and check:
            raise CommandFailed(result, f"command timed out after {timeout:g} s: {line[:200]}")
        if check and code != 0:
            raise CommandFailed(result)
        return result

    # ---------------------------------------------------------------- files
    def put(self, data: bytes, path: str, *, mode: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Write ``path`` atomically (temp file in the same directory + rename)."""
        if self.become and os.geteuid() != 0:
            self.run_shell(
                'tmp=$(mktemp "$1.XXXXXX") && cat > "$tmp" && chmod "$2" "$tmp" && mv -f "$tmp" "$1"',
                stdin=data,
                timeout=timeout,
            )
            return
        directory = os.path.dirname(path) or "."
        if mode is None:
            try:
                mode = os.stat(path).st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o644
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".")
        except OSError as exc:
            raise TransportError(self.host, f"cannot write {path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            with _suppress():
                os.unlink(tmp)
            raise TransportError(self.host, f"cannot write {path}: {exc.strerror}") from None

    def get(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read a whole file."""
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except PermissionError:
            if self.become:
                res = self.run(["cat", "--", path], timeout=timeout)
                return res.stdout_bytes or b""
            raise TransportError(self.host, f"cannot read {path}: permission denied") from None
        except OSError as exc:
            raise TransportError(self.host, f"cannot read {path}: {exc.strerror}") from None

    def close(self) -> None:
        """Nothing to close."""


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _pump_out(stream: IO[bytes] | None, chunks: list[bytes], sink: IO[bytes] | None) -> None:
    if stream is None:
        return
    while True:
        block = stream.read1(_CHUNK) if hasattr(stream, "read1") else stream.read(_CHUNK)
        if not block:
            break
        if sink is not None:
            sink.write(block)
        else:
            chunks.append(block)
    stream.close()


def _feed(stream: IO[bytes] | None, data: bytes | IO[bytes]) -> None:
    if stream is None:
        return
    try:
        if isinstance(data, bytes | bytearray):
            stream.write(data)
        else:
            shutil.copyfileobj(data, stream, _CHUNK)
    except BrokenPipeError:
        pass
    finally:
        with _suppress():
            stream.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with _suppress():
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with _suppress():
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
