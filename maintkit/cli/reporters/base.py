"""The reporter interface: what ``maint`` does with a run's events and its result.

A reporter receives every event of a run (``on_event``, called from the runner's threads),
is told when the run starts and stops, and shows the result at the end (``finish``), then
sends the playbook's notifications.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

import click


def use_color(no_color: bool = False, environ: Mapping[str, str] | None = None, tty: bool | None = None) -> bool:
    """Whether to colour output: never with ``--no-color`` or ``NO_COLOR`` set (https://no-color.org);
    always with ``FORCE_COLOR`` set (not empty, not ``0``); else when stdout is a terminal."""
    env = os.environ if environ is None else environ
    if no_color or "NO_COLOR" in env:
        return False
    if env.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    return sys.stdout.isatty() if tty is None else tty


def plural(n: int, word: str) -> str:
    """``1 site``, ``2 sites``, ``0 steps``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


class Reporter:
    """Receives run events and shows them; subclasses decide how (plain, JSON, live, GitHub).

    ``verbosity``: -1 only errors and the verdict (``-q``), 0 the default, 1 step timings and
    stages (``-v``), 2 also every command run (``-vv``). ``color``: None decides by
    :func:`use_color`.
    """

    def __init__(self, *, check: bool, diff: bool, verbosity: int = 0, color: bool | None = None) -> None:
        self.check = check
        self.diff = diff
        self.verbosity = verbosity
        self.color = use_color() if color is None else color
        self.redactor: Any = None
        self.runner: Any = None
        self._lock = threading.Lock()

    def start(self, runner: Any) -> None:
        """Called once the run is about to start: remembers the runner and its redactor."""
        self.runner = runner
        self.redactor = runner.redactor

    def stop(self) -> None:
        """Called when the run has ended (live views close here)."""

    def on_event(self, record: dict[str, Any]) -> None:
        """Show one event."""
        raise NotImplementedError

    def finish(self, result: Any) -> None:
        """Show the result; the base class only sends the notifications."""
        self.notify(result)

    def notify(self, result: Any) -> None:
        """Send the playbook's notifications and say on stderr whether each was sent."""
        runner = self.runner
        self.health_notes(getattr(runner, "health", None))
        if runner is None or not runner.playbook.notify:
            return
        from maintkit.notify import notify_run

        for sent in notify_run(runner.playbook, result, redactor=self.redactor):
            click.echo(f"notification {sent.target} {'sent' if sent.ok else 'FAILED: ' + sent.detail}", err=True)

    def health_notes(self, health: Any) -> None:
        """Say on stderr what a watching playbook's run alerted and exported (:class:`maintkit.health.HealthRun`)."""
        if health is None:
            return
        from maintkit.cli.redact import redact_for_output

        for line in [*health.notes, *(f"error: {p}" for p in health.problems)]:
            click.echo(redact_for_output(line, self.redactor), err=True)

    def show_run(self, runner: Any) -> Any:
        """Run ``runner`` (already planned) while showing it; returns its RunResult."""
        self.start(runner)
        try:
            result = runner.run()
        finally:
            self.stop()
        self.finish(result)
        return result


__all__ = ["Reporter", "plural", "use_color"]
