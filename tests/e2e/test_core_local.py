"""The engine end to end on this machine (connection: local): idempotency, plan honesty,
rollback, secrets, audit verification, bad input, plugins. The same over SSH is in tests/lab."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from maintkit.results import RunResult, SiteStatus, StepStatus
from tests.runs import local_env, one_site, run, write_inventory

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


def shops_inventory(tmp_path: Path, n: int = 2) -> Path:
    """Sites shop-0.. with staging and production on this machine; group ``first`` is shop-0."""
    sites = {
        f"shop-{i}": {
            "environments": {
                "staging": local_env(tmp_path / "sites" / f"shop-{i}-staging"),
                "production": local_env(tmp_path / "sites" / f"shop-{i}"),
            }
        }
        for i in range(n)
    }
    return write_inventory(tmp_path, sites, groups={"first": ["shop-0"]})


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


def run_shops(tmp_path: Path, text: str = PLAYBOOK, **kw: Any) -> RunResult:
    return run(text, shops_inventory(tmp_path), tmp_path / "state", **kw)


def test_run_then_second_run_changes_nothing(tmp_path: Path) -> None:
    first = run_shops(tmp_path)
    assert first.ok, first.to_dict()
    assert first.changed == 2 * 6  # the read-only command never counts as a change
    site = tmp_path / "sites" / "shop-0-staging"
    assert (site / "app" / "config.txt").read_text() == "site=shop-0\n"
    assert oct((site / "app" / "config.txt").stat().st_mode)[-3:] == "640"
    assert os.readlink(site / "current") == str(site / "app")
    second = run_shops(tmp_path)
    assert second.ok and second.changed == 0
    statuses = {s.status for site in second.sites for s in site.steps}
    assert statuses == {StepStatus.UNCHANGED}
    assert not (site / ".maint" / "lock").exists()


def test_check_mode_changes_nothing_and_is_honest(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    before = tree_hash(tmp_path / "sites")
    plan = run_shops(tmp_path, check=True)
    assert tree_hash(tmp_path / "sites") == before
    steps = {s.step: s for s in plan.sites[0].steps if s.env == "staging"}
    assert steps["file.directory"].status is StepStatus.WOULD_CHANGE
    assert steps["config"].status is StepStatus.WOULD_CHANGE
    # reading a file an earlier step would create cannot be predicted: it says so
    assert steps["command"].status is StepStatus.UNKNOWN
    assert "depends on step" in steps["command"].reason
    # after a real run, the plan predicts no change at all
    run_shops(tmp_path)
    again = run_shops(tmp_path, check=True)
    assert {s.status for site in again.sites for s in site.steps} == {StepStatus.UNCHANGED}


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
    res = run_shops(tmp_path, text, limit=["shop-0"])
    assert res.exit_code == 1
    s = res.sites[0]
    assert s.status is SiteStatus.ROLLED_BACK
    assert (site / "keep.txt").read_text() == "original\n"
    assert not (site / "new").exists() and not (site / "current").is_symlink()
    assert not (tmp_path / "sites" / "shop-0").exists(), "production must not be touched after staging failed"
    assert [x.status for x in s.steps] == [StepStatus.ROLLED_BACK] * 3 + [StepStatus.FAILED]
    events = [json.loads(line) for line in (Path(res.run_dir) / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "step.rolled_back"] == [
        "file.symlink",
        "file.directory",
        "file.content",
    ]
    # every planned step is in the audit log, also the production step that never ran
    assert [(e["env"], e["step"], e["reason"]) for e in events if e["event"] == "step.not_run"] == [
        ("production", "file.directory", "an earlier step failed")
    ]
    assert not (site / ".maint" / "lock").exists()


def test_secret_never_reaches_run_folder_or_output(tmp_path: Path) -> None:
    secret = "s3cr3t-Value-9f8e7d"
    inv = shops_inventory(tmp_path)
    pb = tmp_path / "secret.yml"
    pb.write_text(
        """\
name: secret
on_failure: continue
stages:
  - env: staging
    steps:
      - {id: token, action: file.content, with: {path: "{{ env.path }}/token.txt", content: "token={{ secrets.SHOP_TOKEN }}\\n", mode: "0600"}}
      - {id: use, action: command, with: {argv: [sh, -c, 'printf %s "$1" > "$2"', sh, "{{ secrets.SHOP_TOKEN }}", "{{ env.path }}/used.txt"], creates: "{{ env.path }}/used.txt"}}
      - {id: leak, action: command, with: {argv: [sh, -c, "echo token is {{ secrets.SHOP_TOKEN }} >&2; exit 3"]}}
"""
    )
    env = {**os.environ, "SHOP_TOKEN": secret, "MAINT_PLAIN": "1"}
    proc = subprocess.run(
        [*MAINT, "run", str(pb), "-i", str(inv), "--state-dir", str(tmp_path / "state"), "--diff", "--limit", "shop-0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the secret reached the host, exactly: the file step and the command both used it
    site = tmp_path / "sites" / "shop-0-staging"
    assert (site / "token.txt").read_text() == f"token={secret}\n"
    assert oct((site / "token.txt").stat().st_mode)[-3:] == "600"
    assert (site / "used.txt").read_text() == secret
    # ... and no sink holds it: the failing command's stderr is reported, masked
    assert secret not in proc.stdout and secret not in proc.stderr
    assert "    apply: command exited 3: token is ***\n" in proc.stdout, proc.stdout
    files = [f for f in (tmp_path / "state").rglob("*") if f.is_file()]
    assert {f.name for f in files} >= {"events.jsonl", "summary.json", "playbook.yml"}
    for f in files:
        assert secret.encode() not in f.read_bytes(), f
        assert oct(f.stat().st_mode)[-3:] == "600", f
    events = [
        json.loads(line)
        for line in next((tmp_path / "state" / "runs").iterdir()).joinpath("events.jsonl").read_text().splitlines()
    ]
    [failed] = [e for e in events if e["event"] == "step.failed"]
    assert failed["step"] == "leak" and "token is ***" in json.dumps(failed), failed


def test_audit_verify_catches_edit_delete_swap(tmp_path: Path) -> None:
    res = run_shops(tmp_path)
    state = tmp_path / "state"
    rid = res.run_id
    ok = subprocess.run([*MAINT, "audit", "verify", rid, "--state-dir", str(state)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    events = Path(res.run_dir) / "events.jsonl"
    original = events.read_text().splitlines(keepends=True)

    def verify_with(lines: list[str]) -> str:
        events.write_text("".join(lines))
        proc = subprocess.run(
            [*MAINT, "audit", "verify", rid, "--state-dir", str(state)], capture_output=True, text=True
        )
        assert proc.returncode == 1
        return proc.stderr

    edited = list(original)
    edited[4] = (
        edited[4].replace('"status":"', '"status":"x', 1)
        if '"status":"' in edited[4]
        else edited[4].replace("}", ',"x":1}')
    )
    broken = f"BROKEN: {rid}: line"
    assert verify_with(edited) == f"{broken} 5: event was modified (hash mismatch)\n"
    assert (
        verify_with(original[:3] + original[4:])
        == f"{broken} 4: previous event missing or reordered (seq 4 follows 2)\n"
    )
    swapped = list(original)
    swapped[6], swapped[7] = swapped[7], swapped[6]
    assert verify_with(swapped) == f"{broken} 7: previous event missing or reordered (seq 7 follows 5)\n"
    n = len(original)
    assert verify_with(original[:-1]) == (
        f"{broken} {n}: events missing at the end (the log has {n - 1}, summary.json records {n})\n"
    )


def test_bad_input_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    inv = shops_inventory(tmp_path)
    pb = tmp_path / "bad.yml"
    pb.write_text(PLAYBOOK.replace("file.symlink", "file.symlnk").replace('mode: "0640"', 'mode: "0999"'))
    proc = subprocess.run(
        [*MAINT, "run", str(pb), "-i", str(inv), "--state-dir", str(tmp_path / "state")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert f"{pb}:8: stages.0.steps.2.action: unknown action 'file.symlnk'" in proc.stderr
    assert f"{pb}:7: stages.0.steps.1.with.mode" in proc.stderr
    assert not (tmp_path / "sites").exists() and not (tmp_path / "state").exists()
    # an unknown --limit and an unknown --env are bad input too
    for extra in (["--limit", "nope"], ["--env", "qa"]):
        proc = subprocess.run(
            [
                *MAINT,
                "run",
                str(PLAYBOOK_FILE(tmp_path)),
                "-i",
                str(inv),
                *extra,
                "--state-dir",
                str(tmp_path / "state"),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2, (extra, proc.stderr)
    assert not (tmp_path / "sites").exists()


def PLAYBOOK_FILE(tmp_path: Path) -> Path:
    p = tmp_path / "good.yml"
    p.write_text(PLAYBOOK)
    return p


def test_missing_environment_is_reported_with_playbook_line(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, one_site(local_env(tmp_path / "solo"), name="solo"))
    pb = PLAYBOOK_FILE(tmp_path)
    proc = subprocess.run(
        [*MAINT, "plan", str(pb), "-i", str(inv), "--state-dir", str(tmp_path / "s")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert f"{pb}:4: stages.0.env: site 'solo' has no environment 'staging'" in proc.stderr


def test_plugin_action_registered_through_entry_point(tmp_path: Path) -> None:
    listing = subprocess.run([*MAINT, "actions"], capture_output=True, text=True, check=True).stdout
    assert "hello.greet" in listing
    text = "name: p\nstages:\n  - env: staging\n    steps:\n      - {action: hello.greet, with: {who: world}}\n"
    res = run_shops(tmp_path, text, limit=["first"])
    assert res.changed == 1
    assert (tmp_path / "sites" / "shop-0-staging" / "hello.txt").read_text() == "hello world\n"
    assert run_shops(tmp_path, text, limit=["first"]).changed == 0


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
    res = run_shops(tmp_path, text)
    assert res.exit_code == 1
    root = tmp_path / "sites"
    assert (root / "shop-0-staging" / "b").exists() and not (root / "shop-0-staging" / "c").exists()
    assert (root / "shop-1-staging" / "c").exists()
    res2 = run_shops(tmp_path, text)
    by = {s.step: s.status for s in res2.sites[0].steps}
    assert by["b"] is StepStatus.SKIPPED and by["a"] is StepStatus.UNCHANGED
