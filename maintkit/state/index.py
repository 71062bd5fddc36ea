"""The per-site index under ``<root>/index/``: what earlier runs left for later ones to read.

Small files, one folder per site and environment::

    index/.gitattributes                        *.jsonl merge=union (see below)
    index/<site>/runs.jsonl                     one line per finished stage: env, playbook, run_id, status
    index/<site>/<env>/backups.jsonl            backups taken (id, dir, created, items...)
    index/<site>/<env>/certs.jsonl              certificate checks and renewals
    index/<site>/<env>/locks.jsonl              version locks written (run_id, status, packages)
    index/<site>/<env>/series/<name>/<YYYY-MM>.jsonl   a time series (health checks), one file per month

Every file is append-only JSON Lines: a record is one line, appended with ``O_APPEND`` and
fsynced, so a reader never sees half a record, and two controllers that append to the same
file merge without conflict (``merge=union`` in ``index/.gitattributes``, written once,
atomically). Readers fold the lines (the last run per playbook and environment is the latest
line). Site, environment and series names are checked path components: a name with a
slash, a leading dot, a NUL or anything outside ``[A-Za-z0-9._@+-]`` is refused with
:class:`BadName`, so no name can reach outside ``root/index``.

Every writer returns the paths it wrote, for :meth:`~maintkit.state.base.StateStore.publish`.
Nothing is redacted here: callers pass redacted records.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maintkit._fs import write_text_atomic

#: the index folder under a store's root
INDEX = "index"
#: how git merges two controllers' appends to the same file
GITATTRIBUTES = "*.jsonl merge=union\n"

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+-]{0,127}")
_append_lock = threading.Lock()


class BadName(ValueError):
    """A site, environment or series name that cannot be a folder of the index."""


def check_name(name: str, what: str = "name") -> str:
    """``name`` when it is a safe path component; BadName otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise BadName(f"{what} {name!r} cannot be stored in the index (letters, digits and ._@+- only)")
    return name


def index_dir(root: Path) -> Path:
    """``<root>/index``."""
    return Path(root) / INDEX


def site_dir(root: Path, site: str) -> Path:
    """``<root>/index/<site>`` (the name checked)."""
    return index_dir(root) / check_name(site, "site")


def env_dir(root: Path, site: str, env: str) -> Path:
    """``<root>/index/<site>/<env>`` (both names checked)."""
    return site_dir(root, site) / check_name(env, "environment")


def now_iso() -> str:
    """The current time, ISO 8601 UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- files
def _attributes(root: Path) -> list[Path]:
    """Write ``index/.gitattributes`` once; the paths written (none when it is there)."""
    path = index_dir(root) / ".gitattributes"
    if path.is_file():
        return []
    write_text_atomic(path, GITATTRIBUTES, make_parents=True)
    return [path]


def _line(record: Mapping[str, Any]) -> str:
    """``record`` as one JSON line (ValueError when it would not fit on one)."""
    line = json.dumps(dict(record), sort_keys=True, ensure_ascii=False, default=str) + "\n"
    if "\n" in line[:-1]:  # json.dumps escapes newlines; a line is one record
        raise ValueError("an index record must fit on one line")
    return line


def _write(path: Path, line: str) -> int:
    """Append ``line`` to ``path`` (created 0600, its folder 0700) after any torn last line; the open
    descriptor, not yet fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _append_lock:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a writer died mid-line
            os.write(fd, (("\n" if torn else "") + line).encode("utf-8"))
        except BaseException:
            os.close(fd)
            raise
    return fd


def _sync_close(fd: int) -> OSError | None:
    """fsync and close ``fd``; the error of either (the descriptor is closed whatever happens)."""
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
    return None


def append_line(root: Path, path: Path, record: Mapping[str, Any]) -> list[Path]:
    """Append ``record`` as one JSON line to ``path`` (under ``root/index``), fsynced; the paths written."""
    line = _line(record)
    written = _attributes(root)
    error = _sync_close(_write(path, line))
    if error is not None:
        raise error
    return [*written, path]


#: at most this many fsyncs of :func:`append_lines` at once
_SYNC_THREADS = 8
#: at most this many index files of :func:`append_lines` open at a time
_OPEN_AT_ONCE = 64


def append_lines(root: Path, items: Sequence[tuple[Path, Mapping[str, Any]]]) -> list[list[Path] | Exception]:
    """Append each ``(path, record)`` as :func:`append_line` does; the files are fsynced together.

    One result per item, in order: the paths written (``index/.gitattributes`` with the first,
    when it was written now), or the ValueError/OSError that item met; the other items are
    written all the same. Every line is on disk when this returns: the files are fsynced
    concurrently (one journal commit serves several), :data:`_OPEN_AT_ONCE` at a time, so a
    run ending on 500 sites neither waits for 500 fsyncs one after another nor holds 500
    files open.
    """
    try:
        attributes = _attributes(root)
    except OSError as exc:
        return [exc for _ in items]
    results: list[list[Path] | Exception] = []
    if len(items) == 1:
        _append_some(items, attributes, results, map)
        return results
    with ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="maint-index-fsync") as pool:
        for first in range(0, len(items), _OPEN_AT_ONCE):
            attributes = _append_some(items[first : first + _OPEN_AT_ONCE], attributes, results, pool.map)
    return results


def _append_some(
    items: Sequence[tuple[Path, Mapping[str, Any]]],
    attributes: list[Path],
    results: list[list[Path] | Exception],
    each: Callable[[Callable[[int], OSError | None], Iterable[int]], Iterable[OSError | None]],
) -> list[Path]:
    """Write ``items`` (their results appended to ``results``), then fsync and close their files
    through ``each`` (``map``, or a thread pool's); ``attributes`` while no item took them."""
    fds: dict[int, int] = {}  # result index -> descriptor to fsync
    try:
        for path, record in items:
            try:
                fds[len(results)] = _write(path, _line(record))
            except (ValueError, OSError) as exc:
                results.append(exc)
                continue
            results.append([*attributes, path])
            attributes = []
    except BaseException:  # an interrupt: no descriptor is left open
        for fd in fds.values():
            os.close(fd)
        raise
    for i, error in zip(fds, each(_sync_close, fds.values()), strict=True):
        if error is not None:
            results[i] = error
    return attributes


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines file, in order; unreadable lines and a missing file give nothing."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    out: list[dict[str, Any]] = []
    for line in raw.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


# ----------------------------------------------------------------------------- runs
def record_run(
    root: Path, site: str, env: str, playbook: str, run_id: str, status: str, finished: str | None = None
) -> list[Path]:
    """Record that ``run_id`` ran ``playbook`` on ``site``/``env`` and ended with ``status``."""
    record = _run_record(env, playbook, run_id, status, finished or now_iso())
    return append_line(root, site_dir(root, site) / "runs.jsonl", record)


def _run_record(
    env: str, playbook: str, run_id: str, status: str, finished: str, settled: Sequence[str] = ()
) -> dict[str, Any]:
    record: dict[str, Any] = {"env": check_name(env, "environment"), "playbook": playbook, "run_id": run_id,
                              "status": status, "finished": finished}  # fmt: skip
    if settled:
        record["settled"] = sorted(settled)
    return record


def record_runs(
    root: Path,
    runs: Sequence[tuple[str, str, str]],
    playbook: str,
    run_id: str,
    finished: str | None = None,
    settled: Mapping[tuple[str, str], Sequence[str]] | None = None,
) -> list[list[Path] | Exception]:
    """:func:`record_run` for every ``(site, env, status)`` of one run, fsynced together
    (:func:`append_lines`); one result per entry: the paths written, or its BadName/OSError.

    ``settled`` gives, per ``(site, env)``, the fingerprints of the stages that finished there
    without a failure (:func:`settled_stages` reads them back): the record's ``settled`` list.
    """
    items: list[tuple[Path, Mapping[str, Any]]] = []
    bad: dict[int, Exception] = {}
    when = finished or now_iso()
    for i, (site, env, status) in enumerate(runs):
        stages = (settled or {}).get((site, env), ())
        try:
            record = _run_record(env, playbook, run_id, status, when, stages)
            items.append((site_dir(root, site) / "runs.jsonl", record))
        except BadName as exc:
            bad[i] = exc
    done = iter(append_lines(root, items))
    return [bad[i] if i in bad else next(done) for i in range(len(runs))]


def last_runs(root: Path, site: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The last run per environment and playbook: ``{env: {playbook: record}}`` (latest ``finished``, then line)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in read_lines(site_dir(root, site) / "runs.jsonl"):
        env, playbook = str(rec.get("env", "")), str(rec.get("playbook", ""))
        seen = out.setdefault(env, {}).get(playbook)
        if seen is None or str(rec.get("finished", "")) >= str(seen.get("finished", "")):
            out[env][playbook] = rec  # on a tie the later line wins
    return out


#: how much of the end of ``runs.jsonl`` :func:`settled_stages` reads first (a long history is
#: read whole only when the playbook's last record on the environment is not in it)
_TAIL_BYTES = 64 * 1024


def settled_stages(root: Path, site: str, env: str, playbook: str) -> frozenset[str]:
    """The stage fingerprints the last recorded run of ``playbook`` on ``site``/``env`` settled
    (see :func:`record_runs`); empty when there is none. Read from the end of ``runs.jsonl``:
    its last :data:`_TAIL_BYTES` first, and only the lines after that run's are parsed."""
    path = site_dir(root, site) / "runs.jsonl"
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
            if size > _TAIL_BYTES:
                tail = tail.partition(b"\n")[2]  # the first line may be cut: read from the next
            found = _last_settled(tail, env, playbook)
            if found is None and size > _TAIL_BYTES:
                f.seek(0)
                found = _last_settled(f.read(), env, playbook)
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    return found or frozenset()


def _last_settled(raw: bytes, env: str, playbook: str) -> frozenset[str] | None:
    """The ``settled`` digests of the last record of ``playbook`` on ``env`` in ``raw`` (JSON
    Lines); None when no record of it is there."""
    for line in reversed(raw.splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("env") == env and rec.get("playbook") == playbook:
            done = rec.get("settled")
            return frozenset(x for x in done if isinstance(x, str)) if isinstance(done, list) else frozenset()
    return None


# ----------------------------------------------------------------------------- per environment
def environments(root: Path, site: str) -> list[str]:
    """The environments of ``site`` the index holds records of, sorted."""
    try:
        return sorted(p.name for p in site_dir(root, site).iterdir() if p.is_dir() and _NAME.fullmatch(p.name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _append(root: Path, site: str, env: str, file: str, data: Mapping[str, Any]) -> list[Path]:
    record = dict(data)
    record.setdefault("ts", now_iso())
    return append_line(root, env_dir(root, site, env) / file, record)


def record_backup(root: Path, site: str, env: str, manifest_summary: Mapping[str, Any]) -> list[Path]:
    """Record a backup taken (``id``, ``dir``, ``created``, ``kind``, ``items``, ``run_id``...)."""
    return _append(root, site, env, "backups.jsonl", manifest_summary)


def backups(root: Path, site: str, env: str) -> list[dict[str, Any]]:
    """The backups recorded for ``site``/``env``, oldest first."""
    return read_lines(env_dir(root, site, env) / "backups.jsonl")


def record_cert(root: Path, site: str, env: str, data: Mapping[str, Any]) -> list[Path]:
    """Record a certificate check or renewal (serial, not_after, days_left, issuer, renewed...)."""
    return _append(root, site, env, "certs.jsonl", data)


def certs(root: Path, site: str, env: str) -> list[dict[str, Any]]:
    """The certificate checks recorded for ``site``/``env``, oldest first."""
    return read_lines(env_dir(root, site, env) / "certs.jsonl")


def record_lock(root: Path, site: str, env: str, data: Mapping[str, Any]) -> list[Path]:
    """Record a version lock written (``run_id``, ``status``, ``packages``: key -> version)."""
    return _append(root, site, env, "locks.jsonl", data)


def version_locks(root: Path, site: str, env: str) -> list[dict[str, Any]]:
    """The version locks recorded for ``site``/``env``, oldest first."""
    return read_lines(env_dir(root, site, env) / "locks.jsonl")


# ----------------------------------------------------------------------------- series
def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def append_series(root: Path, site: str, env: str, name: str, point: Mapping[str, Any]) -> list[Path]:
    """Append ``point`` (with ``ts``, default now) to the series ``name``, in the file of its month."""
    record = dict(point)
    record.setdefault("ts", now_iso())
    when = _when(record["ts"])
    if when is None:
        raise ValueError(f"series point time {record['ts']!r} is not ISO 8601")
    folder = env_dir(root, site, env) / "series" / check_name(name, "series")
    return append_line(root, folder / f"{when.astimezone(UTC):%Y-%m}.jsonl", record)


def _month_files(root: Path, site: str, env: str, name: str) -> list[Path]:
    """The monthly files of series ``name``, oldest month first."""
    folder = env_dir(root, site, env) / "series" / check_name(name, "series")
    try:
        return sorted(p for p in folder.iterdir() if re.fullmatch(r"\d{4}-\d{2}\.jsonl", p.name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _by_time(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``points`` sorted by their ``ts`` (stable: equal times keep their line order)."""
    return sorted(points, key=lambda r: _when(r.get("ts")) or datetime.min.replace(tzinfo=UTC))


def series(root: Path, site: str, env: str, name: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """The points of series ``name`` at or after ``since`` (aware datetime; None: all), oldest first."""
    files = _month_files(root, site, env, name)
    if since is not None:
        files = [p for p in files if p.name[:7] >= f"{since.astimezone(UTC):%Y-%m}"]
    points = [r for p in files for r in read_lines(p)]
    if since is not None:
        points = [r for r in points if (w := _when(r.get("ts"))) is not None and w >= since]
    return _by_time(points)


def latest_point(root: Path, site: str, env: str, name: str) -> dict[str, Any] | None:
    """The newest point of series ``name`` (``series(...)[-1]``), reading only its newest non-empty month."""
    for path in reversed(_month_files(root, site, env, name)):
        points = read_lines(path)
        if points:
            return _by_time(points)[-1]
    return None


__all__ = [
    "GITATTRIBUTES",
    "INDEX",
    "BadName",
    "append_line",
    "append_lines",
    "append_series",
    "backups",
    "certs",
    "check_name",
    "env_dir",
    "environments",
    "index_dir",
    "last_runs",
    "latest_point",
    "read_lines",
    "record_backup",
    "record_cert",
    "record_lock",
    "record_run",
    "record_runs",
    "series",
    "site_dir",
    "version_locks",
]
