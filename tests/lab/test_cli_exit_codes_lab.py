"""Exit codes of ``maint run`` against real sshd hosts: an unreachable host (a closed port on the
lab host's address: a real refused connection) is 4, a site that really fails over SSH is 1, and
the failure wins when both happen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.lab.sshd_fixtures import LabHost
from tests.runs import maint_cli, write_inventory

PLAYBOOK = """\
name: exits
stages:
  - env: production
    steps:
      - {id: conf, action: file.content, with: {path: "{{ env.path }}/conf.txt", content: "ok\\n"}}
      - {id: probe, action: command, with: {argv: [test, -z, "{{ vars.fail | default('') }}"], read_only: true}}
"""


def result(stdout: str) -> dict[str, Any]:
    last = json.loads(stdout.strip().splitlines()[-1])
    assert last["event"] == "result"
    return dict(last)


def test_unreachable_is_4_and_a_failed_site_over_ssh_is_1(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, scratch = ssh_hosts[0]
    sites = {
        "good": {"environments": {"production": host.env(scratch / "good")}},
        "down": {"environments": {"production": host.env(scratch / "down", port=1, connect_timeout=5)}},
        "broken": {"vars": {"fail": "yes"}, "environments": {"production": host.env(scratch / "broken")}},
    }
    write_inventory(tmp_path, sites)
    (tmp_path / "pb.yml").write_text(PLAYBOOK)
    unreachable = maint_cli("run", "pb.yml", "-l", "good,down", "--json", cwd=tmp_path)
    assert unreachable.returncode == 4, unreachable.stdout[-3000:]
    res = result(unreachable.stdout)
    assert res["unreachable"] == ["down"]
    assert {s["site"]: (s["status"], s["unreachable"]) for s in res["sites"]} == {
        "good": ("ok", False),
        "down": ("failed", True),
    }
    assert (scratch / "good" / "conf.txt").read_text() == "ok\n"
    both = maint_cli("run", "pb.yml", "-l", "down,broken", cwd=tmp_path)
    assert both.returncode == 1, both.stdout[-3000:]
    assert "broken: rolled-back at production step probe (command)" in both.stdout
    assert both.stdout.splitlines()[-1].startswith("failed: 0 steps changed; unreachable: down; run folder ")
    assert not (scratch / "broken" / "conf.txt").exists()  # rolled back over SSH
    failed_only = maint_cli("run", "pb.yml", "-l", "broken", cwd=tmp_path)
    assert failed_only.returncode == 1
