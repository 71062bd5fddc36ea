"""action.yml's shell, run as a runner runs it: known_hosts entries written once, a key file per job
and its ssh-agent removed at the end (also when the run step was killed), maint's exit status
kept under ``bash -e``, and a plan's pending changes exposed (``changes``, ``would-change``,
``--detailed-exitcode``)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.test_action_steps import PLAYBOOK, _job, read_kv, render, run_action
from tests.gates import wait_until
from tests.lab.procs import is_alive
from tests.runs import local_env, one_site, write_inventory

REPO = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((REPO / "action.yml").read_text())
STEPS = {s["name"]: s for s in ACTION["runs"]["steps"]}
KH1 = "[127.0.0.10]:2201 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDq1"
KH2 = "[127.0.0.11]:2201 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDq2"
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----"

# a stand-in for maint: records its arguments and the key file it was given, exits as told
SHIM = """#!/bin/sh
printf '%s\\n' "$*" > "$SHIM_DIR/argv"
if [ -n "${MAINT_SSH_KEY_FILE:-}" ]; then
  printf '%s %s\\n' "$MAINT_SSH_KEY_FILE" "$(stat -c %a "$MAINT_SSH_KEY_FILE")" > "$SHIM_DIR/key"
  cp "$MAINT_SSH_KEY_FILE" "$SHIM_DIR/key-content"
fi
[ "${SHIM_KILL:-}" = 1 ] && kill -9 $PPID
[ -n "${SHIM_CHANGED:-}" ] && echo "changed=$SHIM_CHANGED" >> "$GITHUB_OUTPUT"
exit "${SHIM_EXIT:-0}"
"""


def run_step(name: str, root: Path, inputs: dict[str, str], extra_env: dict[str, str] | None = None,
             steps: dict[str, Any] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:  # fmt: skip
    """One step of action.yml with ``inputs`` over the defaults, the shim as ``maint``; its result and outputs."""
    ctx: dict[str, Any] = {"github": {"repository": "acme/shops", "token": "t", "action_path": str(REPO)},
                           "steps": steps or {}}  # fmt: skip
    ctx["inputs"] = {k: inputs.get(k, render(str(v.get("default", "")), ctx)) for k, v in ACTION["inputs"].items()}
    step = STEPS[name]
    env_step = {k: render(str(v), ctx) for k, v in (step.get("env") or {}).items()}
    bindir = root / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    (bindir / "maint").write_text(SHIM)
    (bindir / "maint").chmod(0o755)
    (root / "home").mkdir(exist_ok=True)
    (root / "temp").mkdir(exist_ok=True)
    output = root / f"output-{len(list(root.glob('output-*')))}"
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(root / "home"), "RUNNER_TEMP": str(root / "temp"),
        "GITHUB_OUTPUT": str(output), "GITHUB_ENV": str(root / "env"), "GITHUB_JOB": "update",
        "GITHUB_RUN_ID": "77", "SHIM_DIR": str(root), **env_step, **(extra_env or {}),
    }  # fmt: skip
    script = root / "step.sh"
    script.write_text(step["run"])
    res = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=env,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    return res, read_kv(output)


def test_known_hosts_lines_are_written_once(tmp_path: Path) -> None:
    known = tmp_path / "home" / ".ssh" / "known_hosts"
    for lines in (f"{KH1}\n{KH2}", f"{KH1}\r\n{KH2}\r\n\n{KH1}\n", KH2):
        res, _ = run_step("Run maint", tmp_path, {"playbook": "ops", "known-hosts": lines})
        assert res.returncode == 0, res.stderr
    assert known.read_text() == f"{KH1}\n{KH2}\n"
    assert stat.S_IMODE(known.stat().st_mode) == 0o600


def test_a_key_file_per_job_removed_at_the_end(tmp_path: Path) -> None:
    res, out = run_step("Run maint", tmp_path, {"playbook": "ops", "ssh-private-key": FAKE_KEY})
    assert res.returncode == 0, res.stderr
    path, mode = (tmp_path / "key").read_text().split()
    assert mode == "600" and (tmp_path / "key-content").read_text() == FAKE_KEY + "\n"
    assert re.fullmatch(re.escape(str(tmp_path / "temp")) + r"/maint-key-update-77-\w{8}", path)
    assert out["key-file"] == path and not Path(path).exists()  # removed by the step's own cleanup
    wait_until(lambda: not agent_running(int(out["agent-pid"])), "the step's ssh-agent stopped", limit=10)
    assert not (tmp_path / "home" / ".ssh" / "maint_deploy_key").exists()
    # another job on the same runner at the same time gets a file of its own
    run_step("Run maint", tmp_path, {"playbook": "ops", "ssh-private-key": FAKE_KEY})
    assert (tmp_path / "key").read_text().split()[0] != path


def agent_running(pid: int) -> bool:
    """Whether ``pid`` is a live (not yet ended) ``ssh-agent``."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return comm == "ssh-agent" and is_alive(pid)


def test_a_killed_run_step_leaves_the_key_and_its_agent_to_the_always_step(tmp_path: Path) -> None:
    """The run step is killed before its own cleanup: the always step removes the key file and
    stops the step's ssh-agent (which holds the key), found by the pid the run step wrote out."""
    res, out = run_step("Run maint", tmp_path, {"playbook": "ops", "ssh-private-key": FAKE_KEY}, {"SHIM_KILL": "1"})
    assert res.returncode == -9
    left = Path(out["key-file"])
    agent = int(out["agent-pid"])
    assert left.read_text() == FAKE_KEY + "\n"  # the trap never ran
    assert agent_running(agent)
    assert STEPS["Remove the SSH key"]["if"] == "always()"
    res, _ = run_step("Remove the SSH key", tmp_path, {}, steps={"run": {"outputs": out}})
    assert res.returncode == 0 and not left.exists()
    wait_until(lambda: not agent_running(agent), "the run step's ssh-agent stopped", limit=10)
    res, _ = run_step("Remove the SSH key", tmp_path, {}, steps={"run": {"outputs": {}}})  # no key was given
    assert res.returncode == 0, res.stderr


def test_the_always_step_stops_only_an_ssh_agent(tmp_path: Path) -> None:
    """A pid that is no longer the step's ssh-agent (reused by another process) is left alone."""
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    other = subprocess.Popen(["sh", "-c", 'exec 3<>"$1"; read -r x <&3', "sh", str(fifo)])
    try:
        for pid in (str(other.pid), f"{other.pid} 1", "-1", "0x1"):
            res, _ = run_step("Remove the SSH key", tmp_path, {}, steps={"run": {"outputs": {"agent-pid": pid}}})
            assert res.returncode == 0, res.stderr
        assert other.poll() is None
    finally:
        other.kill()
        other.wait(timeout=30)


def test_maints_exit_status_is_the_steps_under_bash_e(tmp_path: Path) -> None:
    for code in (0, 1, 2, 3):
        res, out = run_step("Run maint", tmp_path, {"playbook": "ops"}, {"SHIM_EXIT": str(code), "SHIM_CHANGED": "0"})
        assert res.returncode == code and out["exitcode"] == str(code) and out["changes"] == "false"
    assert (tmp_path / "argv").read_text() == "run ops -i inventory.yml --state-dir .maint\n"


def test_a_plan_exposes_pending_changes(tmp_path: Path) -> None:
    plan = {"playbook": "ops", "check": "true", "limit": "shop-a"}
    res, out = run_step("Run maint", tmp_path, plan, {"SHIM_EXIT": "2"})
    assert (
        tmp_path / "argv"
    ).read_text() == "plan ops --detailed-exitcode -i inventory.yml --state-dir .maint --limit shop-a\n"
    assert (res.returncode, out["exitcode"], out["changes"]) == (0, "2", "true")
    res, out = run_step("Run maint", tmp_path, {**plan, "detailed-exitcode": "true"}, {"SHIM_EXIT": "2"})
    assert (res.returncode, out["changes"]) == (2, "true")
    res, out = run_step("Run maint", tmp_path, {**plan, "detailed-exitcode": "true"}, {"SHIM_EXIT": "0"})
    assert (res.returncode, out["changes"]) == (0, "false")
    res, out = run_step("Run maint", tmp_path, plan, {"SHIM_EXIT": "1"})
    assert res.returncode == 1 and "changes" not in out
    # a sharded plan stays `run --check` (plan has no --shard)
    run_step("Run maint", tmp_path, {**plan, "shard": "1/2"})
    assert (
        (tmp_path / "argv").read_text().startswith("run ops -i inventory.yml --state-dir .maint --limit shop-a --check")
    )


def test_the_action_plans_then_runs_a_real_site(tmp_path: Path) -> None:
    """The whole action with the real maint: a plan says changes are pending, the run makes them, a plan says none."""
    site = tmp_path / "site"
    site.mkdir()
    ws = tmp_path / "job" / "ws"
    (ws / "playbooks").mkdir(parents=True)
    (ws / "playbooks" / "ops.yml").write_text(PLAYBOOK)
    write_inventory(ws, one_site(local_env(site)))
    job = _job(tmp_path / "job", "ghs_x", "5151")
    base = {"playbook": "ops", "state": "local", "python-version": ""}
    out, _ = run_action(job, {**base, "check": "true"})
    assert (out["status"], out["would-change"], out["changes"], out["exitcode"]) == ("ok", "1", "true", "2")
    assert not (site / "stamp").exists()
    out, _ = run_action(job, base)
    assert (out["changed"], out["changes"], out["exitcode"]) == ("1", "true", "0")
    out, _ = run_action(job, {**base, "check": "true"})
    assert (out["would-change"], out["changes"], out["exitcode"]) == ("0", "false", "0")
