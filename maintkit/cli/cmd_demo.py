"""``maint demo``: a local shop with staging and production, and the story maintkit exists for.

An update that breaks the cart is caught on staging and rolled back while production keeps
selling; then a good update passes on staging and production gets exactly what staging
validated. Real actions, the real runner and the normal output, then the report.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from maintkit.cli.common import die
from maintkit.results import ExitCode

Say = Callable[[str], None]


@dataclass
class _Story:
    """What the demo's runs did: the last update's result, what the shopper saw, the summary."""

    result: Any = None
    caught: bool = True  # the broken update was stopped on staging (or not attempted)
    attempted: bool = False  # the broken update ran in this demo run
    statuses: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The story went as it should: nothing unexpected happened."""
        return not self.problems and self.result is not None and self.result.ok


def _run_playbook(
    path: Path, inventory: Any, state_dir: Path, *, quiet: bool, as_json: bool, extra_vars: dict[str, Any] | None = None
) -> Any:
    """Run one of the demo's playbooks in-process with the normal reporter (none when ``quiet``)."""
    from maintkit.cli.reporters import choose_reporter
    from maintkit.playbook import load_playbook_full
    from maintkit.runner import Runner

    loaded = load_playbook_full(path)
    reporter = None if quiet else choose_reporter(as_json=as_json, check=False, diff=False)
    runner = Runner(
        loaded,
        inventory,
        state_dir=state_dir,
        on_event=None if reporter is None else reporter.on_event,
        extra_vars=extra_vars,
    )
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
@click.option("--json", "as_json", is_flag=True, help="Stream the update runs' events as JSON lines.")
@click.option("--no-php", is_flag=True, help="Serve the shop with Python even when PHP is installed.")
@click.option("--no-database", is_flag=True, help="Leave the database out even when MariaDB is installed.")
@click.option("--no-report", is_flag=True, help="Do not print the report at the end (it is still written).")
def command(directory: str | None, as_json: bool, no_php: bool, no_database: bool, no_report: bool) -> None:
    """Create a local demo shop in DIRECTORY (default ./maint-demo) and update it the safe way.

    \b
    The shop has staging and production, each served by its own local web server. Update 1
    (release v2) breaks the cart: the smoke check catches it on staging, staging is rolled
    back (code, and database when MariaDB is installed) and production is never touched,
    while a shopper keeps buying on production. Update 2 (v3) passes on staging and reaches
    production with the same files (checksums compared). Then the report. Run it twice: the
    second run changes nothing.
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
        story = _maintain(demo, first or demo.is_new, as_json=as_json, say=say)
        _summary(story, say)
        _report(demo, as_json=as_json, show=not no_report, say=say)
    finally:
        demo.stop()
    _closing(demo, notes, story, directory, time.monotonic() - started, say)
    sys.exit(ExitCode.OK if story.ok else ExitCode.FAILED)


def _maintain(demo: Any, setup: bool, *, as_json: bool, say: Say) -> _Story:
    """Put v1 online when the shop is new (``setup``), then tell the story; what happened."""
    from maintkit.demo import ENVS
    from maintkit.demo.releases import BROKEN, GOOD
    from maintkit.demo.story import deployed
    from maintkit.errors import ConfigError, MaintkitError
    from maintkit.inventory import load_inventory

    try:
        inventory = load_inventory(demo.inventory_path)
        if setup:
            _setup(demo, inventory, say)
        story = _Story()
        production = deployed("production", demo.env_path("production"))
        if production is None or production.ref != GOOD:
            story.attempted = True
            _broken_update(demo, inventory, story, as_json=as_json, say=say)
        else:
            say(f"\nBoth environments already run {GOOD}: the update again, which finds nothing to do.\n")
        if story.caught:
            _good_update(demo, inventory, story, as_json=as_json, say=say)
        envs = {env: deployed(env, demo.env_path(env)) for env in ENVS}
        _compare(envs["staging"], envs["production"], story, say)
        _story_lines(story, BROKEN, GOOD, envs)
        return story
    except ConfigError as exc:
        die("error: " + "\n".join(str(p) for p in exc.problems), ExitCode.INPUT)
    except MaintkitError as exc:
        die(f"error: {exc}", ExitCode.FAILED)


def _setup(demo: Any, inventory: Any, say: Say) -> None:
    """Deploy v1 on staging and production (quietly): the shop before this month's updates."""
    say("\nPutting release v1 online on staging and production (the shop before this month's updates)...")
    done = _run_playbook(_setup_path(), inventory, demo.state_dir, quiet=True, as_json=False)
    if not done.ok:
        from maintkit.notify import explain_failures

        die("error: deploying v1 failed:\n" + "\n".join(explain_failures(done)), ExitCode.FAILED)
    say(f"  v1 is live: staging {demo.url('staging')}/ and production {demo.url('production')}/")


def _polled_update(demo: Any, inventory: Any, story: _Story, extra: dict[str, Any], *, as_json: bool) -> Any:
    """Run the update playbook while a shopper keeps requesting production's cart."""
    from maintkit.demo.story import CartPoller

    shopper = CartPoller(demo.url("production") + "/cart/").start()
    try:
        return _run_playbook(
            _playbook_path(), inventory, demo.state_dir, quiet=False, as_json=as_json, extra_vars=extra
        )
    finally:
        story.statuses += shopper.stop().statuses


def _broken_update(demo: Any, inventory: Any, story: _Story, *, as_json: bool, say: Say) -> None:
    """Update 1: the broken release must fail on staging, be rolled back, and never reach production."""
    from maintkit.demo.releases import BROKEN
    from maintkit.demo.story import Polls, deployed

    before = {env: deployed(env, demo.env_path(env)) for env in ("staging", "production")}
    say(f"\nUpdate 1: release {BROKEN} (coupons; its cart configuration has a syntax error). Staging first:\n")
    seen = len(story.statuses)
    result = _polled_update(demo, inventory, story, {"release": BROKEN}, as_json=as_json)
    after = {env: deployed(env, demo.env_path(env)) for env in ("staging", "production")}
    failed = [s for site in result.sites for s in site.steps if s.env == "staging" and s.status.value == "failed"]
    undone = [s.step for site in result.sites for s in reversed(site.steps) if s.status.value == "rolled-back"]
    reached = [s.step for site in result.sites for s in site.steps if s.env == "production" and s.changed]
    rolled_back = [site.status.value for site in result.sites] == ["rolled-back"]
    story.caught = rolled_back and bool(failed) and after == before and not reached
    if not story.caught:
        story.problems.append(f"{BROKEN} was not stopped on staging as it should have been")
        return
    story.lines.append(f"{BROKEN} broke the cart on staging: {failed[0].step}: {_why(failed[0].error)}.")
    story.lines.append(f"Staging was rolled back ({', '.join(undone)} undone); production never got {BROKEN}.")
    polls = Polls(story.statuses[seen:])
    say(f"  production answered {polls.describe()} while staging was updated and rolled back")


def _good_update(demo: Any, inventory: Any, story: _Story, *, as_json: bool, say: Say) -> None:
    """Update 2: the good release on staging, then on production."""
    from maintkit.demo.releases import GOOD
    from maintkit.demo.story import Polls

    if story.attempted:
        say(f"\nUpdate 2: release {GOOD} (coupons, the cart fixed). Staging, then production:\n")
    seen = len(story.statuses)
    story.result = _polled_update(demo, inventory, story, {"release": GOOD}, as_json=as_json)
    if not story.result.ok:
        story.problems.append(f"{GOOD} did not reach production")
    say(f"  production answered {Polls(story.statuses[seen:]).describe()} during this update")


def _compare(staging: Any, production: Any, story: _Story, say: Say) -> None:
    """Print what each environment runs, with the checksum of its files."""
    if staging is None or production is None:
        story.problems.append("an environment has no release")
        return
    say("\nWhat staging validated is what production runs:")
    for d in (staging, production):
        say(f"  {d.env:<11} {d.ref:<3} commit {d.commit[:12]}  sha256 {d.checksum}  ({d.files} entries)")
    if (staging.commit, staging.checksum) != (production.commit, production.checksum):
        story.problems.append("staging and production run different files")


def _story_lines(story: _Story, broken: str, good: str, envs: dict[str, Any]) -> None:
    """The story in a few lines, from what was observed."""
    from maintkit.demo.story import Polls

    polls = Polls(story.statuses)
    selling = "kept selling" if polls.ok == polls.total else "did NOT keep selling"
    during = "during the updates" if story.attempted else "during the update"
    story.lines.append(f"Production {selling}: its cart answered {polls.describe()} {during}.")
    staging, production = envs["staging"], envs["production"]
    if story.ok and staging is not None and production is not None:
        verb = "passed on staging and reached" if story.attempted else "was already on staging and"
        story.lines.append(f"{good} {verb} production with the same files: sha256 {production.checksum[:16]} on both.")
    if polls.ok != polls.total:
        story.problems.append("production's cart did not answer every request")
    story.lines += [f"PROBLEM: {p}" for p in story.problems]


def _summary(story: _Story, say: Say) -> None:
    say("\nThe story:")
    for line in story.lines:
        say(f"  {line}")


def _why(text: str | None, width: int = 100) -> str:
    """The gist of a failed check: ``GET .../cart/: status 500 (expected 200)``."""
    from maintkit._text import head

    first = (text or "").strip().splitlines()[0] if (text or "").strip() else "no detail"
    gist = re.sub(r"^(check: )?\d+ of \d+ checks? failed: ", "", first).split("; ", 1)[0]
    return head(gist, width)


def _closing(demo: Any, notes: list[Any], story: _Story, directory: str | None, elapsed: float, say: Say) -> None:
    """What the demo left out on this machine, how it went, and where to look next."""
    left = [n for n in notes if n.left_out]
    if left:
        say("\nLeft out on this machine:")
        for n in left:
            say(f"  - {n.text}")
    result = story.result
    if story.ok and result.changed == 0 and not story.attempted:
        say(f"\nNothing changed: the shop was already up to date ({elapsed:.1f} s).")
    elif story.ok:
        again = "maint demo" + (f" {directory}" if directory else "")
        say(f"\nDone in {elapsed:.1f} s. Run `{again}` again: nothing will change.")
    else:
        say(f"\nThe demo did not go as it should ({elapsed:.1f} s): see the problems above.")
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
