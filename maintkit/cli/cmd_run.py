"""``maint run``, ``maint plan`` and ``maint validate``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import click

from maintkit.cli.common import (
    PlanExit,
    config_error,
    execute,
    inventory_option,
    json_option,
    load_inventory,
    split_list,
    state_option,
    store_option,
)
from maintkit.cli.run_flags import (
    OutputFlags,
    group_flags,
    output_options,
    parse_extra_vars,
    parse_selection,
    selection_options,
)
from maintkit.results import ExitCode


def _run(
    playbook: str,
    inventory_path: str,
    limit: tuple[str, ...],
    env: str | None,
    check: bool,
    diff: bool,
    as_json: bool,
    concurrency: int | None,
    state_dir: str,
    promote_from: str | None = None,
    extra: dict[str, Any] | None = None,
    state_spec: str | None = None,
    fleet: dict[str, Any] | None = None,
    habits: dict[str, Any] | None = None,
) -> NoReturn:
    from maintkit.errors import ConfigError
    from maintkit.playbook import load_playbook_full

    limits = split_list(limit)
    flags = dict(habits or {})
    output: OutputFlags = flags.pop("output", OutputFlags())
    extra_vars = parse_extra_vars(flags.pop("extra_vars", ()))
    selection = parse_selection(flags.pop("steps", ()), flags.pop("skip_steps", ()), flags.pop("start_at", None))
    try:
        loaded = load_playbook_full(playbook)
    except ConfigError as exc:
        config_error(exc)
    execute(
        lambda: loaded,
        load_inventory(inventory_path),
        as_json=as_json,
        check=check,
        diff=diff,
        limit=limits or None,
        env=env,
        concurrency=concurrency,
        state_dir=state_dir,
        promote_from=promote_from,
        extra=extra,
        state_spec=state_spec,
        extra_vars=extra_vars,
        selection=selection,
        verbosity=output.verbosity,
        no_color=output.no_color,
        **flags,
        **(fleet or {}),
    )


def _habits(
    ctx_flags: OutputFlags,
    extra_vars: tuple[str, ...],
    steps: tuple[str, ...],
    skip_steps: tuple[str, ...],
    start_at: str | None,
) -> dict[str, Any]:
    """The flags users bring from Ansible (``-e``, ``--steps``...) and the output flags, for :func:`_run`."""
    return {
        "output": group_flags().merged(ctx_flags),
        "extra_vars": extra_vars,
        "steps": steps,
        "skip_steps": skip_steps,
        "start_at": start_at,
    }  # fmt: skip


def _fleet(shard: str | None, group: str | None) -> dict[str, Any]:
    """The runner's ``shard`` and ``group`` from ``--shard K/N`` and ``--group`` (exit 2 when invalid).

    A shard's group defaults to ``GITHUB_RUN_ID`` (every job of a workflow run shares it).
    """
    from maintkit.errors import ConfigError, Problem
    from maintkit.runner.shard import check_group, parse_shard

    if not shard and not group:
        return {}
    try:
        parsed = parse_shard(shard) if shard else None
        name = group or os.environ.get("GITHUB_RUN_ID", "")
        if not name:
            why = "a shard needs a run group shared by all shards: pass --group NAME (in GitHub Actions: GITHUB_RUN_ID)"
            raise ConfigError(Problem("--shard", None, "group", why))
        return {"shard": parsed, "group": check_group(name, "--group" if group else "GITHUB_RUN_ID")}
    except ConfigError as exc:
        config_error(exc)


def run_options(f: Any) -> Any:
    """Options shared by run and plan."""
    for opt in reversed(
        [
            inventory_option,
            click.option(
                "--limit",
                "-l",
                multiple=True,
                metavar="PATTERN,...",
                help="Only these sites or groups: names, globs (shop-*), !exclusions; comma-separated or repeated.",
            ),
            click.option("--env", "env", default=None, help="Only the stage of this environment."),
            click.option("--diff", is_flag=True, help="Show what would change / changed, before and after."),
            json_option,
            click.option("--concurrency", "-c", type=click.IntRange(1, 1000), default=None, help="Sites at once."),
            state_option,
            store_option,
            selection_options,
            output_options,
        ]
    ):
        f = opt(f)
    return f


@click.command("run")
@click.argument("playbook")
@run_options
@click.option("--check", is_flag=True, help="Plan only: check every step, change nothing anywhere.")
@click.option("--promote-from", default=None, metavar="RUN_ID", help="Promote the version locks of an earlier run.")
@click.option("--yes", is_flag=True, help="Confirm destructive steps on production (e.g. restores).")
@click.option("--shard", default=None, metavar="K/N", help="Run only shard K of N of the targeted sites.")
@click.option(
    "--group", "run_group", default=None, metavar="NAME", help="Run group of the shards (default: GITHUB_RUN_ID)."
)
@click.option(
    "--metrics", default=None, metavar="FILE", help="Watching playbooks: write the health metrics (OpenMetrics)."
)
@click.option("--pushgateway", default=None, metavar="URL", help="Watching playbooks: push the health metrics.")
def run(
    playbook: str,
    inventory_path: str,
    limit: tuple[str, ...],
    env: str | None,
    diff: bool,
    as_json: bool,
    concurrency: int | None,
    state_dir: str,
    state_spec: str | None,
    check: bool,
    promote_from: str | None,
    yes: bool,
    shard: str | None,
    run_group: str | None,
    metrics: str | None,
    pushgateway: str | None,
    extra_vars: tuple[str, ...],
    steps: tuple[str, ...],
    skip_steps: tuple[str, ...],
    start_at: str | None,
    verbose: int,
    quiet: bool,
    no_color: bool,
) -> None:
    """Run PLAYBOOK (a name from ./playbooks or the built-ins, or a path).

    Run folders and the index go to the state store (--state, MAINT_STATE, the inventory's
    state:, else --state-dir); --promote-from reads the earlier run from that store.

    With --shard K/N only shard K of the targeted sites runs (canary sites in shard 1); the
    shards record their runs under one run group (--group, default GITHUB_RUN_ID), and
    max_fail_percentage counts the failures of the whole group.
    """
    habits = _habits(OutputFlags(verbose, quiet, no_color), extra_vars, steps, skip_steps, start_at)
    _run(
        playbook, inventory_path, limit, env, check, diff, as_json, concurrency, state_dir, promote_from,
        {"yes": yes, "metrics": metrics, "pushgateway": pushgateway}, state_spec, _fleet(shard, run_group), habits,
    )  # fmt: skip


@click.command("plan")
@click.argument("playbook")
@run_options
@click.option("--promote-from", default=None, metavar="RUN_ID", help="Plan the promotion of an earlier run's locks.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing would change, 2 when changes are pending (or unknown), 1 on any error.",
)
def plan(
    playbook: str,
    inventory_path: str,
    limit: tuple[str, ...],
    env: str | None,
    diff: bool,
    as_json: bool,
    concurrency: int | None,
    state_dir: str,
    state_spec: str | None,
    promote_from: str | None,
    detailed_exitcode: bool,
    extra_vars: tuple[str, ...],
    steps: tuple[str, ...],
    skip_steps: tuple[str, ...],
    start_at: str | None,
    verbose: int,
    quiet: bool,
    no_color: bool,
) -> None:
    """Show what PLAYBOOK would change (same as run --check). Changes nothing anywhere.

    With --detailed-exitcode (as Terraform's): 0 nothing to do, 2 changes pending, 1 any error
    (also invalid input, which otherwise exits 2).
    """
    habits = _habits(OutputFlags(verbose, quiet, no_color), extra_vars, steps, skip_steps, start_at)
    habits["detailed_exitcode"] = detailed_exitcode
    try:
        _run(
            playbook, inventory_path, limit, env, True, diff, as_json, concurrency, state_dir, promote_from,
            None, state_spec, None, habits,
        )  # fmt: skip
    except PlanExit:
        raise
    except SystemExit as exc:
        if detailed_exitcode and exc.code == ExitCode.INPUT:
            raise SystemExit(ExitCode.FAILED) from None
        raise


class _PermissiveEnviron(dict[str, str]):
    """For validate: secrets that are not set render as a placeholder instead of failing."""

    placeholder_secrets = True  # inventory secret commands are not run, env sources not required

    def __missing__(self, key: str) -> str:
        return "<unset>"

    def __contains__(self, key: object) -> bool:
        return True


def _validate_inventory(inventory_path: str, problems: list[Any]) -> Any:
    """The inventory (printing ``ok: ...``), or None with its problems added to ``problems``."""
    from maintkit.errors import ConfigError
    from maintkit.inventory import load_inventory as load

    try:
        inventory = load(inventory_path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    n = len(inventory.sites)
    click.echo(f"ok: {inventory_path} ({n} site{'' if n == 1 else 's'})")
    return inventory


@click.command("validate")
@click.argument("playbooks", nargs=-1)
@click.option(
    "-i", "--inventory", "inventory_path", envvar="MAINT_INVENTORY", default=None, help="Also check the inventory."
)
def validate(playbooks: tuple[str, ...], inventory_path: str | None) -> None:
    """Validate playbooks (and the inventory) without contacting any host."""
    from maintkit.errors import ConfigError
    from maintkit.playbook import load_playbook_full
    from maintkit.runner import Runner

    local = Path("playbooks")
    names = list(playbooks) or ([str(p) for p in sorted(local.glob("*.y*ml"))] if local.is_dir() else [])
    problems: list[Any] = []
    redactor: Any = None
    if inventory_path is None and Path("inventory.yml").is_file():
        inventory_path = "inventory.yml"
    inventory = _validate_inventory(inventory_path, problems) if inventory_path else None
    for name in names:
        try:
            loaded = load_playbook_full(name)
            if inventory is not None:
                runner = Runner(loaded, inventory, environ=_PermissiveEnviron(os.environ))
                redactor = runner.redactor  # knows what the templates rendered (as does every redactor)
                runner.plan()
            click.echo(f"ok: {loaded.source.file}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        config_error(ConfigError(problems), redactor)
    if not names and not inventory_path:
        click.echo("nothing to validate: name playbooks or pass -i INVENTORY")


COMMANDS = [run, plan, validate]
