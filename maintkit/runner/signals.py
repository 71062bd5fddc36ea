"""Ctrl-C and SIGTERM during a run: stop and clean up on the first, say what is left on the second,
abandon on the third.

The handler itself only queues the signal (safe in any state of the main thread); a watcher
thread acts on it:

1. the first signal sets the run's stop flag (no new step, no new site starts) and cancels the
   run's :class:`~maintkit.transport.base.CancelToken`: the commands that steps are running are
   stopped on their hosts (their process group gets SIGTERM, then SIGKILL after a grace
   period), the stages roll back, maintenance is switched off and the locks are released.
   GitHub Actions sends SIGINT, then SIGTERM about 7.5 s later and SIGKILL 2.5 s after that:
   all of this fits before the SIGKILL (see docs/github-actions.md, "Cancellation").
2. the second signal records ``run.cleanup_pending`` with what the run is still waiting for
   (:class:`Activity`: "rolling back step X" per site and environment); the CLI prints it.
3. the third records ``run.cleanup_abandoned`` and ends the process at once with exit status 3,
   leaving whatever was not cleaned up (locks, maintenance mode) to ``maint unlock``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

from maintkit.results import ExitCode
from maintkit.transport.base import CancelToken

#: records one event of the run (``emit(event, **fields)``)
Emit = Callable[..., Any]


class Activity:
    """What each site environment is doing now, for the second signal's message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._doing: dict[tuple[str, str], str] = {}

    def doing(self, site: str, env: str, what: str | None) -> None:
        """Record what ``site``/``env`` does now ("rolling back step X"); None: nothing any more."""
        with self._lock:
            if what is None:
                self._doing.pop((site, env), None)
            else:
                self._doing[(site, env)] = what

    def snapshot(self) -> list[dict[str, str]]:
        """Every site environment still busy: ``{"site", "env", "doing"}``, in a stable order."""
        with self._lock:
            return [{"site": s, "env": e, "doing": what} for (s, e), what in sorted(self._doing.items())]


class Interrupts:
    """The signals one run received, and what each of them does (see the module's docstring)."""

    def __init__(self, stop: threading.Event, emit: Emit, abandon: Callable[[], None] | None = None) -> None:
        self.stop = stop
        self.emit = emit
        #: cancelled by the first signal; the runner binds it to every step's commands
        self.token = CancelToken()
        self.activity = Activity()
        self.received: list[str] = []
        self._abandon = abandon or _exit_interrupted
        self._lock = threading.Lock()

    def signal(self, name: str) -> None:
        """Act on one signal (``SIGINT``, ``SIGTERM``, or a caller's own name for a stop request)."""
        with self._lock:
            self.received.append(name)
            count = len(self.received)
        if count == 1:
            self.stop.set()
            self._record("run.interrupt_requested", signal=name)
            self.token.cancel(f"the run was interrupted ({name})")
        elif count == 2:
            self._record("run.cleanup_pending", signal=name, waiting_for=self.activity.snapshot())
        elif count == 3:
            self._record("run.cleanup_abandoned", signal=name, waiting_for=self.activity.snapshot())
            self._abandon()

    def _record(self, event: str, **fields: Any) -> None:
        with contextlib.suppress(Exception):  # the audit log may be sealed already: the signal acts all the same
            self.emit(event, **fields)


def _exit_interrupted() -> None:
    """End the process now: threads still cleaning up are abandoned (nothing else could stop them)."""
    os._exit(ExitCode.INTERRUPTED)


def install_stop_handlers(on_signal: Callable[[str], None], enabled: bool = True) -> Callable[[], None]:
    """Route SIGINT and SIGTERM to ``on_signal(name)``; returns the function that restores the old handlers.

    The handlers only queue the signal; ``on_signal`` runs in a watcher thread, so it may take
    locks and write events whatever the main thread was doing. Does nothing (and restores
    nothing) when not ``enabled`` or outside the main thread, where Python cannot install
    signal handlers.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        return lambda: None
    received: queue.SimpleQueue[str | None] = queue.SimpleQueue()  # put() is safe in a signal handler

    def watch() -> None:
        while (name := received.get()) is not None:
            on_signal(name)

    watcher = threading.Thread(target=watch, name="maint-signals", daemon=True)
    watcher.start()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        received.put(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        received.put(None)

    return restore


__all__ = ["Activity", "Emit", "Interrupts", "install_stop_handlers"]
