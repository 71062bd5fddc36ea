"""Two controllers, one history: the git state store on a bare repository served by a lab sshd.

Controller A (its own working directory and state folder) runs the staging stage of a composer
shop (cms.update writes the version lock) and a backup of production; controller B, a fresh
clone with nothing of A's on disk, runs production with ``--promote-from`` A's run and installs
exactly A's lock, while its backup.create max_age sees A's backup; a third clone's ``maint
runs`` and ``maint report`` show every run, and ``maint audit verify`` on B verifies A's run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import runs
from tests.cms_helpers import chown_tree, composer_locked_versions, make_composer_package, make_composer_project
from tests.lab.sshd import LabHost

pytestmark = pytest.mark.lab

STAGING = """\
name: composer-update
stages:
  - env: staging
    steps:
      - {id: update, action: cms.update}
"""

NIGHTLY = """\
name: nightly
stages:
  - env: production
    steps:
      - {id: backup, action: backup.create, with: {files: [public], backup_dir: "NIGHTLY"}}
"""

PRODUCTION = """\
name: composer-update
stages:
  - env: staging
    steps:
      - {id: update, action: cms.update}
  - env: production
    promote: staging
    steps:
      - {id: backup, action: backup.create, with: {files: [public], backup_dir: "PRE", max_age: 2h}}
      - {id: update, action: cms.update}
"""


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": "/nonexistent",
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _store_spec(host: LabHost, bare: Path) -> str:
    return json.dumps(
        {
            "backend": "git",
            "remote": f"ssh://deploy@{host.ip}:{host.port}{bare}",
            "ssh_key": str(host.client_key),
            "known_hosts": str(host.known_hosts),
            "author": "maint lab <maint@lab.invalid>",
        }
    )


def _controller(tmp_path: Path, name: str) -> Path:
    home = tmp_path / name
    home.mkdir()
    return home


def _maint(cwd: Path, spec: str, *args: str) -> subprocess.CompletedProcess[str]:
    return runs.maint_cli(
        *args, "--state-dir", str(cwd / ".maint"), cwd=cwd, extra_env={"MAINT_STATE": spec}, timeout=300
    )


def _run_id(proc: subprocess.CompletedProcess[str]) -> str:
    return json.loads(proc.stdout.strip().splitlines()[-1])["run_id"]


def test_two_controllers_share_history_through_a_git_remote(
    ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path
) -> None:
    (h1, scratch1), (h2, scratch2) = ssh_hosts[0], ssh_hosts[1]
    bare = scratch1 / "maint-state.git"
    _git("init", "-q", "--bare", str(bare))
    chown_tree(bare, "deploy")
    spec = _store_spec(h1, bare)

    artifacts = scratch2 / "artifacts"
    for version in ("1.0.0", "1.1.0"):
        make_composer_package(artifacts, "acme/plugin", version)
    staging, production = scratch2 / "staging", scratch2 / "production"
    make_composer_project(staging, artifacts, {"acme/plugin": "^1.0"}, initial={"acme/plugin": "1.0.0"})
    shutil.copytree(staging, production, symlinks=True)
    home = scratch2 / "composer-home"
    home.mkdir()
    for path in (artifacts, staging, production, home):
        chown_tree(path, "deploy")
    nightly, pre = scratch2 / "nightly", scratch2 / "pre-update"
    settings = {"composer_env": {"COMPOSER_HOME": str(home), "COMPOSER_DISABLE_NETWORK": "1"}}
    inventory: dict[str, Any] = {"sites": {"shop": {
        "platform": "composer",
        "vars": {"cms_update": settings},
        "environments": {"staging": h2.env(staging), "production": h2.env(production)},
    }}}  # fmt: skip

    # controller A: the staging stage and a nightly production backup
    a = _controller(tmp_path, "a")
    (a / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (a / "staging.yml").write_text(STAGING)
    (a / "nightly.yml").write_text(NIGHTLY.replace("NIGHTLY", str(nightly)))
    ran = _maint(a, spec, "run", "staging.yml", "--json")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr
    a_run = _run_id(ran)
    assert composer_locked_versions(staging) == {"acme/plugin": "1.1.0"}
    backup = _maint(a, spec, "run", "nightly.yml", "--json")
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr
    a_backup = _run_id(backup)
    [bid] = [p.name for p in nightly.iterdir()]

    # a newer release appears after staging validated 1.1.0: production must still get exactly 1.1.0
    make_composer_package(artifacts, "acme/plugin", "1.2.0")
    chown_tree(artifacts, "deploy")

    # controller B: nothing of A's on disk
    b = _controller(tmp_path, "b")
    (b / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (b / "production.yml").write_text(PRODUCTION.replace("PRE", str(pre)))
    prod = _maint(b, spec, "run", "production.yml", "--env", "production", "--promote-from", a_run[:16], "--json")
    assert prod.returncode == 0, prod.stdout[-3000:] + prod.stderr
    b_run = _run_id(prod)
    result = json.loads(prod.stdout.strip().splitlines()[-1])
    steps = {s["step"]: s for s in result["sites"][0]["steps"]}
    assert steps["backup"]["status"] == "unchanged"
    assert steps["backup"]["reason"].startswith(f"backup {bid} in {nightly} (recorded in the state index) from ")
    assert not pre.exists()
    assert steps["update"]["status"] == "changed"
    assert composer_locked_versions(production) == {"acme/plugin": "1.1.0"}
    assert (production / "composer.lock").read_text() == (staging / "composer.lock").read_text()

    # B's clone holds A's run folder, pulled from the remote: audit verify there
    verify = _maint(b, spec, "audit", "verify", a_run)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith(f"ok: {a_run}: ")

    # a third clone: every run, and the report of all of them
    c = _controller(tmp_path, "c")
    listed = _maint(c, spec, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["run_id"] for r in json.loads(listed.stdout)) == sorted([a_run, a_backup, b_run])
    report = _maint(c, spec, "report")
    assert report.returncode == 0, report.stderr
    assert "1 site(s), 3 run(s)." in report.stdout
    assert "3 run(s), 3 change(s)." in report.stdout  # update on staging, backup, update on production

    # the commit history is part of the audit trail: one branch, the runs' own commits
    log = _git("--git-dir", str(bare), "log", "--format=%s", "maint-state")
    for run_id in (a_run, a_backup, b_run):
        assert f"maint run {run_id}: " in log
    assert not list((a / ".maint").glob("runs/*")) and not list((b / ".maint").glob("runs/*"))
