"""``maint demo``: a local demo shop, maintained end to end with the real actions."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from maintkit.cli.common import die
from maintkit.results import ExitCode

Say = Callable[[str], None]


def _run_playbook(path: Path, inventory: Any, state_dir: Path, *, quiet: bool, as_json: bool) -> Any:
    """Run one of the demo's playbooks in-process with the normal reporter (none when ``quiet``)."""
    from maintkit.cli.reporters import choose_reporter
    from maintkit.playbook import load_playbook_full
    from maintkit.runner import Runner

    loaded = load_playbook_full(path)
    reporter = None if quiet else choose_reporter(as_json=as_json, check=False, diff=False)
    runner = Runner(loaded, inventory, state_dir=state_dir, on_event=None if reporter is None else reporter.on_event)
    runner.plan()
    if reporter is None:
        return runner.run()
    return reporter.show_run(runner)


def _sayer(as_json: bool) -> Say:
    """Print a line of the demo's own text (on stderr with --json, which keeps stdout JSON)."""

    def say(text: str) -> None:
        click.echo(text, err=as_json)

    return say


@click.command("demo")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Stream the monthly run's events as JSON lines.")
@click.option("--no-php", is_flag=True, help="Serve the shop with Python even when PHP is installed.")
@click.option("--no-database", is_flag=True, help="Leave the database out even when MariaDB is installed.")
@click.option("--no-report", is_flag=True, help="Do not print the report at the end (it is still written).")
def command(directory: str | None, as_json: bool, no_php: bool, no_database: bool, no_report: bool) -> None:
    """Create a local demo shop in DIRECTORY (default ./maint-demo) and run the monthly flow on it.

    \b
    Real actions on this machine, no server needed: backup.create (files, and the database
    when MariaDB is installed) and backup.verify, deploy.release of v2 from a git repository (v1 is deployed
    when the shop is created), cache.clear, http.check against a local web server, ssl.check
    against a local TLS server, then the report. Run it twice: the second run changes nothing.
    """
    from maintkit.demo import Demo, default_dir

    started = time.monotonic()
    root = Path(directory) if directory else default_dir()
    if root.exists() and not root.is_dir():
        die(f"error: {root} exists and is not a directory", ExitCode.INPUT)
    demo = Demo(root, use_php=not no_php, use_database=not no_database)
    say = _sayer(as_json)
    first = demo.is_new
    say(f"{'Creating' if first else 'Reusing'} the demo shop in {demo.root}")
    try:
        notes = demo.start()
    except Exception as exc:  # a tool or a server that cannot start: say why; nothing ran
        demo.stop()
        die(f"error: the demo could not set up the shop or start its local servers: {exc}", ExitCode.FAILED)
    try:
        for note in notes:
            say(f"  {note.text}")
        result = _maintain(demo, first or demo.is_new, as_json=as_json, say=say)
        _report(demo, as_json=as_json, show=not no_report, say=say)
    finally:
        demo.stop()
    _closing(demo, notes, result, directory, time.monotonic() - started, say)
    sys.exit(result.exit_code)


def _maintain(demo: Any, setup: bool, *, as_json: bool, say: Say) -> Any:
    """Put v1 online when the shop is new (``setup``), then run the monthly flow; its RunResult."""
    from maintkit.errors import ConfigError, MaintkitError
    from maintkit.inventory import load_inventory

    try:
        inventory = load_inventory(demo.inventory_path)
        if setup:
            say("\nPutting release v1 online (the shop as it was before this month's maintenance)...")
            done = _run_playbook(_setup_path(), inventory, demo.state_dir, quiet=True, as_json=False)
            if not done.ok:
                from maintkit.notify import explain_failures

                die("error: deploying v1 failed:\n" + "\n".join(explain_failures(done)), ExitCode.FAILED)
            say(f"  v1 is live at {demo.web.url if demo.web else ''}/")
        steps = "backup and verify it, deploy v2, clear the cache, smoke checks, certificate"
        say(f"\nThe monthly flow ({_playbook_path().name}): {steps}\n")
        return _run_playbook(_playbook_path(), inventory, demo.state_dir, quiet=False, as_json=as_json)
    except ConfigError as exc:
        die("error: " + "\n".join(str(p) for p in exc.problems), ExitCode.INPUT)
    except MaintkitError as exc:
        die(f"error: {exc}", ExitCode.FAILED)


def _closing(demo: Any, notes: list[Any], result: Any, directory: str | None, elapsed: float, say: Say) -> None:
    """What the demo left out on this machine, how it went, and where to look next."""
    left = [n for n in notes if n.left_out]
    if left:
        say("\nLeft out on this machine:")
        for n in left:
            say(f"  - {n.text}")
    if result.ok and result.changed == 0:
        say(f"\nNothing changed: the shop was already up to date ({elapsed:.1f} s).")
    elif result.ok:
        again = "maint demo" + (f" {directory}" if directory else "")
        say(f"\nDone in {elapsed:.1f} s. Run `{again}` again: nothing will change.")
    say(
        f"Look around: maint runs --state-dir {demo.state_dir} ; maint audit verify latest --state-dir {demo.state_dir}"
    )


def _playbook_path() -> Path:
    from maintkit.demo import PLAYBOOK

    return PLAYBOOK


def _setup_path() -> Path:
    from maintkit.demo import SETUP_PLAYBOOK

    return SETUP_PLAYBOOK


def _report(demo: Any, *, as_json: bool, show: bool, say: Say) -> None:
    """Write report.md and report.html in the demo directory; print the markdown unless told not to."""
    from maintkit._fs import write_text_atomic
    from maintkit.report import build_report, render_html, render_markdown

    report = build_report(demo.state_dir)
    md = render_markdown(report)
    write_text_atomic(demo.root / "report.md", md, mode=0o644)
    write_text_atomic(demo.root / "report.html", render_html(report), mode=0o644)
    if show and not as_json:
        click.echo("\n" + "-" * 72)
        click.echo(md.rstrip())
        click.echo("-" * 72)
    md_path, html_path = demo.root / "report.md", demo.root / "report.html"
    say(f"\nReport: {md_path} and {html_path} (maint report --state-dir {demo.state_dir})")
