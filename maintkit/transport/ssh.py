"""SSHTransport: commands over one SSH connection per host (the only module importing fabric/paramiko).

The connection is set up through :class:`fabric.Connection` (its configuration and gateway
support), but commands run on raw paramiko channels: invoke's runner threads add latency to
every command. TCP_NODELAY is set on the socket: without it paramiko stalls about 45 ms per
round trip. Every call has a deadline (connect, channel open, command), so a cut network
fails within the timeout instead of hanging.

Host keys are verified: the user's ``~/.ssh/known_hosts`` plus the inventory's files.
``strict`` refuses unknown and changed keys; ``accept-new`` records an unknown key in the
first known_hosts file and still refuses a changed one. Errors are translated here into
:class:`~maintkit.errors.HostUnreachable`, :class:`~maintkit.errors.HostKeyError` and
:class:`~maintkit.errors.CommandFailed`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import paramiko
from fabric import Connection

from maintkit.errors import CommandFailed, HostKeyError, HostUnreachable, TransportError
from maintkit.results import CommandResult
from maintkit.transport.base import DEFAULT_TIMEOUT, build_command, quote

_CHUNK = 32768
HostKeyPolicy = Literal["strict", "accept-new"]


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Trust an unknown key on first use and record it; a changed key never gets here."""

    def __init__(self, record_to: Path) -> None:
        self.record_to = record_to

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.record_to.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.record_to, "a", encoding="ascii") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        os.chmod(self.record_to, 0o600)


class SSHTransport:
    """Runs commands on one host over one shared SSH connection (thread-safe)."""

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        user: str | None = None,
        key_filename: str | None = None,
        known_hosts: Sequence[str] = (),
        host_key_policy: HostKeyPolicy = "strict",
        connect_timeout: float = 10.0,
        command_timeout: float = DEFAULT_TIMEOUT,
        become: bool = False,
        sudo_user: str | None = None,
        proxy_command: str | None = None,
        name: str | None = None,
    ) -> None:
        self.hostname = host
        self.port = port
        self.user = user
        self.key_filename = key_filename
        self.known_hosts = [os.path.expanduser(k) for k in known_hosts]
        self.host_key_policy = host_key_policy
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.become = become
        self.sudo_user = sudo_user
        self.proxy_command = proxy_command
        self.host = name or (host if port == 22 else f"{host}:{port}")
        self.round_trips = 0
        self._conn: Any = None
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- connection
    @property
    def connected(self) -> bool:
        """True while the SSH connection is up."""
        return self._transport is not None and self._transport.is_active()

    def _known_host_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def _connect(self) -> paramiko.Transport:
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            connect_kwargs: dict[str, Any] = {
                "banner_timeout": self.connect_timeout,
                "auth_timeout": self.connect_timeout,
                "channel_timeout": self.connect_timeout,
            }
            if self.key_filename:
                connect_kwargs.update(key_filename=self.key_filename, look_for_keys=False, allow_agent=False)
            conn = Connection(
                self.hostname,
                user=self.user,
                port=self.port,
                connect_timeout=self.connect_timeout,
                connect_kwargs=connect_kwargs,
                gateway=self.proxy_command,
            )
            client: paramiko.SSHClient = conn.client
            client.get_host_keys().clear()
            default = Path("~/.ssh/known_hosts").expanduser()
            for path in [str(default), *self.known_hosts]:
                if os.path.isfile(path):
                    try:
                        client.get_host_keys().load(path)
                    except (OSError, paramiko.SSHException) as exc:
                        raise HostKeyError(self.host, f"cannot read known_hosts file {path}: {exc}") from None
            if self.host_key_policy == "accept-new":
                target = Path(self.known_hosts[0]) if self.known_hosts else default
                client.set_missing_host_key_policy(_AcceptNewPolicy(target))
            else:
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                conn.open()
            except paramiko.BadHostKeyException as exc:
                raise HostKeyError(
                    self.host,
                    f"the host key of {self._known_host_name()} CHANGED (got {exc.key.get_name()} "
                    f"{exc.key.get_fingerprint().hex()}): possible man-in-the-middle attack; refusing to connect. "
                    "If the server was really reinstalled, remove the old entry (ssh-keygen -R) and add the new one.",
                ) from None
            except paramiko.AuthenticationException as exc:
                raise HostUnreachable(self.host, f"authentication failed for user {self.user or '(default)'}: {exc}") from None
            except paramiko.SSHException as exc:
                text = str(exc)
                if "not found in known_hosts" in text:
                    raise HostKeyError(
                        self.host,
                        f"the host key of {self._known_host_name()} is not in known_hosts; add it "
                        f"(ssh-keyscan -p {self.port} {self.hostname} >> KNOWN_HOSTS) or set host_key_policy: accept-new",
                    ) from None
                raise HostUnreachable(self.host, f"SSH error: {text}") from None
            except (OSError, EOFError) as exc:
                raise HostUnreachable(self.host, f"cannot connect: {exc}") from None
            transport = client.get_transport()
            if transport is None:
                raise HostUnreachable(self.host, "connection closed during setup")
            sock = transport.sock
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport.set_keepalive(15)
            self._conn, self._transport = conn, transport
            return transport

    def connect(self) -> None:
        """Connect now (otherwise the first command connects)."""
        self._connect()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            conn, self._conn, self._transport = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: S110 - closing must never raise
                pass

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
        """Run an argument list (quoted) on the host."""
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
        """Run an explicit shell script on the host (the remote login shell runs it)."""
        line = build_command(script=script, cwd=cwd, env=env, sudo=self._sudo(sudo), sudo_user=self.sudo_user)
        return self._execute(line, timeout=timeout, check=check, stdin=stdin, stdout_sink=stdout_sink)

    def _sudo(self, sudo: bool | None) -> bool:
        return self.become if sudo is None else sudo

    def _open_channel(self, deadline: float) -> paramiko.Channel:
        transport = self._connect()
        try:
            chan = transport.open_session(timeout=max(0.5, min(self.connect_timeout, deadline - time.monotonic())))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostUnreachable(self.host, f"cannot open a session: {exc or 'timed out'}") from None
        return chan

    def _execute(
        self,
        line: str,
        *,
        timeout: float,
        check: bool,
        stdin: bytes | IO[bytes] | None,
        stdout_sink: IO[bytes] | None,
    ) -> CommandResult:
        started = time.monotonic()
        deadline = started + timeout
        self.round_trips += 1
        chan = self._open_channel(deadline)
        out: list[bytes] = []
        err: list[bytes] = []
        timed_out = False
        try:
            chan.exec_command(line)
            feeder = self._start_feeder(chan, stdin)
            timed_out = self._pump(chan, out, err, stdout_sink, deadline)
            if feeder is not None:
                feeder.join(timeout=1)
            code = 124 if timed_out else chan.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostUnreachable(self.host, f"connection lost while running a command: {exc}") from None
        finally:
            chan.close()
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
        if timed_out:
            if not self.connected:
                raise HostUnreachable(self.host, f"no answer within {timeout:g} s (connection lost)")
            if check:
                raise CommandFailed(result, f"command timed out after {timeout:g} s: {line[:200]}")
        elif check and code != 0:
            raise CommandFailed(result)
        return result

    @staticmethod
    def _start_feeder(chan: paramiko.Channel, stdin: bytes | IO[bytes] | None) -> threading.Thread | None:
        if stdin is None:
            chan.shutdown_write()
            return None

        def feed() -> None:
            try:
                if isinstance(stdin, bytes | bytearray):
                    view = memoryview(stdin)
                    for i in range(0, len(view), _CHUNK):
                        chan.sendall(view[i : i + _CHUNK])
                else:
                    while block := stdin.read(_CHUNK):
                        chan.sendall(block)
                chan.shutdown_write()
            except (OSError, paramiko.SSHException, EOFError):
                pass

        if isinstance(stdin, bytes | bytearray) and len(stdin) <= _CHUNK:
            chan.sendall(stdin)
            chan.shutdown_write()
            return None
        t = threading.Thread(target=feed, daemon=True)
        t.start()
        return t

    @staticmethod
    def _pump(
        chan: paramiko.Channel,
        out: list[bytes],
        err: list[bytes],
        sink: IO[bytes] | None,
        deadline: float,
    ) -> bool:
        """Read stdout/stderr until the command exits; True if the deadline passed first.

        The server sends data, then the exit status, then closes: once the exit status is
        there and the buffers are empty, everything has been read.
        """
        import select

        while True:
            got = False
            while chan.recv_ready():
                block = chan.recv(_CHUNK)
                if not block:
                    break
                got = True
                if sink is not None:
                    sink.write(block)
                else:
                    out.append(block)
            while chan.recv_stderr_ready():
                block = chan.recv_stderr(_CHUNK)
                if not block:
                    break
                got = True
                err.append(block)
            if (chan.exit_status_ready() or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if not got:
                # stdout data and channel close wake the select; stderr-only output does not,
                # hence the short cap
                select.select([chan], [], [], min(remaining, 0.05))

    # ---------------------------------------------------------------- files
    def put(self, data: bytes, path: str, *, mode: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Write ``path`` atomically in one round trip (temp file + rename). Without ``mode``
        an existing file keeps its mode and a new one gets 0644."""
        p = quote(path)
        chmod = f"chmod {mode:o} \"$tmp\"" if mode is not None else f"{{ chmod --reference={p} \"$tmp\" 2>/dev/null || chmod 644 \"$tmp\"; }}"
        script = (
            f"tmp=$(mktemp {quote(path + '.XXXXXX')}) && cat > \"$tmp\" && {chmod} && mv -f \"$tmp\" {p}"
            f' || {{ rc=$?; rm -f "$tmp"; exit $rc; }}'
        )
        self.run_shell(script, stdin=bytes(data), timeout=timeout)

    def get(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read a whole file."""
        res = self.run(["cat", "--", path], timeout=timeout)
        return res.stdout_bytes or b""


__all__ = ["SSHTransport"]
