"""Helpers for plugin authors' unit tests: a FakeTransport that records commands.

A fake transport is for testing how an action builds its commands. Behaviour that talks
to real hosts is tested against real servers (maintkit's own suite does so).

The fake keeps the transport contract of the real ones (``tests/lab/test_transport_contract.py``
runs the same tests against it, :class:`~maintkit.transport.local.LocalTransport` and
:class:`~maintkit.transport.ssh.SSHTransport`): command lines are built and quoted by the
shared front half, ``check=True`` raises :class:`~maintkit.errors.CommandFailed` on a non-zero
exit or a timeout, ``stdin`` is read, ``stdout_sink`` gets the raw bytes, ``get`` of a missing
file raises :class:`~maintkit.errors.TransportError` and ``put`` refuses an invalid mode.

Example::

    from maintkit.testing import FakeTransport, make_context

    t = FakeTransport(responses={"php -v": (0, "PHP 8.2.0", "")})
    ctx = make_context(t)
    check = MyAction(MyAction.Params(...)).check(ctx)
    assert t.commands == ["php -v"]
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from maintkit._text import head
from maintkit.action import Context, RunOptions
from maintkit.errors import CommandFailed, TransportError
from maintkit.inventory import Environment, Inventory, Site
from maintkit.results import CommandResult
from maintkit.transport.base import DEFAULT_TIMEOUT, CommandTransport

__all__ = ["TIMEOUT", "Answer", "FakeTransport", "Response", "make_context"]

#: ``(exit code, stdout, stderr)``; stdout may be bytes (output that is not UTF-8)
Response = tuple[int, str | bytes, str]
#: what a command is answered with: a response, or a function of the bytes fed to its stdin
Answer = Response | Callable[[bytes], Response]
#: answer a command with this to have it time out (exit 124, ``timed_out``)
TIMEOUT: Response = (124, "", "")

_TIMEOUT_CODE = 124
_CHUNK = 65536


class FakeTransport(CommandTransport):
    """Records every command; answers from ``responses`` (exact line or ``re:`` regex) or ``handler``.

    Unanswered commands exit 0 with no output. ``commands`` lists every command line (and
    ``<put PATH>`` / ``<get PATH>`` for file calls), ``stdins`` the bytes each command was fed
    (None without stdin). ``files`` is an in-memory file system used by put/get, ``modes``
    the mode each put asked for.
    """

    def __init__(
        self,
        responses: Mapping[str, Answer] | None = None,
        handler: Callable[[str], Answer | None] | None = None,
        host: str = "fake",
        become: bool = False,
        command_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.host = host
        self.become = become
        self.command_timeout = float(command_timeout)
        self.responses = dict(responses or {})
        self.handler = handler
        self.commands: list[str] = []
        self.stdins: list[bytes | None] = []
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int | None] = {}
        self.round_trips = 0
        self.closed = False

    def _answer(self, line: str) -> Answer:
        if line in self.responses:
            return self.responses[line]
        for pattern, resp in self.responses.items():
            if pattern.startswith("re:") and re.search(pattern[3:], line):
                return resp
        if self.handler is not None:
            answer = self.handler(line)
            if answer is not None:
                return answer
        return (0, "", "")

    def _execute(
        self,
        line: str,
        *,
        timeout: float | None,
        check: bool,
        stdin: bytes | IO[bytes] | None,
        stdout_sink: IO[bytes] | None,
    ) -> CommandResult:
        """Record the command line (run() and run_shell() built it, quoted) and answer it."""
        limit = self.command_timeout if timeout is None else float(timeout)
        started = time.monotonic()
        fed = _read_all(stdin)
        self.commands.append(line)
        self.stdins.append(fed)
        self.round_trips += 1
        answer = self._answer(line)
        timed_out = answer is TIMEOUT
        code, out, err = answer(fed or b"") if callable(answer) else answer
        raw = out if isinstance(out, bytes) else out.encode()
        if stdout_sink is not None:
            stdout_sink.write(raw)
        res = CommandResult(
            host=self.host,
            command=line,
            exit_code=_TIMEOUT_CODE if timed_out else code,
            stdout="" if stdout_sink is not None else raw.decode("utf-8", "replace"),
            stderr=err,
            duration_ms=limit * 1000 if timed_out else (time.monotonic() - started) * 1000,  # it "waited" out its limit
            timed_out=timed_out,
            stdout_bytes=None if stdout_sink is not None else raw,
        )
        if check and timed_out:
            raise CommandFailed(res, f"command timed out after {limit:g} s: {head(line, 200)}")
        if check and res.exit_code != 0:
            raise CommandFailed(res)
        return res

    def put(self, data: bytes, path: str, *, mode: int | None = None, timeout: float | None = None) -> None:
        """Store a file in memory (``mode`` must be a valid file mode, as for the real transports)."""
        if mode is not None and not 0 <= mode <= 0o7777:
            raise ValueError(f"invalid file mode {mode!r}")
        self.commands.append(f"<put {path}>")
        self.files[path] = bytes(data)
        self.modes[path] = mode

    def get(self, path: str, *, timeout: float | None = None) -> bytes:
        """Read a file from memory; a missing one raises :class:`TransportError`."""
        self.commands.append(f"<get {path}>")
        try:
            return self.files[path]
        except KeyError:
            raise TransportError(self.host, f"cannot read {path}: No such file or directory") from None

    def close(self) -> None:
        """Mark closed (idempotent)."""
        self.closed = True


def _read_all(stdin: bytes | IO[bytes] | None) -> bytes | None:
    """The bytes a command is fed, read to the end like a real command would."""
    if stdin is None or isinstance(stdin, bytes | bytearray | memoryview):
        return None if stdin is None else bytes(stdin)
    chunks = []
    while block := stdin.read(_CHUNK):
        chunks.append(block)
    return b"".join(chunks)


def make_context(
    transport: Any,
    *,
    path: str = "/srv/site",
    url: str = "https://example.test",
    platform: str = "generic",
    vars: dict[str, Any] | None = None,
    check: bool = False,
    run_dir: Path | None = None,
) -> Context:
    """A Context around ``transport`` for unit-testing one action."""
    inv = Inventory.model_validate(
        {
            "sites": {
                "site": {
                    "platform": platform,
                    "environments": {
                        "test": {
                            "host": getattr(transport, "host", "fake"),
                            "path": path,
                            "url": url,
                            "vars": vars or {},
                        }
                    },
                }
            }
        }
    )
    site: Site = inv.sites["site"]
    env: Environment = site.environments["test"]
    return Context(
        site=site, env=env, transport=transport, options=RunOptions(check=check, run_id="test", run_dir=run_dir)
    )
