"""``maint unlock``: clear a site environment's lock left by a run that died (never a live holder's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from maintkit.cli.common import (
    die,
    inventory_option,
    load_inventory,
    open_history,
    require_site_env,
    state_option,
    store_option,
)
from maintkit.results import ExitCode


@click.command("unlock")
@click.argument("site")
@click.option("--env", "env", required=True, help="Environment whose lock to clear.")
@click.option("--force", is_flag=True, help="Clear the lock even when its run may still be alive.")
@click.option(
    "--older-than",
    default="6h",
    show_default=True,
    metavar="AGE",
    help="A holder without a lease, on another controller, counts as gone once its lock is older than AGE "
    "(90m, 6h, 2d).",
)
@click.option("--maintenance-off", is_flag=True, help="Also switch off maintenance mode left on by a run that is gone.")
@inventory_option
@state_option
@store_option
def command(
    site: str,
    env: str,
    force: bool,
    older_than: str,
    maintenance_off: bool,
    inventory_path: str,
    state_dir: str,
    state_spec: str | None,
) -> None:
    """Clear a site environment's lock left by a run that died.

    \b
    The lock is cleared only when its run is gone: its summary.json exists (in the state
    store), or it ran on this machine and its process is gone, or its lease has expired (by
    the host's clock), or (a lock without a lease, taken by an older maintkit on another
    controller) it is older than --older-than. Otherwise, while its lease runs, exit 3 and
    nothing changes (--force clears it anyway). Maintenance mode left on by a gone run is reported; --maintenance-off
    switches it off (the next run's maintenance.enable/disable step also does).
    Exit status: 0 cleared or not locked, 1 could not talk to the host or remove the lock,
    2 bad input, 3 the holder may still be running (or the lock changed meanwhile).
    """
    from maintkit.errors import MaintkitError
    from maintkit.locks import parse_age
    from maintkit.transport.factory import default_transport_factory

    inv = load_inventory(inventory_path)
    e = require_site_env(inv, inventory_path, site, env)
    try:
        stale_after = parse_age(older_than)
    except ValueError as exc:
        die(f"error: --older-than: {exc}", ExitCode.INPUT)
    store = open_history(state_spec, state_dir, inv)
    history = Path(store.root)
    t = default_transport_factory(e)
    try:
        _clear_lock(site, env, e, t, history, force=force, stale_after=stale_after)
        _report_leftover_maintenance(inv.sites[site], e, t, history, switch_off=maintenance_off)
    except MaintkitError as exc:
        die(f"error: {exc}", ExitCode.FAILED)
    finally:
        t.close()
        store.close()


def _clear_lock(site: str, env: str, e: Any, t: Any, state_dir: Path, *, force: bool, stale_after: Any) -> None:
    """Clear the lock of ``site``/``env`` when its holder is gone (or ``force``); exit 3 otherwise."""
    from maintkit import locks

    hint = f"maint unlock {site} --env {env}"
    res = t.run_shell(locks.read_script(e.path), check=False, timeout=30)
    if res.exit_code == 4:
        click.echo(f"{site}/{env} was not locked")
        return
    if res.exit_code != 0:
        die(f"error: cannot read the lock of {site}/{env}: {(res.stderr or res.stdout).strip()}", ExitCode.FAILED)
    holder = locks.parse_holder(res.stdout)
    state = locks.liveness(holder, state_dir, stale_after=stale_after, host_clock=locks.host_now(res.stdout))
    who = locks.describe(holder)
    if not state.dead and not force:
        die(
            f"error: {site}/{env} is locked by {who}, which may still be running ({state.why}); "
            f"the lock was not cleared. If you are sure that run is gone: {hint} --force",
            ExitCode.LOCKED,
        )
    gen = holder.get("gen") if isinstance(holder.get("gen"), str) else None
    res = t.run_shell(locks.clear_script(e.path, holder.get("run_id"), gen), check=False, timeout=30)
    if res.exit_code == 4:
        click.echo(f"{site}/{env} was not locked")
    elif res.exit_code == 6:
        die(
            f"error: the lock of {site}/{env} changed meanwhile (another run took it); nothing cleared", ExitCode.LOCKED
        )
    elif res.exit_code != 0:
        die(f"error: cannot remove the lock of {site}/{env}: {(res.stderr or res.stdout).strip()}", ExitCode.FAILED)
    else:
        why = state.why if state.dead else f"forced; {state.why}"
        click.echo(f"cleared the lock of {site}/{env}; it was held by {who} ({why})")


def _report_leftover_maintenance(site: Any, e: Any, t: Any, state_dir: Path, *, switch_off: bool) -> None:
    """Report (or switch off) maintenance mode that a gone run left on."""
    from maintkit.action import Context, RunOptions
    from maintkit.actions.maintenance import find_leftover, recorded_markers, switch_off_leftover
    from maintkit.probes.maintenance import ExistingPaths

    ctx = Context(site=site, env=e, transport=t, options=RunOptions(state_dir=state_dir, history_dir=state_dir))
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
