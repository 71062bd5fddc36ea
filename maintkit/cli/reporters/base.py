"""The reporter interface: what ``maint`` does with a run's events and its result.

A reporter receives every event of a run (``on_event``, called from the runner's threads),
is told when the run starts and stops, and shows the result at the end (``finish``), then
sends the playbook's notifications.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import click


def use_color() -> bool:
    """True when stdout is a terminal and ``NO_COLOR`` is not set."""
    return "NO_COLOR" not in os.environ and sys.stdout.isatty()


class Reporter:
    """Receives run events and shows them; subclasses decide how (plain, JSON, live, GitHub)."""

    def __init__(self, *, check: bool, diff: bool) -> None:
        self.check = check
        self.diff = diff
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
        if runner is None or not runner.playbook.notify:
            return
        from maintkit.notify import notify_run

        for sent in notify_run(runner.playbook, result, redactor=self.redactor):
            click.echo(f"notification {sent.target} {'sent' if sent.ok else 'FAILED: ' + sent.detail}", err=True)

    def show_run(self, runner: Any) -> Any:
        """Run ``runner`` (already planned) while showing it; returns its RunResult."""
        self.start(runner)
        try:
            result = runner.run()
        finally:
            self.stop()
        self.finish(result)
        return result


__all__ = ["Reporter", "use_color"]
