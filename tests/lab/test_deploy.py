"""Git deploys on the real lab: nginx + php-fpm serving ``<path>/current/public``, code from a
local bare repository, deployed over SSH as the login user with the built-in playbooks.

Scenarios: deploy, update, idempotency, plan mode, a smoke check failure rolled back
automatically, ``maint rollback`` of a fatally broken release, interrupted deploys (SIGTERM and
SIGKILL of ``maint run``), keeping N releases, and the host-clone transfer.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from maintkit.actions.deploy import DeployState, ReleaseLayout
from maintkit.playbook import load_playbook
from maintkit.probes import RawOutput
from maintkit.results import SiteStatus, StepStatus
from tests.deploy_helpers import (
    SshTarget,
    app_files,
    current_release,
    fetch,
    maint,
    marker,
    release_of,
    releases,
    releases_log,
    run_playbook,
    spawn_maint,
    status_of,
    stop,
    tree,
    wait_for,
    write_inventory,
)
from tests.lab.gitrepo import BareRepo
from tests.lab.sshd import SshLab
from tests.lab.web import SiteHandle, WebStack

CONFIG = "<?php return ['name' => 'from-shared'];\n"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture()
def ssh_target(ssh_lab: SshLab) -> SshTarget:
    """The first lab host, reached as the login user ``deploy``."""
    host = ssh_lab.hosts[0]
    return SshTarget(host.ip, host.port, "deploy", str(host.client_key), str(host.known_hosts))


class Shop:
    """One deployable site: a directory owned by the login user, served by nginx from current/public."""

    def __init__(self, path: Path, site: SiteHandle, repo: BareRepo, tmp_path: Path, target: SshTarget) -> None:
        self.path = path
        self.site = site
        self.repo = repo
        self.tmp_path = tmp_path
        self.target = target
        self.vars: dict[str, Any] = {
            "repo": str(repo.path),
            "ref": "main",
            "shared_files": ["config.php"],
            "shared_dirs": ["public/media"],
            "build": [["sh", "-c", 'printf "%s\\n" "$MAINT_COMMIT" > public/build.txt']],
            "after_switch": [["sh", "-c", 'echo "$PWD" >> "$0"', str(path / "after-switch.log")]],
            "check_paths": ["/", "/cart/"],
        }

    def inventory(self, **overrides: Any) -> Path:
        """Write an inventory for this shop with the current vars (plus overrides)."""
        return write_inventory(self.tmp_path, self.target, self.path, self.site.url, {**self.vars, **overrides})

    def deploy(self, **overrides: Any) -> Any:
        """Run the built-in deploy playbook in-process."""
        return run_playbook(load_playbook("deploy"), self.inventory(**overrides), self.tmp_path)

    def deploy_ok(self, **overrides: Any) -> Any:
        """Deploy and assert the run succeeded (with the reason when it did not)."""
        result = self.deploy(**overrides)
        assert result.ok, [(s.step, s.status.value, s.error) for s in result.sites[0].steps] or result.sites[0].error
        return result

    def front(self) -> tuple[int, str]:
        """GET / of the site."""
        return fetch(self.site.url + "/")

    def after_switch_count(self) -> int:
        """How often after_switch ran."""
        log = self.path / "after-switch.log"
        return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture()
def make_shop(
    web_stack: WebStack, bare_repo_factory: Callable[..., BareRepo], tmp_path: Path, ssh_target: SshTarget
) -> Callable[..., Shop]:
    """``make_shop(repo_owner=None)``: a fresh site directory, nginx site and bare repository."""

    def make(repo_owner: str | None = None) -> Shop:
        name = f"deploy-{uuid.uuid4().hex[:8]}"
        path = web_stack.make_site_dir(name, owner=ssh_target.user)
        shared = path / "shared"
        shared.mkdir()
        (shared / "config.php").write_text(CONFIG)
        _chown_tree(shared, ssh_target.user)
        site = web_stack.add_site(name, f"{path}/current/public")
        repo = bare_repo_factory(f"{name}.git", owner=repo_owner)
        return Shop(path, site, repo, tmp_path, ssh_target)

    return make


def _chown_tree(path: Path, user: str) -> None:
    import shutil

    for p in [path, *path.rglob("*")]:
        shutil.chown(p, user, user)


def _step(result: Any, step_id: str) -> Any:
    return next(s for s in result.sites[0].steps if s.step == step_id)


# ---------------------------------------------------------------------------- the main story


@pytest.mark.lab
def test_deploy_update_idempotent_plan_and_automatic_rollback(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    v1 = shop.repo.commit(app_files("v1"), "v1")

    first = shop.deploy()
    assert first.ok, first.sites[0].error
    rel1 = current_release(shop.path)
    assert rel1 is not None and rel1.endswith("-" + v1[:7])
    assert shop.front() == (200, "shop front v1 from-shared\n")  # shared config linked in
    assert fetch(shop.site.url + "/build.txt") == (200, v1 + "\n")  # the build ran inside the release
    assert _step(first, "release").data["commit"] == v1
    assert _step(first, "release").data["release"] == rel1

    v2 = shop.repo.commit(app_files("v2"), "v2")
    second = shop.deploy()
    assert second.ok, second.sites[0].error
    rel2 = current_release(shop.path)
    assert rel2 is not None and rel2 != rel1 and marker(shop.path, rel2)["commit"] == v2  # type: ignore[index]
    assert shop.front() == (200, "shop front v2 from-shared\n")
    assert (shop.path / "releases" / rel2 / "public" / "media").resolve() == shop.path / "shared" / "public" / "media"
    log = releases_log(shop.path)
    assert [(e["status"], e["release"], e["commit"]) for e in log] == [("deployed", rel1, v1), ("deployed", rel2, v2)]
    assert all(e["run_id"] and e["actor"] and e["time"] for e in log)
    assert shop.after_switch_count() == 2

    again = shop.deploy()
    assert again.ok and again.changed == 0
    assert _step(again, "release").status is StepStatus.UNCHANGED
    assert current_release(shop.path) == rel2 and shop.after_switch_count() == 2

    # v3's cart answers 500: plan mode says it would deploy and changes nothing
    v3 = shop.repo.commit(app_files("v3", cart_status=500), "v3 with a broken cart")
    before = tree(shop.path)
    plan = run_playbook(load_playbook("deploy"), shop.inventory(), shop.tmp_path, check=True)
    assert _step(plan, "release").status is StepStatus.WOULD_CHANGE
    assert v3[:7] in _step(plan, "release").reason
    assert _step(plan, "smoke").status is StepStatus.UNKNOWN
    assert tree(shop.path) == before

    # the real run: the smoke check fails, the release is rolled back automatically
    failed = shop.deploy()
    assert failed.status == "failed"
    assert failed.sites[0].status is SiteStatus.ROLLED_BACK
    assert _step(failed, "smoke").status is StepStatus.FAILED
    assert "/cart/" in (_step(failed, "smoke").error or "")
    assert _step(failed, "release").status is StepStatus.ROLLED_BACK
    assert current_release(shop.path) == rel2
    assert shop.front() == (200, "shop front v2 from-shared\n")
    assert fetch(shop.site.url + "/cart/") == (200, "cart v2\n")
    (rel3,) = release_of(shop.path, v3)
    assert status_of(shop.path, rel3) == "bad"
    assert status_of(shop.path, rel2) == "rolled-back"
    assert shop.after_switch_count() == 4  # the switch to v3 and the switch back
    assert not (shop.path / ".maint" / "lock").exists()

    # the bad release is never chosen again: a rollback from v2 goes to v1
    listed = maint(shop.tmp_path, "rollback", "shop", "--env", "production", "-i", str(shop.inventory()), "--list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "current" in lines[rel2] and "bad" in lines[rel3] and "<- rollback" in lines[rel1]


# ---------------------------------------------------------------------------- maint rollback


@pytest.mark.lab
def test_maint_rollback_works_when_php_is_fatally_broken(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    shop.repo.commit(app_files("v1"), "v1")
    shop.deploy_ok()
    v2 = shop.repo.commit(app_files("v2"), "v2")
    shop.deploy_ok()
    (rel2,) = release_of(shop.path, v2)

    # v2b has a parse error in the front page; the smoke check only looks at /cart/, so it goes live
    v2b = shop.repo.commit(app_files("v2b", front_broken=True), "v2b: syntax error")
    broken = shop.deploy(check_paths=["/cart/"])
    assert broken.ok, broken.sites[0].error
    (rel2b,) = release_of(shop.path, v2b)
    assert current_release(shop.path) == rel2b
    status, body = shop.front()
    assert status == 500 and "shop front" not in body

    inventory = shop.inventory()
    state = str(shop.tmp_path / "state")
    plan = maint(
        shop.tmp_path, "rollback", "shop", "--env", "production", "-i", str(inventory), "--state-dir", state, "--check"
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert current_release(shop.path) == rel2b  # --check changed nothing

    done = maint(shop.tmp_path, "rollback", "shop", "--env", "production", "-i", str(inventory), "--state-dir", state)
    assert done.returncode == 0, done.stdout + done.stderr
    assert current_release(shop.path) == rel2
    assert shop.front() == (200, "shop front v2 from-shared\n")
    assert status_of(shop.path, rel2b) == "bad"
    assert status_of(shop.path, rel2) == "rolled-back"
    assert releases_log(shop.path)[-1]["commit"] == v2
    # the run is audited like any other
    summaries = [json.loads(p.read_text()) for p in (shop.tmp_path / "state" / "runs").glob("*/summary.json")]
    (summary,) = [s for s in summaries if s["playbook"] == "rollback" and not s["check"]]
    assert summary["status"] == "ok"
    steps = summary["sites"][0]["steps"]
    assert steps[0]["data"]["release"] == rel2 and steps[0]["data"]["rolled_back_from"] == rel2b

    # a release marked bad is refused as --to
    refused = maint(
        shop.tmp_path,
        "rollback",
        "shop",
        "--env",
        "production",
        "-i",
        str(inventory),
        "--state-dir",
        state,
        "--to",
        rel2b,
    )
    assert refused.returncode == 1
    assert "marked bad" in refused.stdout + refused.stderr
    assert current_release(shop.path) == rel2


# ---------------------------------------------------------------------------- interrupted deploys


def _waiting_build(shop: Shop, tag: str) -> tuple[Path, Path, list[list[str]]]:
    """A build step that says it started, then waits until the test lets it go."""
    started, go = shop.path / f"started-{tag}", shop.path / f"go-{tag}"
    script = 'touch "$0"; while [ ! -e "$1" ]; do sleep 0.05; done'
    return started, go, [["sh", "-c", script, str(started), str(go)]]


@pytest.mark.lab
def test_sigterm_during_build_leaves_current_and_next_run_is_clean(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    shop.repo.commit(app_files("v1"), "v1")
    shop.deploy_ok()
    rel1 = current_release(shop.path)
    v2 = shop.repo.commit(app_files("v2"), "v2")
    started, go, build = _waiting_build(shop, "term")
    inventory = shop.inventory(build=build)

    proc = spawn_maint(
        shop.tmp_path, "run", "deploy", "-i", str(inventory), "--env", "production", "--state-dir", "state"
    )
    wait_for(started.exists, "the build to start", proc)
    assert current_release(shop.path) == rel1
    proc.send_signal(signal.SIGTERM)
    go.touch()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out  # interrupted

    assert current_release(shop.path) == rel1
    assert shop.front() == (200, "shop front v1 from-shared\n")
    assert not (shop.path / ".maint" / "lock").exists()
    # whatever the interrupted run left (an abandoned or rolled-back release) never becomes current again
    assert all(status_of(shop.path, r) != "deployed" for r in release_of(shop.path, v2))

    nxt = shop.deploy()
    assert nxt.ok, nxt.sites[0].error
    assert shop.front() == (200, "shop front v2 from-shared\n")
    assert all(marker(shop.path, r) is not None for r in releases(shop.path))  # no half-built leftovers


@pytest.mark.lab
def test_killed_deploy_leaves_a_half_built_release_that_the_next_run_removes(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    shop.repo.commit(app_files("v1"), "v1")
    shop.deploy_ok()
    rel1 = current_release(shop.path)
    shop.repo.commit(app_files("v2"), "v2")
    started, go, build = _waiting_build(shop, "kill")
    inventory = shop.inventory(build=build)

    proc = spawn_maint(
        shop.tmp_path, "run", "deploy", "-i", str(inventory), "--env", "production", "--state-dir", "state"
    )
    wait_for(started.exists, "the build to start", proc)
    stop(proc, signal.SIGKILL)
    go.touch()  # the orphaned build on the host ends

    assert current_release(shop.path) == rel1
    assert shop.front() == (200, "shop front v1 from-shared\n")
    leftovers = [r for r in releases(shop.path) if marker(shop.path, r) is None]
    assert len(leftovers) == 1

    # the killed run's lock stays (it could not release it): the operator clears it
    assert (shop.path / ".maint" / "lock").exists()
    unlocked = maint(shop.tmp_path, "unlock", "shop", "--env", "production", "-i", str(inventory))
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr

    plan = run_playbook(load_playbook("deploy"), shop.inventory(), shop.tmp_path, check=True)
    assert "half-built" in _step(plan, "release").reason
    assert leftovers[0] in releases(shop.path)  # plan mode removed nothing

    nxt = shop.deploy()
    assert nxt.ok, nxt.sites[0].error
    assert leftovers[0] not in releases(shop.path)
    assert shop.front() == (200, "shop front v2 from-shared\n")
    assert any("half-built" in c.summary for c in _step(nxt, "release").changes)


# ---------------------------------------------------------------------------- keep N, clone transfer


@pytest.mark.lab
def test_keep_never_deletes_current_or_the_rollback_target(
    make_shop: Callable[..., Shop], ssh_target: SshTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transfer: clone needs a repository the login user may read; the controller (another user)
    # resolves refs in it too, which git allows only for trusted directories
    for key, value in {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
    }.items():
        monkeypatch.setenv(key, value)
    shop = make_shop(repo_owner=ssh_target.user)
    shop.vars.update(keep=1, transfer="clone", repo=shop.repo.url)
    commits = {}
    for n in (1, 2, 3):
        commits[n] = shop.repo.commit(app_files(f"v{n}"), f"v{n}")
        res = shop.deploy()
        assert res.ok, res.sites[0].error
    assert (shop.path / ".maint" / "repo" / "HEAD").exists()  # the host's cached clone
    rel = {n: release_of(shop.path, c) for n, c in commits.items()}
    # keep: 1 still keeps the previous release, which a rollback needs
    assert rel[1] == [] and len(rel[2]) == 1 and len(rel[3]) == 1
    assert current_release(shop.path) == rel[3][0]

    # a failing v4 is rolled back; the next deploy keeps current and its rollback target only
    commits[4] = shop.repo.commit(app_files("v4", cart_status=500), "v4 broken cart")
    assert shop.deploy().sites[0].status is SiteStatus.ROLLED_BACK
    assert current_release(shop.path) == rel[3][0]
    commits[5] = shop.repo.commit(app_files("v5"), "v5")
    shop.deploy_ok()
    rel5 = release_of(shop.path, commits[5])
    assert sorted(releases(shop.path)) == sorted([*rel5, *rel[3]])  # v2 and the bad v4 are gone
    assert shop.front() == (200, "shop front v5 from-shared\n")

    back = maint(
        shop.tmp_path, "rollback", "shop", "--env", "production", "-i", str(shop.inventory()), "--state-dir", "state"
    )
    assert back.returncode == 0, back.stdout + back.stderr
    assert current_release(shop.path) == rel[3][0]
    assert shop.front() == (200, "shop front v3 from-shared\n")


@pytest.mark.lab
def test_failing_build_never_touches_current(make_shop: Callable[..., Shop]) -> None:
    shop = make_shop()
    shop.repo.commit(app_files("v1"), "v1")
    shop.deploy_ok()
    rel1 = current_release(shop.path)
    shop.repo.commit(app_files("v2"), "v2")
    res = shop.deploy(build=[["sh", "-c", "echo composer exploded >&2; exit 3"]])
    assert res.status == "failed"
    assert "composer exploded" in (_step(res, "release").error or "")
    assert current_release(shop.path) == rel1
    assert releases(shop.path) == [rel1]  # the half-built release was removed
    assert shop.front() == (200, "shop front v1 from-shared\n")


# ---------------------------------------------------------------------------- layout logic (no lab)


def _state(lines: list[str]) -> DeployState:
    return ReleaseLayout("/srv/shop").parse(RawOutput("\n".join(lines) + "\n", 0))


def _rel(name: str, commit: str, built: str) -> str:
    return f"release\t{name}\t" + json.dumps({"commit": commit, "built_at": built})


def _hex(target: str) -> str:
    """The probe prints link targets as hex (any byte is safe in them)."""
    return target.encode().hex()


def _log(status: str, name: str, **extra: Any) -> str:
    return "log\t" + json.dumps({"status": status, "release": name, **extra})


A, B, C = "20260101T000000Z-aaaaaaa", "20260102T000000Z-bbbbbbb", "20260103T000000Z-ccccccc"


def test_layout_rollback_target_skips_bad_and_half_built_releases() -> None:
    state = _state(
        [
            f"current\tlink\t{_hex(f'releases/{B}')}",
            _rel(A, "a" * 40, "2026-01-01"),
            _rel(B, "b" * 40, "2026-01-02"),
            f"partial\t{C}\t",
            "release\tmanual-copy\t{}",
            _log("deployed", A),
            _log("deployed", C),
            _log("bad", C),
            _log("deployed", B, previous=A),
        ]
    )
    assert state.current_release == B and state.current_commit == "b" * 40
    assert state.partials() == [C]
    assert state.previous_good() == A
    assert state.unmanaged == ("manual-copy",)  # never touched
    assert state.prune_plan(1) == []  # A is the rollback target


def test_layout_prune_removes_bad_releases_first() -> None:
    state = _state(
        [
            f"current\tlink\t{_hex(f'/srv/shop/releases/{C}')}",
            _rel(A, "a" * 40, "2026-01-01"),
            _rel(B, "b" * 40, "2026-01-02"),
            _rel(C, "c" * 40, "2026-01-03"),
            "release\t20260104T000000Z-ddddddd\t" + json.dumps({"commit": "d" * 40, "built_at": "2026-01-04"}),
            _log("deployed", A),
            _log("deployed", B, previous=A),
            _log("deployed", "20260104T000000Z-ddddddd", previous=B),
            _log("bad", "20260104T000000Z-ddddddd"),
            _log("rolled-back", B),
            _log("deployed", C, previous=B),
        ]
    )
    assert state.previous_good() == B
    assert state.prune_plan(2) == [A, "20260104T000000Z-ddddddd"]
