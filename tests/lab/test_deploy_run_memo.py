"""One git ref names one commit for every site of a run, even when someone pushes during the run.

Two local sites deploy ``main`` of a real bare repository one after the other; the first
site's build moves ``main`` to a newer commit. The second site still deploys the commit the
run resolved first (the run's memo), and the next run deploys the newer one (the memo lives
and dies with its run). Without a run id every call resolves afresh.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from maintkit.actions.deploy import resolve_commit
from maintkit.results import RunResult, StepStatus
from maintkit.testing import FakeTransport, make_context
from tests.lab.gitrepo import BareRepo
from tests.runs import local_env, one_site, run, write_inventory

PLAYBOOK = """\
name: deploy-both
concurrency: 1
stages:
  - env: production
    steps:
      - id: release
        action: deploy.release
        with:
          repo: "{{ vars.repo }}"
          build: "{{ vars.build }}"
"""


def _move_main(repo: BareRepo, sha: str) -> list[str]:
    """An argument list that points ``main`` of the bare repository at ``sha`` (a push, as seen by a reader)."""
    return ["git", "--git-dir", str(repo.path), "update-ref", "refs/heads/main", sha]


def _inventory(tmp_path: Path, repo: BareRepo, build: list[list[str]]) -> Path:
    """Sites ``a`` and ``b`` (in ``tmp_path/a`` and ``tmp_path/b``) deploying ``repo`` with ``build``."""
    deploy_vars = {"repo": str(repo.path), "build": build}
    sites: dict[str, Any] = {}
    for name in ("a", "b"):
        env = local_env(tmp_path / name, url="http://127.0.0.1:9", vars=deploy_vars)
        sites |= one_site(env, name=name, platform="generic")
    return write_inventory(tmp_path, sites)


def _run(tmp_path: Path, inventory: Path) -> RunResult:
    """PLAYBOOK over ``inventory``, with only ``PATH`` and ``HOME`` (``tmp_path``) exported."""
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return run(PLAYBOOK, inventory, tmp_path / "state", environ=environ)


def _deployed_commit(site: Path) -> Any:
    marker = site / "current" / ".maint-release.json"
    return json.loads(marker.read_text())["commit"]


def test_every_site_of_a_run_deploys_the_commit_the_run_resolved(tmp_path: Path) -> None:
    repo = BareRepo(tmp_path / "shop.git")
    v1 = repo.commit({"VERSION": "v1\n"}, "v1")
    v2 = repo.commit({"VERSION": "v2\n"}, "v2")
    subprocess.run(_move_main(repo, v1), check=True)  # main is v1; v2 waits in the repository
    inventory = _inventory(tmp_path, repo, [_move_main(repo, v2)])

    first = _run(tmp_path, inventory)
    assert first.ok, [(s.site, s.error) for s in first.sites]
    assert repo.head() == v2  # the first site's build really moved main
    assert [(s.site, s.steps[0].data["commit"]) for s in first.sites] == [("a", v1), ("b", v1)]
    assert _deployed_commit(tmp_path / "a") == v1
    assert _deployed_commit(tmp_path / "b") == v1

    second = _run(tmp_path, inventory)
    assert second.ok, [(s.site, s.error) for s in second.sites]
    assert [s.steps[0].status for s in second.sites] == [StepStatus.CHANGED, StepStatus.CHANGED]
    assert _deployed_commit(tmp_path / "a") == v2
    assert _deployed_commit(tmp_path / "b") == v2


def test_without_a_run_id_every_call_resolves_afresh(tmp_path: Path) -> None:
    repo = BareRepo(tmp_path / "shop.git")
    v1 = repo.commit({"VERSION": "v1\n"}, "v1")
    ctx = make_context(FakeTransport())  # git runs on the controller: the transport is never used
    ctx.options.run_id = ""  # as when an action is called directly
    assert resolve_commit(ctx, str(repo.path), "main", transfer="archive") == v1
    v2 = repo.commit({"VERSION": "v2\n"}, "v2")
    assert resolve_commit(ctx, str(repo.path), "main", transfer="archive") == v2
    # with a run id the same context keeps what it resolved first
    ctx.options.run_id = "20260101T000000Z-abcdef"
    assert resolve_commit(ctx, str(repo.path), "main", transfer="archive") == v2
    repo.commit({"VERSION": "v3\n"}, "v3")
    assert resolve_commit(ctx, str(repo.path), "main", transfer="archive") == v2
