"""The hash chain's primitives: file names, canonical JSON, digests (SHA-256 or HMAC), genesis."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

__all__ = ["EVENTS_FILE", "RESERVED_FIELDS", "SUMMARY_FILE", "canonical", "digest", "genesis", "hash_alg"]

EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
#: Keys every event has; callers of :meth:`AuditLog.event` cannot set them.
RESERVED_FIELDS = frozenset({"ts", "run_id", "seq", "prev", "hash"})


def canonical(obj: Any) -> str:
    """The canonical JSON text that hashes are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(data: str, key: bytes | None) -> str:
    """SHA-256 of ``data`` (UTF-8), or HMAC-SHA256 with ``key``, as hex."""
    raw = data.encode("utf-8")
    if key:
        return hmac.new(key, raw, hashlib.sha256).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def genesis(run_id: str) -> str:
    """``prev`` of the first event: SHA-256 of the run id (so a deleted first line shows)."""
    return hashlib.sha256(run_id.encode("utf-8")).hexdigest()


def hash_alg(key: bytes | None) -> str:
    """The ``hash_alg`` a log with this key records: ``hmac-sha256`` or ``sha256``."""
    return "hmac-sha256" if key else "sha256"
