"""The live view of ``maint run`` on a terminal (rich).

One row per site (stage, current step, status, elapsed time) and a progress bar over
sites, redrawn a few times a second. Changed and failed steps are also printed above the
view as they happen, so the scrollback keeps a record. ``NO_COLOR`` turns colours off
(rich honours it). rich is imported only when a live view is actually used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from maintkit.cli.reporters.base import plural
from maintkit.cli.reporters.plain import INTERRUPT_MESSAGE, PlainReporter

_STYLE = {
    "changed": "yellow",
    "would-change": "yellow",
    "needed": "yellow",
    "unchanged": "green",
    "ok": "green",
    "unknown": "cyan",
    "skipped": "dim",
    "pending": "dim",
    "running": "cyan",
    "failed": "bold red",
    "rollback-failed": "bold red",
    "rolled-back": "magenta",
    "locked": "red",
    "interrupted": "red",
    "rolling back": "magenta",
}
_LABEL = {"unchanged": "ok", "needed": "applying", "would-change": "would change"}
_LINE_EVENTS = (
    "step.verified",
    "step.failed",
    "step.skipped",
    "step.rolled_back",
    "step.rollback_failed",
    "step.isolated",
)


@dataclass
class _Row:
    site: str
    env: str = ""
    step: str = ""
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    changed: int = 0
    steps: int = 0
    done: bool = False
    error: str | None = None

    def elapsed(self, now: float) -> str:
        if self.started is None:
            return ""
        secs = (self.ended or now) - self.started
        return f"{secs:5.1f}s" if secs < 60 else f"{int(secs // 60)}m{int(secs % 60):02d}s"


class LiveReporter(PlainReporter):
    """Reporter drawing a rich live table on a terminal; the summary at the end is the plain one."""

    def __init__(self, *, check: bool, diff: bool, verbosity: int = 0, color: bool | None = None) -> None:
        super().__init__(check=check, diff=diff, verbosity=verbosity, color=color)
        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=False, no_color=not self.color)
        self.rows: dict[str, _Row] = {}
        self._live: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, runner: Any) -> None:
        """Create one row per planned site and start redrawing."""
        from rich.live import Live

        for name in runner.plan():
            self.rows[name] = _Row(name)
        super().start(runner)  # the header, through print_header
        self._live = Live(self, console=self.console, refresh_per_second=8, transient=False, redirect_stdout=False)
        self._live.start()

    def print_header(self, text: str) -> None:
        """Print the header line above the live view."""
        self.console.print(text, markup=False)

    def stop(self) -> None:
        """Draw the final state once more and stop the live view."""
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # ------------------------------------------------------------------ events
    def on_event(self, record: dict[str, Any]) -> None:
        """Update the row of the event's site; print notable step lines above the view."""
        with self._lock:
            self._update(record)
            line = self._line(record)
        if line is not None:
            self.console.print(line)

    def _update(self, r: dict[str, Any]) -> None:
        ev = str(r.get("event", ""))
        site = r.get("site")
        if not site:
            return
        row = self.rows.setdefault(str(site), _Row(str(site)))
        now = time.monotonic()
        if ev == "site.started":
            row.started, row.status = now, "running"
        elif ev == "stage.started":
            row.env = str(r.get("env", ""))
        elif ev in ("step.rolled_back", "step.rollback_failed", "step.not_reversible"):
            # keep the failed step on the row; count what was undone
            row.status = "rolling back" if ev == "step.rolled_back" else "rollback-failed"
            if ev == "step.rolled_back" and row.changed:
                row.changed -= 1
        elif ev.startswith("step."):
            row.env = str(r.get("env") or row.env)
            row.step = str(r.get("step") or row.step)
            status = str(r.get("status") or "")
            if status:
                row.status = status
            if ev == "step.applied":
                row.changed += 1
            if ev in ("step.checked", "step.skipped", "step.failed") and status != "needed":
                row.steps += 1
            if ev == "step.verified":
                row.steps += 1
        elif ev in ("site.finished", "site.skipped"):
            row.status = str(r.get("status") or "ok")
            row.ended, row.done = now, True
            row.error = r.get("error")
            row.step = "" if row.status == "ok" else row.step
            if row.started is None:
                row.started = now

    def _line(self, r: dict[str, Any]) -> Any:
        from rich.text import Text

        ev = r.get("event", "")
        if ev == "run.interrupt_requested":
            return Text(INTERRUPT_MESSAGE, style="bold")
        status = str(r.get("status", ""))
        if ev not in _LINE_EVENTS and not (ev == "step.checked" and (self.check or status in ("unchanged", "unknown"))):
            return None
        where = f"{r.get('site', '')}/{r.get('env', '')}"
        text = Text()
        text.append(f"{where:<28} {r.get('step', ''):<22} ")
        text.append(f"{_LABEL.get(status, status):<14}", style=_STYLE.get(status, ""))
        reason = str(r.get("error") or r.get("reason") or "")
        if reason:
            text.append(" " + reason)
        if self.diff and r.get("diff"):
            text.append("\n" + "\n".join("    " + x for x in str(r["diff"]).rstrip("\n").split("\n")))
        return text

    # ------------------------------------------------------------------ drawing
    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        with self._lock:
            rows = list(self.rows.values())
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for col in ("site", "stage", "step", "status", "changed", "elapsed"):
            table.add_column(col, justify="right" if col in ("changed", "elapsed") else "left", no_wrap=True)
        for row in rows:
            label = _LABEL.get(row.status, row.status)
            table.add_row(
                row.site,
                row.env,
                row.step,
                Text(label, style=_STYLE.get(row.status, "")),
                str(row.changed) if row.started is not None else "",
                row.elapsed(now),
            )
        total = len(rows)
        done = sum(1 for r in rows if r.done)
        failed = sum(1 for r in rows if r.done and r.status not in ("ok",))
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=30),
            Text(f"{done}/{plural(total, 'site')}" + (f", {failed} not ok" if failed else "")),
        )
        return Group(table, Text(""), bar)


__all__ = ["LiveReporter"]
