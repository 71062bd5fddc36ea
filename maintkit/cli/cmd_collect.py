"""``maint collect``: the whole fleet of a run group (the shards of one matrix), in one view.

The final job of a sharded workflow runs ``maint collect`` after the ``maint run --shard K/N``
jobs: it pulls the store, finds every run of the group (``--group``, default ``GITHUB_RUN_ID``),
prints one line per shard and one per site, and in GitHub Actions writes the job summary of the
whole fleet and the outputs ``group``, ``status``, ``runs``, ``sites``, ``failed``. It exits like
a run of the whole fleet: 0 ok, 1 a site failed (or a shard is missing or did not finish),
2 no run of the group, 3 locked or interrupted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from maintkit.cli.common import die, history_for, optional_inventory_option, state_option, store_option
from maintkit.results import ExitCode

_FAILED = ("failed", "rolled-back")


@dataclass
class FleetView:
    """The runs of one group and the last status of every site they ran."""

    group: str
    #: ``list_runs`` rows of the group, oldest first
    runs: list[dict[str, Any]]
    #: site -> {"status", "changed", "shard", "run_id"}
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: shards (``K/N``) that no run of the group recorded
    missing: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Sites whose last status counts as failed."""
        return sum(1 for s in self.sites.values() if s["status"] in _FAILED)

    @property
    def status(self) -> str:
        """``failed`` (a failed site or run, a missing or unfinished shard), ``interrupted``, ``locked`` or ``ok``."""
        statuses = {str(r.get("status")) for r in self.runs}
        if self.failed or self.missing or "failed" in statuses or statuses - {"ok", "locked", "interrupted"}:
            return "failed"
        for status in ("interrupted", "locked"):
            if status in statuses:
                return status
        return "ok"

    def counts(self) -> dict[str, int]:
        """How many sites ended with each status."""
        out: dict[str, int] = {}
        for s in self.sites.values():
            out[s["status"]] = out.get(s["status"], 0) + 1
        return dict(sorted(out.items()))


def fleet_view(rows: list[dict[str, Any]], group: str) -> FleetView:
    """The fleet of ``group`` from ``list_runs`` rows (newest first): later runs win per site."""
    runs = [r for r in reversed(rows) if r.get("group") == group]
    view = FleetView(group, runs)
    counts: set[int] = set()
    seen: set[str] = set()
    for r in runs:
        shard = r.get("shard")
        if isinstance(shard, str) and "/" in shard:
            seen.add(shard)
            counts.add(int(shard.split("/")[1]))
        for s in r.get("sites") or []:
            view.sites[str(s["site"])] = {
                "status": s.get("status"),
                "changed": s.get("changed", 0),
                "shard": shard,
                "run_id": r["run_id"],
            }
    view.missing = [f"{k}/{n}" for n in sorted(counts) for k in range(1, n + 1) if f"{k}/{n}" not in seen]
    view.sites = dict(sorted(view.sites.items()))
    return view


def _exit_code(status: str) -> int:
    return {"ok": ExitCode.OK, "locked": ExitCode.LOCKED, "interrupted": ExitCode.INTERRUPTED}.get(
        status, ExitCode.FAILED
    )


def print_fleet(view: FleetView) -> None:
    """One line per run (shard), one per site, then the totals."""
    for r in view.runs:
        ran = r.get("sites") or []
        failed = sum(1 for s in ran if s.get("status") in _FAILED)
        click.echo(
            f"shard {r.get('shard') or '-':<7} {r['run_id']}  {r.get('playbook', '?'):<16} "
            f"{r.get('status', '?'):<12} sites={len(ran)} failed={failed} changed={r.get('changed', 0)}"
        )
    for shard in view.missing:
        click.echo(f"shard {shard:<7} missing: no run of group {view.group} recorded it")
    if view.sites:
        click.echo("")
    for name, s in view.sites.items():
        click.echo(f"{name:<24} {s['status']:<12} changed={s['changed']}  shard {s['shard'] or '-'}  {s['run_id']}")
    counts = ", ".join(f"{n} {status}" for status, n in view.counts().items()) or "no sites"
    click.echo(f"\ngroup {view.group}: {view.status}: {len(view.sites)} site(s): {counts}; {len(view.runs)} run(s)")


@click.command("collect")
@click.option(
    "--group", "run_group", envvar="GITHUB_RUN_ID", default=None, metavar="NAME",
    help="The run group (default: GITHUB_RUN_ID, the workflow run of the shards).",
)  # fmt: skip
@state_option
@store_option
@optional_inventory_option
@click.option("--json", "as_json", is_flag=True, help="The fleet as one JSON object.")
def command(
    run_group: str | None, state_dir: str, state_spec: str | None, inventory_path: str | None, as_json: bool
) -> None:
    """Show the whole fleet of a run group: every shard's run and every site's status.

    In GitHub Actions it also writes the job summary of the fleet and the outputs group, status,
    runs, sites and failed. Exit status: that of a run of the whole fleet (a missing shard is a failure).
    """
    from maintkit.audit import list_runs
    from maintkit.cli.reporters.github import group_outputs, group_summary, write_github_files

    if not run_group:
        die("error: no run group: pass --group NAME (in GitHub Actions: GITHUB_RUN_ID)", ExitCode.INPUT)
    store = history_for(state_spec, state_dir, inventory_path)
    try:
        view = fleet_view(list_runs(Path(store.root)), run_group)
    finally:
        store.close()
    if not view.runs:
        die(f"error: no runs of group {run_group!r} in {store.describe()}", ExitCode.INPUT)
    if as_json:
        data = {**asdict(view), "status": view.status, "failed": view.failed, "counts": view.counts()}
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        print_fleet(view)
    write_github_files(os.environ, group_summary(view), group_outputs(view))
    raise SystemExit(_exit_code(view.status))


__all__ = ["FleetView", "command", "fleet_view", "print_fleet"]
