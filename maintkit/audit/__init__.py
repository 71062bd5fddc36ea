"""The audit log: run folders, redaction, a hash-chained event log and its verification.

A run writes into ``<state_dir>/runs/<run_id>/``:

- ``events.jsonl``: one JSON object per line. Each event is appended and flushed at once;
  fsync is grouped: a flusher thread fsyncs the file at most every ``FSYNC_INTERVAL``
  (50 ms) while events arrive, and closing the log fsyncs it (only an operating-system
  crash can lose the last few milliseconds). Every event carries ``seq`` (0-based),
  ``prev`` (hash of the previous event, or of the run id for the first one) and ``hash``
  (SHA-256, or HMAC-SHA256 with a key, over the canonical JSON of the event without
  ``hash``). Secrets are redacted *before* an event is hashed and written.
- ``summary.json``: the run's result plus ``events`` (count), ``last_hash``,
  ``hash_alg`` and a ``seal`` over the summary, so a cut-off tail is detected.

:func:`verify_run` recomputes everything and names the first bad line.

The parts: :mod:`~maintkit.audit.redact` (the Redactor), :mod:`~maintkit.audit.jsonable`
(JSON shaping), :mod:`~maintkit.audit.chain` (canonical JSON and digests),
:mod:`~maintkit.audit.log` (AuditLog, write_summary), :mod:`~maintkit.audit.verify`,
:mod:`~maintkit.audit.runs` (listing and loading run folders) and
:mod:`~maintkit.audit.provenance` (git_provenance, which asks the git command itself). Heavy
libraries (structlog) are imported only when they are needed, so that importing this package
stays cheap.
"""

from __future__ import annotations

from maintkit._fs import write_text_atomic
from maintkit.audit.chain import EVENTS_FILE, RESERVED_FIELDS, SUMMARY_FILE
from maintkit.audit.jsonable import write_json_atomic
from maintkit.audit.log import FSYNC_INTERVAL, AuditLog, write_summary
from maintkit.audit.provenance import git_provenance
from maintkit.audit.redact import MASK, Redactor
from maintkit.audit.runs import list_runs, load_run, read_events, resolve_run_id, runs_dir
from maintkit.audit.verify import VERIFY_BROKEN, VERIFY_INCOMPLETE, VERIFY_INTACT, VerifyResult, verify_run
from maintkit.identity import current_actor
from maintkit.ids import new_run_id

__all__ = [
    "EVENTS_FILE",
    "FSYNC_INTERVAL",
    "MASK",
    "RESERVED_FIELDS",
    "SUMMARY_FILE",
    "VERIFY_BROKEN",
    "VERIFY_INCOMPLETE",
    "VERIFY_INTACT",
    "AuditLog",
    "Redactor",
    "VerifyResult",
    "current_actor",
    "git_provenance",
    "list_runs",
    "load_run",
    "new_run_id",
    "read_events",
    "resolve_run_id",
    "runs_dir",
    "verify_run",
    "write_json_atomic",
    "write_summary",
    "write_text_atomic",
]
