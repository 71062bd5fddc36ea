"""The control sockets of the OpenSSH transport: where they live, what they are called, and
the masters behind them (listed and closed by ``maint connections``).

A live OpenSSH master is an authenticated connection: whoever can open its socket can run
commands on the host as the login user until the master ends. So:

* the sockets live in ONE directory per user, ``$XDG_CACHE_HOME/maintkit/ssh`` (default
  ``~/.cache/maintkit/ssh``), created 0700; a directory that is a symlink, not owned by the
  user, or open to group or others in any way is refused (:class:`~maintkit.errors.TransportError`);
* a socket's name (``mk-SETTINGS-TRUST``) is made of a hash of everything that decides how
  far the connection can be trusted: address, port, user, key file, known_hosts files, host
  key policy, ssh config file, proxy; then a hash of what that trust rests on: the host's
  known_hosts entries and the key and config files' contents
  (:mod:`~maintkit.transport.openssh_trust`). A master opened for another key, known_hosts
  file or entry, or a laxer policy is never reused; one whose trust a later run found changed
  is asked to take no new session (:func:`stop_superseded`);
* beside each socket ``NAME.json`` (0600) says which host it reaches (for ``maint connections
  list``) and under which settings and trust.

Values given to ``ssh -o`` are escaped here: ``%`` (OpenSSH expands ``%h``, ``%p``... in
paths) and whitespace or quotes (an option line is split on whitespace).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from maintkit._private_dir import cache_home, dir_problem, make_private_dir
from maintkit.errors import TransportError

__all__ = [
    "CONTROL_TIMEOUT",
    "Master",
    "close_master",
    "control_dir",
    "escape",
    "live_masters",
    "mux_frame",
    "mux_hello",
    "mux_read",
    "option_value",
    "settings_key",
    "socket_name",
    "stop_superseded",
    "write_label",
]

#: seconds an ``ssh -O check|exit`` may take (it only talks to the local socket)
CONTROL_TIMEOUT = 10.0
_LABEL_SUFFIX = ".json"


def control_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The control socket directory: ``$XDG_CACHE_HOME/maintkit/ssh`` or ``~/.cache/maintkit/ssh``."""
    return Path(cache_home(os.environ if environ is None else environ)) / "maintkit" / "ssh"


def ensure_dir(path: Path, host: str) -> Path:
    """Create ``path`` (0700) if missing and check it is safe to keep live connections in.

    Raises :class:`TransportError` (naming ``host``) for a symlink, a non-directory, a directory
    owned by another user, or one with any group/other permission (:func:`dir_problem`).
    """
    problem = make_private_dir(path)
    if problem:
        raise TransportError(host, f"refusing the OpenSSH control directory {path}: {problem}")
    return path


def settings_key(parts: Sequence[object]) -> str:
    """16 hex digits of a SHA-256 of the settings ``parts`` a connection is opened with."""
    return _hex(parts, 16)


def socket_name(settings: str, trust: Sequence[object]) -> str:
    """``mk-SETTINGS-TRUST``: the :func:`settings_key`, then 12 hex digits of a SHA-256 of what
    the connection's trust rests on (and what makes it a run's own). Masters opened with the same
    settings share the first part, so the ones another trust superseded are found by name."""
    return f"mk-{settings}-{_hex([settings, *trust], 12)}"


def _hex(parts: Sequence[object], digits: int) -> str:
    blob = json.dumps([str(p) if p is not None else None for p in parts], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:digits]


def escape(value: str) -> str:
    """``value`` with ``%`` doubled: OpenSSH expands ``%`` tokens in paths and commands."""
    return value.replace("%", "%%")


def option_value(value: str) -> str:
    """One path as a ``-o`` option value: ``%`` escaped, quoted when it holds blanks or quotes.
    Raises ValueError for control characters (they cannot be written on an option line)."""
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ValueError(f"a control character in {value!r}")
    out = escape(value)
    if any(c in out for c in " \t\"'\\#"):
        out = '"' + out.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return out


def write_label(sock: Path, label: Mapping[str, object]) -> None:
    """Write ``SOCK.json`` (0600, atomically) naming what the socket reaches."""
    path = sock.with_name(sock.name + _LABEL_SUFFIX)
    data = json.dumps(dict(label), sort_keys=True)
    with contextlib.suppress(OSError):
        if path.read_text() == data:
            return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Master:
    """A live master: its socket, what it reaches (from its label) and since when."""

    socket: Path
    host: str
    target: str
    pid: int
    started: float

    def age(self, now: float | None = None) -> float:
        """Seconds since the master opened its socket."""
        return max(0.0, (time.time() if now is None else now) - self.started)


def control_argv(sock: Path, op: str) -> list[str]:
    """``ssh -O OP`` for one socket (no config file read; the host name is not used)."""
    return ["ssh", "-F", "/dev/null", "-o", f"ControlPath={option_value(str(sock))}", "-O", op, "--", "maint-control"]


def check_master(sock: Path) -> int | None:
    """The pid of the master listening on ``sock`` (None when no master answers).

    No socket file: None at once. Otherwise the master is asked in its own protocol (OpenSSH's
    PROTOCOL.mux: hello, then an alive check answered with its pid), which costs no process; a
    socket that answers something else is asked by ``ssh -O check``, as every other operation.
    """
    if not sock.exists():
        return None
    try:
        return mux_alive(sock)
    except (ConnectionRefusedError, FileNotFoundError):
        return None  # a socket file left by a master that died
    except (OSError, ValueError):
        pass
    try:
        proc = subprocess.run(
            control_argv(sock, "check"), capture_output=True, text=True, timeout=CONTROL_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    text = proc.stderr + proc.stdout
    digits = text.split("pid=", 1)[1].split(")", 1)[0] if "pid=" in text else ""
    return int(digits) if digits.isdigit() else 0


#: PROTOCOL.mux message types and the protocol version this client speaks
_MUX_HELLO, _MUX_ALIVE_CHECK, _MUX_ALIVE, _MUX_VERSION = 0x00000001, 0x10000004, 0x80000005, 4


def mux_alive(sock: Path, timeout: float = CONTROL_TIMEOUT) -> int:
    """The pid the master on ``sock`` reports to an alive check (OpenSSH's PROTOCOL.mux).

    Raises OSError when nothing listens, ValueError when what answers does not speak the protocol.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock))
        request = 1
        mux_hello(conn, then=mux_frame(struct.pack(">II", _MUX_ALIVE_CHECK, request)))
        alive = mux_read(conn)
        if len(alive) < 12:
            raise ValueError("short alive answer")
        kind, answered, pid = struct.unpack(">III", alive[:12])
        if kind != _MUX_ALIVE or answered != request:
            raise ValueError("unexpected answer to the alive check")
        return int(pid)


def mux_hello(conn: socket.socket, then: bytes = b"") -> None:
    """Exchange hellos with the master on ``conn`` (``then``, a request, is sent with ours).

    Raises ValueError when what answers is not a master speaking protocol version 4.
    """
    conn.sendall(mux_frame(struct.pack(">II", _MUX_HELLO, _MUX_VERSION)) + then)
    hello = mux_read(conn)
    if len(hello) < 8 or struct.unpack(">II", hello[:8]) != (_MUX_HELLO, _MUX_VERSION):
        raise ValueError("not an OpenSSH control master")


def mux_frame(payload: bytes) -> bytes:
    """One length-prefixed message of the control protocol."""
    return struct.pack(">I", len(payload)) + payload


def mux_read(conn: socket.socket) -> bytes:
    """One length-prefixed message (at most 64 KiB)."""
    size = struct.unpack(">I", _mux_exact(conn, 4))[0]
    if size > 65536:
        raise ValueError("message too long")
    return _mux_exact(conn, size)


def _mux_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        block = conn.recv(size - len(data))
        if not block:
            raise ValueError("the control socket closed mid-message")
        data += block
    return data


def close_master(sock: Path) -> bool:
    """Ask the master on ``sock`` to exit (``ssh -O exit``) and drop its label. True when one answered."""
    ok = _control(sock, "exit")
    _forget(sock)
    return ok


def stop_superseded(directory: Path, sock: Path, settings: str, trust: str) -> list[Path]:
    """Ask every live master in ``directory`` opened with the same ``settings`` as ``sock`` but
    under other ``trust`` (a known_hosts entry, key or config file changed since) to take no new
    session (``ssh -O stop``): its sessions under way end as they would, then it exits. The
    sockets asked, in order. Only the labels named ``mk-SETTINGS-*`` are read."""
    stopped: list[Path] = []
    for label in sorted(directory.glob(f"mk-{settings}-*{_LABEL_SUFFIX}")):
        other = label.with_name(label.name[: -len(_LABEL_SUFFIX)])
        if other == sock:
            continue
        try:
            info = json.loads(label.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or info.get("settings") != settings or info.get("trust") in (None, trust):
            continue
        alive = check_master(other) is not None
        if alive and not _control(other, "stop"):
            continue  # it did not answer: still listed by ``maint connections``
        if alive:
            stopped.append(other)
        with contextlib.suppress(OSError):
            label.unlink()
    return stopped


def _control(sock: Path, op: str) -> bool:
    """``ssh -O OP`` on one socket; True when the master answered."""
    try:
        proc = subprocess.run(
            control_argv(sock, op), capture_output=True, text=True, timeout=CONTROL_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _forget(sock: Path) -> None:
    """Remove a socket's label (and the socket itself when no master holds it any more)."""
    with contextlib.suppress(OSError):
        sock.with_name(sock.name + _LABEL_SUFFIX).unlink()
    if check_master(sock) is None:
        with contextlib.suppress(OSError):
            sock.unlink()


def live_masters(directory: Path) -> list[Master]:
    """The masters that answer in ``directory``, oldest first (labels of dead ones are removed)."""
    if dir_problem(directory):
        return []
    found: list[Master] = []
    for label in sorted(directory.glob("mk-*" + _LABEL_SUFFIX)):
        sock = label.with_name(label.name[: -len(_LABEL_SUFFIX)])
        pid = check_master(sock) if sock.exists() else None
        if pid is None:
            _forget(sock)
            continue
        try:
            info = json.loads(label.read_text())
            started = os.lstat(sock).st_mtime
        except (OSError, ValueError):
            continue
        found.append(Master(sock, str(info.get("host", "?")), str(info.get("target", "?")), pid, started))
    return sorted(found, key=lambda m: (m.started, m.host))
