"""SSHTransport: commands over one SSH connection per host. The only module importing fabric/paramiko.

Connection setup goes through :class:`fabric.Connection` (connect kwargs, client), but
commands do not use fabric's/invoke's ``run``: its reader threads add latency to every
command. Each command is one paramiko session channel (``exec``), read with a ``poll``
loop on the channel that also feeds stdin in chunks, under a hard deadline.

Latency: TCP_NODELAY is set on the socket (without it every round trip stalls for about
45 ms: Nagle's algorithm meets delayed ACKs), and one connection is shared by every thread
that works on the host (the connection is opened lazily, under a lock).

Timeouts (a cut network must fail, never hang):

* connect: ``connect_timeout`` bounds the TCP connect, the SSH banner, authentication and
  each session open;
* command: ``timeout`` (default ``command_timeout``) is a deadline for the whole command.
  On expiry the remote process group gets SIGTERM (an SSH ``signal`` request, honoured by
  OpenSSH 7.9+), the channel is closed and the result has ``timed_out=True``, exit 124
  (raised as CommandFailed with ``check=True``, returned otherwise). A timeout says
  nothing about the connection: if the network is cut, the next command fails with
  HostUnreachable when no session can be opened within ``connect_timeout``;
* connection: every packet from the server counts as a sign of life. After
  ``keepalive_interval`` seconds of silence a ``keepalive@openssh.com`` request that wants
  a reply is sent (every ``keepalive_interval`` seconds); after ``keepalive_interval *
  keepalive_count_max`` seconds of silence (default 5 x 3) the connection is closed and a
  running command fails at once with ConnectionLost, long before its deadline
  (:class:`_Keepalive`; paramiko's own keepalives want no reply and notice nothing).

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
whatever the port, hence our own :class:`paramiko.ProxyCommand`).

Errors are translated at this boundary:

==========================================================  ===================================
unknown host key                                            :class:`HostKeyError`
changed host key                                            :class:`HostKeyError` ("CHANGED")
refused, timed out, name not resolved, EOF in the banner,   :class:`HostUnreachable`
proxy command failure, connection lost during a command
no reply to keepalives while connected                      :class:`ConnectionLost` (a HostUnreachable)
authentication failed (key not accepted, unreadable key)    :class:`HostUnreachable` (message
                                                            says "authentication failed")
server refuses another session (MaxSessions)                :class:`TransportError`
non-zero exit with ``check=True``, timeout                  :class:`CommandFailed` (``.result``)
==========================================================  ===================================

A dead connection is replaced by a fresh one at the start of the next command (nothing
is ever re-run automatically).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import paramiko
from fabric import Config, Connection
from paramiko.common import cMSG_CHANNEL_REQUEST, cMSG_GLOBAL_REQUEST
from paramiko.message import Message

from maintkit._text import head
from maintkit.errors import CommandFailed, ConnectionLost, HostKeyError, HostUnreachable, TransportError
from maintkit.results import CommandResult
from maintkit.transport.base import CommandTransport, quote
from maintkit.transport.local import atomic_put_script

__all__ = ["HostKeyPolicy", "SSHTransport"]

# paramiko logs a traceback for every failed handshake; without this NullHandler Python's
# last-resort handler would print them on stderr when the application configured no logging.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

HostKeyPolicy = Literal["strict", "accept-new"]

_CHUNK = 32768
_POLL = 0.5  # longest wait between checks of the connection while a command runs
_SEND_BURST = 16  # stdin chunks sent per loop turn before reading output again
_NO_STATUS = 255  # exit code when the server sent no exit status (killed by a signal)
_TIMEOUT_CODE = 124
DEFAULT_MAX_SESSIONS = 8  # OpenSSH's default MaxSessions is 10
DEFAULT_KEEPALIVE_INTERVAL = 5.0  # seconds of silence before a keepalive asks for a reply
DEFAULT_KEEPALIVE_COUNT_MAX = 3  # silence of interval x count_max: the connection is lost
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"


# ---------------------------------------------------------------- host key policies
class _UnknownHostKey(paramiko.SSHException):  # type: ignore[misc]  # paramiko is untyped
    """Raised by the strict policy; turned into HostKeyError."""


class _StrictPolicy(paramiko.RejectPolicy):  # type: ignore[misc]  # paramiko is untyped
    """Refuse any host whose key is not in known_hosts."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(f"{hostname} not found in known_hosts")


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]  # paramiko is untyped
    """Trust an unknown key on first use and record it. A changed key never reaches a policy:
    paramiko raises BadHostKeyException for it before asking."""

    def __init__(self, record_to: Path) -> None:
        self.record_to = record_to

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        append_known_host(self.record_to, hostname, key.get_name(), key.get_base64())


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


# ---------------------------------------------------------------- helpers
class _LocalIOError(Exception):
    """Reading stdin or writing the stdout sink failed on this machine (not the connection)."""

    def __init__(self, exc: OSError) -> None:
        self.exc = exc
        super().__init__(str(exc))


class _ConnectionLost(Exception):
    """The SSH connection died while a command ran."""


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


class _Stdin:
    """Feeds bytes or a binary file to a channel in chunks, without ever blocking."""

    def __init__(self, data: bytes | IO[bytes] | None) -> None:
        self._file: IO[bytes] | None = None
        self._buf = memoryview(b"")
        if isinstance(data, bytes | bytearray | memoryview):
            self._buf = memoryview(bytes(data))
        elif data is not None:
            self._file = data
        self.done = data is None

    def push(self, chan: paramiko.Channel) -> None:
        """Send what the channel's window allows; send EOF once everything is sent."""
        for _ in range(_SEND_BURST):
            if self.done or not chan.send_ready():
                return
            if not self._buf and not self._refill():
                self.finish(chan)
                return
            try:
                sent = chan.send(self._buf[:_CHUNK])
            except (EOFError, paramiko.SSHException):  # the connection was closed under us
                raise _ConnectionLost() from None
            except OSError:  # the remote side closed the channel: it reads no more
                if not chan.get_transport().is_active():
                    raise _ConnectionLost() from None
                self.done = True
                return
            self._buf = self._buf[sent:]

    def _refill(self) -> bool:
        if self._file is None:
            return False
        try:
            block = self._file.read(_CHUNK)
        except OSError as exc:
            raise _LocalIOError(exc) from None
        self._buf = memoryview(block or b"")
        return bool(block)

    def finish(self, chan: paramiko.Channel) -> None:
        """Send EOF on stdin."""
        self.done = True
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            chan.shutdown_write()


class _Output:
    """Collects stdout (or streams it to a sink) and stderr."""

    def __init__(self, sink: IO[bytes] | None) -> None:
        self.sink = sink
        self.out = bytearray()
        self.err = bytearray()

    def drain(self, chan: paramiko.Channel) -> None:
        """Read everything that has arrived on both streams."""
        while chan.recv_ready():
            block = chan.recv(_CHUNK)
            if not block:
                break
            if self.sink is None:
                self.out += block
            else:
                try:
                    self.sink.write(block)
                except OSError as exc:
                    raise _LocalIOError(exc) from None
        while chan.recv_stderr_ready():
            block = chan.recv_stderr(_CHUNK)
            if not block:
                break
            self.err += block


def _send_signal(chan: paramiko.Channel, name: str) -> None:
    """Ask the server to signal the command's process group (RFC 4254 6.9; OpenSSH 7.9+)."""
    msg = Message()
    msg.add_byte(cMSG_CHANNEL_REQUEST)
    msg.add_int(chan.remote_chanid)
    msg.add_string("signal")
    msg.add_boolean(False)
    msg.add_string(name)
    with contextlib.suppress(Exception):
        chan.transport._send_user_message(msg)


class _Keepalive:
    """Notices a dead connection within ``interval * count_max`` seconds.

    paramiko's ``set_keepalive`` sends requests that want no reply, so they cannot tell a
    live connection from a cut one. Here every packet from the server counts as a sign of
    life (replies, command output, window adjustments). After ``interval`` seconds of
    silence, and every ``interval`` seconds after that, a ``keepalive@openssh.com`` global
    request that wants a reply is sent (OpenSSH answers every such request, with a failure
    for names it does not know). After ``interval * count_max`` seconds of silence the
    connection is declared lost: ``lost_after`` is set and ``on_lost`` is called (it closes
    the connection, which fails a running command at once).
    """

    def __init__(self, transport: Any, interval: float, count_max: int, on_lost: Callable[[], None]) -> None:
        self.transport = transport
        self.interval = interval
        self.limit = interval * count_max
        #: seconds without a packet from the server when the connection was declared lost
        self.lost_after: float | None = None
        self._on_lost = on_lost
        self._heard = time.monotonic()
        self._asked = 0.0
        self._asking: threading.Thread | None = None
        self._stop = threading.Event()
        packetizer = transport.packetizer
        read = packetizer.read_message

        def read_message() -> Any:
            message = read()
            self._heard = time.monotonic()
            return message

        packetizer.read_message = read_message  # the transport's reader thread calls this
        _WATCHER.add(self)

    def stop(self) -> None:
        """Stop watching (the connection is being closed on purpose)."""
        self._stop.set()
        _WATCHER.discard(self)

    def tick(self, now: float) -> bool:
        """One look at the connection; False once there is nothing more to watch."""
        if self._stop.is_set() or not self.transport.is_active():
            return False
        silent = now - self._heard
        if silent >= self.limit:
            self.lost_after = silent
            # closing a cut connection can block on its send buffer: never inside the shared watch
            threading.Thread(target=self._on_lost, name="maint-ssh-lost", daemon=True).start()
            return False
        if silent >= self.interval and now - self._asked >= self.interval:
            self._asked = now
            self._ask()
        return True

    def _ask(self) -> None:
        """Send one keepalive from a helper thread: a full send buffer on a cut network
        blocks the sender, and the watch must go on to declare the connection lost."""
        if self._asking is not None and self._asking.is_alive():
            return
        msg = Message()
        msg.add_byte(cMSG_GLOBAL_REQUEST)
        msg.add_string("keepalive@openssh.com")
        msg.add_boolean(True)  # want_reply: the point of the exercise

        def send() -> None:
            with contextlib.suppress(Exception):
                self.transport._send_user_message(msg)

        self._asking = threading.Thread(target=send, name="maint-ssh-keepalive-send", daemon=True)
        self._asking.start()


class _Watcher:
    """ONE thread watches every connection's keepalive (not a thread per host); it starts with
    the first connection and ends when none is left."""

    def __init__(self) -> None:
        self._items: set[_Keepalive] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, item: _Keepalive) -> None:
        with self._lock:
            self._items.add(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="maint-ssh-keepalive", daemon=True)
                self._thread.start()

    def discard(self, item: _Keepalive) -> None:
        with self._lock:
            self._items.discard(item)

    def _run(self) -> None:
        while True:
            with self._lock:
                items = list(self._items)
                if not items:
                    self._thread = None
                    return
            now = time.monotonic()
            for item in items:
                if not item.tick(now):
                    self.discard(item)
            time.sleep(min(1.0, *(i.interval / 2 for i in items)))  # the watch's own period


_WATCHER = _Watcher()


# ---------------------------------------------------------------- the transport
class SSHTransport(CommandTransport):
    """Runs commands on one host over one shared, lazily opened SSH connection (thread-safe).

    ``host`` is the address to connect to; ``name`` the display name used in results and
    errors (default: ``host``). ``become`` makes commands run through ``sudo -n`` (as
    ``sudo_user`` or root) unless a call passes ``sudo=False``. At most ``max_sessions``
    commands run at once on the connection (OpenSSH allows 10 by default); more wait
    for a free session within their own deadline. A connection from which nothing has been
    heard for ``keepalive_interval * keepalive_count_max`` seconds (keepalives that want a
    reply are sent after ``keepalive_interval`` seconds of silence) is declared lost: a
    running command fails at once with :class:`~maintkit.errors.ConnectionLost`.

    Attributes: ``connected`` (the connection is up), ``round_trips`` (commands executed).
    """

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        user: str | None = None,
        key_filename: str | None = None,
        known_hosts: Sequence[str] = (),
        host_key_policy: HostKeyPolicy = "strict",
        connect_timeout: float = 10,
        command_timeout: float = 120,
        become: bool = False,
        sudo_user: str | None = None,
        proxy_command: str | None = None,
        name: str | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL,
        keepalive_count_max: int = DEFAULT_KEEPALIVE_COUNT_MAX,
    ) -> None:
        if host_key_policy not in ("strict", "accept-new"):
            raise ValueError(f"host_key_policy must be strict or accept-new, not {host_key_policy!r}")
        if connect_timeout <= 0 or command_timeout <= 0 or max_sessions < 1:
            raise ValueError("timeouts and max_sessions must be positive")
        if keepalive_interval <= 0 or keepalive_count_max < 1:
            raise ValueError("keepalive_interval and keepalive_count_max must be positive")
        self.hostname = host
        self.port = int(port)
        self.user = user
        self.key_filename = os.path.expanduser(key_filename) if key_filename else None
        self.known_hosts = [os.path.expanduser(k) for k in known_hosts]
        self.host_key_policy: HostKeyPolicy = host_key_policy
        self.connect_timeout = float(connect_timeout)
        self.command_timeout = float(command_timeout)
        self.become = become
        self.sudo_user = sudo_user
        self.proxy_command = proxy_command
        self.host = name or host
        self.keepalive_interval = float(keepalive_interval)
        self.keepalive_count_max = int(keepalive_count_max)
        self.round_trips = 0
        self._conn: Any = None
        self._transport: paramiko.Transport | None = None
        self._watch: _Keepalive | None = None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(max_sessions)

    def __repr__(self) -> str:
        return f"SSHTransport({self.known_host_name!r}, user={self.user!r}, name={self.host!r})"

    # ---------------------------------------------------------------- connection
    @property
    def connected(self) -> bool:
        """True while the SSH connection is up."""
        t = self._transport
        return t is not None and t.is_active()

    @property
    def known_host_name(self) -> str:
        """How this host is named in known_hosts: ``host`` or ``[host]:port``."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def connect(self) -> None:
        """Connect now (otherwise the first command connects). Raises HostKeyError/HostUnreachable."""
        self._connection()

    def close(self) -> None:
        """Close the connection (idempotent; a later command connects again)."""
        with self._lock:
            conn, self._conn, self._transport = self._conn, None, None
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        _close_quietly(conn)

    def _drop(self, transport: paramiko.Transport) -> None:
        """Forget a dead connection (only if it is still the current one)."""
        with self._lock:
            if self._transport is not transport:
                return
            conn, self._conn, self._transport = self._conn, None, None
            watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        _close_quietly(conn)

    def _watch_of(self, transport: paramiko.Transport) -> _Keepalive | None:
        """The keepalive watch of ``transport`` (None once it was replaced)."""
        with self._lock:
            return self._watch if self._transport is transport else None

    def _connection(self) -> paramiko.Transport:
        with self._lock:
            t = self._transport
            if t is not None and t.is_active():
                return t
            if self._conn is not None:  # dead: replace it
                if self._watch is not None:
                    self._watch.stop()
                _close_quietly(self._conn)
                self._conn, self._transport, self._watch = None, None, None
            conn = self._new_connection()
            try:
                conn.open()
                transport = conn.client.get_transport()
                if transport is None or not transport.is_active():
                    raise EOFError("connection closed during setup")
            except Exception as exc:
                _close_quietly(conn)
                raise self._connect_error(exc) from None
            sock = transport.sock
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn, self._transport = conn, transport
            self._watch = _Keepalive(
                transport,
                self.keepalive_interval,
                self.keepalive_count_max,
                lambda: self._drop(transport),
            )
            return transport

    def _new_connection(self) -> Any:
        """A fabric Connection with our timeouts, key and host key policy (not yet open)."""
        if self.key_filename and not os.access(self.key_filename, os.R_OK):
            raise HostUnreachable(self.host, f"authentication failed: cannot read key file {self.key_filename}")
        kwargs: dict[str, Any] = {
            "timeout": self.connect_timeout,
            "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout,
            "channel_timeout": self.connect_timeout,
        }
        if self.key_filename:
            kwargs.update(key_filename=self.key_filename, look_for_keys=False, allow_agent=False)
        if self.proxy_command:
            line = expand_proxy_command(self.proxy_command, self.hostname, self.port, self.user)
            try:
                kwargs["sock"] = paramiko.ProxyCommand(f"sh -c {quote('exec ' + line)}")
            except (OSError, paramiko.SSHException) as exc:
                raise HostUnreachable(self.host, f"proxy command failed to start: {exc}") from None
        config = Config(lazy=True, ssh_config=paramiko.SSHConfig())
        conn = Connection(self.hostname, user=self.user, port=self.port, config=config, connect_kwargs=kwargs)
        client: paramiko.SSHClient = conn.client
        keys = client.get_host_keys()
        for path in self._known_hosts_files():
            try:
                parsed = _parsed_known_hosts(path)
            except (OSError, UnicodeDecodeError, paramiko.SSHException) as exc:
                _close_quietly(conn)
                raise HostKeyError(self.host, f"cannot read known_hosts file {path}: {exc}") from None
            # only this host's entries: parsing a large known_hosts once per file, not once per
            # connection, is what keeps hundreds of hosts cheap
            for keytype, key in (parsed.lookup(self.known_host_name) or {}).items():
                keys.add(self.known_host_name, keytype, key)
        if self.host_key_policy == "accept-new":
            target = self.known_hosts[0] if self.known_hosts else os.path.expanduser(USER_KNOWN_HOSTS)
            client.set_missing_host_key_policy(_AcceptNewPolicy(Path(target)))
        else:
            client.set_missing_host_key_policy(_StrictPolicy())
        return conn

    def _known_hosts_files(self) -> list[str]:
        user_file = os.path.expanduser(USER_KNOWN_HOSTS)
        return [p for p in [user_file, *self.known_hosts] if os.path.isfile(p)]

    def _connect_error(self, exc: Exception) -> TransportError:
        """Translate a connect-time library error."""
        where = f"{self.hostname}:{self.port}"
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, _UnknownHostKey):
            files = ", ".join(self._known_hosts_files()) or "known_hosts"
            return HostKeyError(
                self.host,
                f"the host key for {self.known_host_name} is not in known_hosts ({files}); add it "
                f"(ssh-keyscan -p {self.port} {self.hostname} >> KNOWN_HOSTS, after checking the "
                "fingerprint) or set host_key_policy: accept-new",
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(
                self.host,
                f"the host key for {self.known_host_name} has CHANGED (known: {exc.expected_key.fingerprint}, "
                f"offered: {exc.key.fingerprint}). This may be a man-in-the-middle attack; refusing to connect. "
                f"If the server was really reinstalled, remove the old entry (ssh-keygen -R '{self.known_host_name}') "
                "and add the new key after checking it",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            who = self.user or "(local user)"
            key = f" with key {self.key_filename}" if self.key_filename else ""
            return HostUnreachable(self.host, f"authentication failed for {who}@{where}{key}: {exc}")
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return HostUnreachable(self.host, f"cannot connect to {where}: connection refused")
        if isinstance(exc, socket.gaierror):
            return HostUnreachable(self.host, f"cannot resolve {self.hostname}: {exc.strerror or exc}")
        if isinstance(exc, TimeoutError | socket.timeout):
            return HostUnreachable(self.host, f"cannot connect to {where}: timed out after {self.connect_timeout:g} s")
        if isinstance(exc, paramiko.ProxyCommandFailure):
            return HostUnreachable(self.host, f"proxy command failed: {exc}")
        if isinstance(exc, paramiko.SSHException | EOFError) and _is_handshake_failure(exc):
            return HostUnreachable(
                self.host,
                f"cannot connect to {where}: no SSH handshake within {self.connect_timeout:g} s "
                "(connection closed or timed out: host down, network cut, or not an SSH server)",
            )
        if isinstance(exc, paramiko.SSHException | EOFError | OSError):
            text = str(exc) or type(exc).__name__
            return HostUnreachable(self.host, f"cannot connect to {where}: {text}")
        raise exc

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
        started = time.monotonic()
        deadline = started + limit
        output = _Output(stdout_sink)
        code, timed_out = _TIMEOUT_CODE, True
        transport = self._connection()
        if self._sessions.acquire(timeout=max(0.0, deadline - time.monotonic())):
            try:
                transport, chan = self._open_session(transport, deadline)
                watch = self._watch_of(transport)
                try:
                    with self._count_lock:
                        self.round_trips += 1
                    wire = line if stdin is not None else f"exec </dev/null; {line}"
                    code, timed_out = self._run_on(chan, transport, self.host, wire, _Stdin(stdin), output, deadline)
                except _ConnectionLost:
                    self._drop(transport)
                    raise self._lost_error(watch, line) from None
                except _LocalIOError as exc:
                    raise TransportError(self.host, f"local I/O error while running a command: {exc}") from None
                finally:
                    chan.close()
            finally:
                self._sessions.release()
        result = CommandResult(
            host=self.host,
            command=line,
            exit_code=code,
            stdout="" if stdout_sink is not None else output.out.decode("utf-8", "replace"),
            stderr=output.err.decode("utf-8", "replace"),
            duration_ms=(time.monotonic() - started) * 1000.0,
            timed_out=timed_out,
            stdout_bytes=None if stdout_sink is not None else bytes(output.out),
        )
        if check and timed_out:
            raise CommandFailed(result, f"command timed out after {limit:g} s: {head(line, 200)}")
        if check and code != 0:
            raise CommandFailed(result)
        return result

    def _lost_error(self, watch: _Keepalive | None, line: str) -> HostUnreachable:
        """The error for a connection that died while ``line`` ran."""
        if watch is not None and watch.lost_after is not None:
            return ConnectionLost(
                self.host,
                f"connection to {self.hostname}:{self.port} lost (no reply to keepalive for "
                f"{watch.lost_after:.0f} s) while running: {head(line, 200)}",
            )
        return HostUnreachable(self.host, f"connection lost while running: {head(line, 200)}")

    def _open_session(self, transport: paramiko.Transport, deadline: float) -> tuple[paramiko.Transport, Any]:
        """Open a session channel; a connection found dead before anything ran is replaced once."""
        for attempt in (1, 2):
            wait = max(0.1, min(self.connect_timeout, deadline - time.monotonic()))
            try:
                return transport, transport.open_session(timeout=wait)
            except paramiko.ChannelException as exc:
                raise TransportError(
                    self.host, f"the server refused a new session ({exc.text}); lower the concurrency"
                ) from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                alive = transport.is_active()
                self._drop(transport)
                if alive:  # no answer in time: the network or the host is gone
                    raise HostUnreachable(self.host, f"no answer opening a session within {wait:g} s") from None
                if attempt == 2:
                    raise HostUnreachable(self.host, f"connection lost: {exc or 'closed'}") from None
                transport = self._connection()
        raise AssertionError("unreachable")

    @staticmethod
    def _run_on(
        chan: Any, transport: Any, host: str, line: str, stdin: _Stdin, output: _Output, deadline: float
    ) -> tuple[int, bool]:
        """Execute ``line`` on an open channel: (exit code, timed out)."""
        # exec_command waits for the server's reply without a timeout: a watchdog closes
        # the channel at the deadline so a cut network cannot hang here.
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), chan.close)
        watchdog.daemon = True
        watchdog.start()
        try:
            chan.exec_command(line)
        except (paramiko.SSHException, EOFError, OSError):
            if time.monotonic() >= deadline:
                return _TIMEOUT_CODE, True
            if not transport.is_active():
                raise _ConnectionLost() from None
            raise TransportError(host, "the server refused to run the command") from None
        finally:
            watchdog.cancel()
        # Without stdin the command line itself redirects it (see _execute): no EOF is sent,
        # because paramiko may put an EOF on the wire after the channel's CLOSE when a fast
        # command ends at once, and sshd then drops the whole connection ("ieof packet
        # referred to nonexistent channel").
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
                _send_signal(chan, "TERM")
                output.drain(chan)
                return _TIMEOUT_CODE, True
            if not transport.is_active():
                raise _ConnectionLost()
            wait = min(remaining, _POLL)
            if not stdin.done:
                wait = 0.0 if chan.send_ready() else min(wait, 0.005)
            if ended:  # all output is in; only the exit status is missing
                chan.status_event.wait(wait)
            elif wait > 0:
                poller.poll(wait * 1000.0)
        if chan.exit_status < 0:
            if not transport.is_active():
                raise _ConnectionLost()
            return _NO_STATUS, False
        return int(chan.exit_status), False

    # ---------------------------------------------------------------- files
    def put(self, data: bytes, path: str, *, mode: int | None = None, timeout: float | None = None) -> None:
        """Write ``path`` atomically in one round trip: temp file beside it, chmod, rename.

        Without ``mode`` an existing file keeps its mode (and, when the login user is
        allowed to, its owner and group); a new file gets 0644. Runs through sudo under
        ``become``. Raises :class:`CommandFailed` when the file cannot be written.
        """
        self.run_shell(atomic_put_script(path, mode), stdin=bytes(data), timeout=timeout)

    def get(self, path: str, *, timeout: float | None = None) -> bytes:
        """Read a whole file (``cat``). Raises :class:`CommandFailed` when it cannot be read."""
        res = self.run(["cat", "--", path], timeout=timeout)
        return res.stdout_bytes or b""


_KNOWN_HOSTS_CACHE: dict[str, tuple[tuple[int, int], Any]] = {}
_KNOWN_HOSTS_LOCK = threading.Lock()


def _parsed_known_hosts(path: str) -> Any:
    """paramiko.HostKeys of a known_hosts file, parsed once per (path, mtime, size)."""
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size)
    with _KNOWN_HOSTS_LOCK:
        cached = _KNOWN_HOSTS_CACHE.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        keys = paramiko.HostKeys()
        keys.load(path)
        _KNOWN_HOSTS_CACHE[path] = (stamp, keys)
        return keys


def _is_handshake_failure(exc: BaseException) -> bool:
    """paramiko's ways of saying the SSH handshake never completed."""
    text = str(exc)
    return isinstance(exc, EOFError) or any(
        part in text for part in ("protocol banner", "No existing session", "Negotiation failed")
    )


def _close_quietly(conn: Any) -> None:
    """Close a fabric Connection, its client and its proxy command, whatever state they are
    in (fabric's own close() does nothing unless the connection is fully up)."""
    if conn is None:
        return
    with contextlib.suppress(Exception):
        conn.close()
    with contextlib.suppress(Exception):
        conn.client.close()
    sock = conn.connect_kwargs.get("sock")
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.close()
