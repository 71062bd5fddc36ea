"""Generic helpers to start, watch and stop lab server processes.

Every lab server (sshd, nginx, php-fpm, MariaDB, Redis, pebble...) follows the same life
cycle: start it by hand with its own config, pid file and log under a temp directory,
wait until its port answers, and at teardown stop it **by pid, children first**. This
module holds the pieces that are the same for all of them; it knows nothing about any
particular server.

Typical use::

    from tests.lab.procs import free_port, read_pidfile, stop_pid, wait_port

    port = free_port("127.0.0.1")
    run_checked(["nginx", "-c", conf, "-p", prefix, "-e", log])   # daemonizes
    pid = read_pidfile(prefix / "nginx.pid")
    wait_port("127.0.0.1", port, pid=pid, log=log)                 # raises LabStartError
    ...
    stop_pid(pid)                                                  # workers first, then master

A server that does not come up raises :class:`LabStartError` (with the tail of its log):
tests that need it fail, they never skip.

Only processes whose pid the caller knows are signalled. Descendants are found through
``/proc`` (parent pid links), so nothing is ever matched by name.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "LabStartError",
    "children",
    "cmdline_names",
    "descendants",
    "free_port",
    "is_alive",
    "log_tail",
    "read_pidfile",
    "run_checked",
    "same_process",
    "start_time",
    "stop_pid",
    "stop_pidfile",
    "stop_popen",
    "uses_path",
    "wait_port",
]


class LabStartError(RuntimeError):
    """A lab process could not be started (the message carries its log tail)."""


# ---------------------------------------------------------------- inspecting processes
def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` split after the command name (state is [0], ppid is [1])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name is in parentheses and may itself contain spaces or parentheses
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid``, in clock ticks after boot; None when it is not running.
    With the pid it names one process over time (pids are reused)."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def same_process(pid: int, start: object) -> bool:
    """Whether ``pid`` is still the process that had start time ``start`` (:func:`start_time`)."""
    return start is not None and start_time(pid) == start


def cmdline_names(needle: str) -> bool:
    """Whether a process on this machine carries ``needle`` in its command line."""
    return _any_process(needle, cwd_under=None)


def uses_path(path: str) -> bool:
    """Whether a process on this machine names ``path`` on its command line or works in it
    (its working directory is ``path`` or below)."""
    return _any_process(path, cwd_under=path)


def _any_process(needle: str, cwd_under: str | None) -> bool:
    """One pass over /proc: a process whose command line holds ``needle``, or whose working
    directory is ``cwd_under`` or below it."""
    wanted = needle.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if wanted in Path(f"/proc/{entry}/cmdline").read_bytes():
                return True
            if cwd_under is not None:
                cwd = os.readlink(f"/proc/{entry}/cwd")
                if cwd == cwd_under or cwd.startswith(f"{cwd_under}/"):
                    return True
    return False


def is_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (our own zombie children are reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid``, deepest first (the order in which to stop them)."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parent_of[int(entry)] = int(fields[1])
    kids: dict[int, list[int]] = {}
    for child, parent in parent_of.items():
        kids.setdefault(parent, []).append(child)
    order: list[int] = []

    def walk(p: int) -> None:
        for c in kids.get(p, []):
            walk(c)
            order.append(c)

    walk(pid)
    return order


# ---------------------------------------------------------------- stopping processes
def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def _wait_gone(pids: Sequence[int], deadline: float) -> list[int]:
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if is_alive(p)]
        if left:
            time.sleep(0.02)
    return [p for p in left if is_alive(p)]


def stop_pid(pid: int, *, grace: float = 5.0, sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop ``pid`` and all its descendants: children first, then the process itself.

    Descendants (deepest first) get ``sig`` and up to ``grace`` seconds to exit, then the
    process gets ``sig`` and another ``grace``; whatever is left is killed with SIGKILL.
    A pid that is already gone is fine.
    """
    if not is_alive(pid):
        return
    kids = descendants(pid)
    _signal(kids, sig)
    _wait_gone(kids, time.monotonic() + grace)
    late = descendants(pid)  # a master may have respawned workers meanwhile
    _signal([pid], sig)
    left = _wait_gone([pid, *late, *kids], time.monotonic() + grace)
    if left:
        _signal([*descendants(pid), *left], signal.SIGKILL)
        _wait_gone(left, time.monotonic() + 2.0)


def stop_pidfile(path: str | Path, *, grace: float = 5.0) -> None:
    """Stop the process named in a pid file (children first); a missing file is fine."""
    try:
        pid = int(Path(path).read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    stop_pid(pid, grace=grace)


def stop_popen(proc: subprocess.Popen[bytes] | subprocess.Popen[str], *, grace: float = 5.0) -> None:
    """Stop a process started with :class:`subprocess.Popen` (children first) and reap it."""
    if proc.poll() is None:
        stop_pid(proc.pid, grace=grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


# ---------------------------------------------------------------- starting processes
def run_checked(argv: Sequence[str], *, timeout: float = 60.0, what: str | None = None) -> str:
    """Run a setup command; raise :class:`LabStartError` with its output if it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabStartError(f"{what or argv[0]}: {exc}") from None
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip()[-2000:]
        raise LabStartError(f"{what or ' '.join(argv)} failed with exit {proc.returncode}: {out}")
    return proc.stdout


def read_pidfile(path: str | Path, *, timeout: float = 10.0, log: str | Path | None = None) -> int:
    """Wait for a daemon's pid file and return the pid (raise LabStartError if it never appears)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError, IndexError, ValueError):
            return int(Path(path).read_text().split()[0])
        if time.monotonic() > deadline:
            raise LabStartError(f"no pid file {path} after {timeout:g} s{log_tail(log)}")
        time.sleep(0.01)


#: the lowest port the lab hands out; the highest is just below the kernel's ephemeral range
LAB_PORTS_FROM = 20000
_HANDED: set[int] = set()
_HANDED_LOCK = threading.Lock()
_RANDOM = random.SystemRandom()  # not the global generator, which hypothesis seeds per example


def free_port(host: str = "127.0.0.1", *, udp: bool = False) -> int:
    """A TCP port (and UDP with ``udp``) free on ``host`` right now, for a lab server to listen on.

    Chosen below the kernel's ephemeral range (``ip_local_port_range``), never from it: a port
    the kernel picked for port 0 can be given to an outgoing connection (an SSH client of
    another test) between this choice and the server's own bind ("Address already in use").
    A port is handed out once per test session.
    """
    high = _ephemeral_low() - 1
    for _ in range(500):
        port = _RANDOM.randint(LAB_PORTS_FROM, high)
        with _HANDED_LOCK:
            if port in _HANDED or not _bindable(host, port, udp):
                continue
            _HANDED.add(port)
            return port
    raise LabStartError(f"no free port on {host} between {LAB_PORTS_FROM} and {high}")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int, udp: bool) -> bool:
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    try:
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((host, port))
    except OSError:
        return False
    return True


def wait_port(
    host: str,
    port: int,
    *,
    timeout: float = 15.0,
    pid: int | None = None,
    log: str | Path | None = None,
) -> None:
    """Wait until ``host:port`` accepts TCP connections.

    With ``pid`` it fails at once when that process dies; ``log`` is quoted in the error.
    Raises :class:`LabStartError`.
    """
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        if pid is not None and not is_alive(pid):
            raise LabStartError(f"process {pid} died before {host}:{port} answered{log_tail(log)}")
        if time.monotonic() > deadline:
            raise LabStartError(f"{host}:{port} did not answer within {timeout:g} s{log_tail(log)}")
        time.sleep(0.02)


def log_tail(path: str | Path | None, size: int = 2000) -> str:
    """The end of a log file as ``"\\n--- LOG ---\\n..."`` (empty when there is no log)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            text = fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f"\n--- {path} ---\n{text}" if text else ""
