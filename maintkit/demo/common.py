"""What the demo servers share: their error, free ports on 127.0.0.1, waiting for a URL,
and stopping processes by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["DemoServerError", "free_port", "stop_leftover", "terminate", "wait_http"]


class DemoServerError(RuntimeError):
    """A demo server could not start (the message says why)."""


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        if port is None:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise DemoServerError("no free port on 127.0.0.1")


def wait_http(url: str, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> None:
    """Wait until ``url`` answers (any HTTP status)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):  # noqa: S310 - loopback URL we built
                return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise DemoServerError(f"{url} did not answer within {timeout:.0f} s ({last})")


def stop_leftover(pid: int, marker: str, timeout: float = 20.0) -> bool:
    """Stop process ``pid`` if it is still running and its command line mentions ``marker``
    (a server an earlier, killed demo run started). Returns True when it was stopped."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if marker not in cmdline:
        return False
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:  # started with its own session: stop its workers too
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    return True


def terminate(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a process started with its own session: SIGTERM to its group, SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
