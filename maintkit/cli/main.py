"""Command definitions of ``maint``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_LOCKED = 0, 1, 2, 3
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


def _die(message: str, code: int, redactor: Any = None) -> NoReturn:
    """Print ``message`` to stderr, redacted (every secret known to this process), and exit."""
    from maintkit.cli.output import redact_for_output

    click.echo(redact_for_output(message, redactor), err=True)
    sys.exit(code)


def _config_error(exc: Exception, redactor: Any = None) -> NoReturn:
    from maintkit.errors import ConfigError

    if isinstance(exc, ConfigError):
        from maintkit._yaml import MAX_PROBLEMS

        lines = [f"error: {p}" for p in exc.problems[:SHOWN_PROBLEMS]]
        n = len(exc.problems)
        if n > SHOWN_PROBLEMS:
            more = n - SHOWN_PROBLEMS
            lines.append(f"... and {more} more problem{'s' if more != 1 else ''}")
        if n >= MAX_PROBLEMS:  # the loaders stop collecting there
            lines.append(f"{n} or more problems found (checking stops after {MAX_PROBLEMS}); nothing was run.")
        else:
            lines.append(f"{n} problem{'s' if n != 1 else ''} found; nothing was run.")
        _die("\n".join(lines), EXIT_INPUT, redactor)
    _die(f"error: {exc}", EXIT_INPUT, redactor)


def _load_inventory(path: str) -> Any:
    from maintkit.errors import ConfigError
    from maintkit.inventory import load_inventory

    try:
        return load_inventory(path)
    except ConfigError as exc:
        _config_error(exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="maintkit", prog_name="maint")
def cli() -> None:
    """maintkit: keep online shops healthy with idempotent, audited playbooks over SSH.

    \b
    Exit status: 0 success (changed or not), 1 a site failed (after rollback),
                 2 invalid input (nothing ran), 3 lock held or run interrupted.
    """


def require_site_env(inventory: Any, inventory_path: str, site: str, env: str) -> Any:
    """The Environment ``env`` of ``site``, or exit 2 naming the inventory."""
    if site not in inventory.sites or env not in inventory.sites[site].environments:
        _die(f"error: {inventory_path}: no site {site!r} with environment {env!r}", EXIT_INPUT)
    return inventory.sites[site].environments[env]


def execute(
    make_playbook: Any, inventory: Any, *, as_json: bool, check: bool, diff: bool = False, **runner_kwargs: Any
) -> NoReturn:
    """Plan (bad input: exit 2, nothing runs), run with live output, exit with the run's status.

    ``make_playbook`` returns the (loaded) playbook; it is called inside the error handling.
    Used by ``run``/``plan`` and by the commands that run a generated playbook (rollback, restore).
    """
    from maintkit.cli.output import Reporter
    from maintkit.errors import ConfigError, MaintkitError
    from maintkit.runner import Runner

    runner: Runner | None = None
    try:
        loaded = make_playbook()
        reporter = Reporter.for_terminal(as_json=as_json, check=check, diff=diff)
        runner = Runner(loaded, inventory, check=check, diff=diff, on_event=reporter.on_event, **runner_kwargs)
        runner.plan()
    except ConfigError as exc:
        # the runner's redactor knows the secrets rendered before the problem was found
        _config_error(exc, runner.redactor if runner is not None else None)
    except MaintkitError as exc:
        _die(f"error: {exc}", EXIT_INPUT, runner.redactor if runner is not None else None)
    reporter.redactor = runner.redactor
    reporter.start(runner)
    try:
        result = runner.run()
    finally:
        reporter.stop()
    reporter.finish(result)
    sys.exit(result.exit_code)


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
) -> NoReturn:
    from maintkit.errors import ConfigError
    from maintkit.playbook import load_playbook_full

    limits = [x for item in limit for x in item.split(",") if x]
    try:
        loaded = load_playbook_full(playbook)
    except ConfigError as exc:
        _config_error(exc)
    execute(
        lambda: loaded,
        _load_inventory(inventory_path),
        as_json=as_json,
        check=check,
        diff=diff,
        limit=limits or None,
        env=env,
        concurrency=concurrency,
        state_dir=state_dir,
        promote_from=promote_from,
        extra=extra,
    )


def run_options(f: Any) -> Any:
    """Options shared by run and plan."""
    for opt in reversed(
        [
            inventory_option,
            click.option(
                "--limit", "-l", multiple=True, help="Only these sites or groups (comma-separated or repeated)."
            ),
            click.option("--env", "env", default=None, help="Only the stage of this environment."),
            click.option("--diff", is_flag=True, help="Show what would change / changed, before and after."),
            click.option(
                "--json", "as_json", is_flag=True, help="Stream events as JSON lines; the last line is the result."
            ),
            click.option("--concurrency", "-c", type=click.IntRange(1, 1000), default=None, help="Sites at once."),
            state_option,
        ]
    ):
        f = opt(f)
    return f


@cli.command()
@click.argument("playbook")
@run_options
@click.option("--check", is_flag=True, help="Plan only: check every step, change nothing anywhere.")
@click.option("--promote-from", default=None, metavar="RUN_ID", help="Promote the version locks of an earlier run.")
@click.option("--yes", is_flag=True, help="Confirm destructive steps on production (e.g. restores).")
def run(
    playbook: str,
    inventory_path: str,
    limit: tuple[str, ...],
    env: str | None,
    diff: bool,
    as_json: bool,
    concurrency: int | None,
    state_dir: str,
    check: bool,
    promote_from: str | None,
    yes: bool,
) -> None:
    """Run PLAYBOOK (a name from ./playbooks or the built-ins, or a path)."""
    _run(playbook, inventory_path, limit, env, check, diff, as_json, concurrency, state_dir, promote_from, {"yes": yes})


@cli.command()
@click.argument("playbook")
@run_options
@click.option("--promote-from", default=None, metavar="RUN_ID", help="Plan the promotion of an earlier run's locks.")
def plan(
    playbook: str,
    inventory_path: str,
    limit: tuple[str, ...],
    env: str | None,
    diff: bool,
    as_json: bool,
    concurrency: int | None,
    state_dir: str,
    promote_from: str | None,
) -> None:
    """Show what PLAYBOOK would change (same as run --check). Changes nothing anywhere."""
    _run(playbook, inventory_path, limit, env, True, diff, as_json, concurrency, state_dir, promote_from)


@cli.command()
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
    inventory = None
    if inventory_path is None and Path("inventory.yml").is_file():
        inventory_path = "inventory.yml"
    if inventory_path:
        try:
            from maintkit.inventory import load_inventory

            inventory = load_inventory(inventory_path)
            click.echo(f"ok: {inventory_path} ({len(inventory.sites)} sites)")
        except ConfigError as exc:
            problems.extend(exc.problems)
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
        _config_error(ConfigError(problems), redactor)
    if not names and not inventory_path:
        click.echo("nothing to validate: name playbooks or pass -i INVENTORY")


class _PermissiveEnviron(dict[str, str]):
    """For validate: secrets that are not set render as a placeholder instead of failing."""

    def __missing__(self, key: str) -> str:
        return "<unset>"

    def __contains__(self, key: object) -> bool:
        return True


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def actions(name: str | None, as_json: bool) -> None:
    """List actions, or show one action with its parameter schema."""
    from maintkit.errors import MaintkitError
    from maintkit.registry import default_registry

    reg = default_registry()
    try:
        if name is None:
            rows = []
            for n in reg.names():
                try:
                    cls = reg.get(n)
                except MaintkitError as exc:
                    rows.append({"name": n, "summary": f"(cannot load: {exc})", "reversible": False})
                    continue
                rows.append({"name": n, "summary": cls.summary, "reversible": cls.reversible})
            if as_json:
                click.echo(json.dumps(rows, indent=2))
            else:
                width = max(len(str(r["name"])) for r in rows)
                for r in rows:
                    click.echo(f"{r['name']:<{width}}  {r['summary']}")
            return
        cls = reg.get(name)
    except MaintkitError as exc:
        hint = reg.suggest(name) if name else None
        _die(f"error: {exc}" + (f" (did you mean {hint!r}?)" if hint else ""), EXIT_INPUT)
    schema = cls.Params.model_json_schema()
    if as_json:
        click.echo(
            json.dumps({"name": name, "summary": cls.summary, "reversible": cls.reversible, "params": schema}, indent=2)
        )
        return
    click.echo(f"{name}: {cls.summary}")
    click.echo(f"reversible: {'yes' if cls.reversible else 'no'}")
    doc = (cls.__doc__ or "").strip()
    if doc:
        click.echo(f"\n{doc}")
    click.echo("\nparameters:")
    required = set(schema.get("required", []))
    for pname, spec in schema.get("properties", {}).items():
        typ = spec.get("type") or " | ".join(
            str(a.get("type", a.get("$ref", "?")).split("/")[-1]) for a in spec.get("anyOf", [])
        )
        default = f" (default {json.dumps(spec['default'])})" if "default" in spec else ""
        req = " (required)" if pname in required else ""
        desc = spec.get("description", "")
        click.echo(f"  {pname}: {typ}{req}{default}" + (f"\n      {desc}" if desc else ""))


@cli.command()
def playbooks() -> None:
    """List playbooks: ./playbooks first, then the built-ins."""
    import yaml

    from maintkit.playbook import BUILTIN_DIR, list_playbooks

    for name, path in list_playbooks():
        origin = "built-in" if path.parent == BUILTIN_DIR else str(path)
        try:
            desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            desc = "(invalid YAML)"
        click.echo(f"{name:<18} {origin:<24} {str(desc).strip()[:70]}")


@cli.command()
@inventory_option
@click.option("--json", "as_json", is_flag=True)
def inventory(inventory_path: str, as_json: bool) -> None:
    """Show the inventory's sites, environments and groups."""
    inv = _load_inventory(inventory_path)
    if as_json:
        click.echo(inv.model_dump_json(indent=2))
        return
    for site in inv.sites.values():
        click.echo(f"{site.name} ({site.platform})")
        for env in site.environments.values():
            where = (
                "local" if env.connection == "local" else f"{env.user or ''}{'@' if env.user else ''}{env.display_host}"
            )
            click.echo(f"  {env.name:<11} {where:<32} {env.path}  {env.url or ''}")
    for group, members in inv.groups.items():
        click.echo(f"group {group}: {', '.join(members)}")


@cli.command()
@click.argument("run_id", required=False)
@state_option
@click.option("--json", "as_json", is_flag=True)
def runs(run_id: str | None, state_dir: str, as_json: bool) -> None:
    """List runs, or show one run (RUN_ID, a unique prefix, or 'latest')."""
    from maintkit.audit import list_runs, load_run, resolve_run_id
    from maintkit.errors import ConfigError

    if run_id is None:
        rows = list_runs(Path(state_dir))
        if as_json:
            click.echo(json.dumps(rows, indent=2, default=str))
            return
        if not rows:
            click.echo(f"no runs in {state_dir}")
        for r in rows:
            mode = " (plan)" if r.get("check") else ""
            click.echo(
                f"{r['run_id']}  {r.get('playbook', '?'):<16} {r.get('status', '?'):<12} "
                f"changed={r.get('changed', 0)}{mode}"
            )
        return
    try:
        rid = resolve_run_id(Path(state_dir), run_id)
    except ConfigError as exc:
        _config_error(exc)
    data = load_run(Path(state_dir), rid)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    from maintkit.cli.output import print_run_detail

    print_run_detail(data)


@cli.group()
def audit() -> None:
    """Audit log tools."""


#: ``maint audit verify``: the chain is intact so far, but the run has no summary.json, so a
#: cut-off tail cannot be verified (still running, killed, or the summary was deleted)
EXIT_AUDIT_INCOMPLETE = 4


@audit.command("verify")
@click.argument("run_id")
@state_option
def audit_verify(run_id: str, state_dir: str) -> None:
    """Recompute the hash chain of a run's audit log.

    Exit 0: intact and complete. 1: tampered with (the first bad line is named). 2: unknown
    run id. 4: intact so far but incomplete (no summary.json: a cut-off tail cannot be verified).
    """
    from maintkit.audit import VERIFY_INCOMPLETE, VERIFY_INTACT, resolve_run_id, verify_run
    from maintkit.errors import ConfigError

    try:
        rid = resolve_run_id(Path(state_dir), run_id)
    except ConfigError as exc:
        _config_error(exc)
    key = os.environ.get("MAINT_AUDIT_KEY")
    res = verify_run(Path(state_dir) / "runs" / rid, key.encode() if key else None)
    if res.status == VERIFY_INTACT:
        click.echo(f"ok: {rid}: {res.events} events, chain intact")
        sys.exit(EXIT_OK)
    if res.status == VERIFY_INCOMPLETE:
        click.echo(f"incomplete: {rid}: {res.events} events, chain intact so far; no summary.json")
        click.echo(f"note: {res.note}")
        sys.exit(EXIT_AUDIT_INCOMPLETE)
    click.echo(f"BROKEN: {rid}: {res.reason}", err=True)
    sys.exit(EXIT_FAILED)


@cli.command()
@click.argument("kind", type=click.Choice(["playbook", "inventory"]), required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to a file.")
def schema(kind: str | None, output: str | None) -> None:
    """Print JSON Schema for playbooks and inventories (for editors)."""
    from maintkit.schema import inventory_schema, playbook_schema

    if kind is None:
        data: Any = {"playbook": playbook_schema(), "inventory": inventory_schema()}
    else:
        data = playbook_schema() if kind == "playbook" else inventory_schema()
    text = json.dumps(data, indent=2)
    if output:
        Path(output).write_text(text + "\n")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


@cli.command()
@click.argument("site")
@click.option("--env", "env", required=True, help="Environment whose lock to clear.")
@click.option("--force", is_flag=True, help="Clear the lock even when its run may still be alive.")
@click.option(
    "--older-than",
    default="6h",
    show_default=True,
    metavar="AGE",
    help="A holder on another controller counts as gone once its lock is older than AGE (90m, 6h, 2d).",
)
@click.option("--maintenance-off", is_flag=True, help="Also switch off maintenance mode left on by a run that is gone.")
@inventory_option
@state_option
def unlock(
    site: str, env: str, force: bool, older_than: str, maintenance_off: bool, inventory_path: str, state_dir: str
) -> None:
    """Clear a site environment's lock left by a run that died.

    \b
    The lock is cleared only when its run is gone: its summary.json exists (in --state-dir),
    or it ran on this machine and its process is gone, or it ran on another controller and
    its lock is older than --older-than. Otherwise exit 3 and nothing changes (--force clears
    it anyway). Maintenance mode left on by a gone run is reported; --maintenance-off
    switches it off (the next run's maintenance.enable/disable step also does).
    Exit status: 0 cleared or not locked, 1 could not talk to the host or remove the lock,
    2 bad input, 3 the holder may still be running (or the lock changed meanwhile).
    """
    from maintkit.errors import MaintkitError
    from maintkit.locks import parse_age
    from maintkit.runner import default_transport_factory

    inv = _load_inventory(inventory_path)
    e = require_site_env(inv, inventory_path, site, env)
    try:
        stale_after = parse_age(older_than)
    except ValueError as exc:
        _die(f"error: --older-than: {exc}", EXIT_INPUT)
    t = default_transport_factory(e)
    try:
        _clear_lock(site, env, e, t, Path(state_dir), force=force, stale_after=stale_after)
        _report_leftover_maintenance(inv.sites[site], e, t, Path(state_dir), switch_off=maintenance_off)
    except MaintkitError as exc:
        _die(f"error: {exc}", EXIT_FAILED)
    finally:
        t.close()


def _clear_lock(site: str, env: str, e: Any, t: Any, state_dir: Path, *, force: bool, stale_after: Any) -> None:
    """Clear the lock of ``site``/``env`` when its holder is gone (or ``force``); exit 3 otherwise."""
    from maintkit import locks

    hint = f"maint unlock {site} --env {env}"
    res = t.run_shell(locks.read_script(e.path), check=False, timeout=30)
    if res.exit_code == 4:
        click.echo(f"{site}/{env} was not locked")
        return
    if res.exit_code != 0:
        _die(f"error: cannot read the lock of {site}/{env}: {(res.stderr or res.stdout).strip()}", EXIT_FAILED)
    holder = locks.parse_holder(res.stdout)
    state = locks.liveness(holder, state_dir, stale_after=stale_after)
    who = locks.describe(holder)
    if not state.dead and not force:
        _die(
            f"error: {site}/{env} is locked by {who}, which may still be running ({state.why}); "
            f"the lock was not cleared. If you are sure that run is gone: {hint} --force",
            EXIT_LOCKED,
        )
    res = t.run_shell(locks.clear_script(e.path, holder.get("run_id")), check=False, timeout=30)
    if res.exit_code == 4:
        click.echo(f"{site}/{env} was not locked")
    elif res.exit_code == 6:
        _die(f"error: the lock of {site}/{env} changed meanwhile (another run took it); nothing cleared", EXIT_LOCKED)
    elif res.exit_code != 0:
        _die(f"error: cannot remove the lock of {site}/{env}: {(res.stderr or res.stdout).strip()}", EXIT_FAILED)
    else:
        why = state.why if state.dead else f"forced; {state.why}"
        click.echo(f"cleared the lock of {site}/{env}; it was held by {who} ({why})")


def _report_leftover_maintenance(site: Any, e: Any, t: Any, state_dir: Path, *, switch_off: bool) -> None:
    """Report (or switch off) maintenance mode that a gone run left on."""
    from maintkit.action import Context, RunOptions
    from maintkit.actions.maintenance import ExistingPaths, find_leftover, recorded_markers, switch_off_leftover

    ctx = Context(site=site, env=e, transport=t, options=RunOptions(state_dir=state_dir))
    left = find_leftover(ctx)
    if left is None:
        return
    markers = recorded_markers(left.record)
    on = ctx.probe(ExistingPaths(tuple(m.path for m in markers)))
    paths = [m.path for m in markers if m.path in on]
    if not paths:
        return
    where = f"{site.name}/{e.name}"
    if switch_off:
        done = switch_off_leftover(ctx, left)
        click.echo(f"switched off the maintenance mode of {where} left on by run {left.run_id}: {', '.join(done)}")
        return
    click.echo(
        f"warning: maintenance mode of {where} is still on, left by run {left.run_id} ({left.why}): "
        f"{', '.join(paths)}\n"
        f"  the next run's maintenance.enable or maintenance.disable step switches it off; to do it now: "
        f"maint unlock {site.name} --env {e.name} --maintenance-off"
    )


# Commands contributed by other modules (each module defines ``command``; imported cheaply).
for _name in ("rollback", "restore", "report", "demo", "init"):
    try:
        cli.add_command(__import__(f"maintkit.cli.cmd_{_name}", fromlist=["command"]).command)
    except ModuleNotFoundError as _exc:
        if _exc.name != f"maintkit.cli.cmd_{_name}":
            raise


def main() -> None:
    """Entry point of the ``maint`` console script."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_LOCKED)


if __name__ == "__main__":
    main()
