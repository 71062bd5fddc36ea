"""``maint audit``: audit log tools (``maint audit verify``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from maintkit.cli.common import config_error, history_for, optional_inventory_option, state_option, store_option
from maintkit.results import ExitCode


@click.group("audit")
def command() -> None:
    """Audit log tools."""


@command.command("verify")
@click.argument("run_id")
@state_option
@store_option
@optional_inventory_option
def audit_verify(run_id: str, state_dir: str, state_spec: str | None, inventory_path: str | None) -> None:
    """Recompute the hash chain of a run's audit log.

    Exit 0: intact and complete. 1: tampered with (the first bad line is named). 2: unknown
    run id. 4: intact so far but incomplete (no summary.json: a cut-off tail cannot be verified).
    The run is read from the state store (--state, MAINT_STATE, -i's state:, else --state-dir).
    """
    from maintkit.audit import VERIFY_INCOMPLETE, VERIFY_INTACT, resolve_run_id, verify_run
    from maintkit.errors import ConfigError

    root = Path(history_for(state_spec, state_dir, inventory_path).root)
    try:
        rid = resolve_run_id(root, run_id)
    except ConfigError as exc:
        config_error(exc)
    key = os.environ.get("MAINT_AUDIT_KEY")
    res = verify_run(root / "runs" / rid, key.encode() if key else None)
    if res.status == VERIFY_INTACT:
        click.echo(f"ok: {rid}: {res.events} events, chain intact")
        sys.exit(ExitCode.OK)
    if res.status == VERIFY_INCOMPLETE:
        click.echo(f"incomplete: {rid}: {res.events} events, chain intact so far; no summary.json")
        click.echo(f"note: {res.note}")
        sys.exit(ExitCode.AUDIT_INCOMPLETE)
    click.echo(f"BROKEN: {rid}: {res.reason}", err=True)
    sys.exit(ExitCode.FAILED)
