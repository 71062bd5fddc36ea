"""SSHTransport: commands over one SSH connection per host. The only module importing fabric/paramiko.

Connections are set up by :class:`fabric.Connection` (a file-less ``Config`` each); commands are
paramiko ``exec`` channels pumped by :mod:`~maintkit.transport.ssh_channel` under a hard deadline
(not invoke's ``run``: its reader threads add latency). TCP_NODELAY is set (Nagle meets delayed
ACKs otherwise: 45 ms per round trip). One connection serves every thread working on the host,
opened lazily under a lock or ahead of the first command (:meth:`SSHTransport.warm`, on a TCP
connection dialled before paramiko was loaded: :meth:`SSHTransport.adopt`). ``connect_timeout``
bounds the TCP connect, banner, authentication and each session open, on every hop. Host keys
are always verified (``strict`` or ``accept-new``; a CHANGED key is always refused); a
``proxy_command`` runs through our :class:`paramiko.ProxyCommand`; a jump host (``via``) is
another SSHTransport forwarding a ``direct-tcpip`` channel; ``~/.ssh/config`` is read only when
the inventory asks. Library errors become maintkit's here (:mod:`~maintkit.transport.ssh_errors`).
A dead connection is replaced at the start of the next command (nothing is re-run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import paramiko
from fabric import Config, Connection
from paramiko.common import cMSG_CHANNEL_REQUEST, cMSG_GLOBAL_REQUEST
from paramiko.message import Message

from maintkit.errors import HostKeyError, HostUnreachable, TransportError
from maintkit.results import CommandResult
from maintkit.transport import base, ssh_channel, ssh_errors, ssh_policy
from maintkit.transport.base import RemoteShellTransport, quote
from maintkit.transport.dial import Early, discard
from maintkit.transport.keepalive import Keepalive, watch_transport
from maintkit.transport.ssh_channel import TIMEOUT_CODE, Disconnected, LocalIOError, Output, Stdin
from maintkit.transport.ssh_policy import (
    DEFAULT_KEEPALIVE_COUNT_MAX,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_MAX_SESSIONS,
    HostKeyPolicy,
    SessionGate,
    accept_new_target,
    append_known_host,
    check_settings,
    expand_proxy_command,
    known_hosts_files,
    parsed_once,
)

__all__ = ["DEFAULT_MAX_SESSIONS", "HostKeyPolicy", "SSHTransport", "append_known_host", "expand_proxy_command"]

# paramiko logs a traceback for every failed handshake; without this NullHandler Python's
# last-resort handler would print them on stderr when the application configured no logging.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_LOST = (EOFError, paramiko.SSHException)  # the connection was closed under a channel
_EXEC_ERRORS = (paramiko.SSHException, EOFError, OSError)  # the server did not start the command


# ---------------------------------------------------------------- host key policies
class _UnknownHostKey(paramiko.SSHException):  # type: ignore[misc]  # paramiko is untyped
    """Raised by the strict policy (with the offered ``key``); turned into HostKeyError."""

    def __init__(self, message: str, key: paramiko.PKey) -> None:
        super().__init__(message)
        self.key = key


class _StrictPolicy(paramiko.RejectPolicy):  # type: ignore[misc]  # paramiko is untyped
    """Refuse any host whose key is not in known_hosts."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(f"{hostname} not found in known_hosts", key)


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]  # paramiko is untyped
    """Trust an unknown key on first use and record it. A changed key never reaches a policy:
    paramiko raises BadHostKeyException for it before asking."""

    def __init__(self, record_to: Path) -> None:
        self.record_to = record_to

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        append_known_host(self.record_to, hostname, key.get_name(), key.get_base64())


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


def _send_keepalive(transport: Any) -> None:
    """One ``keepalive@openssh.com`` global request that wants a reply."""
    msg = Message()
    msg.add_byte(cMSG_GLOBAL_REQUEST)
    msg.add_string("keepalive@openssh.com")
    msg.add_boolean(True)  # want_reply: the point of the exercise
    with contextlib.suppress(Exception):
        transport._send_user_message(msg)


# ---------------------------------------------------------------- the transport
class SSHTransport(RemoteShellTransport):
    """Runs commands on one host over one shared, lazily opened SSH connection (thread-safe).

    ``host`` is the address to connect to; ``name`` the display name in results and errors
    (default: ``host``). ``become`` runs commands through ``sudo -n`` (as ``sudo_user`` or root)
    unless a call passes ``sudo=False``. At most ``max_sessions`` commands run at once (more wait
    within their own deadline). A connection silent for ``keepalive_interval *
    keepalive_count_max`` seconds is declared lost: a running command fails with ConnectionLost.

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
        via: SSHTransport | None = None,
        identities_only: bool = False,
    ) -> None:
        check_settings(
            host_key_policy, connect_timeout, command_timeout, max_sessions, keepalive_interval, keepalive_count_max
        )
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
        self.via = via  # the jump host this connection goes through (ProxyJump), closed with us
        self.identities_only = identities_only  # no agent keys (OpenSSH's IdentitiesOnly)
        self.round_trips = 0
        self._key_origin: dict[str, str] = {}  # key type -> the known_hosts file it came from
        self._conn: Any = None
        self._transport: paramiko.Transport | None = None
        self._warm_error: TransportError | None = None  # a failed warm(), raised by the next command
        self._early: Early | None = None  # a TCP connection dialled ahead, for the next attempt
        self._watch: Keepalive | None = None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._sessions = SessionGate(max_sessions)

    def __repr__(self) -> str:
        return f"SSHTransport({self.known_host_name!r}, user={self.user!r}, name={self.host!r})"

    # ---------------------------------------------------------------- connection
    @property
    def connected(self) -> bool:
        """True while the SSH connection is up."""
        t = self._transport
        return t is not None and t.is_active()

    def connect(self) -> None:
        """Connect now (otherwise the first command connects). Raises HostKeyError/HostUnreachable."""
        self._connection()

    def warm(self, on_dial: Callable[[], None]) -> None:
        """Connect ahead of the first command (from a background thread); ``on_dial()`` is called
        as the attempt goes out (and again when it failed before). A failure is not raised here:
        the next command raises it, without a second attempt."""
        try:
            self._connection(on_dial)
        except TransportError:
            pass
        finally:
            on_dial()

    def adopt(self, early: Early | None) -> None:
        """Take a TCP connection to this host dialled before paramiko was loaded
        (:mod:`maintkit.transport.dial`): the next attempt runs its SSH handshake on it, host key
        checked as always, or fails once with its OSError. Closed if not needed (connected or
        busy connecting, a jump host or a proxy). Never waits: the pool's lock may be held."""
        free = self._lock.acquire(blocking=False)
        if free and self._transport is None and self._early is None and self.via is None and not self.proxy_command:
            self._early, early = early, None
        if free:
            self._lock.release()
        discard(early)

    def close(self) -> None:
        """Close the connection and wait for its reader thread (idempotent; a later command connects again)."""
        transport = self._forget()
        if transport is not None and transport is not threading.current_thread():
            transport.join(timeout=self.connect_timeout)  # its socket is closed: it ends at once
        if self.via is not None:
            self.via.close()

    def tunnel(self, host: str, port: int) -> Any:
        """A channel to ``host:port`` forwarded by this host (``direct-tcpip``), used as the
        socket of the next hop's connection. Raises HostKeyError/HostUnreachable naming this host."""
        transport = self._connection()
        try:
            return transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=self.connect_timeout)
        except paramiko.ChannelException as exc:
            raise HostUnreachable(self.host, f"cannot reach {host}:{port} from this jump host: {exc.text}") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._forget(transport)
            why = f"no channel to {host}:{port} within {self.connect_timeout:g} s: {exc}"
            raise HostUnreachable(self.host, why) from None

    def _forget(self, only: paramiko.Transport | None = None) -> paramiko.Transport | None:
        """Take the connection out and close it (only if it is ``only``, when given); its transport."""
        with self._lock:
            if only is not None and self._transport is not only:
                return None
            conn, transport, self._conn, self._transport = self._conn, self._transport, None, None
            watch, self._watch, self._warm_error = self._watch, None, None
            early, self._early = self._early, None  # None once connected
        discard(early)
        if watch is not None:
            watch.stop()
        if transport is not None and isinstance(transport.sock, socket.socket):
            with contextlib.suppress(OSError):  # the reader thread sees EOF at once (no 0.1 s poll)
                transport.sock.shutdown(socket.SHUT_RDWR)
        _close_quietly(conn)
        return transport

    def _watch_of(self, transport: paramiko.Transport) -> Keepalive | None:
        """The keepalive watch of ``transport`` (None once it was replaced)."""
        with self._lock:
            return self._watch if self._transport is transport else None

    def _connection(self, on_dial: Callable[[], None] | None = None) -> paramiko.Transport:
        with self._lock:
            t = self._transport
            if t is not None and t.is_active():
                return t
            if self._warm_error is not None:
                error, self._warm_error = self._warm_error, None
                raise error
            if self._conn is not None:  # dead: replace it
                if self._watch is not None:
                    self._watch.stop()
                _close_quietly(self._conn)
                self._conn, self._transport, self._watch = None, None, None
            conn, early, self._early = None, self._early, None
            try:
                if isinstance(early, OSError):
                    raise early
                conn = self._new_connection(early)
                if on_dial is not None:
                    on_dial()
                conn.open()
                transport = conn.client.get_transport()
                if transport is None or not transport.is_active():
                    raise EOFError("connection closed during setup")
            except Exception as exc:
                _close_quietly(conn)
                discard(early)  # when it failed before paramiko took the socket
                error = self._connect_error(exc)
                if on_dial is not None:  # warm(): the next command raises it
                    self._warm_error = error
                raise error from None
            sock = transport.sock
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn, self._transport = conn, transport
            self._watch = watch_transport(
                transport,
                (self.keepalive_interval, self.keepalive_count_max),
                ask=lambda: _send_keepalive(transport),
                on_lost=lambda: self._forget(transport),
            )
            return transport

    def _new_connection(self, sock: socket.socket | None = None) -> Any:
        """A fabric Connection with our timeouts, key and host key policy (not yet open), on
        ``sock`` when given (dialled ahead: a direct connection only)."""
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
        elif self.identities_only:
            kwargs.update(allow_agent=False)
        if self.via is not None:
            try:
                kwargs["sock"] = self.via.tunnel(self.hostname, self.port)
            except TransportError as exc:
                raise type(exc)(self.host, f"through jump host {exc}") from None
        elif self.proxy_command:
            line = expand_proxy_command(self.proxy_command, self.hostname, self.port, self.user)
            try:
                kwargs["sock"] = paramiko.ProxyCommand(f"sh -c {quote('exec ' + line)}")
            except (OSError, paramiko.SSHException) as exc:
                raise HostUnreachable(self.host, f"proxy command failed to start: {exc}") from None
        elif sock is not None:
            kwargs["sock"] = sock
        conn = Connection(self.hostname, user=self.user, port=self.port, config=_config(), connect_kwargs=kwargs)
        try:
            self._load_host_keys(conn.client)
        except HostKeyError:
            _close_quietly(conn)
            raise
        return conn

    def _load_host_keys(self, client: paramiko.SSHClient) -> None:
        """This host's known keys and the missing-key policy, on a client about to connect."""
        keys = client.get_host_keys()
        self._key_origin = {}
        for path in known_hosts_files(self.known_hosts):
            try:
                parsed = parsed_once(path, _load_known_hosts)
            except (OSError, UnicodeDecodeError, paramiko.SSHException) as exc:
                raise HostKeyError(self.host, f"cannot read known_hosts file {path}: {exc}") from None
            # only this host's entries: parsing a large known_hosts once per file, not once per
            # connection, is what keeps hundreds of hosts cheap
            for keytype, key in (parsed.lookup(self.known_host_name) or {}).items():
                keys.add(self.known_host_name, keytype, key)
                self._key_origin.setdefault(keytype, path)
        if self.host_key_policy == "accept-new":
            client.set_missing_host_key_policy(_AcceptNewPolicy(accept_new_target(self.known_hosts)))
        else:
            client.set_missing_host_key_policy(_StrictPolicy())

    def _connect_error(self, exc: Exception) -> TransportError:
        """Translate a connect-time library error (messages: :mod:`maintkit.transport.ssh_errors`)."""
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, _UnknownHostKey):
            proxied = self.via is not None or bool(self.proxy_command)
            return ssh_errors.unknown_host_key(self, exc.key.get_name(), exc.key.get_base64(), proxied=proxied)
        if isinstance(exc, paramiko.BadHostKeyException):
            origin = self._key_origin.get(exc.expected_key.get_name())
            return ssh_errors.changed_host_key(self, exc.expected_key.fingerprint, exc.key.fingerprint, origin)
        if isinstance(exc, paramiko.AuthenticationException):
            return ssh_errors.authentication_failed(self, exc)
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return ssh_errors.unreachable(self, "connection refused")
        if (no_tcp := ssh_errors.tcp_failure(self, exc)) is not None:
            return no_tcp
        if isinstance(exc, paramiko.ProxyCommandFailure):
            return HostUnreachable(self.host, f"proxy command failed: {exc}")
        if isinstance(exc, paramiko.SSHException | EOFError) and ssh_errors.is_handshake_failure(exc):
            return ssh_errors.no_handshake(self)
        if isinstance(exc, paramiko.SSHException | EOFError | OSError):
            return ssh_errors.unreachable(self, str(exc) or type(exc).__name__)
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
        token = base.refuse_if_cancelled(self.host)
        limit = self.command_timeout if timeout is None else float(timeout)
        started = time.monotonic()
        deadline = started + limit
        output = Output(stdout_sink)
        code, timed_out = TIMEOUT_CODE, True
        transport = self._connection()
        with self._sessions.turn(deadline - time.monotonic()) as mine:
            if mine:
                code, timed_out = self._command(transport, line, stdin, output, deadline, token)
        if output.stop.requested and (code != 0 or timed_out):  # exit 0: it finished before the stop
            raise base.cancelled_error(self.host)
        return output.result(self.host, line, code, timed_out, started=started, limit=limit, check=check)

    def _command(
        self,
        transport: paramiko.Transport,
        line: str,
        stdin: bytes | IO[bytes] | None,
        output: Output,
        deadline: float,
        token: base.CancelToken | None,
    ) -> tuple[int, bool]:
        """Run ``line`` on a new session channel: (exit code, timed out). While it runs, a
        cancelled ``token`` stops its remote process group (:meth:`_stop`)."""
        stop = output.stop
        transport, chan = self._open_session(transport, deadline)
        watch = self._watch_of(transport)
        unregister = token.register(lambda: self._stop(chan, stop)) if token is not None else None
        try:
            with self._count_lock:
                self.round_trips += 1
            wire = ssh_channel.command_line(line, stdin is not None)
            signal = lambda: _send_signal(chan, "TERM")  # noqa: E731
            term = lambda: ssh_channel.end_timed_out(chan, stop, signal, self._kill_group)  # noqa: E731
            io = (Stdin(stdin, _LOST), output)
            return ssh_channel.run_on(chan, transport.is_active, self.host, wire, io, deadline, term, _EXEC_ERRORS)
        except Disconnected:
            self._forget(transport)
            lost_after = watch.lost_after if watch is not None else None
            raise ssh_errors.connection_lost(self, lost_after, line) from None
        except LocalIOError as exc:
            raise TransportError(self.host, f"local I/O error while running a command: {exc}") from None
        finally:
            if unregister is not None:
                unregister()
            stop.known.set()  # a stopper waiting for the process group need not wait any longer
            chan.close()

    def _stop(self, chan: Any, stop: ssh_channel.Stop) -> None:
        """Stop a running command (called by a cancelled token): see :func:`stop_command`."""
        ssh_channel.stop_command(chan, stop, lambda: _send_signal(chan, "TERM"), self._kill_group, self.connect_timeout)

    def _kill_group(self, pgid: int) -> None:
        """SIGTERM the remote process group ``pgid``, SIGKILL what is left after the grace period."""
        with contextlib.suppress(TransportError):
            script = base.group_kill_script(pgid, base.CANCEL_GRACE, sudo=self.become)
            self._run_untracked(script, base.CANCEL_GRACE + 2 * self.connect_timeout)

    def _run_untracked(self, line: str, timeout: float) -> int:
        """Run a short command outside the session limit and any cancel token: its exit code."""
        code, _ = self._command(self._connection(), line, None, Output(None), time.monotonic() + timeout, None)
        return code

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
                self._forget(transport)
                if alive:  # no answer in time: the network or the host is gone
                    raise HostUnreachable(self.host, f"no answer opening a session within {wait:g} s") from None
                if attempt == 2:
                    raise HostUnreachable(self.host, f"connection lost: {exc or 'closed'}") from None
                transport = self._connection()
        raise AssertionError("unreachable")


def _load_known_hosts(path: str) -> Any:
    """The entries of one known_hosts file (read as paramiko.HostKeys reads them), indexed by host name."""
    parse, matches = paramiko.hostkeys.HostKeyEntry.from_line, paramiko.HostKeys()._hostname_matches
    return ssh_policy.KnownHostsIndex.load(path, parse, matches, paramiko.SSHException)


def _config() -> Any:
    """A fabric Config per connection: a Connection writes into it (inline_ssh_env), never shared."""
    return Config(lazy=True, ssh_config=paramiko.SSHConfig())


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
