"""The start-up daemon: maint's code loaded once, a fresh fork of it for every command.

    python -m maintkit.cli.daemon_server --socket PATH [--idle SECONDS] [--ready-fd FD]

Started by ``maint daemon start`` (docs/cli.md#maint-daemon). It imports maintkit's modules and
the libraries a run needs (:data:`PRELOAD`), then listens on its socket (0600, in a folder only
its user may use) and, for each command a caller hands it (:mod:`.daemon_client`), forks a
child that becomes the caller's process (:mod:`.daemon_child`) and tells the caller how it
ended. Nothing of one run can reach the next: the daemon itself never runs a command, so every
child starts from the same state, right after the imports.

It refuses a caller of another user (``SO_PEERCRED``), another interpreter or another copy of
maintkit, and, once any of its source files or the site-packages folders changed, every
caller: it then stops (the callers run their commands themselves). It also stops on
``maint daemon stop``, SIGTERM, or when it has had nothing to do for ``--idle`` seconds; a
run under way is never cut short, the daemon only exits after it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import pkgutil
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import resource

from maintkit.cli.daemon_child import become
from maintkit.cli.daemon_wire import WireError, build, peer_uid, send, take

__all__ = ["PRELOAD", "Daemon", "fingerprint", "main", "preload"]

#: the libraries a run imports lazily, loaded ahead with every maintkit module
PRELOAD = (
    "paramiko", "fabric", "invoke", "pydantic", "jinja2.sandbox", "yaml", "structlog", "structlog.stdlib",
    "rich.console", "git", "requests", "cryptography.hazmat.primitives.serialization", "click", "json",
    "concurrent.futures", "subprocess", "tempfile", "shlex", "hashlib", "email.utils",
)  # fmt: skip
#: seconds a caller has to send its request once connected, and then to say "go"
REQUEST_TIMEOUT = 5.0
_SKIP = ("maintkit.__main__", "maintkit.cli.daemon_")


def preload() -> int:
    """Import every maintkit module and :data:`PRELOAD`; the number of modules loaded."""
    import maintkit

    names: list[str] = []
    with contextlib.suppress(Exception):  # a package that fails to import ends the walk, not the daemon
        for m in pkgutil.walk_packages(maintkit.__path__, "maintkit.", onerror=lambda _name: None):
            if not m.name.startswith(_SKIP):
                names.append(m.name)
    for name in (*PRELOAD, *names):
        with contextlib.suppress(Exception):  # an optional extra that is not installed
            importlib.import_module(name)
    return len(sys.modules)


def fingerprint() -> tuple[tuple[str, int, int], ...]:
    """The files that, changed, make the loaded code stale: maintkit's sources and site-packages."""
    import site

    import maintkit

    seen: list[tuple[str, int, int]] = []
    for root, dirs, files in os.walk(os.path.dirname(os.path.abspath(maintkit.__file__))):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(root, name))
                seen.append((os.path.join(root, name), st.st_mtime_ns, st.st_size))
    for folder in (*site.getsitepackages(), site.getusersitepackages()):
        with contextlib.suppress(OSError):
            st = os.stat(folder)
            seen.append((folder, st.st_mtime_ns, 0))
    return tuple(seen)


#: the signals blocked while forking: a child resets the daemon's handlers before it lets them in
FORK_BLOCKED = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGWINCH,
    signal.SIGUSR1, signal.SIGUSR2,
)  # fmt: skip


@dataclass
class Caller:
    """A connection whose request is still arriving (read as it comes: a slow caller never holds
    up the others), and what it sent so far."""

    conn: socket.socket
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    umask: int = -1  # set once its run request was accepted; it then waits for "go"

    def close(self) -> None:
        """Close the connection and every descriptor it passed."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        self.conn.close()


class Daemon:
    """The listening socket, the callers, the runs under way and the loop that serves them."""

    def __init__(self, path: str, idle: float, own: dict[str, Any], code: tuple[tuple[str, int, int], ...]) -> None:
        self.path, self.idle, self.build, self.code = path, idle, own, code
        self.pid, self.started, self.last = os.getpid(), time.time(), time.monotonic()
        self.served, self.stopping = 0, False
        self.last_run: dict[str, Any] | None = None  # the last run reaped: its status and resources
        self.callers: dict[socket.socket, Caller] = {}
        self.runs: dict[int, socket.socket | None] = {}
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.inode = 0

    # ---------------------------------------------------------------- set-up
    def bind(self) -> None:
        """Listen on the socket (0600); an answering daemon already there is an error."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe, contextlib.suppress(OSError):
            probe.connect(self.path)
            raise SystemExit(f"a daemon already answers on {self.path}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old = os.umask(0o177)
        try:
            self.listener.bind(self.path)
        finally:
            os.umask(old)
        self.inode = os.stat(self.path).st_ino
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())

    # ---------------------------------------------------------------- the loop
    def serve(self) -> None:
        """Serve until stopped or idle, then wait for the runs under way."""
        while not (self.stopping and not self.runs):
            for key, _events in self.selector.select(self._timeout()):
                try:
                    self._dispatch(key)
                except Exception as exc:  # one caller's trouble never ends the daemon
                    print(f"warning: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            self._expire()
        self._close()

    def _timeout(self) -> float | None:
        """Seconds until the next caller's deadline or the idle stop (None: no limit)."""
        limits = [c.deadline for c in self.callers.values()]
        if self.idle and not self.stopping and not self.runs:
            limits.append(self.last + self.idle)
        return max(0.0, min(limits) - time.monotonic()) if limits else None

    def _dispatch(self, key: selectors.SelectorKey) -> None:
        data = key.data
        if data == "accept":
            self._accept()
        elif data == "wake":
            self._reap()
        elif isinstance(data, Caller) and self.callers.get(data.conn) is data:
            self._read(data)
        elif isinstance(data, int) and data in self.runs and self.runs[data] is key.fileobj:
            self._caller_gone(data, key.fileobj)

    def _expire(self) -> None:
        """Drop callers past their deadline; stop when idle."""
        now = time.monotonic()
        for caller in [c for c in self.callers.values() if c.deadline <= now]:
            self._drop(caller)
        if self.idle and not self.stopping and not self.runs and now >= self.last + self.idle:
            self.stop()

    def stop(self) -> None:
        """Take no more commands: the socket goes; the loop ends once the runs under way have."""
        if self.stopping or os.getpid() != self.pid:  # never in a run forked a moment ago
            return
        self.stopping = True
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        self.listener.close()
        for caller in list(self.callers.values()):
            self._drop(caller)

    def _close(self) -> None:
        self.selector.close()
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ---------------------------------------------------------------- callers
    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        if peer_uid(conn) != os.getuid():
            conn.close()
            return
        conn.setblocking(False)
        caller = Caller(conn, time.monotonic() + REQUEST_TIMEOUT)
        self.callers[conn] = caller
        self.selector.register(conn, selectors.EVENT_READ, caller)

    def _drop(self, caller: Caller) -> None:
        self.callers.pop(caller.conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(caller.conn)
        caller.close()

    def _read(self, caller: Caller) -> None:
        """Take what the caller sent; answer each whole message."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(caller.conn, 1 << 16, 8)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        caller.fds += fds
        if not data:
            self._drop(caller)
            return
        caller.buffer += data
        try:
            while self.callers.get(caller.conn) is caller and (message := take(caller.buffer)) is not None:
                self._answer(caller, message)
        except (WireError, OSError):
            self._drop(caller)

    def _answer(self, caller: Caller, message: dict[str, Any]) -> None:
        """One request: ``status``, ``stop``, ``run`` (answered "ready"), then ``go`` (the fork)."""
        op = message.get("op")
        if op == "go" and caller.umask >= 0:
            self._fork(caller)
        elif op == "run" and caller.umask < 0:
            why = self._refusal(message, caller.fds)
            if why:
                send(caller.conn, {"ok": False, "why": why})
                self._drop(caller)
                return
            caller.umask, caller.deadline = int(message["umask"]), time.monotonic() + REQUEST_TIMEOUT
            send(caller.conn, {"ok": True, "ready": True})
        elif op == "status":
            send(caller.conn, self.status())
            self._drop(caller)
        elif op == "stop":
            self.last = time.monotonic()
            send(caller.conn, {"ok": True, "pid": os.getpid(), "running": len(self.runs)})
            self._drop(caller)
            self.stop()
        else:
            send(caller.conn, {"ok": False, "why": f"unexpected request {op!r}"})
            self._drop(caller)

    def _refusal(self, message: dict[str, Any], fds: list[int]) -> str:
        """Why this run request is not taken ("" when it is)."""
        if self.stopping:
            return "stopping"
        if len(fds) != 5 or not isinstance(message.get("umask"), int) or not 0 <= message["umask"] <= 0o777:
            return "a malformed request"
        differ = sorted(k for k, v in self.build.items() if message.get(k) != v)
        if differ:
            return f"another interpreter, start-up or copy of maintkit ({', '.join(differ)})"
        if fingerprint() != self.code:
            self.stop()
            return "maintkit's files changed since the daemon started"
        return ""

    def _fork(self, caller: Caller) -> None:
        """Start the run: a child made into the caller's process; the caller gets its pid and pidfd."""
        self.callers.pop(caller.conn)
        self.selector.unregister(caller.conn)
        conn, fds = caller.conn, caller.fds
        conn.setblocking(True)
        inherited = [self.listener.fileno(), self.wake_r, self.wake_w, conn.fileno(), self.selector_fd()]
        inherited += [c.fileno() for c in self.runs.values() if c is not None]
        inherited += [c.conn.fileno() for c in self.callers.values()] + [
            fd for c in self.callers.values() for fd in c.fds
        ]
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
        try:
            pid = os.fork()
            if pid == 0:  # the child never returns from become()
                become(caller.umask, fds, [fd for fd in inherited if fd >= 0])
        except OSError:
            conn.close()  # no run: the caller sees the connection end and says so (exit 3)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            caller.fds = []
            for fd in fds:
                os.close(fd)
        self.served += 1
        self.last = time.monotonic()
        self.runs[pid] = conn
        pidfd = os.pidfd_open(pid)
        try:
            send(conn, {"ok": True, "pid": pid}, [pidfd])
        except OSError:
            pass  # the caller is gone: noticed below, and the run is stopped
        finally:
            os.close(pidfd)
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def selector_fd(self) -> int:
        """The selector's own descriptor (an epoll), or -1."""
        fileno = getattr(self.selector, "fileno", None)
        return int(fileno()) if fileno else -1

    def _caller_gone(self, pid: int, conn: socket.socket) -> None:
        """The caller of run ``pid`` closed its end before the run ended: stop the run (SIGTERM)."""
        try:
            if conn.recv(1, socket.MSG_DONTWAIT):
                return  # a caller sends nothing after "go"; what it does send is dropped
        except BlockingIOError:
            return
        except OSError:
            pass
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn)
        conn.close()
        self.runs[pid] = None
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)  # not yet reaped (the reaper clears runs[pid]): it is still our child

    def _reap(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.wake_r, 512):
                pass
        while self.runs:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.last = time.monotonic()
            self.last_run = ended(pid, status, usage)
            conn = self.runs.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(conn)
                with contextlib.suppress(OSError):
                    send(conn, {"status": os.waitstatus_to_exitcode(status)})
                conn.close()

    def status(self) -> dict[str, Any]:
        """What ``maint daemon status`` shows."""
        idle_left = None if not self.idle or self.runs else max(0.0, self.last + self.idle - time.monotonic())
        return {
            "ok": True, "pid": os.getpid(), "socket": self.path, "started": self.started, "served": self.served,
            "running": len(self.runs), "idle": self.idle, "idle_left": idle_left, "modules": len(sys.modules),
            "last_run": self.last_run,
            **{k: self.build[k] for k in ("python", "prefix", "package", "version")},
        }  # fmt: skip


def ended(pid: int, status: int, usage: resource.struct_rusage) -> dict[str, Any]:
    """What ``status`` says of a run that ended: its pid, exit status (-N: killed by signal N),
    CPU seconds (user + system, its own and its reaped children's) and peak resident memory in
    MB (pages shared with the daemon included, as ``ps`` counts them)."""
    return {
        "pid": pid, "exit": os.waitstatus_to_exitcode(status), "ended": time.time(),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    """Load, listen, say ready on ``--ready-fd``, serve."""
    parser = argparse.ArgumentParser(prog="maint-daemon")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--idle", type=float, default=600.0)
    parser.add_argument("--ready-fd", type=int, default=-1)
    args = parser.parse_args(argv)
    if sys.path and sys.path[0] == os.getcwd():  # -m put the start folder first; a script has its own folder
        sys.path[0] = os.path.dirname(sys.executable)
    own, code = build(), fingerprint()  # before loading: a file changed meanwhile makes it stale at once
    preload()
    daemon = Daemon(args.socket, args.idle, own, code)
    daemon.bind()
    if threading.active_count() != 1:
        print(f"warning: {threading.active_count()} threads after loading; forks copy only one", file=sys.stderr)
    gc.collect()
    gc.freeze()  # the children's collector never walks (nor copies) what was loaded here
    if args.ready_fd >= 0:
        os.write(args.ready_fd, f"{os.getpid()}\n".encode())
        os.close(args.ready_fd)
    daemon.serve()


if __name__ == "__main__":
    main()
