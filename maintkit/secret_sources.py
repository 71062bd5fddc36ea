"""Secret values from the inventory's ``secrets:`` sources: environment variables, files, commands.

::

    secrets:
      DB_PASSWORD: {file: ~/.config/maint/shop-a-db}        # 0600, owned by you
      CF_TOKEN:    {command: [pass, show, cloudflare/token]}  # no shell; stdout is the value
      SMTP:        {env: MAINT_SMTP_PASSWORD}

* ``file``: a regular file owned by the user maintkit runs as, readable by nobody else (any
  group or other permission bit is refused, naming the file and its mode), at most 1 MiB of
  UTF-8; one trailing newline is dropped.
* ``command``: an argument list run without a shell, stdin closed, in a new session, killed
  (the whole process group) after ``timeout`` seconds. Its stdout, without one trailing
  newline, is the value. A failure names the secret and the command, with the tail of its
  stderr redacted (nothing it printed on stdout can show).
* ``env``: an environment variable of the controller.

Each source is read once per :class:`Resolver` (one per run) however many sites use it, and
only when a template reads it. Values are registered as secrets (:mod:`maintkit._text`)
before anyone sees them. Errors are :class:`SecretError`: they name the secret's key, never
its value.
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import stat
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from maintkit._text import register_secret, tail
from maintkit.errors import ConfigError, Problem

__all__ = ["MAX_SECRET_BYTES", "Resolver", "SecretError", "SourceLike", "read_secret_file", "run_secret_command"]

MAX_SECRET_BYTES = 1 << 20
PLACEHOLDER = "<unset>"


class SecretError(ConfigError):
    """A secret source could not give its value (the message names the secret, not the value)."""

    def __init__(self, message: str) -> None:
        super().__init__(Problem("secrets", None, "", message))
        self.message = message

    def __str__(self) -> str:
        return self.message


class SourceLike(Protocol):
    """A secret source as the inventory declares it (:class:`maintkit.inventory.SecretSource`)."""

    @property
    def env(self) -> str | None: ...
    @property
    def file(self) -> str | None: ...
    @property
    def command(self) -> Sequence[str] | None: ...
    @property
    def timeout(self) -> float: ...


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _strip_newline(value: str) -> str:
    if value.endswith("\r\n"):
        return value[:-2]
    return value[:-1] if value.endswith("\n") else value


def read_secret_file(name: str, path: str) -> str:
    """The value in ``path``: checked (regular file, yours, 0600 or stricter), newline dropped."""
    full = os.path.expanduser(path)
    where = f"secret {name} from file {full}"
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretError(f"{where} cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretError(f"{where} is refused: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid != os.geteuid():
            raise SecretError(f"{where} is refused: it is owned by {_owner(st.st_uid)}, not by {_owner(os.geteuid())}")
        if mode & 0o077:
            raise SecretError(
                f"{where} is refused: its mode {mode:04o} lets others read or change it; "
                f"only its owner may (chmod 600 {shlex.quote(full)})"
            )
        data = fh.read(MAX_SECRET_BYTES + 1)
    return _text_value(
        data, where, big=f"is refused: larger than {MAX_SECRET_BYTES} bytes",
        binary="is refused: not UTF-8 text", empty="is refused: the file is empty",
    )  # fmt: skip


def _text_value(data: bytes, where: str, *, big: str, binary: str, empty: str) -> str:
    """``data`` as a secret: at most MAX_SECRET_BYTES of UTF-8 text, not empty, without one trailing newline."""
    if len(data) > MAX_SECRET_BYTES:
        raise SecretError(f"{where} {big}")
    try:
        value = _strip_newline(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SecretError(f"{where} {binary}") from None
    if not value:
        raise SecretError(f"{where} {empty}")
    return value


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_secret_command(name: str, argv: Sequence[str], timeout: float, environ: Mapping[str, str] | None) -> str:
    """The stdout of ``argv`` (no shell, stdin closed), without one trailing newline."""
    shown = shlex.join(argv)
    where = f"secret {name} from command {shown}"
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=None if environ is None or environ is os.environ else dict(environ),
        )
    except FileNotFoundError:
        raise SecretError(f"{where} cannot start ({argv[0]} not found)") from None
    except OSError as exc:
        raise SecretError(f"{where} cannot start ({exc.strerror or exc})") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        _forget_output(out)
        raise SecretError(f"{where} timed out after {timeout:g} s{_stderr(err)}") from None
    if proc.returncode != 0:
        _forget_output(out)
        raise SecretError(f"{where} exited with status {proc.returncode}{_stderr(err)}")
    return _text_value(
        out, where, big=f"printed more than {MAX_SECRET_BYTES} bytes",
        binary="printed something that is not UTF-8 text", empty="printed nothing",
    )  # fmt: skip


def _forget_output(out: bytes) -> None:
    """A failed command's stdout may still be (part of) the secret: mask it everywhere."""
    text = out.decode("utf-8", "replace")
    for piece in (text.strip(), *text.splitlines()):
        register_secret(piece.strip())


def _stderr(err: bytes) -> str:
    text = tail(err.decode("utf-8", "replace"), 400)
    return f" (stderr: {text})" if text else ""


def register_value(value: str) -> None:
    """Register a secret value and, for a multi-line one, each of its lines."""
    register_secret(value)
    if "\n" in value:
        for line in value.splitlines():
            register_secret(line.strip())


class Resolver:
    """Reads secret sources, each once (a command runs once per run, whatever uses it).

    ``environ`` holds the ``env`` sources and is the commands' environment.
    ``placeholders`` (``maint validate``): commands are not run and environment variables
    need not exist (both give ``<unset>``); files are still checked and read.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, placeholders: bool = False) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.placeholders = placeholders
        self._cache: dict[tuple[str, ...], str] = {}
        self._lock = threading.Lock()

    def value(self, name: str, source: SourceLike) -> str:
        """The secret ``name``'s value from ``source`` (registered before it is returned)."""
        key, read = self._reader(name, source)
        with self._lock:
            if key not in self._cache:
                value = read()
                if value != PLACEHOLDER:
                    register_value(value)
                self._cache[key] = value
            return self._cache[key]

    def _reader(self, name: str, source: SourceLike) -> tuple[tuple[str, ...], Callable[[], str]]:
        if source.command is not None:
            argv = list(source.command)
            if self.placeholders:
                return ("placeholder",), lambda: PLACEHOLDER
            return ("command", str(source.timeout), *argv), lambda: run_secret_command(
                name, argv, source.timeout, self.environ
            )
        if source.file is not None:
            path = os.path.abspath(os.path.expanduser(source.file))
            return ("file", path), lambda: read_secret_file(name, path)
        var = source.env or ""
        return ("env", var), lambda: self._env(name, var)

    def _env(self, name: str, var: str) -> str:
        if self.placeholders:
            return PLACEHOLDER
        if var not in self.environ:
            raise SecretError(f"secret {name} from the environment variable {var} is not set")
        return self.environ[var]
