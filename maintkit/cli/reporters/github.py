"""GitHub Actions integration: log groups, annotations, job summary and step outputs.

When ``GITHUB_ACTIONS=true``, ``maint run`` uses :class:`GitHubReporter`:

- plain lines are grouped per site (``::group::shop-a`` ... ``::endgroup::``); lines of
  sites running in parallel are buffered so that each group stays whole;
- every failed step becomes an ``::error file=...,line=...,title=...::`` annotation that
  points at the step in the playbook (when the playbook is inside the workspace);
- a markdown table per site (steps, changes, failures) is appended to
  ``$GITHUB_STEP_SUMMARY``;
- ``run-id=``, ``status=`` and ``changed=`` are appended to ``$GITHUB_OUTPUT``.

Everything written goes through the run's redactor first.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from maintkit._text import head, redact_text
from maintkit.cli.redact import redact_with
from maintkit.cli.reporters.base import Reporter, plural
from maintkit.cli.reporters.plain import PlainReporter

_FAILED_STEP = ("failed", "rollback-failed")


def in_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    """True when running inside a GitHub Actions job."""
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """Escape the message part of a workflow command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a property value (``file=``, ``title=``) of a workflow command."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: str, message: str, *, title: str | None = None, file: str | None = None, line: int | None = None
) -> str:
    """One workflow command line such as ``::error file=p.yml,line=3,title=T::message``."""
    props = []
    if file:
        props.append(f"file={escape_property(file)}")
        if line:
            props.append(f"line={line}")
    if title:
        props.append(f"title={escape_property(title)}")
    head = f"::{level}" + (" " + ",".join(props) if props else "")
    return f"{head}::{escape_data(message)}"


def _cell(text: Any) -> str:
    """A markdown table cell: one line, pipes escaped, not too long (redacted before it is cut)."""
    s = " ".join(redact_text(str(text if text is not None else "")).split())
    return head(s, 200).replace("|", "\\|")


def job_summary(result: Any, redactor: Any = None, *, playbook_file: str | None = None) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: an overview and one table per site."""
    mode = "plan" if result.check else "run"
    icon = {"ok": "✅", "failed": "❌", "interrupted": "⚠️", "locked": "🔒"}.get(result.status, "")
    out = [
        f"## {icon} maint {mode} `{_cell(result.playbook)}`: {result.status}".replace("  ", " "),
        "",
        f"Run `{result.run_id}`: {plural(len(result.sites), 'site')}, {plural(result.changed, 'step')} changed,"
        f" {result.duration_ms / 1000:.1f} s.",
        "",
        "| site | status | steps | changed | failed |",
        "|---|---|---:|---:|---:|",
    ]
    for site in result.sites:
        failed = sum(1 for s in site.steps if s.status.value in _FAILED_STEP)
        out.append(f"| {_cell(site.site)} | {site.status.value} | {len(site.steps)} | {site.changed} | {failed} |")
    for site in result.sites:
        out += ["", f"### {_cell(site.site)}: {site.status.value}", ""]
        if site.error and site.status.value != "ok":
            out += [f"> {_cell(redact_with(redactor, site.error))}", ""]
        if not site.steps:
            out.append("No step ran.")
            continue
        out += ["| env | step | action | status | changes | detail |", "|---|---|---|---|---|---|"]
        for s in site.steps:
            changes = "; ".join(c.summary for c in s.changes)
            detail = s.error or s.reason or ""
            out.append(
                f"| {_cell(s.env)} | {_cell(s.step)} | `{_cell(s.action)}` | {s.status.value} "
                f"| {_cell(redact_with(redactor, changes))} | {_cell(redact_with(redactor, detail))} |"
            )
    if result.run_dir:
        out += ["", f"Run folder: `{result.run_dir}`" + (f" (playbook `{playbook_file}`)" if playbook_file else "")]
    return "\n".join(out) + "\n"


def outputs(result: Any) -> dict[str, str]:
    """The step outputs maint sets: run-id, status, changed (a plan also: would-change, unknown)."""
    out = {"run-id": result.run_id, "status": result.status, "changed": str(result.changed)}
    if result.check:
        out["would-change"] = str(getattr(result, "would_change", 0))
        out["unknown"] = str(getattr(result, "unknown", 0))
    return out


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def _workspace_relative(file: str | None, environ: Mapping[str, str]) -> str | None:
    """The playbook path relative to the workspace, or None when it is outside (e.g. built-in)."""
    if not file or file.startswith("<"):
        return None
    root = Path(environ.get("GITHUB_WORKSPACE") or os.getcwd()).resolve()
    try:
        return Path(file).resolve().relative_to(root).as_posix()
    except ValueError:
        return None


class GitHubReporter(Reporter):
    """Reporter for GitHub Actions jobs: plain lines grouped per site (or JSON lines), plus
    annotations, job summary and outputs at the end.

    ``inner`` shows the events and the result (a PlainReporter, or a JsonReporter for ``--json``).
    """

    def __init__(self, inner: Reporter, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(check=inner.check, diff=inner.diff)
        self.inner = inner
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._buffers: dict[str, list[str]] = {}

    def start(self, runner: Any) -> None:
        """Remember the runner (for step lines in the playbook) and print the header."""
        super().start(runner)
        self.inner.start(runner)

    def stop(self) -> None:
        """Tell the inner reporter that the run has ended."""
        self.inner.stop()

    def on_event(self, record: dict[str, Any]) -> None:
        """Buffer a site's lines and print them as one log group when the site ends."""
        if not isinstance(self.inner, PlainReporter):
            self.inner.on_event(record)
            return
        with self._lock:
            site = record.get("site")
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                self.inner.plain_line(record)
            text = buf.getvalue()
            if not site:
                click.echo(text, nl=False)
                return
            lines = self._buffers.setdefault(str(site), [])
            if text:
                lines.append(text)
            if record.get("event") in ("site.finished", "site.skipped"):
                status = record.get("status", "")
                click.echo(f"::group::{escape_data(str(site))}: {status}")
                click.echo("".join(self._buffers.pop(str(site), [])), nl=False)
                click.echo("::endgroup::")

    # -------------------------------------------------------------- end of run
    def _playbook_file(self) -> str | None:
        loaded = getattr(self.runner, "loaded", None)
        if loaded is not None:
            return str(loaded.source.file)
        pb = getattr(self.runner, "playbook", None)
        return getattr(pb, "path", None)

    def _step_line(self, env: str, step_id: str) -> int | None:
        loaded = getattr(self.runner, "loaded", None)
        if loaded is None:
            return None
        for si, stage in enumerate(loaded.playbook.stages):
            if stage.env != env:
                continue
            for i, step in enumerate(stage.steps):
                if step.id == step_id:
                    line = loaded.source.line_of(("stages", si, "steps", i))
                    return int(line) if line is not None else None
        return None

    def annotations(self, result: Any) -> list[str]:
        """``::error`` lines for failed steps (and sites that failed without a step, e.g. locks)."""
        file = _workspace_relative(self._playbook_file(), self.environ)
        lines = []
        for site in result.sites:
            failed_steps = [s for s in site.steps if s.status.value in _FAILED_STEP]
            for s in failed_steps:
                title = f"{s.site}/{s.env}: step {s.step} ({s.action}) failed"
                msg = redact_with(self.redactor, s.error or s.reason or "failed")
                if site.status.value == "rolled-back":
                    msg += " (the stage was rolled back)"
                lines.append(annotation("error", msg, title=title, file=file, line=self._step_line(s.env, s.step)))
            if not failed_steps and site.status.value in ("failed", "locked", "interrupted"):
                level = "error" if site.status.value == "failed" else "warning"
                msg = redact_with(self.redactor, site.error or site.status.value)
                lines.append(annotation(level, msg, title=f"{site.site}: {site.status.value}"))
        return lines

    def finish(self, result: Any) -> None:
        """Summary on stdout, then annotations, the job summary and the outputs."""
        for site, lines in list(self._buffers.items()):  # sites that never finished (should not happen)
            click.echo(f"::group::{escape_data(site)}")
            click.echo("".join(lines), nl=False)
            click.echo("::endgroup::")
        self._buffers.clear()
        self.inner.finish(result)
        for line in self.annotations(result):
            click.echo(line)
        publish(
            result, self.redactor, self.environ, playbook_file=_workspace_relative(self._playbook_file(), self.environ)
        )


def publish(result: Any, redactor: Any, environ: Mapping[str, str], *, playbook_file: str | None = None) -> None:
    """Append the job summary and the outputs to the files GitHub names (when set)."""
    summary_path = environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        _append(summary_path, job_summary(result, redactor, playbook_file=playbook_file))
    output_path = environ.get("GITHUB_OUTPUT")
    if output_path:
        text = "".join(f"{k}={redact_with(redactor, v)}\n" for k, v in outputs(result).items())
        _append(output_path, text)


def group_summary(view: Any) -> str:
    """Markdown for the job summary of a run group (``maint collect``): one row per shard, one per site.

    ``view`` is a :class:`maintkit.cli.cmd_collect.FleetView`; everything in it was redacted
    when the runs wrote it, and each cell is redacted again before it is cut.
    """
    icon = {"ok": "✅", "failed": "❌", "interrupted": "⚠️", "locked": "🔒"}.get(view.status, "")
    counts = ", ".join(f"{n} {status}" for status, n in view.counts().items()) or "no sites"
    out = [
        f"## {icon} maint fleet `{_cell(view.group)}`: {view.status}",
        "",
        f"{len(view.sites)} site(s) in {len(view.runs)} run(s): {counts}.",
        "",
        "| shard | run | playbook | status | sites | failed | changed |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in view.runs:
        ran = r.get("sites") or []
        failed = sum(1 for s in ran if s.get("status") in ("failed", "rolled-back"))
        out.append(
            f"| {_cell(r.get('shard') or '-')} | `{_cell(r['run_id'])}` | `{_cell(r.get('playbook'))}` "
            f"| {_cell(r.get('status'))} | {len(ran)} | {failed} | {_cell(r.get('changed', 0))} |"
        )
    for shard in view.missing:
        out.append(f"| {_cell(shard)} | missing | | | | | |")
    out += ["", "| site | status | changed | shard | run |", "|---|---|---:|---|---|"]
    for name, s in view.sites.items():
        out.append(
            f"| {_cell(name)} | {_cell(s['status'])} | {_cell(s['changed'])} | {_cell(s['shard'] or '-')} "
            f"| `{_cell(s['run_id'])}` |"
        )
    return "\n".join(out) + "\n"


def group_outputs(view: Any) -> dict[str, str]:
    """The step outputs of ``maint collect``: group, status, runs, sites, failed."""
    return {
        "group": view.group,
        "status": view.status,
        "runs": str(len(view.runs)),
        "sites": str(len(view.sites)),
        "failed": str(view.failed),
    }


def write_github_files(environ: Mapping[str, str], summary: str, values: Mapping[str, str]) -> None:
    """Append ``summary`` to ``$GITHUB_STEP_SUMMARY`` and ``values`` to ``$GITHUB_OUTPUT`` (when set), redacted."""
    if environ.get("GITHUB_STEP_SUMMARY"):
        _append(environ["GITHUB_STEP_SUMMARY"], redact_text(summary))
    if environ.get("GITHUB_OUTPUT"):
        _append(environ["GITHUB_OUTPUT"], "".join(f"{k}={redact_text(v)}\n" for k, v in values.items()))


__all__ = [
    "GitHubReporter",
    "annotation",
    "escape_data",
    "escape_property",
    "group_outputs",
    "group_summary",
    "in_github_actions",
    "job_summary",
    "outputs",
    "publish",
    "write_github_files",
]
