"""``maint report``: a client report (markdown or HTML) from the run folders of a period."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click

from maintkit.cli.common import die, load_inventory, open_history, state_option, store_option
from maintkit.results import ExitCode


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-11-01") from None


@click.command("report")
@click.option(
    "--since", callback=_date, metavar="DATE", help="First day (YYYY-MM-DD, UTC). Default: 30 days before --until."
)
@click.option("--until", callback=_date, metavar="DATE", help="Last day, inclusive (YYYY-MM-DD, UTC). Default: today.")
@click.option("--site", "sites", multiple=True, help="Only these sites (repeat or comma-separate).")
@click.option("--group", "groups", multiple=True, help="Only the sites of these inventory groups (needs -i).")
@click.option(
    "-i", "--inventory", "inventory_path", envvar="MAINT_INVENTORY", default=None, type=click.Path(dir_okay=False),
    help="Inventory (to resolve --group).",
)  # fmt: skip
@state_option
@store_option
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html"]), default=None, help="Default: from -o's suffix, else md."
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to this file instead of stdout."
)
@click.option(
    "--run-group", default=None, metavar="NAME", help="Only the runs of this run group (the shards of one run)."
)
def command(
    since: date | None,
    until: date | None,
    sites: tuple[str, ...],
    groups: tuple[str, ...],
    inventory_path: str | None,
    state_dir: str,
    state_spec: str | None,
    fmt: str | None,
    output: str | None,
    run_group: str | None = None,
) -> None:
    """Report what maintenance did: updates, rollbacks, backups, certificates, response times, incidents.

    Reads the audit logs of the runs in the state store (--state, MAINT_STATE, -i's state:, else
    --state-dir) and its index (certificate history); secrets never appear (they are redacted).
    """
    from maintkit._fs import write_text_atomic
    from maintkit.errors import ConfigError
    from maintkit.report import build_report, render

    if since and until and since > until:
        die(f"error: --since {since} is after --until {until}", ExitCode.INPUT)
    wanted = {x for item in sites for x in item.split(",") if x}
    inv = load_inventory(inventory_path) if inventory_path else None
    if groups:
        if inv is None:
            die("error: --group needs the inventory: pass -i inventory.yml", ExitCode.INPUT)
        try:
            wanted |= {s.name for s in inv.resolve_targets([g for item in groups for g in item.split(",") if g])}
        except ConfigError as exc:
            die(f"error: {exc}", ExitCode.INPUT)
    store = open_history(state_spec, state_dir, inv)
    if not Path(store.root, "runs").is_dir():
        where = state_dir if store.name == "local" else store.describe()
        die(f"error: no run folders in {where} (use --state-dir or --state)", ExitCode.INPUT)
    fmt = fmt or ("html" if output and output.endswith((".html", ".htm")) else "md")
    report = build_report(store.root, since=since, until=until, sites=wanted or None, group=run_group)
    text = render(report, fmt)
    if output:
        write_text_atomic(Path(output), text, mode=0o644)
        click.echo(
            f"wrote {output}: {len(report.sites)} site(s), {report.runs} run(s), "
            f"{report.attention_count} item(s) needing attention ({report.since} to {report.until})"
        )
    else:
        click.echo(text, nl=False)
