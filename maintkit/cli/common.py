"""What the ``maint`` commands share: exit codes, common options, error exits and running a playbook.

Only click, the standard library and :mod:`maintkit.results` (``ExitCode``) are imported at
module level, so that ``maint --help`` stays fast; everything else is imported where it is used.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from maintkit.results import ExitCode

#: input problems printed before "... and N more problems"
SHOWN_PROBLEMS = 20

inventory_option = click.option(
    "-i",
    "--inventory",
    "inventory_path",
    envvar="MAINT_INVENTORY",
    default="inventory.yml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Inventory file.",
)
state_option = click.option(
    "--state-dir",
    envvar="MAINT_STATE_DIR",
    default=".maint",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where run folders are kept.",
)
store_option = click.option(
    "--state",
    "state_spec",
    default=None,
    metavar="STORE",
    help="State store holding run history: local, git:REMOTE[#BRANCH] or JSON (default: MAINT_STATE, "
    "then the inventory's state:, else local).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Stream events as JSON lines; the last line is the result."
)


def die(message: str, code: int, redactor: Any = None) -> NoReturn:
    """Print ``message`` to stderr, redacted (every secret known to this process), and exit."""
    from maintkit.cli.redact import redact_for_output

    click.echo(redact_for_output(message, redactor), err=True)
    sys.exit(code)


def _problem_lines(problems: list[Any]) -> list[str]:
    """The first problems, a count of the others and the closing line of an input error."""
    from maintkit._yaml import MAX_PROBLEMS

    lines = [f"error: {p}" for p in problems[:SHOWN_PROBLEMS]]
    n = len(problems)
    if n > SHOWN_PROBLEMS:
        more = n - SHOWN_PROBLEMS
        lines.append(f"... and {more} more problem{'s' if more != 1 else ''}")
    if n >= MAX_PROBLEMS:  # the loaders stop collecting there
        lines.append(f"{n} or more problems found (checking stops after {MAX_PROBLEMS}); nothing was run.")
    else:
        lines.append(f"{n} problem{'s' if n != 1 else ''} found; nothing was run.")
    return lines


def config_error(exc: Exception, redactor: Any = None) -> NoReturn:
    """Exit 2 with the problems of a ConfigError (at most SHOWN_PROBLEMS of them), or the error."""
    from maintkit.errors import ConfigError

    if isinstance(exc, ConfigError):
        die("\n".join(_problem_lines(exc.problems)), ExitCode.INPUT, redactor)
    die(f"error: {exc}", ExitCode.INPUT, redactor)


def load_inventory(path: str) -> Any:
    """The inventory at ``path``, or exit 2 with its problems."""
    from maintkit.errors import ConfigError
    from maintkit.inventory import load_inventory as load

    try:
        return load(path)
    except ConfigError as exc:
        config_error(exc)


def require_site_env(inventory: Any, inventory_path: str, site: str, env: str) -> Any:
    """The Environment ``env`` of ``site``, or exit 2 naming the inventory."""
    if site not in inventory.sites or env not in inventory.sites[site].environments:
        die(f"error: {inventory_path}: no site {site!r} with environment {env!r}", ExitCode.INPUT)
    return inventory.sites[site].environments[env]


def open_history(state_spec: str | None, state_dir: str, inventory: Any = None) -> Any:
    """The state store in force (``--state``, ``MAINT_STATE``, the inventory's ``state:``, else local), pulled.

    Any problem opening or pulling it exits 2 with the reason.
    """
    import os
    from pathlib import Path

    from maintkit.errors import ConfigError, MaintkitError
    from maintkit.state.select import choose_spec, open_store

    state_cfg = getattr(inventory, "state", None)
    configured = state_cfg.model_dump(exclude_none=True) if state_cfg is not None else None
    try:
        spec = choose_spec(state_spec, os.environ, configured, getattr(inventory, "path", None) or "inventory")
        store = open_store(spec, state_dir=Path(state_dir), environ=os.environ)
        store.pull()
    except ConfigError as exc:
        config_error(exc)
    except MaintkitError as exc:
        die(f"error: state store: {exc}", ExitCode.INPUT)
    return store


optional_inventory_option = click.option(
    "-i",
    "--inventory",
    "inventory_path",
    envvar="MAINT_INVENTORY",
    default=None,
    type=click.Path(dir_okay=False),
    help="Inventory whose state: names the store (when neither --state nor MAINT_STATE does).",
)


def history_for(state_spec: str | None, state_dir: str, inventory_path: str | None) -> Any:
    """The store a reading command uses: ``--state``, ``MAINT_STATE``, ``-i``'s ``state:``, else local; pulled."""
    inventory = load_inventory(inventory_path) if inventory_path and not state_spec else None
    return open_history(state_spec, state_dir, inventory)


def split_list(items: tuple[str, ...]) -> list[str]:
    """Values of a repeatable, comma-separated option (``-l a,b -l c``), empty ones left out."""
    return [x for item in items for x in item.split(",") if x]


def interrupt_note(record: dict[str, Any]) -> str | None:
    """What to print for a second Ctrl-C (what the cleanup waits for) or a third (what it leaves behind)."""
    event = record.get("event")
    busy = [b for b in record.get("waiting_for") or [] if isinstance(b, dict)]
    places = sorted({(str(b.get("site")), str(b.get("env"))) for b in busy})
    if event == "run.cleanup_pending":
        doing = "; ".join(f"{b.get('doing')} on {b.get('site')}/{b.get('env')}" for b in busy)
        return (
            f"still {doing or 'finishing the run (summary, state)'}; Ctrl-C again to abandon cleanup "
            f"(leaves {'the sites' if len(places) > 1 else 'the site'} locked and in maintenance)"
        )
    if event == "run.cleanup_abandoned":
        left = ", ".join(f"{site}/{env}" for site, env in places) or "the sites of this run"
        clear = "; ".join(f"maint unlock {site} --env {env} --maintenance-off" for site, env in places)
        return f"cleanup abandoned: {left} may be left locked and in maintenance; clear with: {clear or 'maint unlock'}"
    return None


def with_interrupt_notes(on_event: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """``on_event``, then on stderr the note of a second or third Ctrl-C (:func:`interrupt_note`)."""

    def show(record: dict[str, Any]) -> None:
        on_event(record)
        note = interrupt_note(record)
        if note is not None:
            click.echo(note, err=True)

    return show


class PlanExit(SystemExit):
    """The exit of ``maint plan --detailed-exitcode`` with the plan's own status (0, 1 or 2)."""


def execute(
    make_playbook: Callable[[], Any],
    inventory: Any,
    *,
    as_json: bool,
    check: bool,
    diff: bool = False,
    verbosity: int = 0,
    no_color: bool = False,
    detailed_exitcode: bool = False,
    **runner_kwargs: Any,
) -> NoReturn:
    """Plan (bad input: exit 2, nothing runs), run with live output, exit with the run's status.

    ``make_playbook`` returns the (loaded) playbook; it is called inside the error handling.
    Used by ``run``/``plan`` and by the commands that run a generated playbook (rollback, restore).
    ``verbosity`` is -1 (``-q``) to 2 (``-vv``: every command is shown); ``detailed_exitcode``
    exits with :meth:`~maintkit.results.RunResult.plan_exit_code` (raised as :class:`PlanExit`).
    """
    from maintkit.cli.reporters import choose_reporter
    from maintkit.errors import ConfigError, MaintkitError
    from maintkit.runner import Runner

    runner: Runner | None = None
    state_spec = runner_kwargs.pop("state_spec", None)
    if "store" not in runner_kwargs:
        runner_kwargs["store"] = open_history(state_spec, runner_kwargs.get("state_dir", ".maint"), inventory)
    try:
        loaded = make_playbook()
        reporter = choose_reporter(as_json=as_json, check=check, diff=diff, verbosity=verbosity, no_color=no_color)
        on_event = with_interrupt_notes(reporter.on_event)
        runner_kwargs.setdefault("trace_commands", verbosity >= 2)
        runner = Runner(loaded, inventory, check=check, diff=diff, on_event=on_event, **runner_kwargs)
        runner.plan()
    except ConfigError as exc:
        # the runner's redactor knows the secrets rendered before the problem was found
        config_error(exc, runner.redactor if runner is not None else None)
    except MaintkitError as exc:
        die(f"error: {exc}", ExitCode.INPUT, runner.redactor if runner is not None else None)
    try:
        result = reporter.show_run(runner)
    finally:
        runner.store.close()
    if runner.state_error:
        # the run's result stands (summary, output); its history did not reach the store
        from maintkit.cli.redact import redact_for_output

        click.echo(redact_for_output(f"error: {runner.state_error}", runner.redactor), err=True)
        if detailed_exitcode:
            raise PlanExit(ExitCode.FAILED)
        sys.exit(result.exit_code or ExitCode.FAILED)
    if detailed_exitcode:
        raise PlanExit(result.plan_exit_code())
    sys.exit(result.exit_code)
