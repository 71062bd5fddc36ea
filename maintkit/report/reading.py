"""Reading run folders for a report: the last known state of every step of every run.

Also the tolerant value helpers the per-family readers use (an action that records less
just contributes less).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maintkit.ids import id_time

__all__ = [
    "RunState",
    "StepState",
    "as_float",
    "as_int",
    "as_text",
    "first_of",
    "parse_ts",
    "read_run",
    "runs_in_period",
]

_STEP_EVENTS = ("step.checked", "step.applied", "step.verified", "step.failed", "step.skipped", "step.isolated")


def parse_ts(value: Any) -> datetime | None:
    """An aware datetime from an ISO string, a ``YYYYmmddTHHMMSSZ`` run id prefix or an epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return id_time(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def as_int(value: Any) -> int | None:
    """``value`` as an int; None when it is missing, empty or not a number."""
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def as_float(value: Any) -> float | None:
    """``value`` as a float; None when it is missing, empty or not a number."""
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def first_of(data: Mapping[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` that ``data`` has and that is not None or empty."""
    for key in keys:
        if key in data and data[key] not in (None, ""):
            return data[key]
    return None


def as_text(value: Any) -> str:
    """``value`` as text; None becomes the empty string."""
    return "" if value is None else str(value)


# ----------------------------------------------------------------------------- reading runs
@dataclass
class StepState:
    """The last known state of one step of one run."""

    run_id: str
    playbook: str
    site: str
    env: str
    step: str
    action: str
    status: str = ""
    when: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    reason: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    rolled_back: bool = False


@dataclass
class RunState:
    """What one run's events tell: its steps, each site's final status, and what was rolled back."""

    run_id: str
    playbook: str
    check: bool
    started: datetime | None
    steps: dict[tuple[str, str, str], StepState] = field(default_factory=dict)
    site_status: dict[str, tuple[str, str, datetime | None]] = field(default_factory=dict)
    rolled_back: dict[tuple[str, str], list[tuple[str, datetime | None, bool]]] = field(default_factory=dict)
    #: ``lock.taken_over`` events: (site, env, the event)
    takeovers: list[tuple[str, str, Mapping[str, Any]]] = field(default_factory=list)


def read_run(run_dir: Path, meta: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> RunState:
    """Fold a run's ``events`` (``meta`` is its :func:`maintkit.audit.list_runs` row) into a :class:`RunState`."""
    run = RunState(
        run_id=str(meta.get("run_id") or run_dir.name),
        playbook=as_text(meta.get("playbook")),
        check=bool(meta.get("check")),
        started=parse_ts(meta.get("started")) or parse_ts(run_dir.name),
    )
    for ev in events:
        name = ev.get("event", "")
        site, env = as_text(ev.get("site")), as_text(ev.get("env"))
        when = parse_ts(ev.get("ts"))
        if name == "run.started":
            run.playbook = run.playbook or as_text(ev.get("playbook"))
            run.check = bool(ev.get("check", run.check))
            run.started = run.started or when
        elif name in _STEP_EVENTS and site:
            key = (site, env, as_text(ev.get("step")))
            st = run.steps.get(key) or StepState(run.run_id, run.playbook, site, env, key[2], as_text(ev.get("action")))
            run.steps[key] = st
            st.status = as_text(ev.get("status")) or st.status
            st.when = when or st.when
            if isinstance(ev.get("data"), Mapping):
                st.data.update(ev["data"])
            st.error = as_text(ev.get("error")) or st.error
            st.reason = as_text(ev.get("reason")) or st.reason
            if ev.get("changes"):
                st.changes = list(ev["changes"])
            if name in ("step.applied", "step.isolated") and st.status == "changed":
                st.rolled_back = False  # applied again after an earlier attempt was rolled back (isolation)
        elif name in ("step.rolled_back", "step.rollback_failed") and site:
            key = (site, env, as_text(ev.get("step")))
            undone = run.steps.get(key)
            ok = name == "step.rolled_back"
            if undone is not None:
                undone.rolled_back = ok
            run.rolled_back.setdefault((site, env), []).append((as_text(ev.get("step")), when, ok))
        elif name in ("site.finished", "site.skipped") and site:
            run.site_status[site] = (as_text(ev.get("status")), as_text(ev.get("error")), when)
        elif name == "lock.taken_over" and site:
            run.takeovers.append((site, env, ev))
    return run


def runs_in_period(state_dir: Path, start: datetime, end: datetime, group: str | None = None) -> Iterator[RunState]:
    """The runs of ``state_dir`` that started in ``[start, end)``, oldest first (only run ``group``'s, if given)."""
    from maintkit.audit import list_runs, read_events

    for meta in reversed(list_runs(state_dir)):  # oldest first
        run_id = str(meta.get("run_id", ""))
        started = parse_ts(meta.get("started")) or parse_ts(run_id)
        if started is None or not (start <= started < end) or (group is not None and meta.get("group") != group):
            continue
        run_dir = state_dir / "runs" / run_id
        yield read_run(run_dir, meta, read_events(run_dir))
