"""Showing every command a run sends (``maint run -vv``): a transport wrapper that times each one.

The wrapper hands each finished command to a callback as a ``command.ran`` record (host, the
command line, exit status, duration); the runner only shows these (redacted), they are not
written to the audit log, whose step events already say what each step did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from maintkit.inventory import Environment
from maintkit.results import CommandResult
from maintkit.transport.base import Transport

Show = Callable[..., None]


class TracedTransport:
    """A transport that reports every ``run``/``run_shell`` it forwards (other calls pass through)."""

    def __init__(self, inner: Transport, show: Show) -> None:
        self._inner = inner
        self._show = show
        self.host = inner.host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _timed(self, kind: str, what: str, call: Callable[[], CommandResult]) -> CommandResult:
        started = time.monotonic()
        try:
            result = call()
        except Exception as exc:
            ms = round((time.monotonic() - started) * 1000, 1)
            self._show("command.ran", host=self.host, kind=kind, command=what, error=str(exc), duration_ms=ms)
            raise
        ms = round((time.monotonic() - started) * 1000, 1)
        self._show(
            "command.ran",
            host=self.host,
            kind=kind,
            command=result.command or what,
            exit_code=result.exit_code,
            duration_ms=ms,
        )
        return result

    def run(self, argv: Any, **kwargs: Any) -> CommandResult:
        """Run an argument list on the inner transport and report it."""
        return self._timed("run", " ".join(map(str, argv)), lambda: self._inner.run(argv, **kwargs))

    def run_shell(self, script: str, **kwargs: Any) -> CommandResult:
        """Run a shell script on the inner transport and report it."""
        return self._timed("shell", script, lambda: self._inner.run_shell(script, **kwargs))

    def close(self) -> None:
        """Close the inner transport."""
        self._inner.close()


class _TracedFactory:
    """``factory`` making :class:`TracedTransport` wrappers; anything else it offers (the early
    dial of :meth:`maintkit.transport.factory.TransportPool.warm`) passes through, so a traced
    run connects exactly as an untraced one."""

    def __init__(self, factory: Callable[[Environment], Transport], show: Show) -> None:
        self._factory, self._show = factory, show

    def __call__(self, env: Environment) -> Transport:
        return TracedTransport(self._factory(env), self._show)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)


def traced(factory: Callable[[Environment], Transport], show: Show) -> Callable[[Environment], Transport]:
    """``factory``, its transports wrapped in :class:`TracedTransport`."""
    return _TracedFactory(factory, show)


__all__ = ["TracedTransport", "traced"]
