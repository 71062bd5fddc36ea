"""Verification of a run folder: recompute the hash chain and compare it with ``summary.json``."""

from __future__ import annotations

import contextlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maintkit.audit.chain import EVENTS_FILE, SUMMARY_FILE, canonical, digest, genesis

__all__ = [
    "VERIFY_BROKEN",
    "VERIFY_INCOMPLETE",
    "VERIFY_INTACT",
    "VerifyResult",
    "read_summary",
    "verify_run",
]

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


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """``summary.json`` of a run folder; None when it is missing, not JSON or not an object."""
    try:
        return _read_summary(Path(run_dir))
    except _Bad:
        return None


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
    prev: str | None = genesis(run_id) if run_id else None
    prev_seq: int | None = None
    for n, line in enumerate(lines, start=1):
        record = _parse_line(n, line)
        if run_id is None:
            run_id = str(record.get("run_id"))
            prev = genesis(run_id)
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
    text = canonical(body)
    if not hmac.compare_digest(str(record["hash"]), digest(text, key)):
        raise _Bad(n, f"line {n}: event was modified (hash mismatch{_hash_hint(text, record, key, summary)})")
    if line != canonical(record).encode("utf-8"):
        raise _Bad(n, f"line {n}: event text was altered (not in the form it was written in)")


def _hash_hint(text: str, record: dict[str, Any], key: bytes | None, summary: dict[str, Any] | None) -> str:
    if key is not None and hmac.compare_digest(str(record["hash"]), digest(text, None)):
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
    if not isinstance(seal, str) or not hmac.compare_digest(seal, digest(canonical(body), key)):
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
