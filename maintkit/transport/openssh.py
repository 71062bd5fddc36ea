"""OpenSSHTransport: the Transport contract on the system's ``ssh`` client (``connection: openssh``),
with connections reused across runs (OpenSSH's ControlMaster/ControlPersist).

The first command of a run (or :meth:`OpenSSHTransport.warm`) finds the master a previous run
left (asked on its socket, as ``ssh -O check`` does) or opens one (``ssh -N``, which
authenticates, then detaches into the background for ``control_persist`` idle seconds); every
command is then a new session on the master: no TCP connect, no key exchange, no
authentication. maint asks for that session itself (:mod:`~maintkit.transport.openssh_mux`),
starting no ``ssh`` process; only when the master cannot be asked does a command run as an
``ssh`` client (which then opens a new master).

Commands run through :class:`~maintkit.transport.local.LocalTransport`'s machinery (a process
group per command, pumps, deadlines, cancel), the command line built exactly as over paramiko
(:func:`~maintkit.transport.base.build_command`, ``sudo -n`` under ``become``, the remote
shell's pid printed first: :data:`~maintkit.transport.ssh_channel.PGID_PREFIX`). A timeout or a
cancel stops the REMOTE process group (SIGTERM, SIGKILL after a grace period, over the master),
then the local ``ssh``: killing only the client would leave the command running on the host.

Strictness is the paramiko path's: every ``ssh`` is built from an argument list with
``-F /dev/null`` (``~/.ssh/config`` only when the inventory's ``ssh_config`` says so; the
options given here win over it anyway), ``BatchMode``, ``StrictHostKeyChecking=yes``
(``accept-new`` only under that policy), the known_hosts files of ``ssh_settings``, no global
known_hosts, ``IdentitiesOnly`` with the key, ``ConnectTimeout`` and ``ServerAlive*`` from the
inventory. Host keys are checked when the master opens, and a master is reused only by a run
whose known_hosts entries for the host, key file and config are the ones it was opened under
(:mod:`~maintkit.transport.openssh_trust`). ssh's own failures (exit 255 before the
remote shell started) become the same errors as over paramiko (:mod:`~maintkit.transport.ssh_errors`).
Control sockets: :mod:`~maintkit.transport.openssh_control`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import secrets
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from maintkit.errors import HostUnreachable, TransportError
from maintkit.results import CommandResult
from maintkit.transport import base, openssh_control, ssh_errors
from maintkit.transport.base import RemoteShellTransport
from maintkit.transport.local import LocalTransport, Progress, Running
from maintkit.transport.openssh_errors import hop_failure, ssh_failure
from maintkit.transport.openssh_mux import MuxSession, MuxUnavailable, open_session
from maintkit.transport.openssh_trust import host_names, trust_digest
from maintkit.transport.ssh_channel import TIMEOUT_CODE, Stop, command_line
from maintkit.transport.ssh_policy import (
    DEFAULT_KEEPALIVE_COUNT_MAX,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_MAX_SESSIONS,
    USER_KNOWN_HOSTS,
    HostKeyPolicy,
    SessionGate,
    check_settings,
)
from maintkit.transport.ssh_settings import Endpoint

__all__ = ["DEFAULT_CONTROL_PERSIST", "OpenSSHTransport"]

DEFAULT_CONTROL_PERSIST = 600
#: idle seconds of a run's own master under ``control_persist: 0`` (closed at close(); this only
#: bounds how long it outlives a run that was killed)
RUN_MASTER_IDLE = 60
_SSH_FAILED = 255
#: remote kills at once on one master: with DEFAULT_MAX_SESSIONS commands still holding their
#: sessions while they are stopped, 8 + 2 stay within sshd's default MaxSessions (10)
_KILL_SESSIONS = 2
_PGID_LINE = re.compile(rb"\x1fmaint-pgid=(\d+)\x1f\n")
_PGID_SEARCH = 4096
_LOST = ("closed by remote host", "Broken pipe", "Connection reset", "client_loop:", "mux_client_read_packet")


class _SshProcess(subprocess.Popen[bytes]):
    """One ``ssh`` command; ``remote`` is the command's process group on the host."""

    remote: Stop


class OpenSSHTransport(RemoteShellTransport, LocalTransport):
    """Runs commands on one host through the system's ``ssh`` and a shared control master.

    ``host``/``port``/``user``/``key_filename``/``known_hosts`` as for
    :class:`~maintkit.transport.ssh.SSHTransport`; ``jumps`` are the hops to go through (each
    checked as strictly as the host), ``ssh_config`` the OpenSSH config file to read (None:
    ``/dev/null``). ``control_persist`` idle seconds the master outlives the run (0: a master of
    this run only, closed by :meth:`close`); ``control_dir`` where the sockets live.
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
        jumps: Sequence[Endpoint] = (),
        name: str | None = None,
        alias: str | None = None,
        keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL,
        keepalive_count_max: int = DEFAULT_KEEPALIVE_COUNT_MAX,
        identities_only: bool = False,
        ssh_config: str | None = None,
        control_persist: int = DEFAULT_CONTROL_PERSIST,
        control_dir: Path | None = None,
    ) -> None:
        check_settings(host_key_policy, connect_timeout, command_timeout, 1, keepalive_interval, keepalive_count_max)
        if control_persist < 0:
            raise ValueError("control_persist must be 0 or more seconds")
        super().__init__(name=name or host, become=become, sudo_user=sudo_user, command_timeout=command_timeout)
        self.hostname = host
        self.port = int(port)
        self.user = user
        self.key_filename = os.path.expanduser(key_filename) if key_filename else None
        self.known_hosts = [os.path.expanduser(k) for k in known_hosts]
        self.host_key_policy: HostKeyPolicy = host_key_policy
        self.connect_timeout = float(connect_timeout)
        self.proxy_command = proxy_command
        self.jumps = tuple(jumps)
        self.alias = alias  # the name looked up in ssh_config (when one is read)
        self.keepalive = _keepalive(keepalive_interval, keepalive_count_max)
        self.identities_only = identities_only
        self.ssh_config = ssh_config
        self.control_persist = int(control_persist)
        self.control_dir = control_dir or openssh_control.control_dir()
        unique = [os.getpid(), secrets.token_hex(4)] if self.control_persist == 0 else []
        #: the settings a master is opened with, and the digest of the files its trust rests on
        self.settings_key = openssh_control.settings_key(
            [host, self.port, user, self.key_filename, *self.known_hosts, host_key_policy, ssh_config,
             proxy_command, self._jump_spec(), identities_only, alias, *self._keepalive_key()]
        )  # fmt: skip
        self.trust = "-".join(self._trust())
        self.socket = self.control_dir / openssh_control.socket_name(self.settings_key, [self.trust, *unique])
        self._ready = False  # a master answered (or was opened) for this transport
        self._warm_error: TransportError | None = None
        self._master_lock = threading.Lock()
        self._count_sessions()

    def _keepalive_key(self) -> list[str]:
        """The keepalives the master checks a live connection with, in the settings (nothing for
        the defaults, so a master opened with them keeps its name): a run asking for other ones
        never rides a master that would notice a dead host sooner or later than it asked."""
        default = _keepalive(DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_COUNT_MAX)
        return [] if self.keepalive == default else [f"keepalive={self.keepalive[0]},{self.keepalive[1]}"]

    def _count_sessions(self) -> None:
        """The bounds on sessions at once on the master, and what the transport counts of them."""
        #: commands run as sessions opened in-process, and as ``ssh`` clients
        self.mux_sessions = 0
        self.spawned = 0
        #: at most this many commands at once on the master (as over paramiko)
        self._sessions = SessionGate(DEFAULT_MAX_SESSIONS)
        #: remote kills (a session each) at once: with the commands, within sshd's default 10
        self._kills = SessionGate(_KILL_SESSIONS)

    @property
    def most_sessions(self) -> int:
        """The most commands that ran at once on the master."""
        return self._sessions.most

    @property
    def most_kills(self) -> int:
        """The most remote kills that ran at once."""
        return self._kills.most

    def __repr__(self) -> str:
        return f"OpenSSHTransport({self.known_host_name!r}, user={self.user!r}, name={self.host!r})"

    @property
    def connected(self) -> bool:
        """True while a master answers on this transport's control socket."""
        return openssh_control.check_master(self.socket) is not None

    # ---------------------------------------------------------------- the master
    def warm(self, on_dial: Callable[[], None]) -> None:
        """Find or open the master ahead of the first command; ``on_dial()`` as the attempt goes
        out. A failure is not raised here: the next command raises it, without a second attempt."""
        try:
            self._ensure_master(on_dial)
        except TransportError as exc:
            self._warm_error = exc
        finally:
            on_dial()

    def close(self) -> None:
        """Leave a persisting master alive (the point of it); end this run's own master
        (``control_persist: 0``) with ``ssh -O exit``. Idempotent."""
        if self.control_persist == 0 and self._ready:
            openssh_control.close_master(self.socket)
        self._ready = False

    def _ensure_master(self, on_dial: Callable[[], None] | None = None) -> None:
        """A master answers on the socket when this returns (one opened if none did)."""
        with self._master_lock:
            if self._ready:
                return
            if self._warm_error is not None:
                error, self._warm_error = self._warm_error, None
                raise error
            self._prepare()
            if openssh_control.check_master(self.socket) is None:
                openssh_control.stop_superseded(self.control_dir, self.socket, self.settings_key, self.trust)
                if on_dial is not None:
                    on_dial()
                self._open_master()
            self._ready = True

    def _prepare(self) -> None:
        """Check the control directory and the key file; label the socket for ``maint connections``."""
        openssh_control.ensure_dir(self.control_dir, self.host)
        if self.key_filename and not os.access(self.key_filename, os.R_OK):
            raise HostUnreachable(self.host, f"authentication failed: cannot read key file {self.key_filename}")
        if self.host_key_policy == "accept-new":
            with contextlib.suppress(OSError):
                Path(self._known_hosts()[0]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_label()

    def _write_label(self) -> None:
        """Name what the socket reaches and under which settings and trust (``maint connections``)."""
        label = {"host": self.host, "target": f"{self.user or ''}{'@' if self.user else ''}{self.hostname}:{self.port}",
                 "settings": self.settings_key, "trust": self.trust}  # fmt: skip
        try:
            openssh_control.write_label(self.socket, label)
        except OSError as exc:
            raise TransportError(self.host, f"cannot write to the control directory: {exc.strerror or exc}") from None

    def _open_master(self) -> None:
        """``ssh -N``: authenticate, then the master detaches (ControlPersist) and ssh exits 0."""
        limit = self.connect_timeout * (2 + len(self.jumps)) + 5
        argv = [*self._ssh_argv(), "-N", "--", self._destination()]
        for log in self._hop_logs():
            log.unlink(missing_ok=True)
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=limit, start_new_session=True, check=False
            )
        except subprocess.TimeoutExpired:
            raise ssh_errors.unreachable(self, f"timed out after {limit:g} s") from None
        except OSError as exc:
            raise TransportError(self.host, f"cannot start ssh: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            text = proc.stderr.decode("utf-8", "replace")
            raise hop_failure(self.host, self.jumps, self._hop_logs(), self.connect_timeout) or self._ssh_failure(text)

    def _hop_logs(self) -> list[Path]:
        """Where each jump host's ``ssh`` logs (under ControlPersist a ProxyCommand's stderr is /dev/null)."""
        return [self.socket.with_name(f"{self.socket.name}.hop{i}.log") for i in range(len(self.jumps))]

    # ---------------------------------------------------------------- ssh argument lists
    def _known_hosts(self) -> list[str]:
        """The known_hosts files, as over paramiko: the inventory's (accept-new records there), the user's."""
        return list(dict.fromkeys([*self.known_hosts, os.path.expanduser(USER_KNOWN_HOSTS)]))

    def _trust(self) -> list[str]:
        """Digests of what the host's and each jump's check and login read (:mod:`.openssh_trust`)."""
        out = [trust_digest(self._known_hosts(), host_names(self.hostname, self.port),
                            key_file=self.key_filename, ssh_config=self.ssh_config)]  # fmt: skip
        for hop in self.jumps:
            known = list(dict.fromkeys([*hop.known_hosts, os.path.expanduser(USER_KNOWN_HOSTS)]))
            out.append(trust_digest(known, host_names(hop.hostname, hop.port), key_file=hop.key_file))
        return out

    def _jump_spec(self) -> list[str]:
        return [f"{j.user}@{j.hostname}:{j.port}:{j.key_file}:{','.join(j.known_hosts)}" for j in self.jumps]

    def _strict(self, key: str | None, known: Sequence[str], identities_only: bool) -> list[str]:
        """The options every ``ssh`` here gets: policy, known_hosts, key, timeouts, nothing forwarded."""
        policy = "accept-new" if self.host_key_policy == "accept-new" else "yes"
        files = " ".join(openssh_control.option_value(k) for k in known)
        argv = ["-F", self.ssh_config or "/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", f"StrictHostKeyChecking={policy}", "-o", f"UserKnownHostsFile={files}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no", "-o", "HashKnownHosts=no",
                "-o", "VerifyHostKeyDNS=no", "-o", "CheckHostIP=no",
                "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout))}",
                "-o", f"ServerAliveInterval={self.keepalive[0]}", "-o", f"ServerAliveCountMax={self.keepalive[1]}",
                "-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "ClearAllForwardings=yes",
                "-o", "PermitLocalCommand=no", "-o", "RequestTTY=no", "-o", "EscapeChar=none"]  # fmt: skip
        if key or identities_only:
            argv += ["-o", "IdentitiesOnly=yes"]
        if key:
            argv += ["-i", openssh_control.escape(key)]
        return argv

    def _ssh_argv(self) -> list[str]:
        """``ssh`` and every option of a connection to the host through the control socket."""
        persist = self.control_persist or RUN_MASTER_IDLE
        argv = ["ssh", *self._strict(self.key_filename, self._known_hosts(), self.identities_only),
                "-o", "ControlMaster=auto", "-o", f"ControlPath={openssh_control.option_value(str(self.socket))}",
                "-o", f"ControlPersist={persist}",
                "-o", f"ProxyCommand={self._proxy() or 'none'}", "-p", str(self.port)]  # fmt: skip
        if self.ssh_config and self.alias:
            argv += ["-o", f"HostName={openssh_control.escape(self.hostname)}"]
        if self.user:
            argv += ["-l", self.user]
        return argv

    def _destination(self) -> str:
        return self.alias if (self.ssh_config and self.alias) else self.hostname

    def _proxy(self) -> str | None:
        """The ProxyCommand: the inventory's, or one ``ssh -W`` per jump host (each checked as strictly)."""
        if not self.jumps:
            return self.proxy_command
        command: str | None = None
        hops = [*self.jumps, Endpoint(self.host, self.hostname, self.port, self.user, None, ())]
        for (hop, following), log in zip(itertools.pairwise(hops), self._hop_logs(), strict=True):
            known = list(dict.fromkeys([*hop.known_hosts, os.path.expanduser(USER_KNOWN_HOSTS)]))
            argv = ["ssh", *self._strict(hop.key_file, known, hop.identities_only),
                    "-o", "ControlPath=none", "-o", "ControlMaster=no", "-o", f"ProxyCommand={command or 'none'}",
                    "-E", str(log), "-p", str(hop.port), *(["-l", hop.user] if hop.user else []),
                    "-W", f"[{following.hostname}]:{following.port}", "--", hop.hostname]  # fmt: skip
            command = openssh_control.escape(base.join(argv))
        return command

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
        base.refuse_if_cancelled(self.host)
        self._ensure_master()
        limit = self.command_timeout if timeout is None else float(timeout)
        # the master is ONE connection: sshd refuses sessions beyond its MaxSessions (10 by default);
        # the wait for a turn is bounded by the command's timeout, then the command gets its own
        with self._sessions.turn(limit) as mine:
            if not mine:
                return _waited_out(self.host, line, limit, check)
            return super()._execute(line, timeout=timeout, check=check, stdin=stdin, stdout_sink=stdout_sink)

    def _argv(self, line: str, has_stdin: bool) -> list[str]:
        """``ssh OPTIONS -- HOST WIRE``: the remote shell prints its pid, then runs ``line``."""
        return [*self._ssh_argv(), "--", self._destination(), command_line(line, has_stdin)]

    def _spawn(self, line: str, stdin: bytes | IO[bytes] | None) -> Running:
        """The command as a session the master opens in-process (no ``ssh`` started), or as an
        ``ssh`` client when the master cannot be asked (then nothing ran through it)."""
        try:
            session = open_session(self.socket, command_line(line, stdin is not None), stdin is not None)
        except MuxUnavailable:
            with self._count_lock:
                self.spawned += 1
            self._write_label()  # the ``ssh`` below may open a new master on the socket
        else:
            with self._count_lock:
                self.mux_sessions += 1
            return session
        argv = self._argv(line, stdin is not None)
        try:
            proc = _SshProcess(
                argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise TransportError(self.host, f"cannot start ssh: {exc.strerror or exc}") from None
        proc.remote = Stop()
        return proc

    def _pump_stderr(self, proc: Running, chunks: list[bytes], progress: Progress) -> None:
        """Collect stderr, taking the remote shell's pid line out of its first bytes (every
        byte counted in ``progress``)."""
        stop: Stop = getattr(proc, "remote", Stop())
        stream = proc.stderr
        if stream is None:
            return
        head = bytearray()
        seeking = True
        with stream:
            while block := os.read(stream.fileno(), 65536):
                progress.n += len(block)
                if not seeking:
                    chunks.append(block)
                    continue
                head += block
                match = _PGID_LINE.search(head)
                if match is None and len(head) < _PGID_SEARCH:
                    continue
                seeking = False
                if match is not None:
                    stop.found(int(match.group(1)))
                    del head[match.start() : match.end()]
                chunks.append(bytes(head))
        if seeking:
            chunks.append(bytes(head))
        stop.known.set()  # a stopper waiting for the pid need not wait any longer

    def _finished(self, proc: Running, line: str, code: int, timed_out: bool, err: list[bytes]) -> None:
        """ssh's own failure (exit 255) becomes the paramiko path's error: before the remote
        shell started, a connection error; while the command ran, a lost connection."""
        if timed_out or code != _SSH_FAILED:
            return
        stop: Stop | None = getattr(proc, "remote", None)
        if isinstance(proc, MuxSession):
            if proc.lost:  # no exit status: the master or its connection went away
                self._ready = False
                if stop is None or stop.pgid is None:
                    raise TransportError(
                        self.host, "the OpenSSH control master ended the session before the command started"
                    )
                raise ssh_errors.connection_lost(self, None, line)
            return  # 255 is the command's own exit status here
        text = b"".join(err).decode("utf-8", "replace")
        if stop is None or stop.pgid is None:
            self._ready = False  # look for (or open) the master again next time
            raise self._ssh_failure(text)
        if "Timeout, server" in text:
            raise ssh_errors.connection_lost(self, float(self.keepalive[0] * self.keepalive[1]), line)
        if any(part in text for part in _LOST):
            raise ssh_errors.connection_lost(self, None, line)

    def _release(self, proc: Running) -> None:
        """A session opened in-process: hang up its control connection now that its output is in."""
        if isinstance(proc, MuxSession):
            proc.release()

    def _ssh_failure(self, text: str) -> TransportError:
        return ssh_failure(self, text, proxied=bool(self.proxy_command or self.jumps))

    # ---------------------------------------------------------------- stopping a command
    def _via_sudo(self) -> bool:
        return False  # the local ssh process is ours; sudo runs on the host

    def _kill_group(self, proc: Running) -> None:
        """Stop the command's process group on the host (over the master), then the local ssh
        (or, for a session opened in-process, stop waiting for it)."""
        stop: Stop | None = getattr(proc, "remote", None)
        if stop is not None and proc.poll() is None:
            stop.known.wait(self.connect_timeout)
            if stop.pgid is not None and proc.poll() is None:
                self._kill_remote(stop.pgid)
        if isinstance(proc, MuxSession):  # no local process: stop waiting for the session
            proc.end()
            return
        super()._kill_group(proc)

    def _kill_remote(self, pgid: int) -> None:
        """SIGTERM the remote process group, SIGKILL what is left after the grace period."""
        script = base.group_kill_script(pgid, base.CANCEL_GRACE, sudo=self.become)
        argv = [*self._ssh_argv(), "--", self._destination(), script]
        # the commands being stopped still hold their sessions
        with self._kills.turn(), contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=base.CANCEL_GRACE + 2 * self.connect_timeout,
                start_new_session=True,
                check=False,
            )


def _keepalive(interval: float, count_max: int) -> tuple[int, int]:
    """``ServerAliveInterval`` (whole seconds, at least 1) and ``ServerAliveCountMax``, as ``ssh`` gets them."""
    return max(1, math.ceil(interval)), int(count_max)


def _waited_out(host: str, line: str, limit: float, check: bool) -> CommandResult:
    """The result of a command whose turn on the master did not come within its timeout."""
    result = CommandResult(
        host=host, command=line, exit_code=TIMEOUT_CODE, stdout="", stderr="", duration_ms=limit * 1e3, timed_out=True
    )
    return base.checked(result, limit, check, waiting=True)
