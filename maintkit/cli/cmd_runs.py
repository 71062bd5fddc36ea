"""``maint runs``: the run history, or one run's steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from maintkit.cli.common import config_error, history_for, optional_inventory_option, state_option, store_option


def print_run_list(rows: list[dict[str, Any]], state_dir: str) -> None:
    """One line per run: id, playbook, status, changed steps (``(plan)`` for plans)."""
    if not rows:
        click.echo(f"no runs in {state_dir}")
    for r in rows:
        mode = " (plan)" if r.get("check") else ""
        shard = f"  group={r['group']}" + (f" shard={r['shard']}" if r.get("shard") else "") if r.get("group") else ""
        click.echo(
            f"{r['run_id']}  {r.get('playbook', '?'):<16} {r.get('status', '?'):<12} "
            f"changed={r.get('changed', 0)}{mode}{shard}"
        )


def print_run_detail(data: dict[str, Any]) -> None:
    """Show one run folder: summary and steps."""
    summary = data.get("summary", {})
    click.echo(f"run {summary.get('run_id')}  playbook {summary.get('playbook')}  status {summary.get('status')}")
    click.echo(f"started {summary.get('started')}  finished {summary.get('finished')}  actor {summary.get('actor')}")
    for site in summary.get("sites", []):
        click.echo(f"\n{site['site']}: {site['status']}" + (f" ({site['error']})" if site.get("error") else ""))
        for s in site.get("steps", []):
            click.echo(f"  {s['env']:<11} {s['step']:<24} {s['status']:<13} {s.get('error') or s.get('reason') or ''}")


@click.command("runs")
@click.argument("run_id", required=False)
@state_option
@store_option
@optional_inventory_option
@click.option("--json", "as_json", is_flag=True, help="The runs (or the run's steps) as JSON.")
@click.option("--group", "run_group", default=None, metavar="NAME", help="Only the runs of this run group (shards).")
def command(
    run_id: str | None,
    state_dir: str,
    state_spec: str | None,
    inventory_path: str | None,
    as_json: bool,
    run_group: str | None = None,
) -> None:
    """List runs, or show one run (RUN_ID, a unique prefix, or 'latest'), from the state store."""
    from maintkit.audit import list_runs, load_run, resolve_run_id
    from maintkit.errors import ConfigError

    store = history_for(state_spec, state_dir, inventory_path)
    root = Path(store.root)
    if run_id is None:
        rows = [r for r in list_runs(root) if run_group is None or r.get("group") == run_group]
        if as_json:
            click.echo(json.dumps(rows, indent=2, default=str))
        else:
            print_run_list(rows, state_dir if store.name == "local" else store.describe())
        return
    try:
        rid = resolve_run_id(root, run_id)
    except ConfigError as exc:
        config_error(exc)
    data = load_run(root, rid)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    print_run_detail(data)
