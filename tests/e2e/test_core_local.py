"""The engine end to end on this machine (connection: local): idempotency, plan honesty,
rollback, secrets, audit verification, bad input, plugins. The same over SSH is in tests/lab."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from maintkit.inventory import load_inventory
from maintkit.playbook import playbook_from_text
from maintkit.results import SiteStatus, StepStatus
from maintkit.runner import Runner

MAINT = [sys.executable, "-m", "maintkit"]


def tree_hash(root: Path) -> str:
    """Hash of every path, mode, link target and file content under root."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(root)}|{st.st_mode}|".encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def write_inventory(tmp_path: Path, n: int = 2) -> Path:
    sites = "\n".join(
        f"  shop-{i}:\n    environments:\n      staging: {{connection: local, path: {tmp_path}/sites/shop-{i}-staging}}\n"
        f"      production: {{connection: local, path: {tmp_path}/sites/shop-{i}}}"
        for i in range(n)
    )
    inv = tmp_path / "inventory.yml"
    inv.write_text(f"sites:\n{sites}\ngroups:\n  first: [shop-0]\n")
    return inv


PLAYBOOK = """\
name: basic
concurrency: 4
stages:
  - env: staging
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}/app", mode: "0755"}}
      - {id: config, action: file.content, with: {path: "{{ env.path }}/app/config.txt", content: "site={{ site.name }}\\n", mode: "0640"}}
      - {action: file.symlink, with: {path: "{{ env.path }}/current", target: "{{ env.path }}/app"}}
      - {action: command, with: {argv: [cat, "{{ env.path }}/app/config.txt"], read_only: true}}
      - {action: command, with: {argv: [touch, "{{ env.path }}/app/stamp"], creates: "{{ env.path }}/app/stamp"}}
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}/app"}}
      - {action: file.content, with: {path: "{{ env.path }}/app/config.txt", content: "prod\\n"}}
"""


def run(tmp_path: Path, text: str = PLAYBOOK, **kw: object) -> object:
    inv = load_inventory(write_inventory(tmp_path))
    return Runner(playbook_from_text(text), inv, state_dir=tmp_path / "state", handle_signals=False, **kw).run()  # type: ignore[arg-type]


def test_run_then_second_run_changes_nothing(tmp_path: Path) -> None:
    first = run(tmp_path)
    assert first.ok, first.to_dict()  # type: ignore[attr-defined]
    assert first.changed == 2 * 6  # the read-only command never counts as a change  # type: ignore[attr-defined]
    site = tmp_path / "sites" / "shop-0-staging"
    assert (site / "app" / "config.txt").read_text() == "site=shop-0\n"
    assert oct((site / "app" / "config.txt").stat().st_mode)[-3:] == "640"
    assert os.readlink(site / "current") == str(site / "app")
    second = run(tmp_path)
    assert second.ok and second.changed == 0  # type: ignore[attr-defined]
    statuses = {s.status for site in second.sites for s in site.steps}  # type: ignore[attr-defined]
    assert statuses == {StepStatus.UNCHANGED}
    assert not (site / ".maint" / "lock").exists()


def test_check_mode_changes_nothing_and_is_honest(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    before = tree_hash(tmp_path / "sites")
    plan = run(tmp_path, check=True)
    assert tree_hash(tmp_path / "sites") == before
    steps = {s.step: s for s in plan.sites[0].steps if s.env == "staging"}  # type: ignore[attr-defined]
    assert steps["file.directory"].status is StepStatus.WOULD_CHANGE
    assert steps["config"].status is StepStatus.WOULD_CHANGE
    # reading a file an earlier step would create cannot be predicted: it says so
    assert steps["command"].status is StepStatus.UNKNOWN
    assert "depends on step" in steps["command"].reason
    # after a real run, the plan predicts no change at all
    run(tmp_path)
    again = run(tmp_path, check=True)
    assert {s.status for site in again.sites for s in site.steps} == {StepStatus.UNCHANGED}  # type: ignore[attr-defined]


def test_failing_step_rolls_back_earlier_steps_of_the_stage(tmp_path: Path) -> None:
    site = tmp_path / "sites" / "shop-0-staging"
    site.mkdir(parents=True)
    (site / "keep.txt").write_text("original\n")
    text = """\
name: failing
stages:
  - env: staging
    steps:
      - {action: file.content, with: {path: "{{ env.path }}/keep.txt", content: "changed\\n"}}
      - {action: file.directory, with: {path: "{{ env.path }}/new/deeper"}}
      - {action: file.symlink, with: {path: "{{ env.path }}/current", target: /nowhere}}
      - {action: command, with: {argv: [sh, -c, "exit 7"]}}
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}"}}
"""
    res = run(tmp_path, text, limit=["shop-0"])
    assert res.exit_code == 1  # type: ignore[attr-defined]
    s = res.sites[0]  # type: ignore[attr-defined]
    assert s.status is SiteStatus.ROLLED_BACK
    assert (site / "keep.txt").read_text() == "original\n"
    assert not (site / "new").exists() and not (site / "current").is_symlink()
    assert not (tmp_path / "sites" / "shop-0").exists(), "production must not be touched after staging failed"
    assert [x.status for x in s.steps] == [StepStatus.ROLLED_BACK] * 3 + [StepStatus.FAILED]
    events = [json.loads(line) for line in (Path(res.run_dir) / "events.jsonl").read_text().splitlines()]  # type: ignore[attr-defined]
    assert [e["step"] for e in events if e["event"] == "step.rolled_back"] == ["file.symlink", "file.directory", "file.content"]
    # every planned step is in the audit log, also the production step that never ran
    assert [(e["env"], e["step"], e["reason"]) for e in events if e["event"] == "step.not_run"] == [
        ("production", "file.directory", "an earlier step failed")
    ]
    assert not (site / ".maint" / "lock").exists()


def test_secret_never_reaches_run_folder_or_output(tmp_path: Path) -> None:
    secret = "s3cr3t-Value-9f8e7d"
    inv = write_inventory(tmp_path)
    pb = tmp_path / "secret.yml"
    pb.write_text(
        """\
name: secret
stages:
  - env: staging
    steps:
      - {action: file.content, with: {path: "{{ env.path }}/token.txt", content: "token={{ secrets.SHOP_TOKEN }}\\n", mode: "0600"}}
      - {action: command, with: {argv: [sh, -c, "echo {{ secrets.SHOP_TOKEN }} >&2; exit 3"]}}
"""
    )
    env = {**os.environ, "SHOP_TOKEN": secret, "MAINT_PLAIN": "1"}
    proc = subprocess.run([*MAINT, "run", str(pb), "-i", str(inv), "--state-dir", str(tmp_path / "state"), "--diff"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert secret not in proc.stdout and secret not in proc.stderr
    assert "exit 3" in proc.stdout or "exited 3" in proc.stdout
    files = list((tmp_path / "state").rglob("*"))
    assert any(f.name == "events.jsonl" for f in files)
    for f in files:
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
            assert oct(f.stat().st_mode)[-3:] == "600", f
    # the file itself was written (then rolled back): the secret really was used
    assert not (tmp_path / "sites" / "shop-0-staging" / "token.txt").exists()


def test_audit_verify_catches_edit_delete_swap(tmp_path: Path) -> None:
    res = run(tmp_path)
    state = tmp_path / "state"
    rid = res.run_id  # type: ignore[attr-defined]
    ok = subprocess.run([*MAINT, "audit", "verify", rid, "--state-dir", str(state)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    events = Path(res.run_dir) / "events.jsonl"  # type: ignore[attr-defined]
    original = events.read_text().splitlines(keepends=True)

    def verify_with(lines: list[str]) -> str:
        events.write_text("".join(lines))
        proc = subprocess.run([*MAINT, "audit", "verify", rid, "--state-dir", str(state)], capture_output=True, text=True)
        assert proc.returncode == 1
        return proc.stderr

    edited = list(original)
    edited[4] = edited[4].replace('"status":"', '"status":"x', 1) if '"status":"' in edited[4] else edited[4].replace("}", ',"x":1}')
    assert "line 5" in verify_with(edited)
    assert "line 4" in verify_with(original[:3] + original[4:])
    swapped = list(original)
    swapped[6], swapped[7] = swapped[7], swapped[6]
    assert "line 7" in verify_with(swapped)
    assert "line" in verify_with(original[:-1])


def test_bad_input_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path)
    pb = tmp_path / "bad.yml"
    pb.write_text(PLAYBOOK.replace("file.symlink", "file.symlnk").replace('mode: "0640"', 'mode: "0999"'))
    proc = subprocess.run([*MAINT, "run", str(pb), "-i", str(inv), "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{pb}:8: stages.0.steps.2.action: unknown action 'file.symlnk'" in proc.stderr
    assert f"{pb}:7: stages.0.steps.1.with.mode" in proc.stderr
    assert not (tmp_path / "sites").exists() and not (tmp_path / "state").exists()
    # an unknown --limit and an unknown --env are bad input too
    for extra in (["--limit", "nope"], ["--env", "qa"]):
        proc = subprocess.run([*MAINT, "run", str(PLAYBOOK_FILE(tmp_path)), "-i", str(inv), *extra,
                               "--state-dir", str(tmp_path / "state")], capture_output=True, text=True)
        assert proc.returncode == 2, (extra, proc.stderr)
    assert not (tmp_path / "sites").exists()


def PLAYBOOK_FILE(tmp_path: Path) -> Path:
    p = tmp_path / "good.yml"
    p.write_text(PLAYBOOK)
    return p


def test_missing_environment_is_reported_with_playbook_line(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(f"sites:\n  solo:\n    environments:\n      production: {{connection: local, path: {tmp_path}/solo}}\n")
    pb = PLAYBOOK_FILE(tmp_path)
    proc = subprocess.run([*MAINT, "plan", str(pb), "-i", str(inv), "--state-dir", str(tmp_path / "s")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{pb}:4: stages.0.env: site 'solo' has no environment 'staging'" in proc.stderr


def test_plugin_action_registered_through_entry_point(tmp_path: Path) -> None:
    listing = subprocess.run([*MAINT, "actions"], capture_output=True, text=True, check=True).stdout
    assert "hello.greet" in listing
    text = "name: p\nstages:\n  - env: staging\n    steps:\n      - {action: hello.greet, with: {who: world}}\n"
    res = run(tmp_path, text, limit=["first"])
    assert res.changed == 1  # type: ignore[attr-defined]
    assert (tmp_path / "sites" / "shop-0-staging" / "hello.txt").read_text() == "hello world\n"
    assert run(tmp_path, text, limit=["first"]).changed == 0  # type: ignore[attr-defined]


def test_when_condition_and_continue_policy(tmp_path: Path) -> None:
    text = """\
name: cond
on_failure: continue
stages:
  - env: staging
    steps:
      - {id: a, action: file.content, with: {path: "{{ env.path }}/a", content: "a"}}
      - {id: b, action: file.content, when: "steps.a.changed", with: {path: "{{ env.path }}/b", content: "b"}}
      - {id: boom, action: command, with: {argv: ["false"]}}
      - {id: c, action: file.content, when: "site.name == 'shop-1'", with: {path: "{{ env.path }}/c", content: "c"}}
"""
    res = run(tmp_path, text)
    assert res.exit_code == 1  # type: ignore[attr-defined]
    root = tmp_path / "sites"
    assert (root / "shop-0-staging" / "b").exists() and not (root / "shop-0-staging" / "c").exists()
    assert (root / "shop-1-staging" / "c").exists()
    res2 = run(tmp_path, text)
    by = {s.step: s.status for s in res2.sites[0].steps}  # type: ignore[attr-defined]
    assert by["b"] is StepStatus.SKIPPED and by["a"] is StepStatus.UNCHANGED
