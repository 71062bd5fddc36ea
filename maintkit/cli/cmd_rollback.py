"""``maint rollback``: switch a site environment back to its previous good release (one step of deploy.rollback)."""

from __future__ import annotations

import json
from typing import Any

import click

from maintkit.cli.common import (
    die,
    execute,
    inventory_option,
    load_inventory,
    require_site_env,
    state_option,
    store_option,
)
from maintkit.results import ExitCode


def rollback_playbook_text(site: str, env: str, to: str | None = None) -> str:
    """The YAML of the one-step playbook ``maint rollback`` runs (JSON is valid YAML).

    ``after_switch`` comes from the inventory's ``after_switch`` variable, as in the deploy playbook.
    """
    params: dict[str, Any] = {"after_switch": "{{ vars.after_switch | default([]) }}"}
    if to:
        params["to"] = to
    target = f"release {to}" if to else "the previous good release"
    playbook = {
        "name": "rollback",
        "description": f"Switch {site}/{env} back to {target} and mark the current release bad.",
        "targets": [site],
        "concurrency": 1,
        "on_failure": "stop",
        "stages": [{"env": env, "steps": [{"id": "rollback", "action": "deploy.rollback", "with": params}]}],
    }
    return json.dumps(playbook, indent=2) + "\n"


def _list_releases(inventory: Any, site: str, env: str, as_json: bool) -> None:
    from maintkit.errors import MaintkitError
    from maintkit.probes import RawOutput, run_batch
    from maintkit.probes.deploy import ReleaseLayout
    from maintkit.transport.factory import default_transport_factory

    e = inventory.sites[site].environments[env]
    probe = ReleaseLayout(e.path)
    transport = default_transport_factory(e)
    try:
        raw, _ = run_batch(transport, [probe], timeout=e.command_timeout or 600)
        state = probe.parse(raw.get(probe.key, RawOutput("", 1)))
    except MaintkitError as exc:
        die(f"error: {exc}", ExitCode.FAILED)
    finally:
        transport.close()
    target = state.previous_good()
    rows: list[dict[str, Any]] = [
        {
            "release": name,
            "commit": rel.commit,
            "status": state.status_of(name) or ("half-built" if not rel.complete else "unknown"),
            "current": name == state.current_release,
            "rollback_target": name == target,
        }
        for name, rel in sorted(state.releases.items(), key=lambda kv: kv[1].sort_key)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"{site}/{env}: no releases under {e.path}/releases")
    for r in rows:
        mark = "current" if r["current"] else ("<- rollback" if r["rollback_target"] else "")
        click.echo(f"{r['release']:<30} {(r['commit'] or '?')[:12]:<13} {r['status']:<12} {mark}".rstrip())


@click.command("rollback")
@click.argument("site")
@click.option("--env", "env", required=True, help="Environment to roll back (e.g. production).")
@click.option("--to", "to", default=None, metavar="RELEASE", help="Release name (or unique prefix, or commit prefix).")
@click.option("--list", "list_only", is_flag=True, help="Only list the releases and which one a rollback would pick.")
@click.option("--check", is_flag=True, help="Plan only: say what would be switched, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Stream events as JSON lines; the last line is the result.")
@inventory_option
@state_option
@store_option
def command(
    site: str,
    env: str,
    to: str | None,
    list_only: bool,
    check: bool,
    as_json: bool,
    inventory_path: str,
    state_dir: str,
    state_spec: str | None,
) -> None:
    """Switch SITE's current release back to the previous good one and mark the current one bad.

    It only touches files over SSH (the current symlink and the releases log), so it works
    when the application is fatally broken. The inventory's after_switch commands run
    afterwards (for example a php-fpm reload). The run is locked and audited like any other.

    \b
    Examples:
      maint rollback shop-a --env production
      maint rollback shop-a --env production --list
      maint rollback shop-a --env production --to 20260101T120000Z-1a2b3c4
    """
    from maintkit.playbook import playbook_from_text

    inventory = load_inventory(inventory_path)
    require_site_env(inventory, inventory_path, site, env)
    if to is not None and (not to.strip() or "/" in to or to.startswith("-")):
        die(
            f"error: --to takes a release name from `maint rollback {site} --env {env} --list`, not {to!r}",
            ExitCode.INPUT,
        )
    if list_only:
        _list_releases(inventory, site, env, as_json)
        return
    execute(
        lambda: playbook_from_text(rollback_playbook_text(site, env, to), file="<maint rollback>"),
        inventory,
        as_json=as_json,
        check=check,
        state_dir=state_dir,
        state_spec=state_spec,
    )
