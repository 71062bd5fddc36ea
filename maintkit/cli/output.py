"""How ``maint`` shows runs: plain lines (CI, pipes), JSON lines (--json), a summary at the end."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

import click

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


def redact_for_output(text: str, redactor: Any = None) -> str:
    """Redact ``text`` before printing it.

    Masks every secret registered in this process (values templates rendered from
    ``secrets.*``, SecretStr values, ``redactor``'s secrets), the values of environment
    variables with sensitive names, and ``key=value`` style secrets.
    """
    from maintkit.audit import Redactor

    text = Redactor.from_environ().redact_text(text)
    return str(redactor.redact_text(text)) if redactor is not None else text


def redact_data(obj: Any, redactor: Any = None) -> Any:
    """``obj`` as plain JSON data (unknown objects become strings) with every secret masked."""
    data = json.loads(json.dumps(obj, default=str))
    if redactor is None:
        from maintkit.audit import Redactor

        redactor = Redactor.from_environ()
    return redactor.redact(data)


def _color() -> bool:
    return "NO_COLOR" not in os.environ and sys.stdout.isatty()


class Reporter:
    """Receives run events and prints them (plain or JSON lines)."""

    def __init__(self, *, as_json: bool, check: bool, diff: bool) -> None:
        self.as_json = as_json
        self.check = check
        self.diff = diff
        self.redactor: Any = None
        self._lock = threading.Lock()
        self.color = _color()

    @classmethod
    def for_terminal(cls, *, as_json: bool, check: bool, diff: bool) -> Reporter:
        """The reporter that suits stdout (a live view on a terminal when available).

        In GitHub Actions (``GITHUB_ACTIONS=true``): log groups, annotations, job summary, outputs.
        """
        if os.environ.get("GITHUB_ACTIONS") == "true":
            from maintkit.cli.github import GitHubReporter

            return GitHubReporter(as_json=as_json, check=check, diff=diff)
        if not as_json and sys.stdout.isatty() and os.environ.get("MAINT_PLAIN") is None:
            try:
                from maintkit.cli.live import LiveReporter

                return LiveReporter(as_json=as_json, check=check, diff=diff)
            except ImportError:
                pass
        return cls(as_json=as_json, check=check, diff=diff)

    def start(self, runner: Any) -> None:
        """Called once the run is about to start."""
        self.runner = runner
        if not self.as_json:
            mode = "plan" if self.check else "run"
            click.echo(f"{mode} {runner.playbook.name}: {len(runner.plan())} site(s), run {runner.run_id}")

    def stop(self) -> None:
        """Called when the run has ended (live views close here)."""

    def _mark(self, status: str) -> str:
        mark = _STATUS_MARK.get(status, status)
        return click.style(mark, fg=_COLORS.get(mark)) if self.color else mark

    def on_event(self, record: dict[str, Any]) -> None:
        """Print one event."""
        with self._lock:
            if self.as_json:
                click.echo(json.dumps(redact_data(record, self.redactor)))
                return
            self.plain_line(record)

    def plain_line(self, r: dict[str, Any]) -> None:
        """One human line for the events worth a line."""
        ev = r.get("event", "")
        where = f"{r.get('site', '')}/{r.get('env', '')}"
        if ev in (
            "step.checked",
            "step.verified",
            "step.failed",
            "step.skipped",
            "step.rolled_back",
            "step.rollback_failed",
        ):
            status = r.get("status", "")
            if ev == "step.checked" and not self.check and status not in ("unchanged", "unknown"):
                return
            reason = r.get("error") or r.get("reason") or ""
            click.echo(f"{where:<28} {r.get('step', ''):<22} {self._mark(status):<14} {reason}".rstrip())
            if self.diff and r.get("diff"):
                click.echo(_indent(str(r["diff"])))
        elif ev in ("site.finished",) and r.get("status") not in ("ok",):
            click.echo(f"{r.get('site')}: {self._mark(str(r.get('status')))} {r.get('error') or ''}".rstrip())
        elif ev == "site.skipped":
            click.echo(f"{r.get('site')}: skipped ({r.get('error')})")
        elif ev == "run.interrupt_requested":
            click.echo("interrupt received: finishing the current step, rolling back, releasing locks...", err=True)

    def finish(self, result: Any) -> None:
        """Print the summary, why anything failed and where the run folder is; then notify."""
        from maintkit.notify import explain_failures, notify_run

        if self.as_json:
            click.echo(json.dumps(redact_data({"event": "result", **result.to_dict()}, self.redactor)))
        else:
            click.echo("")
            for site in result.sites:
                counts: dict[str, int] = {}
                for s in site.steps:
                    counts[s.status.value] = counts.get(s.status.value, 0) + 1
                parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                click.echo(f"{site.site:<24} {self._mark(site.status.value):<12} {parts}")
            explanation = explain_failures(result, self.redactor)
            if explanation:
                click.echo("")
                for line in explanation:
                    click.echo(click.style(line, fg="red") if self.color and not line.startswith(" ") else line)
            verb = "would change" if result.check else "changed"
            count = result.changed if not result.check else _would(result)
            click.echo(f"\n{result.status}: {count} step(s) {verb}; run folder {result.run_dir}")
        runner = getattr(self, "runner", None)
        if runner is not None and runner.playbook.notify:
            for sent in notify_run(runner.playbook, result, redactor=self.redactor):
                click.echo(f"notification {sent.target} {'sent' if sent.ok else 'FAILED: ' + sent.detail}", err=True)


def _would(result: Any) -> int:
    return sum(1 for site in result.sites for s in site.steps if s.status.value == "would-change")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").split("\n"))


def print_run_detail(data: dict[str, Any]) -> None:
    """Show one run folder: summary and steps."""
    summary = data.get("summary", {})
    click.echo(f"run {summary.get('run_id')}  playbook {summary.get('playbook')}  status {summary.get('status')}")
    click.echo(f"started {summary.get('started')}  finished {summary.get('finished')}  actor {summary.get('actor')}")
    for site in summary.get("sites", []):
        click.echo(f"\n{site['site']}: {site['status']}" + (f" ({site['error']})" if site.get("error") else ""))
        for s in site.get("steps", []):
            click.echo(f"  {s['env']:<11} {s['step']:<24} {s['status']:<13} {s.get('error') or s.get('reason') or ''}")
