"""The Transport protocol and safe command construction.

Every command maintkit runs is built here from an argument list: each argument
is quoted with :func:`shlex.quote`, so values never become shell syntax. A raw
shell script is only run where a caller explicitly asks for one
(:meth:`Transport.run_shell`).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import IO, Protocol, runtime_checkable

from maintkit.results import CommandResult

DEFAULT_TIMEOUT = 120.0


def quote(arg: str) -> str:
    """Quote one argument for a POSIX shell."""
    return shlex.quote(str(arg))


def join(argv: Sequence[str]) -> str:
    """Quote and join an argument list into one shell command line."""
    if not argv:
        raise ValueError("empty argument list")
    return " ".join(quote(a) for a in argv)


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
