"""``backup.*``: backups with manifests, real verification, retention, offsite copies and restores.

- ``backup.create``: databases (MariaDB/MySQL, PostgreSQL) and files into ``<backup_dir>/<id>/``
  with a ``manifest.json`` (sizes, sha256, tables and row counts); ``max_age`` makes it idempotent.
- ``backup.verify``: checksums, a restore into a scratch database compared table by table, the
  file archive listed; marks the manifest ``verified_at``.
- ``backup.prune``: retention (last N, daily, weekly, monthly); never the newest verified backup,
  a pinned one (``<path>/.maint/pinned``) or one this run relies on.
- ``backup.copy``: offsite copy over SSH streamed through the controller, checksummed there.
- ``backup.restore``: restore db and/or files after a safety backup; production needs ``--yes``.
"""

from maintkit.actions.backup.common import new_backup_id, parse_duration
from maintkit.actions.backup.copy import BackupCopy, Destination
from maintkit.actions.backup.create import BackupCreate
from maintkit.actions.backup.db import DatabaseSpec
from maintkit.actions.backup.prune import BackupPrune, retention
from maintkit.actions.backup.restore import BackupRestore
from maintkit.actions.backup.verify import BackupVerify
from maintkit.probes.backup import Manifest

__all__ = [
    "BackupCopy",
    "BackupCreate",
    "BackupPrune",
    "BackupRestore",
    "BackupVerify",
    "DatabaseSpec",
    "Destination",
    "Manifest",
    "new_backup_id",
    "parse_duration",
    "retention",
]
