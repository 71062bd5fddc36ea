"""The Transport protocol and safe command construction.

Every command maintkit runs is built here from an argument list: each argument
is quoted with :func:`shlex.quote`, so values never become shell syntax. A raw
shell script is only run where a caller explicitly asks for one
(:meth:`Transport.run_shell`).
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import IO, Protocol, runtime_checkable

from maintkit._text import head
from maintkit.errors import CommandFailed, Interrupted
from maintkit.results import CommandResult
from maintkit.transport.ssh_policy import known_host_name

DEFAULT_TIMEOUT = 120.0
#: seconds a cancelled command's process group gets between SIGTERM and SIGKILL
CANCEL_GRACE = 3.0


def quote(arg: str) -> str:
    """Quote one argument for a POSIX shell."""
    return shlex.quote(str(arg))


def join(argv: Sequence[str]) -> str:
    """Quote and join an argument list into one shell command line."""
    if not argv:
        raise ValueError("empty argument list")
    return " ".join(quote(a) for a in argv)


def chain(*argvs: Sequence[str]) -> str:
    """Several argument lists as one command line run one after the other, stopping at the first
    that fails (``&&``): one round trip for a short sequence."""
    if not argvs:
        raise ValueError("no command")
    return " && ".join(join(a) for a in argvs)


def here_document(text: str, end: str) -> str:
    """``<<'END'`` and ``text`` as a quoted here-document's lines (nothing in them is expanded),
    then the line ``end``; put it after a command. ValueError when the text holds the line
    ``end`` or is not ASCII: dash drops a byte >= 0x80 that follows the start of a line matching
    the end line's start (``MA\\xc3\\xa9`` arrives as ``MA\\xa9`` under ``<<'MAINT'``)."""
    body = text if text.endswith("\n") or not text else text + "\n"
    if f"\n{end}\n" in f"\n{body}":
        raise ValueError(f"a here-document's text holds its end line {end}")
    if not body.isascii():
        raise ValueError("a here-document's text must be ASCII")
    return f"<<'{end}'\n{body}{end}\n"


def output_marker() -> str:
    """``@@mk-`` and 32 random hex digits: a line that frames sections of one shell's output,
    which no table name, file name or value on the host can make."""
    return f"@@mk-{secrets.token_hex(16)}"


def split_at_line(text: str, line: str) -> tuple[str, str] | None:
    """``text`` before and after its first line that is exactly ``line`` (an
    :func:`output_marker` line, say), without the newlines around it; None when no line is."""
    lines = text.split("\n")
    if line not in lines:
        return None
    i = lines.index(line)
    return "\n".join(lines[:i]), "\n".join(lines[i + 1 :])


def build_command(
    argv: Sequence[str] | None = None,
    *,
    script: str | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    sudo: bool = False,
    sudo_user: str | None = None,
) -> str:
    """Build the shell line for an argument list (or an explicit script).

    ``env`` entries are set with ``env K=V`` (names are validated), ``cwd`` with
    ``cd DIR &&``, and ``sudo`` wraps everything in ``sudo -n [-u USER] -- sh -c``.
    Exactly one of ``argv`` and ``script`` must be given.
    """
    if (argv is None) == (script is None):
        raise ValueError("give exactly one of argv and script")
    line = join(argv) if argv is not None else str(script)
    if env:
        for key in env:
            if not key.replace("_", "a").isalnum() or key[0].isdigit():
                raise ValueError(f"invalid environment variable name: {key!r}")
        prefix = " ".join(f"{k}={quote(v)}" for k, v in env.items())
        line = f"export {prefix}; {line}" if script is not None else f"env {prefix} {line}"
    if cwd:
        line = f"cd {quote(cwd)} && {line}" if script is None else f"cd {quote(cwd)} || exit 97\n{line}"
    if sudo:
        user = ["-u", sudo_user] if sudo_user else []
        line = join(["sudo", "-n", *user, "--", "sh", "-c", line])
    elif script is not None and cwd:
        line = join(["sh", "-c", line])
    return line


def checked(result: CommandResult, limit: float, check: bool, waiting: bool = False) -> CommandResult:
    """``result``; with ``check``, :class:`CommandFailed` carrying it when it timed out (after
    ``limit`` seconds, ``waiting`` for a session or running) or exited non-zero."""
    if check and result.timed_out:
        what = " (waiting for a session)" if waiting else ""
        raise CommandFailed(result, f"command timed out after {limit:g} s{what}: {head(result.command, 200)}")
    if check and result.exit_code != 0:
        raise CommandFailed(result)
    return result


class CommandTransport:
    """Shared front half of the transports: :meth:`run` and :meth:`run_shell` build the quoted
    command line (sudo, cwd, env) and hand it to ``_execute``, which each transport implements."""

    host: str = ""
    become: bool = False
    sudo_user: str | None = None

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        check: bool = True,
        stdin: bytes | IO[bytes] | None = None,
        stdout_sink: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        sudo: bool | None = None,
    ) -> CommandResult:
        """Run an argument list, each argument quoted.

        ``timeout=None`` means the transport's default; ``sudo=None`` follows ``become``. With
        ``stdout_sink`` the raw stdout goes there and ``result.stdout`` is "".
        """
        line = build_command(list(argv), cwd=cwd, env=env, sudo=self._sudo(sudo), sudo_user=self.sudo_user)
        return self._execute(line, timeout=timeout, check=check, stdin=stdin, stdout_sink=stdout_sink)

    def run_shell(
        self,
        script: str,
        *,
        timeout: float | None = None,
        check: bool = True,
        stdin: bytes | IO[bytes] | None = None,
        stdout_sink: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        sudo: bool | None = None,
    ) -> CommandResult:
        """Run an explicit POSIX shell script (the caller quotes what it pastes in)."""
        line = build_command(script=script, cwd=cwd, env=env, sudo=self._sudo(sudo), sudo_user=self.sudo_user)
        return self._execute(line, timeout=timeout, check=check, stdin=stdin, stdout_sink=stdout_sink)

    def _sudo(self, sudo: bool | None) -> bool:
        return self.become if sudo is None else sudo

    def _execute(
        self,
        line: str,
        *,
        timeout: float | None,
        check: bool,
        stdin: bytes | IO[bytes] | None,
        stdout_sink: IO[bytes] | None,
    ) -> CommandResult:
        raise NotImplementedError


class RemoteShellTransport(CommandTransport):
    """A :class:`CommandTransport` to a host reached over SSH (paramiko or OpenSSH): files travel
    as shell commands, and the host is named in known_hosts as ``host`` or ``[host]:port``."""

    hostname: str = ""
    port: int = 22

    @property
    def known_host_name(self) -> str:
        """How this host is named in known_hosts: ``host`` or ``[host]:port``."""
        return known_host_name(self.hostname, self.port)

    def put(self, data: bytes, path: str, *, mode: int | None = None, timeout: float | None = None) -> None:
        """Write ``path`` atomically in one round trip (temp file beside it, chmod, rename; see
        :func:`atomic_put_script`). Raises CommandFailed when it cannot."""
        self.run_shell(atomic_put_script(path, mode), stdin=bytes(data), timeout=timeout)

    def get(self, path: str, *, timeout: float | None = None) -> bytes:
        """Read a whole file (``cat``). Raises :class:`CommandFailed` when it cannot be read."""
        res = self.run(["cat", "--", path], timeout=timeout)
        return res.stdout_bytes or b""


def atomic_put_script(path: str, mode: int | None, *, size: int | None = None) -> str:
    """A shell script that writes stdin to ``path`` atomically (used by both transports).

    Temp file beside ``path`` (created 0600 under ``umask 077``), then the mode (``mode``,
    or the existing file's, or 0644), the existing file's owner and group when allowed,
    then ``mv -f``. The temp file is removed on failure. With ``size``, exactly that many
    bytes are taken from stdin (``head -c``, which reads no further: the rest of stdin is left
    for the next reader) and a file of any other size is not written.
    """
    if mode is not None and not 0 <= mode <= 0o7777:
        raise ValueError(f"invalid file mode {mode!r}")
    if size is not None and size < 0:
        raise ValueError(f"invalid size {size!r}")
    p = quote(path)
    if mode is None:
        perm = f'{{ chmod --reference={p} -- "$tmp" 2>/dev/null || chmod 644 -- "$tmp"; }}'
    else:
        perm = f'chmod {mode:04o} -- "$tmp"'
    owner = f'{{ [ ! -e {p} ] || chown --reference={p} -- "$tmp" 2>/dev/null || :; }}'
    read = 'cat > "$tmp"' if size is None else f'head -c {size} > "$tmp" && [ "$(wc -c < "$tmp")" -eq {size} ]'
    return (
        f"umask 077; tmp=$(mktemp -- {quote(path + '.XXXXXX')}) || exit 1\n"
        f'if {read} && {perm} && {owner} && mv -f -- "$tmp" {p}; then exit 0; fi\n'
        'rm -f -- "$tmp"; exit 1'
    )


@runtime_checkable
class Transport(Protocol):
    """How maintkit talks to one host. Implementations: SSHTransport, LocalTransport, FakeTransport.

    Every call has a timeout; ``check=True`` raises
    :class:`~maintkit.errors.CommandFailed` (carrying the result) on a non-zero exit.
    """

    #: Display name of the host ("web1.example.net" or "local").
    host: str

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
        """Run an argument list (quoted). ``stdin`` is fed to the command; with
        ``stdout_sink`` the raw stdout bytes are streamed there instead of kept.
        ``sudo=None`` follows the environment's ``become`` setting."""
        ...

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
        """Run an explicit POSIX shell script (the caller is responsible for quoting)."""
        ...

    def put(self, data: bytes, path: str, *, mode: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Write ``data`` to ``path`` atomically (temp file + rename), optionally chmod."""
        ...

    def get(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read a whole file."""
        ...

    def close(self) -> None:
        """Close the connection (idempotent)."""
        ...


# ---------------------------------------------------------------- cancellation
class CommandCancelled(Interrupted):
    """A command was stopped (or never started) because its :class:`CancelToken` was cancelled."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: command stopped: {reason}")


class CancelToken:
    """Stops the commands started under it (see :func:`cancellable`).

    A transport registers a stopper for every command it runs while the token is bound to the
    calling thread, and refuses to start one once the token is cancelled (each block once:
    see :func:`cancellable`). :meth:`cancel` calls every stopper in a thread of its own and
    returns at once: each stopper signals its command's process group (SIGTERM, SIGKILL after
    :data:`CANCEL_GRACE`), locally or on the host. Commands run outside the token (rollback,
    finalize, lock release) are never touched.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._stoppers: dict[int, Callable[[], None]] = {}
        self._serial = 0
        self._threads: list[threading.Thread] = []

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._reason is not None

    @property
    def reason(self) -> str:
        """Why the token was cancelled ("" while it is not)."""
        return self._reason or ""

    def cancel(self, reason: str) -> int:
        """Cancel (once; later calls do nothing): stop every running command. The number stopped."""
        with self._lock:
            if self._reason is not None:
                return 0
            self._reason = reason
            stoppers = list(self._stoppers.values())
            self._stoppers.clear()
        for stop in stoppers:
            self._start(stop)
        return len(stoppers)

    def register(self, stop: Callable[[], None]) -> Callable[[], None]:
        """Register the stopper of a command that is starting; returns the function that
        unregisters it when the command ended. On a cancelled token ``stop`` runs at once."""
        with self._lock:
            if self._reason is None:
                self._serial += 1
                key = self._serial
                self._stoppers[key] = stop
                return lambda: self._forget(key)
        self._start(stop)
        return lambda: None

    def wait(self, timeout: float) -> bool:
        """Wait until every stopper started so far has finished; False when ``timeout`` ran out."""
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._stoppers.pop(key, None)

    def _start(self, stop: Callable[[], None]) -> None:
        thread = threading.Thread(target=_quietly, args=(stop,), name="maint-cancel", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()


def _quietly(stop: Callable[[], None]) -> None:
    """Run a stopper; a stopper that fails has nothing left to stop (the command ends by itself)."""
    with contextlib.suppress(Exception):
        stop()


class _Scope:
    """One :func:`cancellable` block: its token, and whether it was already told about the cancel."""

    def __init__(self, token: CancelToken) -> None:
        self.token = token
        self.told = False


_CURRENT: ContextVar[_Scope | None] = ContextVar("maintkit_cancel_scope", default=None)


@contextlib.contextmanager
def cancellable(token: CancelToken | None) -> Iterator[None]:
    """Bind ``token`` to the commands this thread (context) runs until the block ends.

    Once the token is cancelled, the block is told ONCE: the command it runs at that moment is
    stopped, or else the next one it starts is refused, with :class:`CommandCancelled`. What the
    block runs after that (an action undoing its own partial change) runs to the end as usual.
    A command that exits 0 although it was being stopped had finished: its result stands.
    """
    reset = _CURRENT.set(_Scope(token) if token is not None else None)
    try:
        yield
    finally:
        _CURRENT.reset(reset)


def current_token() -> CancelToken | None:
    """The token bound by the innermost :func:`cancellable` block (None outside one)."""
    scope = _CURRENT.get()
    return scope.token if scope is not None else None


def refuse_if_cancelled(host: str) -> CancelToken | None:
    """For a transport about to start a command: the token to register its stopper with.

    Raises :class:`CommandCancelled` when the token is cancelled and the block was not told yet;
    None outside a block, or once the block was told (the command then runs to the end).
    """
    scope = _CURRENT.get()
    if scope is None or scope.told:
        return None
    if scope.token.cancelled:
        raise cancelled_error(host)
    return scope.token


def cancelled_error(host: str) -> CommandCancelled:
    """The error for a command of the current block that was stopped (the block is now told)."""
    scope = _CURRENT.get()
    reason = scope.token.reason if scope is not None else "cancelled"
    if scope is not None:
        scope.told = True
    return CommandCancelled(host, reason)


def group_kill_script(pgid: int, grace: float, *, sudo: bool = False) -> str:
    """A shell script that stops process group ``pgid`` on a host: SIGTERM, then SIGKILL when
    anything of the group is left after ``grace`` seconds. It prints ``gone`` (nothing to stop),
    ``terminated`` or ``killed``. With ``sudo`` the signals are sent through ``sudo -n kill``
    (the members a ``sudo`` command started run as root), or plainly where sudo is refused."""
    if pgid <= 1:
        raise ValueError(f"not a process group to stop: {pgid!r}")
    group = quote(f"-{int(pgid)}")
    kill = f'kill -s "$1" -- {group} 2>/dev/null'
    if sudo:  # root first: a plain kill reaches sudo itself (and succeeds) but not what sudo started
        kill = f'sudo -n kill -s "$1" -- {group} 2>/dev/null || {kill}'
    steps = max(1, round(grace * 10))
    return (
        f"k() {{ {kill}; }}\n"
        "k TERM || { echo gone; exit 0; }\n"
        "n=0\n"
        "while k 0; do\n"
        f'  n=$((n + 1)); if [ "$n" -gt {steps} ]; then k KILL; echo killed; exit 0; fi\n'
        "  sleep 0.1\n"
        "done\n"
        "echo terminated"
    )
