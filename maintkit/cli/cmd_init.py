"""``maint init``: scaffold an inventory, playbooks, a GitHub Actions workflow and JSON schemas."""

from __future__ import annotations

from pathlib import Path

import click

INVENTORY = """\
# yaml-language-server: $schema=.maint/schema/inventory.json
#
# Your shops. Each site has environments (staging, production...), each on a host
# reached over SSH. Host keys are verified: record them once with
#   ssh-keyscan HOST >> ~/.ssh/known_hosts   (or a file named in known_hosts: below)
# Reference: docs/inventory.md in maintkit's documentation; `maint schema inventory`.
defaults:
  user: deploy                 # SSH login user on every host
  port: 22
  host_key_policy: strict      # strict: refuse unknown keys; accept-new: trust on first use
  # key_file: ~/.ssh/id_ed25519
  # known_hosts: ~/.ssh/known_hosts

sites:
  shop-a:
    platform: wordpress        # wordpress | composer (Magento 2, Shopware, Laravel, Drupal) | generic
    vars:
      php_fpm_service: php8.2-fpm
      repo: git@git.example.net:agency/shop-a.git   # used by the deploy playbook
      smoke_paths: [/, /cart/, /checkout/]          # pages the smoke checks request
    environments:
      staging:
        host: staging.example.net
        path: /var/www/shop-a-staging
        url: https://staging.shop-a.example
      production:
        host: web1.example.net
        path: /var/www/shop-a
        url: https://shop-a.example

groups:
  eu-clients: [shop-a]
"""

WORKFLOW = """\
# Scheduled maintenance with maintkit. Secrets: MAINT_SSH_KEY (private key of the deploy
# user), MAINT_KNOWN_HOSTS (output of ssh-keyscan for your hosts).
name: maint

on:
  schedule:
    - cron: "0 5 1 * *"        # monthly update, 05:00 UTC on the 1st
    - cron: "30 2 * * *"       # daily backup
  workflow_dispatch:
    inputs:
      playbook:
        description: Playbook to run
        default: monthly-update
      limit:
        description: Only these sites or groups (comma-separated)
        default: ""
      check:
        description: Plan only (change nothing)
        type: boolean
        default: false

permissions:
  contents: read

concurrency:
  group: maint-${{ github.repository }}   # one run per inventory at a time; sites are also locked
  cancel-in-progress: false

jobs:
  maint:
    runs-on: ubuntu-latest
    timeout-minutes: 120
    steps:
      - uses: actions/checkout@v4
      - id: maint
        uses: maintkit/maintkit@v1
        with:
          playbook: ${{ inputs.playbook || (github.event.schedule == '30 2 * * *' && 'backup') || 'monthly-update' }}
          inventory: inventory.yml
          limit: ${{ inputs.limit }}
          check: ${{ inputs.check || false }}
          ssh-private-key: ${{ secrets.MAINT_SSH_KEY }}
          known-hosts: ${{ secrets.MAINT_KNOWN_HOSTS }}
      - if: always()
        uses: actions/upload-artifact@v4
        with:
          name: maint-run-${{ steps.maint.outputs.run-id || github.run_id }}
          path: .maint/runs/
          retention-days: 90
"""


def _schema_files() -> dict[str, str]:
    import json

    from maintkit.schema import inventory_schema, playbook_schema

    return {
        ".maint/schema/inventory.json": json.dumps(inventory_schema(), indent=2) + "\n",
        ".maint/schema/playbook.json": json.dumps(playbook_schema(), indent=2) + "\n",
    }


def _playbook_files() -> dict[str, str]:
    from maintkit.playbook import BUILTIN_DIR

    header = "# yaml-language-server: $schema=../.maint/schema/playbook.json\n"
    files = {}
    for path in sorted(BUILTIN_DIR.glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        if not text.startswith("# yaml-language-server"):
            text = header + text
        files[f"playbooks/{path.name}"] = text
    return files


def scaffold_files() -> dict[str, str]:
    """Relative path -> content of everything ``maint init`` writes."""
    return {
        "inventory.yml": INVENTORY,
        **_playbook_files(),
        ".github/workflows/maint.yml": WORKFLOW,
        **_schema_files(),
        ".maint/.gitignore": "runs/\n",
    }


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def command(directory: str, force: bool) -> None:
    """Scaffold inventory.yml, playbooks/, a GitHub Actions workflow and editor schemas in DIRECTORY.

    Existing files are left alone (and named) unless --force.
    """
    from maintkit._fs import write_text_atomic

    root = Path(directory)
    written, kept = [], []
    for rel, content in scaffold_files().items():
        target = root / rel
        if target.exists() and not force:
            kept.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, content, mode=0o644)
        written.append(rel)
    for rel in written:
        click.echo(f"wrote   {root / rel}")
    for rel in kept:
        click.echo(f"kept    {root / rel} (exists; --force overwrites)")
    inv = root / "inventory.yml"
    click.echo(
        "\nNext steps:\n"
        f"  1. Describe your shops in {inv} (editors validate it through the schema comment on its first line).\n"
        "  2. Record host keys:   ssh-keyscan HOST >> ~/.ssh/known_hosts\n"
        f"  3. Check everything:   maint validate -i {inv}\n"
        f"  4. See what would change (changes nothing):   maint plan monthly-update -i {inv}\n"
        f"  5. Run it:             maint run monthly-update -i {inv}\n"
        "  6. In GitHub Actions:  add the secrets MAINT_SSH_KEY and MAINT_KNOWN_HOSTS;"
        " .github/workflows/maint.yml runs monthly and daily.\n"
        "Try it all first on a local demo shop: maint demo"
    )
