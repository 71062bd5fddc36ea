"""SSH connection settings that need no SSH library: defaults and their checks, host key
policies and known_hosts files, ProxyCommand expansion, and the session gate both SSH
transports share (:class:`SessionGate`).

Host keys are always verified, against ``~/.ssh/known_hosts`` plus the ``known_hosts``
files given (entries for ports other than 22 are written ``[host]:port``):

* ``strict`` (default): an unknown key is refused;
* ``accept-new``: an unknown key is accepted and appended to the first ``known_hosts``
  file given (or ``~/.ssh/known_hosts``);
* a CHANGED key is refused under every policy; Fabric's default of trusting any new key is
  always replaced.

``~/.ssh/config`` is deliberately not read: the inventory is the only source of
connection settings (host, port, user, key_file, known_hosts, proxy_command).

``proxy_command`` is run through ``sh -c`` like OpenSSH's ProxyCommand, with ``%h``,
``%p``, ``%r`` and ``%%`` expanded (fabric's own gateway string expands ``%p`` to 22
whatever the port).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEFAULT_KEEPALIVE_COUNT_MAX",
    "DEFAULT_KEEPALIVE_INTERVAL",
    "DEFAULT_MAX_SESSIONS",
    "USER_KNOWN_HOSTS",
    "HostKeyPolicy",
    "KnownHostsIndex",
    "SessionGate",
    "accept_new_target",
    "append_known_host",
    "check_settings",
    "expand_proxy_command",
    "known_host_name",
    "known_hosts_files",
    "parsed_once",
]

HostKeyPolicy = Literal["strict", "accept-new"]

DEFAULT_MAX_SESSIONS = 8  # OpenSSH's default MaxSessions is 10
DEFAULT_KEEPALIVE_INTERVAL = 5.0  # seconds of silence before a keepalive asks for a reply
DEFAULT_KEEPALIVE_COUNT_MAX = 3  # silence of interval x count_max: the connection is lost
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"


class SessionGate:
    """At most ``limit`` sessions at once on one SSH connection, and the most that were open.

    sshd refuses sessions on one connection beyond its ``MaxSessions`` (10 by default); both
    SSH transports bound their commands (and the OpenSSH one its remote kills) with one of these.
    """

    def __init__(self, limit: int = DEFAULT_MAX_SESSIONS) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._open = 0
        #: the most sessions that were open at once
        self.most = 0

    def enter(self, timeout: float | None = None) -> bool:
        """Take a session (waiting at most ``timeout`` seconds; None: as long as it takes); False if none came."""
        if not self._slots.acquire(timeout=None if timeout is None else max(0.0, timeout)):
            return False
        with self._lock:
            self._open += 1
            self.most = max(self.most, self._open)
        return True

    def leave(self) -> None:
        """Give back a session taken by :meth:`enter`."""
        with self._lock:
            self._open -= 1
        self._slots.release()

    @contextmanager
    def turn(self, timeout: float | None = None) -> Iterator[bool]:
        """``with gate.turn(t) as mine:`` a session held for the block when ``mine`` (given back after)."""
        mine = self.enter(timeout)
        try:
            yield mine
        finally:
            if mine:
                self.leave()


def check_settings(
    host_key_policy: str,
    connect_timeout: float,
    command_timeout: float,
    max_sessions: int,
    keepalive_interval: float,
    keepalive_count_max: int,
) -> None:
    """Raise ValueError for a setting the transport cannot work with."""
    if host_key_policy not in ("strict", "accept-new"):
        raise ValueError(f"host_key_policy must be strict or accept-new, not {host_key_policy!r}")
    if connect_timeout <= 0 or command_timeout <= 0 or max_sessions < 1:
        raise ValueError("timeouts and max_sessions must be positive")
    if keepalive_interval <= 0 or keepalive_count_max < 1:
        raise ValueError("keepalive_interval and keepalive_count_max must be positive")


def known_host_name(hostname: str, port: int) -> str:
    """How a host is named in known_hosts: ``host`` or ``[host]:port``."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def known_hosts_files(extra: Sequence[str]) -> list[str]:
    """``~/.ssh/known_hosts`` and the files given, those that exist."""
    user_file = os.path.expanduser(USER_KNOWN_HOSTS)
    return [p for p in [user_file, *extra] if os.path.isfile(p)]


_PARSED: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}
_PARSED_LOCK = threading.Lock()


def parsed_once(path: str, parse: Callable[[str], Any], kind: str = "") -> Any:
    """``parse(path)``, cached per (``kind``, path, mtime, size): a large known_hosts file is
    parsed once, not once per connection (what keeps hundreds of hosts cheap). Callers that parse
    the same file another way name their ``kind``. OSError (a missing file) is raised."""
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size)
    with _PARSED_LOCK:
        cached = _PARSED.get((kind, path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        parsed = parse(path)
        _PARSED[(kind, path)] = (stamp, parsed)
        return parsed


class KnownHostsIndex:
    """The entries of one known_hosts file, found by host name without scanning the file.

    ``entries`` are the file's entries in order (each with ``hostnames`` and ``key``, as
    paramiko's ``HostKeyEntry``); ``matches(name, entry)`` is the library's own test, used
    for hashed (``|1|``) entries, which can only be tried one by one. A plain name is found
    in a dict: a run on hundreds of hosts that share one known_hosts file costs the same per
    connection as a run on a few (a scan of every entry per connection costs O(hosts^2)).
    :meth:`lookup` answers what ``HostKeys.lookup`` answers: the first key of each type among
    the matching entries, in file order.
    """

    def __init__(self, entries: Sequence[Any], matches: Callable[[str, Any], bool]) -> None:
        self._entries = list(entries)
        self._matches = matches
        self._plain: dict[str, list[int]] = {}
        self._hashed: list[int] = []
        for i, entry in enumerate(self._entries):
            names = list(entry.hostnames)
            if any(n.startswith("|1|") for n in names):
                self._hashed.append(i)
            for n in dict.fromkeys(n for n in names if not n.startswith("|1|")):
                self._plain.setdefault(n, []).append(i)
        #: how many entries were tested with ``matches`` (hashed entries only): a counter for tests
        self.tested = 0

    @classmethod
    def load(
        cls,
        path: str,
        parse_line: Callable[[str, int], Any],
        matches: Callable[[str, Any], bool],
        bad_line: type[Exception],
    ) -> KnownHostsIndex:
        """Read ``path`` line by line as paramiko's ``HostKeys.load`` does (``parse_line`` is its
        ``HostKeyEntry.from_line``; a line raising ``bad_line`` is skipped), without its test of every
        earlier entry for each new line (O(lines^2)): the duplicates that test drops (a name whose
        first key of that type is the same key) cannot change what :meth:`lookup` answers."""
        entries = []
        with open(path) as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line[0] == "#":
                    continue
                try:
                    entry = parse_line(line, lineno)
                except bad_line:
                    continue
                if entry is not None:
                    entries.append(entry)
        return cls(entries, matches)

    def lookup(self, hostname: str) -> dict[str, Any] | None:
        """``{key type: key}`` for ``hostname`` (the first of each type, in file order); None when unknown."""
        found = set(self._plain.get(hostname, ()))
        if not hostname.startswith("|1|"):
            for i in self._hashed:
                self.tested += 1
                if i not in found and self._matches(hostname, self._entries[i]):
                    found.add(i)
        keys: dict[str, Any] = {}
        for i in sorted(found):
            key = self._entries[i].key
            if key is not None:
                keys.setdefault(key.get_name(), key)
        return keys or None


def accept_new_target(extra: Sequence[str]) -> Path:
    """Where ``accept-new`` records a new key: the first known_hosts file given, else the user's."""
    return Path(extra[0] if extra else os.path.expanduser(USER_KNOWN_HOSTS))


def append_known_host(path: Path, hostname: str, key_type: str, key_b64: str) -> None:
    """Append one ``hostname type key`` line to a known_hosts file (created 0600, locked)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        size = fh.seek(0, os.SEEK_END)
        newline = b""
        if size:
            fh.seek(size - 1)
            newline = b"" if fh.read(1) == b"\n" else b"\n"
        fh.write(newline + f"{hostname} {key_type} {key_b64}\n".encode("ascii"))


def expand_proxy_command(command: str, host: str, port: int, user: str | None) -> str:
    """Expand ``%h``, ``%p``, ``%r`` and ``%%`` like OpenSSH does in ProxyCommand."""
    values = {"h": host, "p": str(port), "r": user or "", "%": "%"}
    out: list[str] = []
    i = 0
    while i < len(command):
        ch = command[i]
        if ch == "%" and i + 1 < len(command) and command[i + 1] in values:
            out.append(values[command[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
