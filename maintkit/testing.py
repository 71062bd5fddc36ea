"""Helpers for plugin authors' unit tests: a FakeTransport that records commands.

A fake transport is for testing how an action builds its commands. Behaviour that talks
to real hosts is tested against real servers (maintkit's own suite does so).

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

from maintkit.action import Context, RunOptions
from maintkit.errors import CommandFailed
from maintkit.inventory import Environment, Inventory, Site
from maintkit.results import CommandResult
from maintkit.transport.base import DEFAULT_TIMEOUT, CommandTransport

Response = tuple[int, str, str]


class FakeTransport(CommandTransport):
    """Records every command; answers from ``responses`` (exact line or regex) or ``handler``.

    ``files`` is an in-memory file system used by put/get.
    """

    def __init__(
        self,
        responses: Mapping[str, Response] | None = None,
        handler: Callable[[str], Response | None] | None = None,
        host: str = "fake",
        become: bool = False,
    ) -> None:
        self.host = host
        self.become = become
        self.responses = dict(responses or {})
        self.handler = handler
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}
        self.closed = False

    def _answer(self, line: str) -> Response:
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
        started = time.monotonic()
        self.commands.append(line)
        code, out, err = self._answer(line)
        if stdout_sink is not None:
            stdout_sink.write(out.encode())
            out = ""
        res = CommandResult(self.host, line, code, out, err, (time.monotonic() - started) * 1000)
        if check and code != 0:
            raise CommandFailed(res)
        return res

    def put(self, data: bytes, path: str, *, mode: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Store a file in memory."""
        self.commands.append(f"<put {path}>")
        self.files[path] = data

    def get(self, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read a file from memory."""
        self.commands.append(f"<get {path}>")
        return self.files[path]

    def close(self) -> None:
        """Mark closed."""
        self.closed = True


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
