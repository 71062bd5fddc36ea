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


def split_list(items: tuple[str, ...]) -> list[str]:
    """Values of a repeatable, comma-separated option (``-l a,b -l c``), empty ones left out."""
    return [x for item in items for x in item.split(",") if x]


def execute(
    make_playbook: Callable[[], Any],
    inventory: Any,
    *,
    as_json: bool,
    check: bool,
    diff: bool = False,
    **runner_kwargs: Any,
) -> NoReturn:
    """Plan (bad input: exit 2, nothing runs), run with live output, exit with the run's status.

    ``make_playbook`` returns the (loaded) playbook; it is called inside the error handling.
    Used by ``run``/``plan`` and by the commands that run a generated playbook (rollback, restore).
    """
    from maintkit.cli.reporters import choose_reporter
    from maintkit.errors import ConfigError, MaintkitError
    from maintkit.runner import Runner

    runner: Runner | None = None
    try:
        loaded = make_playbook()
        reporter = choose_reporter(as_json=as_json, check=check, diff=diff)
        runner = Runner(loaded, inventory, check=check, diff=diff, on_event=reporter.on_event, **runner_kwargs)
        runner.plan()
    except ConfigError as exc:
        # the runner's redactor knows the secrets rendered before the problem was found
        config_error(exc, runner.redactor if runner is not None else None)
    except MaintkitError as exc:
        die(f"error: {exc}", ExitCode.INPUT, runner.redactor if runner is not None else None)
    result = reporter.show_run(runner)
    sys.exit(result.exit_code)
