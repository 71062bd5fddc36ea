"""The event log of one run (``events.jsonl``) and its sealed ``summary.json``.

Each event is appended to the file and flushed at once, so a killed process loses nothing
it wrote. fsync is grouped: a flusher thread fsyncs the file at most every
:data:`FSYNC_INTERVAL` (50 ms) while events arrive, and :meth:`AuditLog.close` fsyncs it, so
only an operating-system crash can lose the last few milliseconds of events.

The processors follow structlog's processor protocol (``(logger, method_name, event_dict)``),
and the line is rendered exactly as structlog's ``JSONRenderer(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` renders it, by :func:`render_json`: importing
structlog itself would import ``structlog.dev``, rich and pygments (and asyncio) into every run,
terminal or not, for nothing the audit log uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maintkit import _fs
from maintkit.audit.chain import EVENTS_FILE, RESERVED_FIELDS, SUMMARY_FILE, canonical, digest, genesis, hash_alg
from maintkit.audit.jsonable import jsonable
from maintkit.audit.redact import EventDict, Redactor

__all__ = ["FSYNC_INTERVAL", "AuditLog", "Processor", "render_json", "write_summary"]

Processor = Callable[[Any, str, EventDict], EventDict]

#: Seconds between grouped fsyncs of events.jsonl while a run writes events.
FSYNC_INTERVAL = 0.05


class AuditLog:
    """The hash-chained, redacted, append-only event log of one run (``events.jsonl``).

    Each :meth:`event` goes through a structlog processor chain in two named parts.
    :attr:`prepare` runs outside the lock: learn secrets, make JSON-ready, redact
    (:meth:`Redactor.mask`: the secrets were learned in the first step). :attr:`seal` runs
    under the lock: stamp (``ts``, ``run_id``, ``seq``) and chain (``prev``, ``hash``); then
    :func:`render_json`.
    The line is appended and flushed at once; fsync is grouped (every
    :data:`FSYNC_INTERVAL` seconds by a flusher thread while events arrive, and at
    :meth:`close`). Thread-safe. If ``events.jsonl`` already holds events, the chain is
    continued.
    """

    def __init__(
        self,
        run_dir: Path,
        run_id: str,
        *,
        common: dict[str, Any],
        redactor: Redactor,
        hmac_key: bytes | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.redactor = redactor
        self.hash_alg = hash_alg(hmac_key)
        self._common = dict(common)
        self._key = hmac_key or None
        self._lock = threading.Lock()
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.run_dir, 0o700)
        self.path = self.run_dir / EVENTS_FILE
        self._seq, self._prev = _resume_point(self.path, run_id)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd: int | None = os.open(self.path, flags, 0o600)
        os.fchmod(self._fd, 0o600)
        _fs.fsync_dir(self.run_dir)
        # Redaction sees only what callers supplied; ts/run_id/seq/prev/hash are added after it.
        #: processors that need no shared state (run outside the lock)
        self.prepare: tuple[Processor, ...] = (self._learn, _jsonable_processor, self._mask)
        #: processors that number and chain the event (run under the lock, in write order)
        self.seal: tuple[Processor, ...] = (self._stamp, self._chain)
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        threading.Thread(target=self._flusher, name="maint-audit-fsync", daemon=True).start()

    # ---- public ---------------------------------------------------------------
    @property
    def count(self) -> int:
        """Number of events in the log."""
        with self._lock:
            return self._seq

    @property
    def last_hash(self) -> str:
        """Hash of the last event (the genesis value while the log is empty)."""
        with self._lock:
            return self._prev

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._fd is None

    def event(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event and return the record exactly as written (redacted, with ``hash``)."""
        clash = RESERVED_FIELDS.intersection(fields)
        if clash:
            raise ValueError(f"audit event fields may not be named {', '.join(sorted(clash))}")
        record: EventDict = {"event": event, **self._common, **fields}
        record = _apply(self.prepare, record)
        with self._lock:
            if self._fd is None:
                raise ValueError("the audit log is closed")
            record = _apply(self.seal, record)
            data = render_json(None, "info", record).encode("utf-8") + b"\n"
            _append(self._fd, data)
            self._seq += 1
            self._prev = record["hash"]
            self._dirty.set()
            return dict(record)

    def snapshot(self) -> tuple[int, str]:
        """``(count, last_hash)`` read together."""
        with self._lock:
            return self._seq, self._prev

    def digest(self, text: str) -> str:
        """Hash ``text`` the way this log does (plain SHA-256 or HMAC)."""
        return digest(text, self._key)

    def close(self) -> None:
        """fsync and close the file. Further events raise ValueError."""
        self._stopping.set()
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- group commit -----------------------------------------------------------
    def _flusher(self) -> None:
        """Group commit: fsync at most every FSYNC_INTERVAL seconds while events arrive.

        Every event is written to the file at once (a killed process loses nothing); only an
        operating-system crash can lose the last few milliseconds. ``close()`` fsyncs.
        """
        while not self._stopping.is_set():
            if self._dirty.wait(timeout=0.5):
                self._stopping.wait(FSYNC_INTERVAL)
                self._dirty.clear()
                self._sync_unlocked()

    def _sync_unlocked(self) -> None:
        """fsync what was written so far without holding the lock events take while the disk
        works (a copy of the descriptor: close() may close the original meanwhile)."""
        with self._lock:
            if self._fd is None:
                return
            try:
                fd = os.dup(self._fd)
            except OSError:
                return
        _fs.fsync_close(fd)

    # ---- processors -------------------------------------------------------------
    def _stamp(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        return {**event_dict, "ts": _now_iso(), "run_id": self.run_id, "seq": self._seq}

    def _learn(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        self.redactor.learn(event_dict)
        return event_dict

    def _mask(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        """The redactor's processor on an event whose secrets :meth:`_learn` learned already."""
        masked: EventDict = self.redactor.mask(event_dict)
        return masked

    def _chain(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict["prev"] = self._prev
        event_dict.pop("hash", None)
        event_dict["hash"] = digest(canonical(event_dict), self._key)
        return event_dict


def _apply(processors: tuple[Processor, ...], record: EventDict) -> EventDict:
    """Run ``record`` through ``processors`` in order, the way structlog calls them."""
    for proc in processors:
        record = proc(None, "info", record)
    return record


def render_json(logger: Any, method_name: str, event_dict: EventDict) -> str:
    """The event as one line of canonical-looking JSON: what structlog's ``JSONRenderer(sort_keys=True,
    separators=(",", ":"), ensure_ascii=False)`` renders, byte for byte (objects JSON cannot hold
    go through ``__structlog__()`` or ``repr()``, as there)."""
    return json.dumps(event_dict, default=_fallback, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _fallback(obj: Any) -> Any:
    """structlog's fallback for objects JSON cannot hold: ``__structlog__()``, else ``repr()``."""
    method = getattr(obj, "__structlog__", None)
    return method() if callable(method) else repr(obj)


def _jsonable_processor(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    out: EventDict = jsonable(event_dict)
    return out


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _append(fd: int, data: bytes) -> None:
    """Append ``data`` (fsync is grouped, see AuditLog._flusher); on failure cut the file back
    so no partial line remains."""
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


def _resume_point(path: Path, run_id: str) -> tuple[int, str]:
    """``(next seq, prev hash)`` for continuing an existing log (or starting a new one)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0, genesis(run_id)
    lines = [ln for ln in raw.split(b"\n") if ln.strip()]
    if not lines:
        return 0, genesis(run_id)
    try:
        last = json.loads(lines[-1])
        return int(last["seq"]) + 1, str(last["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: cannot continue the audit log, its last line is not an event") from exc


def write_summary(run_dir: Path, summary: dict[str, Any], audit: AuditLog) -> Path:
    """Write ``summary.json`` (atomic, 0600) with the log's ``events`` count, ``last_hash`` and a ``seal``.

    The seal is the log's hash (SHA-256 or HMAC) over the canonical summary without it.
    """
    count, last = audit.snapshot()
    audit.redactor.learn(summary)  # before shaping: jsonable() turns SecretStr into *** unlearned
    data: dict[str, Any] = audit.redactor.mask(jsonable(summary))  # shape first: str() may show a secret
    data.update(run_id=audit.run_id, events=count, last_hash=last, hash_alg=audit.hash_alg)
    data.pop("seal", None)
    data["seal"] = audit.digest(canonical(data))
    path = Path(run_dir) / SUMMARY_FILE
    _fs.write_json_atomic(path, data)  # plain JSON data already: not shaped again
    return path
