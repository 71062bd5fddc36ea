"""The audit log: run folders, redaction, a hash-chained event log and its verification.

A run writes into ``<state_dir>/runs/<run_id>/``:

- ``events.jsonl``: one JSON object per line, appended, flushed and fsynced per event.
  Every event carries ``seq`` (0-based), ``prev`` (hash of the previous event, or of
  the run id for the first one) and ``hash`` (SHA-256, or HMAC-SHA256 with a key, over
  the canonical JSON of the event without ``hash``). Secrets are redacted *before* an
  event is hashed and written.
- ``summary.json``: the run's result plus ``events`` (count), ``last_hash``,
  ``hash_alg`` and a ``seal`` over the summary, so a cut-off tail is detected.

:func:`verify_run` recomputes everything and names the first bad line.

Heavy libraries (structlog, GitPython) are imported only when they are needed, so that
importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

from maintkit._text import DEFAULT_KEY_PATTERN, MASK, key_is_sensitive, mask_known, redact_text, register_secret
from maintkit._text import registry_generation as _registry_generation
from maintkit.errors import ConfigError, Problem

__all__ = [
    "EVENTS_FILE",
    "MASK",
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

EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
#: Keys every event has; callers of :meth:`AuditLog.event` cannot set them.
RESERVED_FIELDS = frozenset({"ts", "run_id", "seq", "prev", "hash"})

EventDict = MutableMapping[str, Any]

_RUN_ID_TIME = "%Y%m%dT%H%M%SZ"


# --------------------------------------------------------------------------- identity


def new_run_id() -> str:
    """A new run id, sortable by time: ``20261123T011500Z-3fa9c2`` (UTC + 6 random hex)."""
    return f"{datetime.now(UTC).strftime(_RUN_ID_TIME)}-{secrets.token_hex(3)}"


def current_actor(environ: Mapping[str, str] | None = None) -> str:
    """Who is running: ``github:<GITHUB_ACTOR>@host`` in GitHub Actions, else ``<os user>@host``."""
    import socket

    env = os.environ if environ is None else environ
    gh = env.get("GITHUB_ACTOR")
    if gh:
        who = f"github:{gh}"
    else:
        try:
            who = getpass.getuser()
        except (OSError, KeyError):  # no login name and no passwd entry
            who = f"uid:{os.getuid()}"
    return f"{who}@{socket.gethostname()}"


def git_provenance(path: Path) -> dict[str, Any]:
    """Git commit of the repository containing ``path``.

    Returns ``{"commit": sha or None, "dirty": bool, "repo": root or None}``. ``dirty``
    is true when tracked files have uncommitted changes, or when ``path`` itself is a
    file git does not track. Not a repository (or git missing): commit and repo are None.
    """
    none: dict[str, Any] = {"commit": None, "dirty": False, "repo": None}
    path = Path(path)
    start = path.parent if path.is_file() else path
    if not start.is_dir():
        return none
    try:
        import git
    except ImportError:  # GitPython raises ImportError when the git executable is missing
        return none
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError):
        return none
    try:
        root = repo.working_tree_dir
        try:
            commit: str | None = repo.head.commit.hexsha
        except ValueError:  # a repository without commits
            commit = None
        dirty = bool(repo.is_dirty(untracked_files=False))
        if not dirty and path.is_file() and root is not None:
            rel = path.resolve().relative_to(Path(root).resolve()).as_posix()
            dirty = rel in repo.untracked_files
        return {"commit": commit, "dirty": dirty, "repo": str(root) if root is not None else None}
    except (git.exc.GitError, OSError, ValueError):
        return none
    finally:
        repo.close()


# --------------------------------------------------------------------------- redaction

_DEFAULT_KEY_PATTERN = DEFAULT_KEY_PATTERN


_SECRET_TYPES: tuple[type, ...] | None = None


def _is_secret_type(obj: object) -> bool:
    """True for pydantic SecretStr/SecretBytes (without importing pydantic).

    The types are looked up once: ``pydantic.SecretStr`` goes through pydantic's lazy
    module ``__getattr__``, which made this the hottest line of a run.
    """
    global _SECRET_TYPES
    if _SECRET_TYPES is None:
        pyd = sys.modules.get("pydantic")
        if pyd is None:
            return False
        _SECRET_TYPES = (pyd.SecretStr, pyd.SecretBytes)
    return isinstance(obj, _SECRET_TYPES)


class Redactor:
    """Removes secrets from events, summaries, error messages and command lines.

    Three rules, applied before anything is written or shown:

    1. **Known secret values** (``secrets``, :meth:`add_secret`, and the value of every
       pydantic ``SecretStr``/``SecretBytes`` seen) are replaced by ``***`` wherever they
       occur inside any string, longest first. Values shorter than 4 characters are ignored.
       They are registered process-wide (:mod:`maintkit._text`), and a piece of 8 or more
       characters of one at the very start or end of a string is masked too.
    2. **Sensitive key names**: a mapping value whose key *ends* in a sensitive word is
       masked. The key is split into words (``_``, ``-``, ``.``, spaces, camelCase) and
       ``key_pattern`` must match the whole last word or the last two words joined by
       ``_`` (a trailing plural ``s`` is ignored). So ``password``, ``db_password``,
       ``CLOUDFLARE_TOKEN``, ``api_key``, ``apiKey`` and ``secret`` are masked, while
       ``key_file``, ``host_key_policy``, ``password_file`` and ``primary_key_count`` are
       not. ``None`` and booleans are kept (they reveal nothing), containers keep their
       shape with every leaf masked.
    3. **Secrets in text**: ``password=...``, ``token: ...``, ``'db_password' => '...'``,
       ``--password ...``, ``https://user:PASSWORD@host`` and ``Bearer <token>`` have the
       value masked. Template references (``{{ secrets.X }}``, ``$VAR``) are left alone.
    """

    def __init__(self, secrets: Iterable[str] = (), key_pattern: str = _DEFAULT_KEY_PATTERN) -> None:
        self._key_re = re.compile(key_pattern)
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._generation = _registry_generation()
        self._key_cache: dict[str, bool] = {}
        for value in secrets:
            self.add_secret(value)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        """A redactor that knows the values of sensitive environment variables.

        Variables whose *names* are sensitive by rule 2 (``DB_PASSWORD``, ``CF_API_TOKEN``...)
        and ``MAINT_AUDIT_KEY``. Meant for CLI output and error messages.
        """
        env = os.environ if environ is None else environ
        red = cls()
        for name, value in env.items():
            if name == "MAINT_AUDIT_KEY" or red.is_sensitive_key(name):
                red.add_secret(value)
        return red

    # ---- configuration ------------------------------------------------------
    def add_secret(self, value: str) -> None:
        """Remember a secret value; it is masked wherever it appears. Ignores values under 4 characters.

        The value is also registered process-wide (:func:`maintkit._text.register_secret`), so
        error messages, truncated command output and CLI output mask it too.
        """
        if not isinstance(value, str) or len(value) < 4:
            return
        with self._lock:
            self._secrets.add(value)
        register_secret(value)

    def is_sensitive_key(self, key: str) -> bool:
        """Whether a mapping key (or ``key=value`` name) names a secret (see rule 2)."""
        cached = self._key_cache.get(key)
        if cached is None:
            cached = self._key_cache[key] = key_is_sensitive(key, self._key_re)
        return cached

    # ---- redaction ----------------------------------------------------------
    def learn(self, obj: Any) -> None:
        """Remember the values of every SecretStr/SecretBytes inside ``obj`` as known secrets."""
        if _is_secret_type(obj):
            value = obj.get_secret_value()
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    return
            self.add_secret(value)
        elif isinstance(obj, Mapping):
            for v in obj.values():
                self.learn(v)
        elif isinstance(obj, list | tuple | set | frozenset):
            for v in obj:
                self.learn(v)

    def redact(self, obj: Any) -> Any:
        """A copy of ``obj`` with secrets masked (dicts, lists, tuples, strings, SecretStr).

        Other values (numbers, None, arbitrary objects) are returned as they are.
        """
        self.learn(obj)
        return self._redact(obj)

    def redact_text(self, text: str) -> str:
        """Mask known secret values and ``key=value`` style secrets in a piece of text."""
        if not text:
            return text
        if self._generation != _registry_generation():
            self._reregister()
        return redact_text(text, self.is_sensitive_key)

    def processor(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        """structlog processor: returns the event dict with secrets masked."""
        redacted: EventDict = self.redact(event_dict)
        return redacted

    __call__ = processor

    # ---- internals ----------------------------------------------------------
    def _redact(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.redact_text(obj)
        if _is_secret_type(obj):
            return MASK
        if isinstance(obj, Mapping):
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                key = self._mask_known(k) if isinstance(k, str) else k
                out[key] = self._mask_all(v) if isinstance(k, str) and self.is_sensitive_key(k) else self._redact(v)
            return out
        if isinstance(obj, list):
            return [self._redact(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._redact(v) for v in obj)
        return obj

    def _mask_all(self, obj: Any) -> Any:
        """Mask every leaf, keeping the shape; None and booleans stay."""
        if obj is None or isinstance(obj, bool):
            return obj
        if isinstance(obj, str) and obj in ("", MASK):
            return obj
        if isinstance(obj, Mapping):
            return {k: self._mask_all(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._mask_all(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._mask_all(v) for v in obj)
        return MASK

    def _mask_known(self, text: str) -> str:
        if self._generation != _registry_generation():
            self._reregister()
        return mask_known(text)

    def _reregister(self) -> None:
        """Register this redactor's secrets again: the process-wide registry was emptied."""
        with self._lock:
            self._generation = _registry_generation()
            values = list(self._secrets)
        for value in values:
            register_secret(value)


# --------------------------------------------------------------------------- JSON helpers


def _jsonable(obj: Any) -> Any:
    """Plain JSON data: str keys, lists, finite floats; SecretStr -> ``***``; unknown -> str()."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return _clean_str(obj)
    if isinstance(obj, Enum):
        return _jsonable(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else str(obj)
    if _is_secret_type(obj):
        return MASK
    if isinstance(obj, Mapping):
        return {_clean_str(k if isinstance(k, str) else str(_jsonable(k))): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((_jsonable(v) for v in obj), key=repr)
    return _jsonable_other(obj)


def _jsonable_other(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, bytes | bytearray):
        return _clean_str(bytes(obj).decode("utf-8", "backslashreplace"))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return _jsonable(to_dict())
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return _jsonable(dump(mode="json"))
    return _clean_str(str(obj))


def _clean_str(s: str) -> str:
    """A plain ``str`` that encodes as UTF-8 (lone surrogates become U+FFFD)."""
    s = str.__str__(s)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s


def _canonical(obj: Any) -> str:
    """The canonical JSON text that hashes are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(data: str, key: bytes | None) -> str:
    raw = data.encode("utf-8")
    if key:
        return hmac.new(key, raw, hashlib.sha256).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def _genesis(run_id: str) -> str:
    """``prev`` of the first event: SHA-256 of the run id (so a deleted first line shows)."""
    return hashlib.sha256(run_id.encode("utf-8")).hexdigest()


def _hash_alg(key: bytes | None) -> str:
    return "hmac-sha256" if key else "sha256"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- atomic files


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically: temp file in the same folder, fsync, rename, fsync folder."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: Any, mode: int = 0o600) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically (see :func:`write_text_atomic`)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_text_atomic(path, text, mode)


# --------------------------------------------------------------------------- the log

Processor = Callable[[Any, str, EventDict], EventDict]


#: Seconds between grouped fsyncs of events.jsonl while a run writes events.
FSYNC_INTERVAL = 0.05


class AuditLog:
    """The hash-chained, redacted, append-only event log of one run (``events.jsonl``).

    Each :meth:`event` goes through a structlog processor chain: learn secrets, make
    JSON-ready, redact (:meth:`Redactor.processor`), stamp (``ts``, ``run_id``, ``seq``),
    chain (``prev``, ``hash``), then structlog's JSON renderer. The line is appended, flushed and fsynced.
    Thread-safe. If ``events.jsonl`` already holds events, the chain is continued.
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
        from structlog.processors import JSONRenderer

        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.redactor = redactor
        self.hash_alg = _hash_alg(hmac_key)
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
        _fsync_dir(self.run_dir)
        # Redaction sees only what callers supplied; ts/run_id/seq/prev/hash are added after it.
        self._processors: list[Processor] = [
            self._learn,
            _jsonable_processor,
            redactor.processor,
            self._stamp,
            self._chain,
        ]
        self._render = JSONRenderer(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
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
        # learning, JSON-shaping and redaction need no shared state: do them outside the lock
        for proc in self._processors[:3]:
            record = proc(None, "info", record)
        with self._lock:
            if self._fd is None:
                raise ValueError("the audit log is closed")
            for proc in self._processors[3:]:
                record = proc(None, "info", record)
            line = self._render(None, "info", record)
            data = (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n"
            _append(self._fd, data)
            self._seq += 1
            self._prev = record["hash"]
            self._dirty.set()
            return dict(record)

    def _flusher(self) -> None:
        """Group commit: fsync at most every FSYNC_INTERVAL seconds while events arrive.

        Every event is written to the file at once (a killed process loses nothing); only an
        operating-system crash can lose the last few milliseconds. ``close()`` fsyncs.
        """
        while not self._stopping.is_set():
            if self._dirty.wait(timeout=0.5):
                self._stopping.wait(FSYNC_INTERVAL)
                self._dirty.clear()
                with self._lock:
                    if self._fd is not None:
                        with contextlib.suppress(OSError):
                            os.fsync(self._fd)

    def snapshot(self) -> tuple[int, str]:
        """``(count, last_hash)`` read together."""
        with self._lock:
            return self._seq, self._prev

    def digest(self, text: str) -> str:
        """Hash ``text`` the way this log does (plain SHA-256 or HMAC)."""
        return _digest(text, self._key)

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

    # ---- processors -------------------------------------------------------------
    def _stamp(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        return {**event_dict, "ts": _now_iso(), "run_id": self.run_id, "seq": self._seq}

    def _learn(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        self.redactor.learn(event_dict)
        return event_dict

    def _chain(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict["prev"] = self._prev
        event_dict.pop("hash", None)
        event_dict["hash"] = _digest(_canonical(event_dict), self._key)
        return event_dict


def _jsonable_processor(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    out: EventDict = _jsonable(event_dict)
    return out


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
        return 0, _genesis(run_id)
    lines = [ln for ln in raw.split(b"\n") if ln.strip()]
    if not lines:
        return 0, _genesis(run_id)
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
    audit.redactor.learn(summary)
    data: dict[str, Any] = audit.redactor.redact(_jsonable(summary))  # shape first: str() may show a secret
    data.update(run_id=audit.run_id, events=count, last_hash=last, hash_alg=audit.hash_alg)
    data.pop("seal", None)
    data["seal"] = audit.digest(_canonical(data))
    path = Path(run_dir) / SUMMARY_FILE
    write_json_atomic(path, data)
    return path


# --------------------------------------------------------------------------- verification


#: :attr:`VerifyResult.status` values
VERIFY_INTACT, VERIFY_INCOMPLETE, VERIFY_BROKEN = "intact", "incomplete", "broken"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_run`.

    ``ok`` is true when no line was found bad. ``complete`` is true when ``summary.json``
    was present and matched the log: only then is a cut-off tail detectable. ``ok`` without
    ``complete`` therefore means "intact so far" (see :attr:`status`). ``first_bad_line``
    is 1-based; for a cut-off tail it is the first missing line. ``note`` explains an
    incomplete result.
    """

    ok: bool
    events: int
    first_bad_line: int | None
    reason: str
    complete: bool = False
    note: str = ""

    @property
    def status(self) -> str:
        """``intact`` (chain intact and matching ``summary.json``), ``incomplete`` (chain intact
        so far, but without a summary a cut-off tail cannot be verified) or ``broken``."""
        if not self.ok:
            return VERIFY_BROKEN
        return VERIFY_INTACT if self.complete else VERIFY_INCOMPLETE

    def __str__(self) -> str:
        return self.reason


class _Bad(Exception):
    def __init__(self, line: int | None, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(reason)


def verify_run(run_dir: Path, hmac_key: bytes | None = None) -> VerifyResult:
    """Recompute the hash chain of a run folder and compare it with ``summary.json``.

    Detects edited, deleted, inserted and reordered lines, a cut-off tail, invalid JSON
    and a modified summary, and names the first bad line. With ``hmac_key`` the hashes
    must be HMACs with that key (a chain recomputed without the key fails). Without
    ``summary.json`` (a run still running, killed, or whose summary was deleted) the result
    is ``incomplete`` (:attr:`VerifyResult.status`): intact so far, with a ``note`` that a
    cut-off tail cannot be detected.
    """
    run_dir = Path(run_dir)
    key = hmac_key or None
    count = 0
    try:
        summary = _read_summary(run_dir)
        count, last = _verify_lines(run_dir / EVENTS_FILE, key, summary)
        if summary is None:
            reason = (
                f"chain intact so far ({count} events); incomplete: no {SUMMARY_FILE}, "
                "so a cut-off tail cannot be detected"
            )
            return VerifyResult(True, count, None, reason, note=_incomplete_note(run_dir))
        _verify_summary(summary, count, last, key)
    except _Bad as bad:
        return VerifyResult(False, count, bad.line, bad.reason)
    return VerifyResult(True, count, None, f"chain intact ({count} events, matches {SUMMARY_FILE})", complete=True)


def _incomplete_note(run_dir: Path) -> str:
    """Why a run without a summary cannot be fully verified (and what its log ends with)."""
    note = (
        f"without {SUMMARY_FILE}, events cut off the end of the log cannot be detected; the run is "
        "still running, or it stopped before it could write the summary (killed, crashed)"
    )
    last = _last_event_name(run_dir / EVENTS_FILE)
    if last == "run.finished":
        note += f", or {SUMMARY_FILE} was deleted: the log's last event is run.finished"
    return note


def _last_event_name(path: Path) -> str | None:
    """The ``event`` of the log's last line (already verified), if any."""
    with contextlib.suppress(OSError, ValueError, IndexError, AttributeError):
        last = path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        name = json.loads(last).get("event")
        return name if isinstance(name, str) else None
    return None


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / SUMMARY_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise _Bad(None, f"{SUMMARY_FILE} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _Bad(None, f"{SUMMARY_FILE} is not a JSON object")
    return data


def _verify_lines(path: Path, key: bytes | None, summary: dict[str, Any] | None) -> tuple[int, str | None]:
    """Check every line; returns (number of events, hash of the last one)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _Bad(None, f"{EVENTS_FILE} is missing") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    run_id: str | None = summary.get("run_id") if summary else None
    prev: str | None = _genesis(run_id) if run_id else None
    prev_seq: int | None = None
    for n, line in enumerate(lines, start=1):
        record = _parse_line(n, line)
        if run_id is None:
            run_id = str(record.get("run_id"))
            prev = _genesis(run_id)
        _check_hash(n, line, record, key, summary)
        if record.get("run_id") != run_id:
            raise _Bad(n, f"line {n}: event belongs to another run ({record.get('run_id')!r}, expected {run_id!r})")
        expected = 0 if prev_seq is None else prev_seq + 1
        if record["seq"] != expected:
            raise _Bad(n, _sequence_message(n, record["seq"], prev_seq))
        if record["prev"] != prev:
            raise _Bad(n, f"line {n}: chain broken (prev is not the hash of the event before it)")
        prev_seq, prev = record["seq"], record["hash"]
    return len(lines), (prev if lines else None)


def _parse_line(n: int, line: bytes) -> dict[str, Any]:
    if not line.strip():
        raise _Bad(n, f"line {n}: empty line")
    try:
        record = json.loads(line)
    except ValueError:
        raise _Bad(n, f"line {n}: not valid JSON (damaged or cut off)") from None
    if not isinstance(record, dict):
        raise _Bad(n, f"line {n}: not an audit event (not a JSON object)")
    missing = [k for k in ("seq", "prev", "hash") if k not in record]
    if missing or not isinstance(record["seq"], int) or isinstance(record["seq"], bool):
        raise _Bad(n, f"line {n}: not an audit event (missing or invalid {', '.join(missing) or 'seq'})")
    return record


def _check_hash(n: int, line: bytes, record: dict[str, Any], key: bytes | None, summary: dict[str, Any] | None) -> None:
    body = {k: v for k, v in record.items() if k != "hash"}
    text = _canonical(body)
    if not hmac.compare_digest(str(record["hash"]), _digest(text, key)):
        raise _Bad(n, f"line {n}: event was modified (hash mismatch{_hash_hint(text, record, key, summary)})")
    if line != _canonical(record).encode("utf-8"):
        raise _Bad(n, f"line {n}: event text was altered (not in the form it was written in)")


def _hash_hint(text: str, record: dict[str, Any], key: bytes | None, summary: dict[str, Any] | None) -> str:
    if key is not None and hmac.compare_digest(str(record["hash"]), _digest(text, None)):
        return "; it is a plain SHA-256, not an HMAC with this key: written or recomputed without the key"
    if key is None and summary is not None and summary.get("hash_alg") == "hmac-sha256":
        return "; this run is signed with a key: set MAINT_AUDIT_KEY to verify it"
    return ""


def _sequence_message(n: int, seq: Any, prev_seq: int | None) -> str:
    after = "the start of the log" if prev_seq is None else str(prev_seq)
    expected = 0 if prev_seq is None else prev_seq + 1
    if isinstance(seq, int) and seq > expected:
        return f"line {n}: previous event missing or reordered (seq {seq} follows {after})"
    return f"line {n}: event inserted, duplicated or reordered (seq {seq} follows {after})"


def _verify_summary(summary: dict[str, Any], count: int, last: str | None, key: bytes | None) -> None:
    body = {k: v for k, v in summary.items() if k != "seal"}
    seal = summary.get("seal")
    if not isinstance(seal, str) or not hmac.compare_digest(seal, _digest(_canonical(body), key)):
        hint = ""
        if key is None and summary.get("hash_alg") == "hmac-sha256":
            hint = "; this run is signed with a key: set MAINT_AUDIT_KEY to verify it"
        raise _Bad(None, f"{SUMMARY_FILE} was modified (seal mismatch{hint})")
    recorded = summary.get("events")
    if not isinstance(recorded, int):
        raise _Bad(None, f"{SUMMARY_FILE} does not record the number of events")
    if count < recorded:
        raise _Bad(
            count + 1,
            f"line {count + 1}: events missing at the end (the log has {count}, {SUMMARY_FILE} records {recorded})",
        )
    if count > recorded:
        raise _Bad(recorded + 1, f"line {recorded + 1}: events added after the run was summarised ({SUMMARY_FILE})")
    if count and summary.get("last_hash") != last:
        raise _Bad(count, f"line {count}: last event does not match {SUMMARY_FILE} (last_hash differs)")


# --------------------------------------------------------------------------- run folders


def runs_dir(state_dir: Path) -> Path:
    """The folder holding run folders: ``<state_dir>/runs``."""
    return Path(state_dir) / "runs"


def read_events(run_dir: Path) -> Iterator[dict[str, Any]]:
    """The events of a run folder, in file order.

    A line that is not a JSON object is yielded as
    ``{"event": "audit.unreadable_line", "line": n}`` (use :func:`verify_run` to judge the log).
    """
    path = Path(run_dir) / EVENTS_FILE
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return
    with fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            yield record if isinstance(record, dict) else {"event": "audit.unreadable_line", "line": n}


def _first_event(run_dir: Path) -> dict[str, Any] | None:
    return next(read_events(run_dir), None)


def _run_info(run_dir: Path) -> dict[str, Any] | None:
    """One row of :func:`list_runs`, or None when the folder is not a run folder."""
    has_events = (run_dir / EVENTS_FILE).is_file()
    has_summary = (run_dir / SUMMARY_FILE).is_file()
    if not (has_events or has_summary):
        return None
    first = _first_event(run_dir) or {}
    summary: dict[str, Any] | None
    try:
        summary = _read_summary(run_dir)
    except _Bad:
        summary = None
    src = summary or {}
    status = src.get("status") or ("summary unreadable" if has_summary else "incomplete")
    sites = [
        {"site": s.get("site"), "status": s.get("status"), "changed": s.get("changed", 0)}
        for s in src.get("sites", [])
        if isinstance(s, dict)
    ]
    return {
        "run_id": run_dir.name,
        "playbook": src.get("playbook", first.get("playbook")),
        "status": status,
        "check": src.get("check", first.get("check")),
        "started": src.get("started", first.get("ts")),
        "finished": src.get("finished"),
        "changed": src.get("changed", 0),
        "actor": src.get("actor", first.get("actor")),
        "sites": sites,
        "_sort": _sort_key(run_dir.name, first.get("ts")),
    }


def _sort_key(run_id: str, first_ts: Any) -> tuple[str, str, str]:
    """Runs sort by the time in the run id, then by the first event's time (ms)."""
    first = first_ts if isinstance(first_ts, str) else ""
    try:
        started = datetime.strptime(run_id.split("-")[0], _RUN_ID_TIME).replace(tzinfo=UTC)
    except ValueError:  # a renamed folder: only the events can tell
        return first, first, run_id
    when = started.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return when, first, run_id


def list_runs(state_dir: Path) -> list[dict[str, Any]]:
    """Runs in ``state_dir``, newest first: run_id, playbook, status, check, started, finished, changed, sites.

    Runs without ``summary.json`` (still running, or cut short) have status ``incomplete``.
    """
    base = runs_dir(state_dir)
    try:
        entries = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except FileNotFoundError:
        return []
    rows = [row for p in entries if (row := _run_info(p)) is not None]
    rows.sort(key=lambda r: r["_sort"], reverse=True)
    for row in rows:
        del row["_sort"]
    return rows


def _run_folder(state_dir: Path, run_id: str) -> Path:
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise ConfigError(Problem(str(runs_dir(state_dir)), None, "run_id", f"invalid run id {run_id!r}"))
    path = runs_dir(state_dir) / run_id
    if not path.is_dir():
        raise ConfigError(Problem(str(runs_dir(state_dir)), None, "run_id", f"no run {run_id!r}"))
    return path


def load_run(state_dir: Path, run_id: str) -> dict[str, Any]:
    """One run: ``{"run_id", "run_dir", "complete", "summary", "events"}``.

    ``summary`` is ``summary.json``, or (for an incomplete run) what the events tell.
    """
    path = _run_folder(state_dir, run_id)
    events = list(read_events(path))
    try:
        summary = _read_summary(path)
    except _Bad:
        summary = None
    complete = summary is not None
    if summary is None:
        first = events[0] if events else {}
        summary = {
            "run_id": run_id,
            "playbook": first.get("playbook"),
            "status": "incomplete",
            "started": first.get("ts"),
            "finished": None,
            "actor": first.get("actor"),
            "sites": [],
        }
    return {"run_id": run_id, "run_dir": str(path), "complete": complete, "summary": summary, "events": events}


def resolve_run_id(state_dir: Path, prefix: str) -> str:
    """The full run id for ``latest``, an exact id or a unique prefix. Raises ConfigError otherwise."""
    where = str(runs_dir(state_dir))
    if prefix == "latest":
        rows = list_runs(state_dir)
        if not rows:
            raise ConfigError(Problem(where, None, "run_id", "there are no runs yet"))
        return str(rows[0]["run_id"])
    try:
        names = sorted(p.name for p in runs_dir(state_dir).iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        names = []
    if prefix in names:
        return prefix
    matches = [n for n in names if prefix and n.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(Problem(where, None, "run_id", f"no run matches {prefix!r}"))
    shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise ConfigError(Problem(where, None, "run_id", f"{prefix!r} matches {len(matches)} runs: {shown}"))
