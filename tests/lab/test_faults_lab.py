"""Faults over real SSH (lab sshd, nginx): a run killed while the shop is in maintenance, a host
that cannot be reached, and a host whose network dies in the middle of a step."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import requests

from maintkit.results import SiteStatus, StepStatus
from tests.gates import gated_shell, make_gates, open_gate, wait_started
from tests.lab.sshd import LabHost, SshLab
from tests.lab.test_site_ops import Shop, lab_host, make_shop, ops_web  # noqa: F401  (fixtures)
from tests.runs import events, maint_cli, one_site, run, spawn_maint, write_inventory

GATED = """\
name: gated
stages:
  - env: production
    steps:
      - {id: maint-on, action: maintenance.enable}
      - id: work
        action: command
        with:
          argv: [sh, -c, "GATED"]
          creates: "{{ env.path }}/done"
      - {id: after, action: command, with: {argv: ["true"]}}
"""
GATED = GATED.replace("GATED", gated_shell("{{ env.path }}", "touch {{ env.path }}/done"))


def test_killed_run_leaves_503_until_the_next_run_switches_it_off(
    tmp_path: Path,
    lab_host: LabHost,  # noqa: F811
    make_shop: Callable[..., Shop],  # noqa: F811
) -> None:
    shop = make_shop()
    site = shop.path
    make_gates(site, "deploy")
    inv = write_inventory(tmp_path, one_site(lab_host.env(site, url=shop.url)))
    pb = tmp_path / "gated.yml"
    pb.write_text(GATED)
    state = tmp_path / "state"

    def maint(*args: str) -> subprocess.CompletedProcess[str]:
        return maint_cli(*args, "-i", str(inv), "--state-dir", str(state), cwd=tmp_path)

    proc = spawn_maint("run", str(pb), "-i", str(inv), "--state-dir", str(state), cwd=tmp_path)
    try:
        wait_started(site, proc)
        holder = json.loads((site / ".maint" / "lock" / "holder.json").read_text())
        assert requests.get(shop.url + "/", timeout=5).status_code == 503
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        open_gate(site)
    (site / "done").touch()  # the gated work is finished either way
    assert requests.get(shop.url + "/", timeout=5).status_code == 503, "the killed run left the shop in maintenance"

    unlocked = maint("unlock", "shop", "--env", "production")
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.splitlines()[1] == (
        f"warning: maintenance mode of shop/production is still on, left by run {holder['run_id']} "
        f"(its lock is gone): {shop.flag}"
    )
    assert requests.get(shop.url + "/", timeout=5).status_code == 503

    again = maint("run", str(pb), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    result = json.loads(again.stdout.splitlines()[-1])
    evs = events(result["run_dir"])
    left = [e for e in evs if e["event"] == "maintenance.leftover"]
    assert [(e["previous_run"], e["outcome"], e["markers"]) for e in left] == [
        (holder["run_id"], "taken-over", [str(shop.flag)])
    ]
    assert [s["status"] for s in result["sites"][0]["steps"]] == ["changed", "unchanged", "changed"]
    assert requests.get(shop.url + "/", timeout=5).status_code == 200
    assert not shop.flag.exists() and not (site / ".maint" / "maintenance.json").exists()
    assert not (site / ".maint" / "lock").exists()


def test_unreachable_host_says_so_for_every_step(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    h, d = ssh_hosts[0]
    res = run(
        GATED, write_inventory(tmp_path, one_site(h.env(d / "site", port=1, connect_timeout=5))), tmp_path / "state"
    )
    assert res.exit_code == 4  # ExitCode.UNREACHABLE: nothing else failed
    s = res.sites[0]
    assert s.status is SiteStatus.FAILED and s.error is not None
    assert s.error.startswith(f"{h.ip}:")
    reasons = [(e["step"], e["reason"]) for e in events(res.run_dir or "") if e["event"] == "step.not_run"]
    why = f"the host could not be reached: {s.error}"
    assert reasons == [("maint-on", why), ("work", why), ("after", why)]


def test_host_dying_mid_step_blames_the_step_that_failed(tmp_path: Path, ssh_lab: SshLab, netns_host: LabHost) -> None:
    site = ssh_lab.scratch(netns_host, "dying")
    make_gates(site, "deploy")
    env = netns_host.env(site, connect_timeout=3, command_timeout=5)
    cut: list[bool] = []

    def cut_when_started() -> None:  # the network dies while step "work" runs
        wait_started(site)
        ssh_lab.cut(netns_host)
        cut.append(True)

    cutter = threading.Thread(target=cut_when_started)
    cutter.start()
    try:
        res = run(GATED, write_inventory(tmp_path, one_site(env)), tmp_path / "state")
    finally:
        cutter.join(timeout=60)
        open_gate(site)
        ssh_lab.restore(netns_host)
    assert cut == [True]
    assert res.exit_code == 1
    s = res.sites[0]
    assert s.status is SiteStatus.FAILED
    assert s.error is not None and s.error.startswith("step work failed: apply: ")
    assert "; also: finalize of step maint-on failed: " in s.error
    assert "; also: could not release the lock of shop/production: " in s.error
    assert [(x.step, x.status) for x in s.steps] == [
        ("maint-on", StepStatus.ROLLBACK_FAILED),
        ("work", StepStatus.FAILED),
    ]
    evs = events(res.run_dir or "")
    assert [e["step"] for e in evs if e["event"] == "step.failed"] == ["work"]
    assert [(e["step"], e["reason"]) for e in evs if e["event"] == "step.not_run"] == [
        ("after", "an earlier step failed")
    ]
    summary = json.loads((Path(res.run_dir or "") / "summary.json").read_text())
    assert summary["sites"][0]["error"] == s.error
