"""The per-site index of the state store: records, folds, names that cannot escape, merges without conflict."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maintkit.state import index


def test_last_runs_keeps_the_latest_per_env_and_playbook(tmp_path: Path) -> None:
    wrote = index.record_run(tmp_path, "shop", "staging", "update", "R1", "ok", "2026-01-05T10:00:00+00:00")
    assert wrote == [tmp_path / "index/.gitattributes", tmp_path / "index/shop/runs.jsonl"]
    again = index.record_run(tmp_path, "shop", "staging", "update", "R3", "failed", "2026-01-07T10:00:00+00:00")
    assert again == [tmp_path / "index/shop/runs.jsonl"]  # the attributes file is written once
    index.record_run(tmp_path, "shop", "staging", "update", "R2", "ok", "2026-01-06T10:00:00+00:00")
    index.record_run(tmp_path, "shop", "production", "update", "R4", "ok", "2026-01-08T10:00:00+00:00")
    index.record_run(tmp_path, "shop", "staging", "backup", "R5", "ok", "2026-01-01T10:00:00+00:00")
    last = index.last_runs(tmp_path, "shop")
    assert {env: {pb: r["run_id"] for pb, r in by.items()} for env, by in last.items()} == {
        "staging": {"update": "R3", "backup": "R5"},
        "production": {"update": "R4"},
    }
    assert last["staging"]["update"]["status"] == "failed"
    assert index.last_runs(tmp_path, "other") == {}
    assert (tmp_path / "index/.gitattributes").read_text() == "*.jsonl merge=union\n"


def test_backups_certs_locks_are_appended_per_environment(tmp_path: Path) -> None:
    assert index.record_backup(tmp_path, "shop", "production", {"id": "B1", "dir": "/b"})[-1] == (
        tmp_path / "index/shop/production/backups.jsonl"
    )
    index.record_backup(tmp_path, "shop", "production", {"id": "B2", "dir": "/b", "ts": "2026-01-01T00:00:00+00:00"})
    index.record_cert(tmp_path, "shop", "staging", {"serial": "0a", "days_left": 12.5})
    index.record_lock(tmp_path, "shop", "staging", {"run_id": "R1", "status": "validated", "packages": {"p": "1.0"}})
    assert [b["id"] for b in index.backups(tmp_path, "shop", "production")] == ["B1", "B2"]
    assert index.backups(tmp_path, "shop", "production")[1]["ts"] == "2026-01-01T00:00:00+00:00"
    assert index.backups(tmp_path, "shop", "staging") == []
    [cert] = index.certs(tmp_path, "shop", "staging")
    assert (cert["serial"], cert["days_left"]) == ("0a", 12.5)
    assert datetime.fromisoformat(cert["ts"]).tzinfo is not None
    assert index.version_locks(tmp_path, "shop", "staging")[0]["packages"] == {"p": "1.0"}
    assert index.environments(tmp_path, "shop") == ["production", "staging"]
    for f in (tmp_path / "index").rglob("*"):
        if f.is_file():
            assert oct(f.stat().st_mode)[-3:] == "600", f


def test_a_torn_line_is_skipped_and_the_rest_is_read(tmp_path: Path) -> None:
    index.record_cert(tmp_path, "shop", "production", {"serial": "01"})
    path = tmp_path / "index/shop/production/certs.jsonl"
    with path.open("a") as fh:
        fh.write('{"serial": "02", "ts"')  # a writer died mid-line
    index.record_cert(tmp_path, "shop", "production", {"serial": "03"})
    # the next append ends the torn line first: only the torn record is lost
    assert [c["serial"] for c in index.certs(tmp_path, "shop", "production")] == ["01", "03"]
    assert path.read_text().count("\n") == 3


def test_series_are_split_by_month_and_read_since(tmp_path: Path) -> None:
    for ts, ms in [
        ("2026-01-31T23:59:00+00:00", 100),
        ("2026-02-01T00:01:00+00:00", 120),
        ("2026-03-02T08:00:00Z", 90),
    ]:
        index.append_series(tmp_path, "shop", "production", "latency", {"ts": ts, "ms": ms})
    folder = tmp_path / "index/shop/production/series/latency"
    assert sorted(p.name for p in folder.iterdir()) == ["2026-01.jsonl", "2026-02.jsonl", "2026-03.jsonl"]
    since = datetime(2026, 2, 1, tzinfo=UTC)
    assert [p["ms"] for p in index.series(tmp_path, "shop", "production", "latency", since)] == [120, 90]
    assert [p["ms"] for p in index.series(tmp_path, "shop", "production", "latency")] == [100, 120, 90]
    with pytest.raises(ValueError, match="not ISO 8601"):
        index.append_series(tmp_path, "shop", "production", "latency", {"ts": "yesterday"})


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "a\x00b", "a\\b", "-x", "a..b", "x" * 129]
)
def test_hostile_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(index.BadName):
        index.record_run(tmp_path, name, "production", "p", "R", "ok")
    with pytest.raises(index.BadName):
        index.record_cert(tmp_path, "shop", name, {})
    with pytest.raises(index.BadName):
        index.series(tmp_path, "shop", "production", name)
    assert not (tmp_path / "index").exists() or [p for p in (tmp_path / "index").rglob("*") if p.is_file()] == []


_HOSTILE = st.text(alphabet=st.sampled_from(list("ab9_.-@+/\\\x00 \n~$*é")), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    site=st.one_of(_HOSTILE, st.text(max_size=40)),
    env=st.one_of(_HOSTILE, st.text(max_size=40)),
    name=st.one_of(_HOSTILE, st.text(max_size=20)),
)
def test_no_name_writes_outside_its_own_folder(tmp_path: Path, site: str, env: str, name: str) -> None:
    root = tmp_path / "root"
    try:
        written = index.append_series(root, site, env, name or "s", {"ts": "2026-01-01T00:00:00+00:00"})
    except index.BadName:
        return
    expected = (root / "index" / site / env / "series" / (name or "s")).resolve()
    for path in written:
        real = path.resolve()
        assert real.is_relative_to((root / "index").resolve())
        assert real.name == ".gitattributes" or real.parent == expected
    assert index.series(root, site, env, name or "s")[-1]["ts"] == "2026-01-01T00:00:00+00:00"


GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "maint",
    "GIT_AUTHOR_EMAIL": "maint@example.invalid",
    "GIT_COMMITTER_NAME": "maint",
    "GIT_COMMITTER_EMAIL": "maint@example.invalid",
}


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_two_controllers_appending_to_one_file_rebase_without_conflict(tmp_path: Path) -> None:
    """Two clones append to the same site's files; the second rebases onto the first: both lines kept."""
    bare = tmp_path / "remote.git"
    _git(tmp_path, "init", "-q", "--bare", "-b", "maint-state", str(bare))
    a, b = tmp_path / "a", tmp_path / "b"
    _git(tmp_path, "clone", "-q", str(bare), str(a))
    _git(a, "checkout", "-q", "-b", "maint-state")
    index.record_run(a, "shop", "staging", "update", "R0", "ok", "2026-01-01T00:00:00+00:00")
    _git(a, "add", "-A")
    _git(a, "commit", "-q", "-m", "R0")
    _git(a, "push", "-q", "origin", "maint-state")
    _git(tmp_path, "clone", "-q", "-b", "maint-state", str(bare), str(b))
    for clone, run in ((a, "RA"), (b, "RB")):  # both append at the same moment, from the same base
        index.record_run(clone, "shop", "staging", "update", run, "ok", f"2026-01-02T00:00:0{run[-1] == 'B'}+00:00")
        index.record_cert(clone, "shop", "staging", {"serial": run})
        _git(clone, "add", "-A")
        _git(clone, "commit", "-q", "-m", run)
    _git(a, "push", "-q", "origin", "maint-state")
    _git(b, "pull", "-q", "--rebase", "origin", "maint-state")  # no conflict thanks to merge=union
    _git(b, "push", "-q", "origin", "maint-state")
    assert [r["run_id"] for r in index.read_lines(b / "index/shop/runs.jsonl")] == ["R0", "RA", "RB"]
    assert [c["serial"] for c in index.certs(b, "shop", "staging")] == ["RA", "RB"]
    assert index.last_runs(b, "shop")["staging"]["update"]["run_id"] == "RB"


def test_latest_point_is_the_last_point_of_the_series_and_reads_only_the_newest_month(tmp_path: Path) -> None:
    from maintkit.state.index import append_series, env_dir, latest_point, series

    assert latest_point(tmp_path, "shop", "production", "health") is None
    for ts, n in [("2026-10-31T23:00:00+00:00", 1), ("2026-11-02T10:00:00+00:00", 3), ("2026-11-01T10:00:00+00:00", 2)]:
        append_series(tmp_path, "shop", "production", "health", {"ts": ts, "n": n})
    append_series(tmp_path, "shop", "production", "health", {"ts": "2026-11-02T10:00:00+00:00", "n": 4})
    assert (
        latest_point(tmp_path, "shop", "production", "health") == series(tmp_path, "shop", "production", "health")[-1]
    )
    assert latest_point(tmp_path, "shop", "production", "health")["n"] == 4  # equal times: the later line
    folder = env_dir(tmp_path, "shop", "production") / "series" / "health"
    with (folder / "2026-10.jsonl").open("a") as f:  # an older month is not read: this line would win
        f.write('{"ts": "2026-12-30T00:00:00+00:00", "n": 99}\n')
    assert series(tmp_path, "shop", "production", "health")[-1]["n"] == 99
    (folder / "2026-12.jsonl").write_text("")  # an empty newest month: the month before counts
    assert latest_point(tmp_path, "shop", "production", "health")["n"] == 4


def test_record_runs_writes_what_record_run_writes_and_fsyncs_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [("shop", "staging", "ok"), ("shop", "production", "failed"), ("blog", "production", "ok")]
    one_by_one = tmp_path / "a"
    for site, env, status in runs:
        index.record_run(one_by_one, site, env, "update", "R1", status, "2026-01-05T10:00:00+00:00")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    together = tmp_path / "b"
    wrote = index.record_runs(together, runs, "update", "R1", "2026-01-05T10:00:00+00:00")
    assert wrote == [
        [together / "index/.gitattributes", together / "index/shop/runs.jsonl"],
        [together / "index/shop/runs.jsonl"],
        [together / "index/blog/runs.jsonl"],
    ]
    for rel in ("index/shop/runs.jsonl", "index/blog/runs.jsonl", "index/.gitattributes"):
        assert (together / rel).read_bytes() == (one_by_one / rel).read_bytes()
    # the three appends, each fsynced (the attributes file is fsynced by its atomic write)
    runs_files = sorted(p for p in synced if p.endswith("runs.jsonl"))
    assert runs_files == sorted(
        [str(together / "index/blog/runs.jsonl"), *[str(together / "index/shop/runs.jsonl")] * 2]
    )


def test_record_runs_reports_each_failure_in_its_place_and_writes_the_rest(tmp_path: Path) -> None:
    (tmp_path / "index" / "blocked").mkdir(parents=True)
    (tmp_path / "index" / "blocked" / "runs.jsonl").mkdir()  # a folder where the file should be
    runs = [("../escape", "production", "ok"), ("blocked", "production", "ok"), ("shop", "production", "ok")]
    bad_name, blocked, ok = index.record_runs(tmp_path, runs, "update", "R1")
    assert isinstance(bad_name, index.BadName) and "'../escape'" in str(bad_name)
    assert isinstance(blocked, IsADirectoryError)
    assert ok == [tmp_path / "index/.gitattributes", tmp_path / "index/shop/runs.jsonl"]
    [record] = index.read_lines(tmp_path / "index/shop/runs.jsonl")
    assert (record["run_id"], record["status"], record["env"]) == ("R1", "ok", "production")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "index/escape").exists()


def test_record_runs_keeps_only_a_bounded_number_of_files_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "_OPEN_AT_ONCE", 4)
    open_at_fsync: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if _points_to_runs(str(fd)):  # not the attributes file's atomic write
            open_at_fsync.append(sum(1 for f in os.listdir("/proc/self/fd") if _points_to_runs(f)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    runs = [(f"site{i}", "production", "ok") for i in range(10)]
    wrote = index.record_runs(tmp_path, runs, "update", "R1")
    assert [w[-1] for w in wrote if isinstance(w, list)] == [tmp_path / f"index/site{i}/runs.jsonl" for i in range(10)]
    assert len(open_at_fsync) == 10 and max(open_at_fsync) <= 4
    assert all(len(index.read_lines(tmp_path / f"index/site{i}/runs.jsonl")) == 1 for i in range(10))


def _points_to_runs(fd: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith("/runs.jsonl")
    except OSError:
        return False


def test_an_interrupt_while_writing_leaves_no_index_file_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_line = index._line

    def line(record: dict[str, object]) -> str:
        if record["env"] == "stop":
            raise KeyboardInterrupt
        return real_line(record)

    monkeypatch.setattr(index, "_line", line)
    runs = [("a", "production", "ok"), ("b", "production", "ok"), ("c", "stop", "ok")]
    with pytest.raises(KeyboardInterrupt):
        index.record_runs(tmp_path, runs, "update", "R1")
    assert not [f for f in os.listdir("/proc/self/fd") if _points_to_runs(f)]
