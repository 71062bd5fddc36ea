"""The runner, the readers and backup.create on a state store whose root is not the state folder.

A recording store stands for a shared backend here (its root is a folder of its own, its
publish records what it was given); the git backend over a lab sshd is tested in
tests/lab/test_state_shared.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from maintkit.errors import MaintkitError
from maintkit.runner.publish import Publisher
from maintkit.state import StateStore
from maintkit.state import index as state_index
from tests.runs import events, local_env, maint_in_process, run, write_inventory


class RecordingStore:
    """A store with its own root; publish records (paths, message, summary written yet?)."""

    name = "recording"

    def __init__(self, root: Path, fail: Sequence[str] = ()) -> None:
        self._root = root
        self.calls: list[tuple[list[Path], str, bool]] = []
        self.fail = list(fail)  # reasons the next publishes fail with, in order
        self.pulls = 0
        self.closed = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    @property
    def root(self) -> Path:
        return self._root

    def describe(self) -> str:
        return f"recording ({self._root})"

    def pull(self) -> None:
        self.pulls += 1

    def publish(self, paths: Sequence[Path], message: str) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30)
            self.gate = None
        runs = [p for p in paths if p.parent.name == "runs"]
        self.calls.append((list(paths), message, all((p / "summary.json").is_file() for p in runs)))
        if self.fail:
            raise MaintkitError(self.fail.pop(0))

    def close(self) -> None:
        self.closed = True


PLAYBOOK = """\
name: touch
stages:
  - env: staging
    steps:
      - {id: note, action: file.content, with: {path: "{{ env.path }}/note.txt", content: "hello\\n"}}
  - env: production
    steps:
      - {id: note, action: file.content, with: {path: "{{ env.path }}/note.txt", content: "hello\\n"}}
"""


def _inventory(tmp_path: Path, sites: int = 1) -> Path:
    shops = {}
    for n in range(sites):
        envs = {e: local_env(tmp_path / "sites" / f"shop{n}-{e}") for e in ("staging", "production")}
        for env in envs.values():
            Path(env["path"]).mkdir(parents=True)
        shops[f"shop{n}"] = {"environments": envs}
    return write_inventory(tmp_path, shops)


def test_run_folders_and_index_go_to_the_store_and_are_published(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "store")
    assert isinstance(store, StateStore)
    inv = _inventory(tmp_path)
    first = run(PLAYBOOK, inv, tmp_path / "state", store=store)
    assert first.status.value == "ok" and first.changed == 2
    assert first.run_dir == str(tmp_path / "store" / "runs" / first.run_id)
    assert (Path(first.run_dir) / "summary.json").is_file()
    assert not (tmp_path / "state" / "runs").exists()  # the local state folder keeps no history
    assert store.pulls == 1
    # the last publish is the final one: the sealed run folder and the index, with the run's message
    paths, message, sealed = store.calls[-1]
    assert message == f"maint run {first.run_id}: touch ok"
    assert sealed
    assert Path(first.run_dir) in paths and tmp_path / "store/index/shop0/runs.jsonl" in paths
    # publishes were asked for during the run too (stage ends, applied steps: 2 + 2 requests here), never more
    # than one per request, plus the final one
    assert 2 <= len(store.calls) <= 5
    assert all(Path(first.run_dir) in p for p, _, _ in store.calls)
    assert [
        (r["env"], r["run_id"], r["status"]) for r in state_index.read_lines(tmp_path / "store/index/shop0/runs.jsonl")
    ] == [
        ("staging", first.run_id, "ok"),
        ("production", first.run_id, "ok"),
    ]
    second = run(PLAYBOOK, inv, tmp_path / "state", store=store)
    assert second.changed == 0
    last = state_index.last_runs(tmp_path / "store", "shop0")
    assert {env: by["touch"]["run_id"] for env, by in last.items()} == {
        "staging": second.run_id,
        "production": second.run_id,
    }
    plan = run(PLAYBOOK, inv, tmp_path / "state", store=store, check=True)
    assert plan.run_dir == str(tmp_path / "store" / "runs" / plan.run_id)
    assert (
        state_index.last_runs(tmp_path / "store", "shop0")["staging"]["touch"]["run_id"] == second.run_id
    )  # plans are not recorded


def test_publishes_are_merged_while_one_is_in_flight(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    store.gate = threading.Event()
    pub = Publisher(store)
    pub.request([tmp_path / "p0"], "m0")
    assert store.entered.wait(30)  # the first publish is in flight (held at the gate)
    for n in range(1, 50):
        pub.request([tmp_path / f"p{n}"], f"m{n}")
    gate = store.gate
    threading.Thread(target=lambda: pub.closing.wait(30) and gate.set()).start()  # released once close() waits
    assert pub.close([tmp_path / "final"], "final") is None
    assert pub.publishes == 2
    assert store.calls[0][:2] == ([tmp_path / "p0"], "m0")
    assert set(store.calls[1][0]) == {tmp_path / f"p{n}" for n in range(1, 50)} | {tmp_path / "final"}
    assert store.calls[1][1] == "final"


def test_a_failed_publish_is_retried_by_the_next_and_warned_in_the_audit_log(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "store", fail=["remote unreachable"])
    result = run(PLAYBOOK, _inventory(tmp_path), tmp_path / "state", store=store)
    assert result.status.value == "ok"
    failed = [e for e in events(result.run_dir) if e["event"] == "state.publish_failed"]
    assert [(e["error"], e["store"]) for e in failed] == [("remote unreachable", store.describe())]
    # what the failed publish held is in the final one, which succeeded
    assert set(store.calls[0][0]) <= set(store.calls[-1][0])
    assert len(store.calls) >= 2


def test_a_failed_final_publish_leaves_the_result_and_says_state_not_saved(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "store", fail=["rejected"] * 10)
    seen: list[dict] = []
    from maintkit.inventory import load_inventory
    from maintkit.playbook import playbook_from_text
    from maintkit.runner import Runner

    runner = Runner(
        playbook_from_text(PLAYBOOK),
        load_inventory(_inventory(tmp_path)),
        state_dir=tmp_path / "state",
        store=store,
        handle_signals=False,
        on_event=seen.append,
    )
    result = runner.run()
    assert result.status.value == "ok" and result.exit_code == 0
    assert runner.state_error == "state not saved: rejected"
    assert json.loads((Path(result.run_dir) / "summary.json").read_text())["status"] == "ok"
    assert seen[-1]["event"] == "state.not_saved" and seen[-1]["error"] == "rejected"
    # the sealed audit log ends with the run: the failure after it is shown, not appended
    assert events(result.run_dir)[-1]["event"] == "run.finished"


def test_cli_exits_1_when_the_state_is_not_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import maintkit.state.select as select

    store = RecordingStore(tmp_path / "store", fail=["rejected by remote"] * 10)
    opened: list[object] = []

    def fake_open(spec, *, state_dir, environ):  # noqa: ANN001, ANN202
        opened.append((spec.backend, dict(spec.options), spec.origin))
        return store

    monkeypatch.setattr(select, "open_store", fake_open)
    pb = tmp_path / "touch.yml"
    pb.write_text(PLAYBOOK)
    out = maint_in_process(
        "run",
        str(pb),
        "-i",
        str(_inventory(tmp_path)),
        "--state-dir",
        str(tmp_path / "state"),
        "--state",
        "git:/srv/nowhere.git#st",
    )
    assert out.exit_code == 1, out.output
    assert out.stderr.strip().splitlines()[-1] == "error: state not saved: rejected by remote"
    assert opened == [("git", {"remote": "/srv/nowhere.git", "branch": "st"}, "--state")]
    assert store.closed
    [run_dir] = list((tmp_path / "store" / "runs").iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "ok"


def test_readers_take_the_store_from_the_flag_the_environment_or_the_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import maintkit.state.select as select

    store = RecordingStore(tmp_path / "store")
    opened: list[tuple[str, str]] = []

    def fake_open(spec, *, state_dir, environ):  # noqa: ANN001, ANN202
        opened.append((spec.backend, spec.origin))
        return store

    monkeypatch.setattr(select, "open_store", fake_open)
    result = run(PLAYBOOK, _inventory(tmp_path), tmp_path / "state", store=store)
    inv = tmp_path / "with-state.yml"
    inv.write_text((tmp_path / "inventory.yml").read_text() + "state: {backend: git, remote: /srv/x.git}\n")
    monkeypatch.delenv("MAINT_STATE", raising=False)
    monkeypatch.delenv("MAINT_INVENTORY", raising=False)
    listed = maint_in_process("runs", "--state", "git:/srv/x.git", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [result.run_id]
    verified = maint_in_process("audit", "verify", result.run_id[:12], "-i", str(inv))
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith(f"ok: {result.run_id}: ")
    monkeypatch.setenv("MAINT_STATE", "git:/srv/x.git")
    shown = maint_in_process("runs", "latest")
    assert shown.exit_code == 0 and shown.stdout.startswith(f"run {result.run_id}  playbook touch  status ok")
    report = maint_in_process("report", "--state-dir", str(tmp_path / "empty"))
    assert report.exit_code == 0, report.output
    assert "shop0" in report.stdout
    assert opened == [("git", "--state"), ("git", str(inv)), ("git", "MAINT_STATE"), ("git", "MAINT_STATE")]


def test_opening_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAINT_STATE", raising=False)
    out = maint_in_process("runs", "--state", "bogus", "--state-dir", str(tmp_path))
    assert out.exit_code == 2
    assert "unknown state backend 'bogus'" in out.stderr
    monkeypatch.setenv("MAINT_STATE", "{not json")
    out = maint_in_process("audit", "verify", "latest", "--state-dir", str(tmp_path))
    assert out.exit_code == 2
    assert out.stderr.startswith("error: MAINT_STATE: state: not valid JSON")


def test_promote_from_is_resolved_in_the_store(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "store")
    inv = _inventory(tmp_path)
    first = run(PLAYBOOK, inv, tmp_path / "state-a", store=store)
    second = run(PLAYBOOK, inv, tmp_path / "state-b", store=store, promote_from=first.run_id[:14])
    summary = json.loads((Path(second.run_dir) / "summary.json").read_text())
    assert summary["promote_from"] == first.run_id
    from maintkit.errors import ConfigError

    with pytest.raises(ConfigError, match="no run matches"):  # the local state folder is not the history
        run(PLAYBOOK, inv, tmp_path / "state-a", promote_from=first.run_id)
