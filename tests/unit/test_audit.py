"""The audit log: hash chain, tamper detection, redaction, run folders, atomic files."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from maintkit.audit import (
    AuditLog,
    Redactor,
    current_actor,
    git_provenance,
    list_runs,
    load_run,
    new_run_id,
    read_events,
    resolve_run_id,
    verify_run,
    write_json_atomic,
    write_summary,
    write_text_atomic,
)
from maintkit.audit import log as audit_log
from maintkit.errors import ConfigError
from maintkit.results import StepStatus
from tests.git_helpers import committed_repo, git

COMMON = {"actor": "alice@box", "playbook": "update", "playbook_commit": "abc123", "playbook_dirty": False}


def make_run(
    state: Path,
    n: int = 6,
    *,
    run_id: str | None = None,
    key: bytes | None = None,
    summary: bool = True,
    redactor: Redactor | None = None,
) -> Path:
    """A finished run folder with ``n`` events (run.started ... run.finished) and a summary."""
    rid = run_id or new_run_id()
    run_dir = state / "runs" / rid
    log = AuditLog(run_dir, rid, common=COMMON, redactor=redactor or Redactor(), hmac_key=key)
    log.event("run.started", check=False, sites=["shop-a"])
    for i in range(n - 2):
        log.event("step.applied", site="shop-a", env="staging", step=f"s{i}", status=StepStatus.CHANGED)
    log.event("run.finished", status="ok", changed=n - 2)
    if summary:
        write_summary(
            run_dir,
            {"run_id": rid, "playbook": "update", "status": "ok", "changed": n - 2, "check": False, "sites": []},
            log,
        )
    log.close()
    return run_dir


def lines_of(run_dir: Path) -> list[bytes]:
    return (run_dir / "events.jsonl").read_bytes().splitlines(keepends=True)


def write_lines(run_dir: Path, lines: list[bytes]) -> None:
    (run_dir / "events.jsonl").write_bytes(b"".join(lines))


# --------------------------------------------------------------------------- chain


def test_fresh_run_verifies(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    res = verify_run(run_dir)
    assert res.ok and res.complete
    assert res.events == 6
    assert res.first_bad_line is None


def test_events_have_the_documented_fields(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, 3)
    events = list(read_events(run_dir))
    assert [e["seq"] for e in events] == [0, 1, 2]
    first = events[0]
    assert first["prev"] == hashlib.sha256(first["run_id"].encode()).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert {"actor", "playbook", "playbook_commit", "playbook_dirty", "event", "hash"} <= first.keys()
    assert events[1]["status"] == "changed"
    assert events[1]["prev"] == first["hash"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["events"] == 3
    assert summary["last_hash"] == events[-1]["hash"]


def test_event_returns_the_written_record(tmp_path: Path) -> None:
    rid = new_run_id()
    log = AuditLog(tmp_path / rid, rid, common={}, redactor=Redactor())
    rec = log.event("x", path=Path("/srv/a"), n=1, when={1, 2})
    log.close()
    assert list(read_events(tmp_path / rid)) == [rec]
    assert rec["path"] == "/srv/a"


def test_edited_field_is_caught(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    lines[3] = lines[3].replace(b'"status":"changed"', b'"status":"unchanged"')
    write_lines(run_dir, lines)
    res = verify_run(run_dir)
    assert not res.ok
    assert res.first_bad_line == 4
    assert res.reason == "line 4: event was modified (hash mismatch)"


@pytest.mark.parametrize(
    ("deleted", "bad_line", "reason"),
    [
        (0, 1, "line 1: previous event missing or reordered (seq 1 follows the start of the log)"),
        (3, 4, "line 4: previous event missing or reordered (seq 4 follows 2)"),
        (5, 6, "line 6: events missing at the end (the log has 5, summary.json records 6)"),
    ],
)
def test_deleted_line_is_caught(tmp_path: Path, deleted: int, bad_line: int, reason: str) -> None:
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    del lines[deleted]
    write_lines(run_dir, lines)
    res = verify_run(run_dir)
    assert (res.ok, res.first_bad_line, res.reason) == (False, bad_line, reason)


def test_deleted_middle_line_names_the_gap(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    del lines[3]
    write_lines(run_dir, lines)
    assert verify_run(run_dir).reason == "line 4: previous event missing or reordered (seq 4 follows 2)"


def test_inserted_copy_is_caught(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    lines.insert(4, lines[1])
    write_lines(run_dir, lines)
    res = verify_run(run_dir)
    assert (res.ok, res.first_bad_line) == (False, 5)
    assert res.reason == "line 5: event inserted, duplicated or reordered (seq 1 follows 3)"


def test_swapped_lines_are_caught(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    lines[2], lines[3] = lines[3], lines[2]
    write_lines(run_dir, lines)
    res = verify_run(run_dir)
    assert (res.ok, res.first_bad_line) == (False, 3)
    assert res.reason == "line 3: previous event missing or reordered (seq 3 follows 1)"


def test_truncated_tail_is_caught(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    write_lines(run_dir, lines_of(run_dir)[:4])
    res = verify_run(run_dir)
    assert (res.ok, res.first_bad_line, res.events) == (False, 5, 4)
    assert res.reason == "line 5: events missing at the end (the log has 4, summary.json records 6)"


def test_cut_off_last_line_is_invalid_json(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    lines[-1] = lines[-1][:20]
    write_lines(run_dir, lines)
    res = verify_run(run_dir)
    assert (res.ok, res.first_bad_line) == (False, 6)
    assert res.reason == "line 6: not valid JSON (damaged or cut off)"


def test_appended_event_is_caught(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    rid = run_dir.name
    with AuditLog(run_dir, rid, common=COMMON, redactor=Redactor()) as log:
        log.event("late.event")
    res = verify_run(run_dir)
    assert (res.ok, res.first_bad_line) == (False, 7)
    assert res.reason == "line 7: events added after the run was summarised (summary.json)"


def test_edited_summary_is_caught(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["status"] = "failed"
    (run_dir / "summary.json").write_text(json.dumps(summary))
    res = verify_run(run_dir)
    assert (res.ok, res.first_bad_line) == (False, None)
    assert res.reason == "summary.json was modified (seal mismatch)"


def test_duplicate_key_trick_is_caught(tmp_path: Path) -> None:
    """Same parsed content, different text: tools that read the first key would be fooled."""
    run_dir = make_run(tmp_path)
    lines = lines_of(run_dir)
    lines[2] = lines[2].replace(b"{", b'{"status":"unchanged",', 1)
    write_lines(run_dir, lines)
    res = verify_run(run_dir)
    assert (res.ok, res.first_bad_line) == (False, 3)
    assert res.reason == "line 3: event text was altered (not in the form it was written in)"


def test_without_summary_the_chain_still_verifies(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, summary=False)
    res = verify_run(run_dir)
    assert (res.ok, res.complete, res.events) == (True, False, 6)
    assert res.reason == (
        "chain intact so far (6 events); incomplete: no summary.json, so a cut-off tail cannot be detected"
    )


def test_missing_events_file(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    res = verify_run(tmp_path / "r")
    assert (res.ok, res.first_bad_line, res.reason) == (False, None, "events.jsonl is missing")


def test_continuing_an_existing_log_keeps_the_chain(tmp_path: Path) -> None:
    rid = new_run_id()
    with AuditLog(tmp_path / rid, rid, common={}, redactor=Redactor()) as log:
        log.event("a")
    with AuditLog(tmp_path / rid, rid, common={}, redactor=Redactor()) as log:
        rec = log.event("b")
        assert log.count == 2
    assert rec["seq"] == 1
    assert verify_run(tmp_path / rid).ok


def test_reserved_field_names_are_refused(tmp_path: Path) -> None:
    rid = new_run_id()
    with AuditLog(tmp_path / rid, rid, common={}, redactor=Redactor()) as log, pytest.raises(ValueError):
        log.event("x", seq=3)


# --------------------------------------------------------------------------- HMAC


def _recompute_plain(run_dir: Path) -> None:
    """What someone without the key can do: rebuild every hash with plain SHA-256."""
    out, prev = [], None
    for line in lines_of(run_dir):
        rec = json.loads(line)
        rec["status"] = "forged" if rec.get("status") else rec.get("status")
        if prev is not None:
            rec["prev"] = prev
        rec.pop("hash")
        rec["hash"] = hashlib.sha256(json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        prev = rec["hash"]
        out.append(json.dumps(rec, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    write_lines(run_dir, out)


def test_hmac_chain_verifies_with_the_key_only(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, key=b"k3y-material")
    assert verify_run(run_dir, b"k3y-material").ok
    wrong = verify_run(run_dir, b"other-key")
    assert (wrong.ok, wrong.first_bad_line, wrong.reason) == (False, 1, "line 1: event was modified (hash mismatch)")
    no_key = verify_run(run_dir)
    assert (no_key.ok, no_key.first_bad_line) == (False, 1)
    assert no_key.reason == (
        "line 1: event was modified (hash mismatch; this run is signed with a key: set MAINT_AUDIT_KEY to verify it)"
    )


def test_hmac_detects_a_chain_recomputed_without_the_key(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, key=b"k3y-material")
    _recompute_plain(run_dir)
    res = verify_run(run_dir, b"k3y-material")
    assert (res.ok, res.first_bad_line) == (False, 1)
    assert res.reason == (
        "line 1: event was modified (hash mismatch; it is a plain SHA-256, not an HMAC with this key: "
        "written or recomputed without the key)"
    )


# --------------------------------------------------------------------------- files


def test_file_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run_dir = make_run(tmp_path)
        write_text_atomic(run_dir / "playbook.yml", "name: x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for name in ("events.jsonl", "summary.json", "playbook.yml"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o600, name


def test_write_json_atomic_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    write_json_atomic(target, {"b": 1, "a": [Path("/x")]})
    assert json.loads(target.read_text()) == {"a": ["/x"], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_text_atomic_cleans_up_on_failure(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_text_atomic(tmp_path / "x.txt", 42)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- concurrency


def test_concurrent_events_make_a_valid_chain(tmp_path: Path) -> None:
    rid = new_run_id()
    log = AuditLog(tmp_path / rid, rid, common=COMMON, redactor=Redactor(["sup3rsecret"]))
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(40):
            log.event("step.checked", site=f"shop-{t}", step=f"s{i}", command="x --password sup3rsecret")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    write_summary(tmp_path / rid, {"status": "ok"}, log)
    log.close()
    seqs = [e["seq"] for e in read_events(tmp_path / rid)]
    assert seqs == list(range(320))
    res = verify_run(tmp_path / rid)
    assert res.ok, res.reason
    assert b"sup3rsecret" not in (tmp_path / rid / "events.jsonl").read_bytes()


# --------------------------------------------------------------------------- redaction

SECRET_CHARS = st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters='*"\\')
NOISE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
# Every generated secret holds one character that the log's own structure (field names,
# timestamps, hex hashes, JSON punctuation) never contains, so a hit is a real leak.
SECRETS = st.builds(
    lambda body, mark, at: body[: at % (len(body) + 1)] + mark + body[at % (len(body) + 1) :],
    st.text(SECRET_CHARS, min_size=7, max_size=40),
    st.sampled_from("!#$%&()+;<=>?^|~"),
    st.integers(min_value=0, max_value=40),
)


@settings(max_examples=60, deadline=None)
@given(
    secret=SECRETS,
    other=SECRETS,
    before=NOISE,
    after=NOISE,
)
def test_secrets_never_reach_the_file(secret: str, other: str, before: str, after: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rid = new_run_id()
        run_dir = Path(tmp) / rid
        red = Redactor()
        red.add_secret(secret)
        log = AuditLog(run_dir, rid, common=COMMON, redactor=red)
        # ``other`` is only known because it arrives as a SecretStr in the same event.
        log.event(
            "step.failed",
            command=f"mysql -u shop {before}{secret}{after} {before}{other}{after}",
            error=f"{before}{secret}{after}: access denied",
            params={"db_pass": SecretStr(other), "nested": [f"{other}{before}", (secret,)]},
        )
        log.event("run.finished", status="failed", note=f"{after}{other}")
        write_summary(run_dir, {"error": f"{before}{secret}"}, log)
        log.close()
        for name in ("events.jsonl", "summary.json"):
            data = (run_dir / name).read_bytes()
            assert secret.encode() not in data
            assert other.encode() not in data
        assert verify_run(run_dir).ok


def test_secret_that_looks_like_the_run_id_does_not_break_the_chain(tmp_path: Path) -> None:
    rid = new_run_id()
    red = Redactor([rid[:8]])
    run_dir = make_run(tmp_path, 3, run_id=rid, redactor=red)
    events = list(read_events(run_dir))
    assert all(e["run_id"] == rid for e in events)
    assert json.loads((run_dir / "summary.json").read_text())["run_id"] == rid
    assert verify_run(run_dir).ok


def test_failed_write_leaves_no_partial_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = new_run_id()
    log = AuditLog(tmp_path / rid, rid, common={}, redactor=Redactor())
    log.event("a")
    real_write = os.write

    def short_then_fail(fd: int, data: Any) -> int:
        monkeypatch.setattr(os, "write", failing)
        return real_write(fd, bytes(data)[:10])

    def failing(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_fail)
    with pytest.raises(OSError):
        log.event("b")
    monkeypatch.setattr(os, "write", real_write)
    log.event("c")
    log.close()
    assert [e["event"] for e in read_events(tmp_path / rid)] == ["a", "c"]
    assert verify_run(tmp_path / rid).ok


def test_key_name_rule() -> None:
    red = Redactor()
    for key in ("password", "db_password", "CLOUDFLARE_TOKEN", "api_key", "apiKey", "secret", "credentials", "auth"):
        assert red.is_sensitive_key(key), key
    for key in (
        "host_key_policy",
        "key_file",
        "primary_key_count",
        "password_file",
        "keys_zone",
        "cache_key",
        "author",
    ):
        assert not red.is_sensitive_key(key), key


def test_redact_keeps_structure() -> None:
    red = Redactor()
    out = red.redact(
        {
            "db_password": "hunter22",
            "token": 123456,
            "secret": {"a": "x", "b": None, "c": [True, "y"]},
            "key_file": "/etc/ssh/id",
            "host_key_policy": "reject",
            "items": ({"api_key": "k"}, "plain"),
            "empty_password": "",
        }
    )
    assert out == {
        "db_password": "***",
        "token": "***",
        "secret": {"a": "***", "b": None, "c": [True, "***"]},
        "key_file": "/etc/ssh/id",
        "host_key_policy": "reject",
        "items": ({"api_key": "***"}, "plain"),
        "empty_password": "",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mysqldump --password=s3cr3t shop", "mysqldump --password=*** shop"),
        ("wp --db-password s3cr3t x", "wp --db-password *** x"),
        ("git clone https://bob:ghp_1234@github.com/a/b", "git clone https://bob:***@github.com/a/b"),
        ("curl -H 'Authorization: Bearer abc.def.123'", "curl -H 'Authorization: *** ***'"),
        ("'password' => 'p4ss',", "'password' => '***',"),
        ('{"api_key": "abcd", "user": "bob"}', '{"api_key": "***", "user": "bob"}'),
        ("DB_PASSWORD={{ secrets.DB_PASSWORD }}", "DB_PASSWORD={{ secrets.DB_PASSWORD }}"),
        ("key_file=/etc/key host_key_policy=reject", "key_file=/etc/key host_key_policy=reject"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert Redactor().redact_text(text) == expected


def test_known_secret_longest_first_and_short_ignored() -> None:
    red = Redactor(["abcd", "abcdefgh", "xy"])
    assert red.redact_text("abcdefgh abcd xy") == "*** *** xy"


def test_replacement_cannot_rebuild_a_secret() -> None:
    red = Redactor(["a!b!", "!b!a"])
    assert "a!b!" not in red.redact_text("a!b!b!a!b!")


def test_secretstr_becomes_mask_and_processor_works() -> None:
    red = Redactor()
    event = {"event": "x", "pw": SecretStr("topsecret1"), "msg": "login with topsecret1"}
    assert red.processor(None, "info", event) == {"event": "x", "pw": "***", "msg": "login with ***"}


def test_mask_masks_what_was_learned_and_learns_nothing() -> None:
    red = Redactor()
    hidden = SecretStr("never-learned-9")
    assert red.mask({"pw": hidden, "msg": "x never-learned-9"}) == {"pw": "***", "msg": "x never-learned-9"}
    red.learn({"pw": hidden})
    assert red.mask({"msg": "x never-learned-9", "db_password": "plain"}) == {"msg": "x ***", "db_password": "***"}


def test_a_key_seen_before_a_secret_was_learned_is_masked_once_it_is() -> None:
    red = Redactor()
    key = "path-late-secret-77"
    assert red.redact({key: "v", "n": 3, "none": None}) == {key: "v", "n": 3, "none": None}
    red.redact({"later": SecretStr("late-secret-77")})
    assert red.redact({key: "v"}) == {"path-***": "v"}


def test_a_secret_only_the_summary_carries_is_masked_everywhere_in_it(tmp_path: Path) -> None:
    rid = new_run_id()
    run_dir = tmp_path / rid
    log = AuditLog(run_dir, rid, common=COMMON, redactor=Redactor())
    log.event("run.started")
    write_summary(run_dir, {"params": {"token": SecretStr("only-in-summary-7")}, "note": "ran only-in-summary-7"}, log)
    log.close()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["params"], summary["note"]) == ({"token": "***"}, "ran ***")
    assert verify_run(run_dir).ok


def test_from_environ_knows_sensitive_variables() -> None:
    red = Redactor.from_environ({"CF_API_TOKEN": "tok-12345", "HOME": "/root", "MAINT_AUDIT_KEY": "k-98765"})
    assert red.redact_text("tok-12345 /root k-98765") == "*** /root ***"


# --------------------------------------------------------------------------- run folders


def test_new_run_id_shape_and_order() -> None:
    rid = new_run_id()
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", rid)
    assert new_run_id() != rid


def test_list_runs_newest_first(tmp_path: Path) -> None:
    make_run(tmp_path, 3, run_id="20261101T010000Z-aaaaaa")
    make_run(tmp_path, 3, run_id="20261103T010000Z-cccccc", summary=False)
    make_run(tmp_path, 3, run_id="20261102T010000Z-bbbbbb")
    (tmp_path / "runs" / "not-a-run").mkdir()
    rows = list_runs(tmp_path)
    assert [r["run_id"] for r in rows] == [
        "20261103T010000Z-cccccc",
        "20261102T010000Z-bbbbbb",
        "20261101T010000Z-aaaaaa",
    ]
    by_id = {r["run_id"]: r for r in rows}
    assert by_id["20261103T010000Z-cccccc"]["status"] == "incomplete"
    assert by_id["20261102T010000Z-bbbbbb"]["status"] == "ok"
    assert by_id["20261102T010000Z-bbbbbb"]["playbook"] == "update"
    assert list_runs(tmp_path / "nowhere") == []


def test_list_runs_same_second_uses_event_time(tmp_path: Path) -> None:
    for rid, ts in (("20261101T010000Z-ffffff", "01.100"), ("20261101T010000Z-000000", "01.900")):
        d = tmp_path / "runs" / rid
        d.mkdir(parents=True)
        rec = {"event": "run.started", "seq": 0, "ts": f"2026-11-01T01:00:{ts}Z"}
        (d / "events.jsonl").write_text(json.dumps(rec) + "\n")
    assert [r["run_id"] for r in list_runs(tmp_path)] == ["20261101T010000Z-000000", "20261101T010000Z-ffffff"]


def test_resolve_run_id(tmp_path: Path) -> None:
    make_run(tmp_path, 3, run_id="20261101T010000Z-aaaaaa")
    make_run(tmp_path, 3, run_id="20261101T020000Z-bbbbbb")
    assert resolve_run_id(tmp_path, "20261101T02") == "20261101T020000Z-bbbbbb"
    assert resolve_run_id(tmp_path, "latest") == "20261101T020000Z-bbbbbb"
    with pytest.raises(ConfigError, match="matches 2 runs"):
        resolve_run_id(tmp_path, "2026")
    with pytest.raises(ConfigError, match="no run matches"):
        resolve_run_id(tmp_path, "1999")
    with pytest.raises(ConfigError, match="no runs yet"):
        resolve_run_id(tmp_path / "empty", "latest")


def test_load_run(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, 4)
    data = load_run(tmp_path, run_dir.name)
    assert data["complete"] is True
    assert data["summary"]["status"] == "ok"
    assert [e["event"] for e in data["events"]][0] == "run.started"
    assert len(data["events"]) == 4
    with pytest.raises(ConfigError):
        load_run(tmp_path, "../etc")


def test_current_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    assert current_actor().startswith("github:octocat@")
    monkeypatch.delenv("GITHUB_ACTOR")
    assert current_actor() == f"{getpass.getuser()}@{socket.gethostname()}"


def test_git_provenance(tmp_path: Path) -> None:
    assert git_provenance(tmp_path) == {"commit": None, "dirty": False, "repo": None}
    repo = tmp_path / "pb"
    sha = committed_repo(repo, {"playbooks/update.yml": "name: update\n"})
    book = repo / "playbooks" / "update.yml"
    prov: dict[str, Any] = git_provenance(book.parent)
    assert prov == {"commit": sha, "dirty": False, "repo": str(repo)}
    book.write_text("name: changed\n")
    assert git_provenance(book)["dirty"] is True
    git(repo, "checkout", "-q", "--", ".")
    new = repo / "playbooks" / "new.yml"
    new.write_text("name: new\n")
    assert git_provenance(new)["dirty"] is True
    assert git_provenance(book)["dirty"] is False


def test_git_provenance_ignores_a_hostile_global_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ~/.gitconfig that hides every playbook from ``git status`` cannot make an untracked playbook look clean."""
    repo = tmp_path / "pb"
    sha = committed_repo(repo, {"update.yml": "name: update\n"})
    new = repo / "new.yml"
    new.write_text("name: new\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "ignore-all").write_text("*.yml\n")
    (home / ".gitconfig").write_text(
        f"[core]\n    excludesFile = {home / 'ignore-all'}\n[status]\n    showUntrackedFiles = no\n"
    )
    monkeypatch.setenv("HOME", str(home))
    for name in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "XDG_CONFIG_HOME", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(name, raising=False)
    # the plant works: plain git, reading ~/.gitconfig, no longer sees the untracked playbook
    seen = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, check=True, capture_output=True, text=True
    )
    assert seen.stdout == ""
    assert git_provenance(new) == {"commit": sha, "dirty": True, "repo": str(repo)}
    assert git_provenance(repo / "update.yml") == {"commit": sha, "dirty": False, "repo": str(repo)}


def test_the_grouped_fsync_does_not_hold_up_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the flusher's fsync waits on the disk, other threads still write events (the fsync
    works on a copy of the descriptor, outside the lock events take); close() still syncs."""
    in_fsync, release = threading.Event(), threading.Event()
    synced: list[int] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        if threading.current_thread().name == "maint-audit-fsync" and not release.is_set():
            in_fsync.set()
            assert release.wait(30)
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(audit_log.os, "fsync", slow_fsync)
    rid = "20261205T000000Z-fsync1"
    log = AuditLog(tmp_path / rid, rid, common={}, redactor=Redactor())
    try:
        log.event("first")
        assert in_fsync.wait(30)  # the flusher is inside its fsync now
        written: list[dict[str, Any]] = []
        writer = threading.Thread(target=lambda: written.append(log.event("second")))
        writer.start()
        writer.join(10)  # done at once unless it waits for the fsync to end (it never ends here)
        assert not writer.is_alive()
        assert written[0]["seq"] == 1
        assert log.snapshot()[0] == 2
    finally:
        release.set()
        log.close()
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["first", "second"]
    assert synced  # the flusher's fsync (on its copy) and close()'s both ran
    assert all(fd >= 0 for fd in synced)
