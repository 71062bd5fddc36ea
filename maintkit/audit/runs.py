"""Run folders: listing, loading, reading events and resolving a run id (``latest``, a prefix)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from maintkit.audit.chain import EVENTS_FILE, SUMMARY_FILE
from maintkit.audit.verify import read_summary
from maintkit.errors import ConfigError, Problem
from maintkit.ids import id_time

__all__ = ["list_runs", "load_run", "read_events", "resolve_run_id", "runs_dir"]


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
    src = read_summary(run_dir) or {}
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
        # the run group and shard of a sharded run (``maint run --shard K/N``), else None
        "group": src.get("group", first.get("group")),
        "shard": src.get("shard", first.get("shard")),
        "_sort": _sort_key(run_dir.name, first.get("ts")),
    }


def _sort_key(run_id: str, first_ts: Any) -> tuple[str, str, str]:
    """Runs sort by the time in the run id, then by the first event's time (ms)."""
    first = first_ts if isinstance(first_ts, str) else ""
    started = id_time(run_id)
    if started is None:  # a renamed folder: only the events can tell
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
    summary = read_summary(path)
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
