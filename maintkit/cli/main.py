"""The ``maint`` click group: every command registered in one place, and the console-script entry point.

The commands live in ``cmd_*`` modules; what they share (options, exit codes, error exits,
running a playbook) is in :mod:`maintkit.cli.common`; how a run is shown is in
:mod:`maintkit.cli.reporters`. Heavy modules are imported inside the commands, so
``maint --help`` imports neither pydantic, fabric nor rich.
"""

from __future__ import annotations

import gc
import sys

import click

from maintkit.cli import (
    cmd_actions,
    cmd_audit,
    cmd_collect,
    cmd_connections,
    cmd_daemon,
    cmd_demo,
    cmd_init,
    cmd_report,
    cmd_restore,
    cmd_rollback,
    cmd_runs,
    cmd_unlock,
)
from maintkit.cli.cmd_info import COMMANDS as INFO_COMMANDS
from maintkit.cli.cmd_run import COMMANDS as RUN_COMMANDS
from maintkit.cli.common import PlanExit
from maintkit.cli.run_flags import OutputFlags, output_options
from maintkit.results import ExitCode


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="maintkit", prog_name="maint")
@output_options
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, no_color: bool) -> None:
    """maintkit: keep online shops healthy with idempotent, audited playbooks over SSH.

    \b
    Exit status: 0 success (changed or not), 1 a site failed (after rollback),
                 2 invalid input (nothing ran), 3 lock held or run interrupted,
                 4 some hosts unreachable (nothing else failed).
    -v, -q and --no-color work here (maint -v run ...) and on run/plan.
    """
    ctx.obj = OutputFlags(verbose, quiet, no_color)


for _command in (
    *RUN_COMMANDS,
    *INFO_COMMANDS,
    cmd_actions.command,
    cmd_runs.command,
    cmd_collect.command,
    cmd_audit.command,
    cmd_unlock.command,
    cmd_rollback.command,
    cmd_restore.command,
    cmd_report.command,
    cmd_demo.command,
    cmd_init.command,
    cmd_connections.command,
    cmd_daemon.command,
):
    cli.add_command(_command)


#: older name of ``ExitCode.AUDIT_INCOMPLETE``, kept for importers
EXIT_AUDIT_INCOMPLETE = ExitCode.AUDIT_INCOMPLETE


#: young-generation threshold while ``maint`` runs: imports allocate hundreds of thousands of
#: long-lived objects, and the default (700) makes the collector walk them about 140 times
_GC_YOUNG = 50_000


def main() -> None:
    """Entry point of the ``maint`` console script.

    The collector runs less often while the command runs (:data:`_GC_YOUNG`), and what is alive
    when it ends is frozen (:func:`gc.freeze`) so that the interpreter's teardown does not walk
    every imported object once more (about 0.1 s after each run). Nothing else changes at exit:
    threads are joined, ``atexit`` handlers run and every stream is flushed and closed as usual.
    """
    gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])
    try:
        _main()
    finally:
        gc.freeze()


def _main() -> None:
    try:
        cli(standalone_mode=True)
    except PlanExit:
        raise
    except SystemExit as exc:
        # plan --detailed-exitcode: 2 means "changes pending", so a usage error is 1 (as Terraform's)
        if exc.code == ExitCode.INPUT and "--detailed-exitcode" in sys.argv[1:]:
            sys.exit(ExitCode.FAILED)
        raise
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)


__all__ = ["EXIT_AUDIT_INCOMPLETE", "cli", "main"]

if __name__ == "__main__":
    main()
