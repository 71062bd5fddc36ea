"""``maint report``: a client report (markdown or HTML) from the run folders of a period."""

from __future__ import annotations

from datetime import date, datetime, timedelta
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
@click.option(
    "--template", "template_dir", type=click.Path(file_okay=False, exists=True), default=None, metavar="DIR",
    help="Templates that override the built-in ones (report.html.j2, report.md.j2), rendered sandboxed.",
)  # fmt: skip
@click.option("--agency", default=None, metavar="NAME", help="Your agency's name on the report (white-label).")
@click.option(
    "--logo", type=click.Path(dir_okay=False, exists=True), default=None, metavar="FILE",
    help="Your logo (PNG, JPEG or a plain SVG, at most 512 KiB), embedded in the HTML and PDF.",
)  # fmt: skip
@click.option(
    "--pdf", "pdf_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
    help="Also print the HTML report to this PDF with headless Chromium (the browser extra).",
)  # fmt: skip
@click.option(
    "--health-interval", type=click.IntRange(1, 1440), default=15, show_default=True, metavar="MINUTES",
    help="The health runs' schedule: the most one health run counts for in the uptime.",
)  # fmt: skip
@click.option(
    "--uptime-check", "uptime_checks", multiple=True, metavar="CHECK",
    help="Health checks whose failure counts as down (default http; 'all': any failed check).",
)  # fmt: skip
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
    template_dir: str | None = None,
    agency: str | None = None,
    logo: str | None = None,
    pdf_path: str | None = None,
    health_interval: int = 15,
    uptime_checks: tuple[str, ...] = (),
) -> None:
    """Report what maintenance did and how the shops were: a verdict, updates, rollbacks, backups,
    certificates, response times, uptime, security findings, incidents.

    Reads the audit logs of the runs in the state store (--state, MAINT_STATE, -i's state:, else
    --state-dir) and its index (certificate history, health series); secrets never appear (they
    are redacted).
    """
    from maintkit._fs import write_text_atomic
    from maintkit.errors import ConfigError
    from maintkit.report import build_report, render
    from maintkit.report.branding import branding
    from maintkit.report.model import ReportError

    if since and until and since > until:
        die(f"error: --since {since} is after --until {until}", ExitCode.INPUT)
    wanted = _wanted_sites(sites, groups, inventory_path)
    store = open_history(state_spec, state_dir, load_inventory(inventory_path) if inventory_path else None)
    if not Path(store.root, "runs").is_dir() and not Path(store.root, "index").is_dir():
        where = state_dir if store.name == "local" else store.describe()
        die(f"error: no run folders in {where} (use --state-dir or --state)", ExitCode.INPUT)
    fmt = fmt or ("html" if output and output.endswith((".html", ".htm")) else "md")
    try:
        brand = branding(agency, logo)
        report = build_report(
            store.root, since=since, until=until, sites=wanted or None, group=run_group,
            health_interval=timedelta(minutes=health_interval), uptime_checks=_uptime_checks(uptime_checks),
        )  # fmt: skip
        text = render(report, fmt, branding=brand, template_dir=template_dir)
        html = render(report, "html", branding=brand, template_dir=template_dir) if pdf_path else ""
    except (ConfigError, ReportError) as exc:
        die(f"error: {exc}", ExitCode.INPUT)
    if output:
        write_text_atomic(Path(output), text, mode=0o644)
        click.echo(
            f"wrote {output}: {len(report.sites)} site(s), {report.runs} run(s), "
            f"{report.attention_count} item(s) needing attention ({report.since} to {report.until})"
        )
    elif not pdf_path:
        click.echo(text, nl=False)
    if pdf_path:
        _write_pdf(html, pdf_path)


def _wanted_sites(sites: tuple[str, ...], groups: tuple[str, ...], inventory_path: str | None) -> set[str]:
    """The sites named by --site and --group (empty: every site)."""
    from maintkit.errors import ConfigError

    wanted = {x for item in sites for x in item.split(",") if x}
    if not groups:
        return wanted
    if not inventory_path:
        die("error: --group needs the inventory: pass -i inventory.yml", ExitCode.INPUT)
    inv = load_inventory(inventory_path)
    try:
        wanted |= {s.name for s in inv.resolve_targets([g for item in groups for g in item.split(",") if g])}
    except ConfigError as exc:
        die(f"error: {exc}", ExitCode.INPUT)
    return wanted


def _uptime_checks(values: tuple[str, ...]) -> tuple[str, ...] | None:
    """--uptime-check values: None for 'all', the default (http) when none is given."""
    from maintkit.report.watch import DEFAULT_UPTIME_CHECKS

    names = [x for item in values for x in item.split(",") if x]
    if "all" in names:
        return None
    return tuple(names) or DEFAULT_UPTIME_CHECKS


def _write_pdf(html: str, path: str) -> None:
    """Print the HTML report to ``path``; a missing extra or Chromium exits 2 naming what to install."""
    from maintkit.report.pdf import PdfError, html_to_pdf

    try:
        size = html_to_pdf(html, path)
    except PdfError as exc:
        die(f"error: {exc}", ExitCode.INPUT)
    click.echo(f"wrote {path}: PDF, {size} bytes")
