"""``maint audit verify``: intact and complete (0), broken (1), intact so far but incomplete (4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from maintkit.audit import (
    VERIFY_BROKEN,
    VERIFY_INCOMPLETE,
    VERIFY_INTACT,
    AuditLog,
    Redactor,
    new_run_id,
    verify_run,
    write_summary,
)
from maintkit.cli.main import EXIT_AUDIT_INCOMPLETE, cli
from maintkit.results import StepStatus

COMMON = {"actor": "alice@box", "playbook": "update", "playbook_commit": "abc123", "playbook_dirty": False}


def make_run(state: Path, n: int = 8, *, summary: bool = True, finished: bool = True) -> Path:
    """A run folder with ``n`` events; ``summary=False`` is a run killed before its summary."""
    rid = new_run_id()
    run_dir = state / "runs" / rid
    log = AuditLog(run_dir, rid, common=COMMON, redactor=Redactor())
    log.event("run.started", check=False, sites=["shop-a"])
    for i in range(n - 2):
        log.event("step.applied", site="shop-a", env="staging", step=f"s{i}", status=StepStatus.CHANGED)
    if finished:
        log.event("run.finished", status="ok", changed=n - 2)
    else:
        log.event("step.applied", site="shop-a", env="staging", step="last", status=StepStatus.CHANGED)
    if summary:
        write_summary(run_dir, {"run_id": rid, "status": "ok", "changed": n - 2, "check": False, "sites": []}, log)
    log.close()
    return run_dir


def lines_of(run_dir: Path) -> list[bytes]:
    return (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True)


def verify_cli(run_dir: Path) -> Result:
    state = run_dir.parent.parent
    return CliRunner().invoke(cli, ["audit", "verify", run_dir.name, "--state-dir", str(state)])


def test_a_complete_run_is_intact_exit_0(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    res = verify_run(run_dir)
    assert (res.status, res.ok, res.complete, res.note) == (VERIFY_INTACT, True, True, "")
    out = verify_cli(run_dir)
    assert out.exit_code == 0
    assert out.output == f"ok: {run_dir.name}: 8 events, chain intact\n"


def test_a_tampered_run_is_broken_exit_1_naming_the_line(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    lines[3] = lines[3].replace(b'"step":"s2"', b'"step":"sX"')
    (run_dir / "events.jsonl").write_bytes(b"".join(lines))
    res = verify_run(run_dir)
    assert (res.status, res.first_bad_line, res.reason) == (
        VERIFY_BROKEN,
        4,
        "line 4: event was modified (hash mismatch)",
    )
    out = verify_cli(run_dir)
    assert out.exit_code == 1
    assert out.output == f"BROKEN: {run_dir.name}: line 4: event was modified (hash mismatch)\n"


def test_a_tampered_run_without_summary_is_still_broken(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, summary=False, finished=False)
    lines = lines_of(run_dir)
    (run_dir / "events.jsonl").write_bytes(b"".join(lines[:2] + lines[3:]))
    res = verify_run(run_dir)
    assert (res.status, res.first_bad_line, res.complete) == (VERIFY_BROKEN, 3, False)
    assert res.reason == "line 3: previous event missing or reordered (seq 3 follows 1)"
    out = verify_cli(run_dir)
    assert out.exit_code == 1
    assert out.output == f"BROKEN: {run_dir.name}: line 3: previous event missing or reordered (seq 3 follows 1)\n"


def test_a_crashed_run_without_summary_is_incomplete_exit_4_with_the_note(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, summary=False, finished=False)
    res = verify_run(run_dir)
    assert (res.status, res.ok, res.complete, res.events) == (VERIFY_INCOMPLETE, True, False, 8)
    out = verify_cli(run_dir)
    assert out.exit_code == EXIT_AUDIT_INCOMPLETE == 4
    assert out.output == (
        f"incomplete: {run_dir.name}: 8 events, chain intact so far; no summary.json\n"
        "note: without summary.json, events cut off the end of the log cannot be detected; the run is "
        "still running, or it stopped before it could write the summary (killed, crashed)\n"
    )
    assert "ok:" not in out.output


def test_summary_deleted_and_tail_cut_is_incomplete_not_ok(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / "summary.json").unlink()
    lines = lines_of(run_dir)
    (run_dir / "events.jsonl").write_bytes(b"".join(lines[:-3]))
    res = verify_run(run_dir)
    assert (res.status, res.events, res.first_bad_line) == (VERIFY_INCOMPLETE, 5, None)
    out = verify_cli(run_dir)
    assert out.exit_code == 4
    assert out.output == (
        f"incomplete: {run_dir.name}: 5 events, chain intact so far; no summary.json\n"
        "note: without summary.json, events cut off the end of the log cannot be detected; the run is "
        "still running, or it stopped before it could write the summary (killed, crashed)\n"
    )


def test_summary_deleted_after_run_finished_says_so(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / "summary.json").unlink()
    res = verify_run(run_dir)
    assert (res.status, res.events, res.first_bad_line) == (VERIFY_INCOMPLETE, 8, None)
    note = (
        "without summary.json, events cut off the end of the log cannot be detected; the run is "
        "still running, or it stopped before it could write the summary (killed, crashed), "
        "or summary.json was deleted: the log's last event is run.finished"
    )
    assert res.note == note
    out = verify_cli(run_dir)
    assert out.exit_code == 4
    assert out.output == (f"incomplete: {run_dir.name}: 8 events, chain intact so far; no summary.json\nnote: {note}\n")


def test_the_same_run_goes_from_incomplete_to_intact_once_summarised(tmp_path: Path) -> None:
    """A run being written: verified mid-way it is incomplete; after its summary, intact."""
    rid = new_run_id()
    run_dir = tmp_path / "runs" / rid
    log = AuditLog(run_dir, rid, common=COMMON, redactor=Redactor())
    log.event("run.started", check=False, sites=["shop-a"])
    mid = verify_cli(run_dir)
    assert mid.exit_code == 4
    assert mid.output.splitlines()[0] == f"incomplete: {rid}: 1 events, chain intact so far; no summary.json"
    log.event("run.finished", status="ok", changed=0)
    write_summary(run_dir, {"run_id": rid, "status": "ok", "changed": 0, "check": False, "sites": []}, log)
    log.close()
    done = verify_cli(run_dir)
    assert (done.exit_code, done.output) == (0, f"ok: {rid}: 2 events, chain intact\n")


@pytest.mark.parametrize("cut", [1, 3])
def test_a_cut_tail_with_the_summary_present_is_broken(tmp_path: Path, cut: int) -> None:
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    (run_dir / "events.jsonl").write_bytes(b"".join(lines[:-cut]))
    kept = 8 - cut
    res = verify_run(run_dir)
    assert (res.status, res.first_bad_line, res.events) == (VERIFY_BROKEN, kept + 1, kept)
    out = verify_cli(run_dir)
    assert out.exit_code == 1
    assert out.output == (
        f"BROKEN: {run_dir.name}: line {kept + 1}: events missing at the end "
        f"(the log has {kept}, summary.json records 8)\n"
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["events"] == 8
