"""``maint restore``: restore a site environment from one of its backups (a one-step run of backup.restore)."""

from __future__ import annotations

import re
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

_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID_RE = re.compile(r"^(latest|\d{8}T\d{6}Z-[0-9a-f]{6})$")


def restore_playbook_text(
    site: str,
    env: str,
    backup: str,
    what: str,
    *,
    backup_dir: str | None = None,
    password_env: str | None = None,
    safety_backup: bool = True,
) -> str:
    """The YAML of the one-step playbook ``maint restore`` runs (JSON is valid YAML)."""
    import json

    params: dict[str, Any] = {"backup": backup, "what": what, "safety_backup": safety_backup}
    if backup_dir:
        params["backup_dir"] = backup_dir
    if password_env:
        params["password"] = "{{ secrets." + password_env + " }}"
    playbook = {
        "name": "restore",
        "description": f"Restore {site}/{env} from backup {backup} ({what}).",
        "targets": [site],
        "concurrency": 1,
        "on_failure": "rollback",
        "stages": [{"env": env, "steps": [{"id": "restore", "action": "backup.restore", "with": params}]}],
    }
    return json.dumps(playbook, indent=2) + "\n"


@click.command("restore")
@click.argument("site")
@click.option("--env", "env", required=True, help="Environment to restore (e.g. staging, production).")
@click.option("--backup", "backup", default="latest", show_default=True, help="Backup id, or latest.")
@click.option(
    "--what", type=click.Choice(["db", "files", "both"]), default="both", show_default=True, help="What to restore."
)
@click.option("--yes", is_flag=True, help="Confirm: required on production (or vars.protected: true).")
@click.option(
    "--backup-dir",
    default=None,
    help="Backup directory on the host (default: vars.backup_dir or <path>/.maint/backups).",
)
@click.option(
    "--password-env",
    default=None,
    metavar="VAR",
    help="Environment variable holding the database password (default: the login user's ~/.my.cnf).",
)
@click.option("--no-safety-backup", is_flag=True, help="Do not back up the current state first (not reversible then).")
@click.option("--check", is_flag=True, help="Plan only: say what would be restored, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Stream events as JSON lines; the last line is the result.")
@inventory_option
@state_option
@store_option
def command(
    site: str,
    env: str,
    backup: str,
    what: str,
    yes: bool,
    backup_dir: str | None,
    password_env: str | None,
    no_safety_backup: bool,
    check: bool,
    as_json: bool,
    inventory_path: str,
    state_dir: str,
    state_spec: str | None,
) -> None:
    """Restore SITE's environment from a backup (database, files or both).

    A safety backup of the current state is taken first, so a failed restore is put back
    and the restore itself can be rolled back. Production needs --yes.

    \b
    Examples:
      maint restore shop-a --env staging --backup latest --what db
      maint restore shop-a --env production --backup 20260101T030000Z-1a2b3c --yes
    """
    from maintkit.playbook import playbook_from_text

    if not _ID_RE.match(backup):
        die(f"error: --backup must be 'latest' or an id like 20260101T030000Z-1a2b3c, not {backup!r}", ExitCode.INPUT)
    if password_env and not _VAR_RE.match(password_env):
        die(f"error: --password-env takes a variable name, not {password_env!r}", ExitCode.INPUT)
    inventory = load_inventory(inventory_path)
    require_site_env(inventory, inventory_path, site, env)
    text = restore_playbook_text(
        site, env, backup, what, backup_dir=backup_dir, password_env=password_env, safety_backup=not no_safety_backup
    )
    execute(
        lambda: playbook_from_text(text, file="<maint restore>"),
        inventory,
        as_json=as_json,
        check=check,
        state_dir=state_dir,
        state_spec=state_spec,
        extra={"yes": yes},
    )
