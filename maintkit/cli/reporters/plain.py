"""Plain lines (CI, pipes): one line per notable step event, a summary per site at the end."""

from __future__ import annotations

from typing import Any

import click

from maintkit._text import head
from maintkit.cli.reporters.base import Reporter, plural

_STATUS_MARK = {
    "changed": "changed",
    "unchanged": "ok",
    "would-change": "would change",
    "unknown": "unknown",
    "skipped": "skipped",
    "failed": "FAILED",
    "rolled-back": "rolled back",
    "rollback-failed": "ROLLBACK FAILED",
}
_COLORS = {
    "changed": "yellow",
    "would change": "yellow",
    "FAILED": "red",
    "ROLLBACK FAILED": "red",
    "rolled back": "magenta",
    "ok": "green",
    "unknown": "cyan",
}
#: step events worth a line (``step.checked`` only in plan mode or when nothing is to do)
_STEP_LINES = (
    "step.checked",
    "step.verified",
    "step.failed",
    "step.skipped",
    "step.rolled_back",
    "step.rollback_failed",
    "step.isolated",
)
INTERRUPT_MESSAGE = "interrupt received: finishing the current step, rolling back, releasing locks..."


def takeover_line(r: dict[str, Any]) -> str:
    """``shop/production: took over the expired lock of run X (rolled back: a; maintenance off; NOT undone: b)``."""
    done = [f"rolled back: {', '.join(map(str, r['rolled_back']))}"] if r.get("rolled_back") else []
    done += ["maintenance off"] if r.get("maintenance_off") else []
    done += [f"NOT undone, check by hand: {', '.join(map(str, r['incomplete']))}"] if r.get("incomplete") else []
    tail = f" ({'; '.join(done)})" if done else ""
    return f"{r.get('site')}/{r.get('env')}: took over the expired lock of run {r.get('dead_run')}{tail}"


#: step events still shown with ``-q``
_QUIET_STEP_LINES = ("step.failed", "step.rollback_failed")


def fold_lines(lines: list[str]) -> list[str]:
    """Runs of identical lines folded into one: ``error: connection refused (x11)``."""
    out: list[str] = []
    counts: list[int] = []
    for line in lines:
        if out and out[-1] == line:
            counts[-1] += 1
        else:
            out.append(line)
            counts.append(1)
    return [line if n == 1 else f"{line} (x{n})" for line, n in zip(out, counts, strict=True)]


def fold_text(text: str) -> str:
    """``text`` with runs of identical lines folded (see :func:`fold_lines`)."""
    return "\n".join(fold_lines(text.split("\n"))) if "\n" in text else text


def seconds(ms: Any) -> str:
    """A duration in milliseconds for people: ``12 ms``, ``1.2 s``, ``2m05s``."""
    try:
        value = float(ms)
    except (TypeError, ValueError):
        return ""
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    return f"{int(value // 60_000)}m{int(value % 60_000 // 1000):02d}s"


def command_line(r: dict[str, Any]) -> str:
    """``-vv``: one command the run sent, its first line, exit status and time."""
    text = str(r.get("command") or "")
    lines = text.strip("\n").count("\n") + 1
    shown = head(" ".join(text.split()), 200) + (f" ({lines} lines)" if lines > 1 else "")
    outcome = f"error: {r['error']}" if r.get("error") else f"exit {r.get('exit_code')}"
    return f"    {r.get('host', '')}$ {shown}  [{outcome}, {seconds(r.get('duration_ms'))}]"


class PlainReporter(Reporter):
    """Prints a header, plain step lines as events arrive, and a summary at the end."""

    def __init__(self, *, check: bool, diff: bool, verbosity: int = 0, color: bool | None = None) -> None:
        super().__init__(check=check, diff=diff, verbosity=verbosity, color=color)

    def start(self, runner: Any) -> None:
        """Print the header line: mode, playbook, sites, run id (not with ``-q``); then the plan's notes."""
        super().start(runner)
        if self.verbosity >= 0:
            self.print_header(self.header(runner))
        for note in getattr(runner, "notes", None) or []:
            click.echo(f"note: {note}", err=True)

    def print_header(self, text: str) -> None:
        """Print the header line (a live view prints it through its console)."""
        click.echo(text)

    def header(self, runner: Any) -> str:
        """``run ops: 2 site(s), run <id>`` (``plan ...`` in plan mode)."""
        mode = "plan" if self.check else "run"
        return f"{mode} {runner.playbook.name}: {plural(len(runner.plan()), 'site')}, run {runner.run_id}"

    def mark(self, status: str) -> str:
        """The word shown for a status, coloured on a terminal."""
        word = _STATUS_MARK.get(status, status)
        return click.style(word, fg=_COLORS.get(word)) if self.color else word

    def padded(self, status: str, width: int) -> str:
        """:meth:`mark` padded to ``width`` visible characters (colour codes take no room)."""
        word = _STATUS_MARK.get(status, status)
        return self.mark(status) + " " * max(0, width - len(word))

    def on_event(self, record: dict[str, Any]) -> None:
        """Print one event's line, if it is worth one."""
        with self._lock:
            self.plain_line(record)

    def plain_line(self, r: dict[str, Any]) -> None:
        """One human line for the events worth a line (fewer with ``-q``, more with ``-v``/``-vv``)."""
        ev = r.get("event", "")
        if self.verbosity < 0 and ev in _STEP_LINES and ev not in _QUIET_STEP_LINES:
            return
        if ev in _STEP_LINES:
            self.step_line(r)
        elif ev == "command.ran":
            if self.verbosity >= 2:
                click.echo(command_line(r))
        elif ev == "stage.started" and self.verbosity >= 1:
            click.echo(f"{r.get('site')}/{r.get('env')}: stage started on {r.get('host')}")
        elif ev == "site.finished" and r.get("status") == "ok" and self.verbosity >= 1:
            click.echo(f"{r.get('site')}: ok in {seconds(r.get('duration_ms'))}")
        elif ev == "site.finished" and r.get("status") != "ok":
            error = fold_text(str(r.get("error") or ""))
            click.echo(f"{r.get('site')}: {self.mark(str(r.get('status')))} {error}".rstrip())
        elif ev == "site.skipped":
            click.echo(f"{r.get('site')}: skipped ({r.get('error')})")
        elif ev == "run.interrupt_requested":
            click.echo(INTERRUPT_MESSAGE, err=True)
        elif ev == "lock.taken_over":
            click.echo(takeover_line(r))

    def step_line(self, r: dict[str, Any]) -> None:
        """``site/env  step  status  reason``; with ``-v`` the step's time too."""
        ev, status = r.get("event", ""), r.get("status", "")
        if ev == "step.checked" and not self.check and status not in ("unchanged", "unknown"):
            return  # the step's applied/verified or failed line follows
        where = f"{r.get('site', '')}/{r.get('env', '')}"
        reason = fold_text(str(r.get("error") or r.get("reason") or ""))
        timed = self.verbosity >= 1 and r.get("duration_ms") is not None
        took = f" [{seconds(r.get('duration_ms'))}]" if timed else ""
        click.echo(f"{where:<28} {r.get('step', ''):<22} {self.padded(status, 14)} {reason}".rstrip() + took)
        if self.diff and r.get("diff"):
            click.echo(indent(str(r["diff"])))

    def finish(self, result: Any) -> None:
        """Print the summary, why anything failed and where the run folder is; then notify."""
        from maintkit.notify import explain_failures

        if self.verbosity >= 0 or not result.ok:
            click.echo("")
        for site in result.sites:
            if self.verbosity < 0 and site.status.value == "ok":
                continue
            counts: dict[str, int] = {}
            for s in site.steps:
                counts[s.status.value] = counts.get(s.status.value, 0) + 1
            parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            took = f" in {seconds(site.duration_ms)}" if self.verbosity >= 1 else ""
            click.echo(f"{site.site:<24} {self.padded(site.status.value, 12)} {parts}{took}".rstrip())
            for held in (h for s in site.steps for h in s.data.get("held") or []):
                click.echo(f"    {site.site}: held back: {held['name']} {held['version']} ({held['reason']})")
        explanation = fold_lines([fold_text(line) for line in explain_failures(result, self.redactor)])
        if explanation:
            click.echo("")
            for line in explanation:
                click.echo(click.style(line, fg="red") if self.color and not line.startswith(" ") else line)
        click.echo(("\n" if self.verbosity >= 0 or not result.ok else "") + verdict(result))
        self.notify(result)


def would_change(result: Any) -> int:
    """How many steps of a plan would change something."""
    return sum(1 for site in result.sites for s in site.steps if s.status.value == "would-change")


def verdict(result: Any) -> str:
    """The last line: ``ok: 3 steps changed; run folder ...`` (a plan: would change, unknown, its notes)."""
    if result.check:
        unknown = sum(1 for site in result.sites for s in site.steps if s.status.value == "unknown")
        what = f"{plural(would_change(result), 'step')} would change" + (f", {unknown} unknown" if unknown else "")
    else:
        what = f"{plural(result.changed, 'step')} changed"
    unreachable = [s.site for s in result.sites if getattr(s, "unreachable", False)]
    if unreachable:
        what += f"; unreachable: {', '.join(unreachable)}"
    notes = "".join(f"\n{note}" for note in getattr(result, "notes", None) or [])
    return f"{result.status}: {what}; run folder {result.run_dir}{notes}"


def indent(text: str) -> str:
    """``text`` indented by four spaces (diffs under their step line)."""
    return "\n".join("    " + line for line in text.rstrip("\n").split("\n"))


__all__ = [
    "INTERRUPT_MESSAGE",
    "PlainReporter",
    "command_line",
    "fold_lines",
    "fold_text",
    "indent",
    "seconds",
    "verdict",
    "would_change",
]
