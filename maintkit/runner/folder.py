"""The run folder: its audit log, the playbook as run, ``summary.json``, and redacted results.

``.maint/runs/<run_id>/`` holds ``events.jsonl``, ``playbook.yml`` (redacted), ``inventory.path``
and, at the end, ``summary.json``.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maintkit._fs import write_text_atomic
from maintkit.audit import AuditLog, Redactor, write_summary
from maintkit.audit.provenance import PendingProvenance
from maintkit.ids import id_time
from maintkit.inventory import Inventory
from maintkit.playbook import LoadedPlaybook, Playbook
from maintkit.results import RunResult, SiteResult


def open_run_folder(
    run_dir: Path,
    run_id: str,
    playbook: Playbook,
    loaded: LoadedPlaybook | None,
    inventory: Inventory,
    *,
    redactor: Redactor,
    actor: str,
    hmac_key: bytes | None,
    provenance: PendingProvenance | None = None,
) -> AuditLog:
    """Create the run folder (0700) with the playbook as run; the run's audit log.

    ``provenance`` (the playbook's git commit, computed in the background: see
    :func:`playbook_provenance`) is joined after the files are written, before the log opens.
    """
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(run_dir, 0o700)
    text = loaded.text if loaded is not None else json.dumps(playbook.model_dump(by_alias=True), indent=2)
    write_text_atomic(run_dir / "playbook.yml", redactor.redact_text(text))
    if inventory.path:
        write_text_atomic(run_dir / "inventory.path", str(Path(inventory.path).resolve()) + "\n")
    prov = (provenance or playbook_provenance(playbook)).result()
    common = {
        "actor": actor,
        "playbook": playbook.name,
        "playbook_commit": prov.get("commit"),
        "playbook_dirty": prov.get("dirty"),
    }
    return AuditLog(run_dir, run_id, common=common, redactor=redactor, hmac_key=hmac_key)


def playbook_provenance(playbook: Playbook, after: threading.Event | None = None) -> PendingProvenance:
    """The git commit of the playbook's file, computed in the background once ``after`` is set."""
    return PendingProvenance(Path(playbook.path).resolve() if playbook.path else None, after)


def started_iso(run_id: str) -> str:
    """When the run started, read from its id (ISO 8601, UTC)."""
    started = id_time(run_id) or datetime.now(UTC).replace(microsecond=0)
    return started.isoformat()


def write_run_summary(
    result: RunResult,
    audit: AuditLog,
    *,
    actor: str,
    promote_from: Path | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the sealed ``summary.json`` (plus ``extra``: a shard's group) and close the audit log.

    :func:`~maintkit.audit.log.write_summary` redacts it with the log's redactor (the run's).
    """
    summary: dict[str, Any] = {
        **result.to_dict(),
        "started": started_iso(result.run_id),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "actor": actor,
        "promote_from": str(promote_from.name) if promote_from else None,
        **(extra or {}),
    }
    write_summary(audit.run_dir, summary, audit)
    audit.close()


def scrub(site: SiteResult, redactor: Redactor) -> SiteResult:
    """Redact secrets from everything a caller may print (errors carry command output)."""
    r = redactor
    site.error = r.redact_text(site.error) if site.error else site.error
    for step in site.steps:
        step.error = r.redact_text(step.error) if step.error else step.error
        step.reason = r.redact_text(step.reason)
        step.diff = r.redact_text(step.diff) if step.diff else step.diff
        step.depends_on = r.redact_text(step.depends_on) if step.depends_on else step.depends_on
        step.data = r.redact(step.data)
        for change in step.changes:
            change.target = r.redact_text(change.target)
            change.summary = r.redact_text(change.summary)
            change.before, change.after = r.redact(change.before), r.redact(change.after)
    return site


__all__ = ["open_run_folder", "playbook_provenance", "scrub", "started_iso", "write_run_summary"]
