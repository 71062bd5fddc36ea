"""Plain lines (CI, pipes): one line per notable step event, a summary per site at the end."""

from __future__ import annotations

from typing import Any

import click

from maintkit.cli.reporters.base import Reporter, use_color

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
)
INTERRUPT_MESSAGE = "interrupt received: finishing the current step, rolling back, releasing locks..."


def takeover_line(r: dict[str, Any]) -> str:
    """``shop/production: took over the expired lock of run X (rolled back: a; maintenance off; NOT undone: b)``."""
    done = [f"rolled back: {', '.join(map(str, r['rolled_back']))}"] if r.get("rolled_back") else []
    done += ["maintenance off"] if r.get("maintenance_off") else []
    done += [f"NOT undone, check by hand: {', '.join(map(str, r['incomplete']))}"] if r.get("incomplete") else []
    tail = f" ({'; '.join(done)})" if done else ""
    return f"{r.get('site')}/{r.get('env')}: took over the expired lock of run {r.get('dead_run')}{tail}"


class PlainReporter(Reporter):
    """Prints a header, plain step lines as events arrive, and a summary at the end."""

    def __init__(self, *, check: bool, diff: bool) -> None:
        super().__init__(check=check, diff=diff)
        self.color = use_color()

    def start(self, runner: Any) -> None:
        """Print the header line: mode, playbook, sites, run id."""
        super().start(runner)
        self.print_header(self.header(runner))

    def print_header(self, text: str) -> None:
        """Print the header line (a live view prints it through its console)."""
        click.echo(text)

    def header(self, runner: Any) -> str:
        """``run ops: 2 site(s), run <id>`` (``plan ...`` in plan mode)."""
        mode = "plan" if self.check else "run"
        return f"{mode} {runner.playbook.name}: {len(runner.plan())} site(s), run {runner.run_id}"

    def mark(self, status: str) -> str:
        """The word shown for a status, coloured on a terminal."""
        word = _STATUS_MARK.get(status, status)
        return click.style(word, fg=_COLORS.get(word)) if self.color else word

    def on_event(self, record: dict[str, Any]) -> None:
        """Print one event's line, if it is worth one."""
        with self._lock:
            self.plain_line(record)

    def plain_line(self, r: dict[str, Any]) -> None:
        """One human line for the events worth a line."""
        ev = r.get("event", "")
        if ev in _STEP_LINES:
            status = r.get("status", "")
            if ev == "step.checked" and not self.check and status not in ("unchanged", "unknown"):
                return
            where = f"{r.get('site', '')}/{r.get('env', '')}"
            reason = r.get("error") or r.get("reason") or ""
            click.echo(f"{where:<28} {r.get('step', ''):<22} {self.mark(status):<14} {reason}".rstrip())
            if self.diff and r.get("diff"):
                click.echo(indent(str(r["diff"])))
        elif ev == "site.finished" and r.get("status") != "ok":
            click.echo(f"{r.get('site')}: {self.mark(str(r.get('status')))} {r.get('error') or ''}".rstrip())
        elif ev == "site.skipped":
            click.echo(f"{r.get('site')}: skipped ({r.get('error')})")
        elif ev == "run.interrupt_requested":
            click.echo(INTERRUPT_MESSAGE, err=True)
        elif ev == "lock.taken_over":
            click.echo(takeover_line(r))

    def finish(self, result: Any) -> None:
        """Print the summary, why anything failed and where the run folder is; then notify."""
        from maintkit.notify import explain_failures

        click.echo("")
        for site in result.sites:
            counts: dict[str, int] = {}
            for s in site.steps:
                counts[s.status.value] = counts.get(s.status.value, 0) + 1
            parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            click.echo(f"{site.site:<24} {self.mark(site.status.value):<12} {parts}")
        explanation = explain_failures(result, self.redactor)
        if explanation:
            click.echo("")
            for line in explanation:
                click.echo(click.style(line, fg="red") if self.color and not line.startswith(" ") else line)
        verb = "would change" if result.check else "changed"
        count = would_change(result) if result.check else result.changed
        click.echo(f"\n{result.status}: {count} step(s) {verb}; run folder {result.run_dir}")
        self.notify(result)


def would_change(result: Any) -> int:
    """How many steps of a plan would change something."""
    return sum(1 for site in result.sites for s in site.steps if s.status.value == "would-change")


def indent(text: str) -> str:
    """``text`` indented by four spaces (diffs under their step line)."""
    return "\n".join("    " + line for line in text.rstrip("\n").split("\n"))


__all__ = ["INTERRUPT_MESSAGE", "PlainReporter", "indent", "would_change"]
