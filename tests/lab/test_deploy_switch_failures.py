"""A ``deploy.rollback`` that fails after it switched ``current`` is switched back by the runner.

Real sshd (login user ``deploy``): the rollback step switches ``current`` to the previous
release, then its ``after_switch`` fails, once with a non-zero exit and once by cutting the
SSH connection it runs on. Either way the failure carries the switch, the runner undoes it
(``current`` points at the release it pointed at before), and the audit log says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maintkit.playbook import playbook_from_text
from maintkit.results import RunResult, SiteStatus, StepStatus
from tests.deploy_helpers import SshTarget, current_release, releases_log, run_playbook, write_inventory
from tests.lab.gitrepo import BareRepo
from tests.lab.sshd import LabHost
from tests.runs import events

DEPLOY = """\
name: deploy-only
stages:
  - env: production
    steps:
      - id: release
        action: deploy.release
        with:
          repo: "{{ vars.repo }}"
          after_switch: "{{ vars.after_switch | default([]) }}"
"""

ROLLBACK = """\
name: rollback-undone
on_failure: rollback
stages:
  - env: production
    steps:
      - id: rollback
        action: deploy.rollback
        with:
          after_switch: "{{ vars.after_switch }}"
"""

#: fails (like a php-fpm reload that does not come back) only in the release of version $0
FAIL_IN = '[ "$(cat VERSION)" != "$0" ] || { echo "reload failed in $0" >&2; exit 1; }'

#: in the release of version $0: kill the sshd process that serves this connection
CUT_IN = (
    '[ "$(cat VERSION)" = "$0" ] || exit 0; p=$$\n'
    'while [ "$p" -gt 1 ]; do\n'
    '  case "$(cat /proc/$p/comm)" in sshd|sshd-session) kill -9 "$p"; exit 1;; esac\n'
    "  p=$(awk '{print $4}' /proc/$p/stat)\n"
    "done\nexit 2"
)


class Shop:
    """A site path on a lab host with two releases (v1, then v2 current), deployed from ``repo``."""

    def __init__(self, tmp_path: Path, target: SshTarget, path: Path, repo: BareRepo) -> None:
        self.tmp_path, self.target, self.path, self.repo = tmp_path, target, path, repo

    def run(self, text: str, **vars: Any) -> RunResult:
        """Run a playbook given as text against this shop."""
        inv = write_inventory(
            self.tmp_path, self.target, self.path, "http://127.0.0.1:9/", {"repo": str(self.repo.path), **vars}
        )
        return run_playbook(playbook_from_text(text).playbook, inv, self.tmp_path)

    def deploy(self, version: str) -> tuple[str, str]:
        """Commit ``version`` and deploy it: the new release's name and its commit."""
        commit = self.repo.commit({"VERSION": version + "\n"}, version)
        res = self.run(DEPLOY)
        assert res.ok, [(s.step, s.error) for s in res.sites[0].steps]
        rel = current_release(self.path)
        assert rel is not None and rel.endswith("-" + commit[:7])
        return rel, commit


@pytest.fixture()
def shop(ssh_hosts: list[tuple[LabHost, Path]], bare_repo_factory: Any, tmp_path: Path) -> Shop:
    """A fresh shop on the first lab host (as deploy)."""
    host, scratch = ssh_hosts[0]
    target = SshTarget(host.ip, host.port, "deploy", str(host.client_key), str(host.known_hosts))
    return Shop(tmp_path, target, scratch / "shop", bare_repo_factory("shop.git"))


def _events(result: RunResult) -> list[dict[str, Any]]:
    """The audit events of the run that gave ``result``."""
    assert result.run_dir is not None
    return events(result.run_dir)


def _assert_switched_back(shop: Shop, result: RunResult, v1: tuple[str, str], v2: tuple[str, str]) -> str:
    """current is v2's release again, the releases log and the audit log say so; the step's error."""
    (rel1, commit1), (rel2, commit2) = v1, v2
    assert result.status == "failed"
    assert result.sites[0].status is SiteStatus.ROLLED_BACK
    (step,) = result.sites[0].steps
    assert step.status is StepStatus.FAILED
    assert current_release(shop.path) == rel2
    log = [(e["status"], e["release"], e.get("reason")) for e in releases_log(shop.path)]
    assert log[2:] == [
        ("bad", rel2, "rolled back"),
        ("rolled-back", rel1, f"from {rel2}"),
        ("deployed", rel2, "rollback undone"),
    ]
    events = [e for e in _events(result) if e.get("step") == "rollback"]
    assert [e["event"] for e in events if e["event"] != "step.checked"] == ["step.failed", "step.rolled_back"]
    (undone,) = [e for e in events if e["event"] == "step.rolled_back"]
    assert undone["status"] == "rolled-back"
    assert undone["changes"] == [
        {
            "target": f"{shop.path}/current",
            "summary": f"rolled back {rel2} -> {rel1}",
            "before": {"release": rel2, "commit": commit2},
            "after": {"release": rel1, "commit": commit1},
        }
    ]
    assert step.error is not None
    return step.error


@pytest.mark.lab
def test_rollback_whose_after_switch_fails_is_switched_back(shop: Shop) -> None:
    v1, v2 = shop.deploy("v1"), shop.deploy("v2")
    rel1 = v1[0]
    result = shop.run(ROLLBACK, after_switch=[["sh", "-c", FAIL_IN, "v1"]])
    error = _assert_switched_back(shop, result, v1, v2)
    assert error == (
        f"apply: switched to {rel1}, but after_switch failed: sh -c {FAIL_IN} v1: exit 1: reload failed in v1"
    )
    # nothing left to undo: the same rollback without the failing command goes through once
    again = shop.run(ROLLBACK, after_switch=[])
    assert again.ok and current_release(shop.path) == rel1


@pytest.mark.lab
def test_rollback_whose_connection_is_cut_after_the_switch_is_switched_back(shop: Shop) -> None:
    v1, v2 = shop.deploy("v1"), shop.deploy("v2")
    rel1 = v1[0]
    result = shop.run(ROLLBACK, after_switch=[["sh", "-c", CUT_IN, "v1"]])
    error = _assert_switched_back(shop, result, v1, v2)
    assert error.startswith(f"apply: switched to {rel1}, but {shop.target.host}")
    assert "connection lost while running: " in error
    assert not (shop.path / ".maint" / "lock").exists()


@pytest.mark.lab
def test_deploy_whose_connection_is_cut_after_the_switch_is_switched_back(shop: Shop) -> None:
    rel1, commit1 = shop.deploy("v1")
    commit2 = shop.repo.commit({"VERSION": "v2\n"}, "v2")
    result = shop.run(DEPLOY, after_switch=[["sh", "-c", CUT_IN, "v2"]])
    assert result.status == "failed"
    assert result.sites[0].status is SiteStatus.ROLLED_BACK
    (step,) = result.sites[0].steps
    assert step.status is StepStatus.FAILED
    assert current_release(shop.path) == rel1
    log = [(e["status"], e["release"], e.get("reason")) for e in releases_log(shop.path)]
    rel2 = log[1][1]
    assert rel2.endswith("-" + commit2[:7]) and rel2 != rel1
    assert step.error is not None and step.error.startswith(f"apply: switched current to {rel2}, but ")
    assert "connection lost while running: " in step.error
    assert log[1:] == [
        ("deployed", rel2, None),
        ("bad", rel2, f"rolled back by run {result.run_id}"),
        ("rolled-back", rel1, f"from {rel2}"),
    ]
    (undone,) = [e for e in _events(result) if e["event"] == "step.rolled_back"]
    assert undone["step"] == "release"
    assert undone["changes"] == [
        {
            "target": f"{shop.path}/current",
            "summary": f"deployed {rel2} ({commit2[:7]})",
            "before": {"release": rel1, "commit": commit1},
            "after": {"release": rel2, "commit": commit2},
        }
    ]
    # the next deploy of the same commit makes a fresh release; the bad one is never reused
    again = shop.run(DEPLOY)
    assert again.ok
    assert current_release(shop.path) not in (rel1, rel2)
