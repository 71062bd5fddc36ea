"""Leases of site locks on this machine: ``maint unlock`` respects an unexpired lease, a run takes
an expired one over (and says what it could not reconcile), the lease comes from the inventory."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from maintkit import locks
from tests.runs import events, local_env, maint_cli, one_site

DEAD_RUN = "20240101T000000Z-elsewh"


def _inventory(tmp_path: Path, site: Path, **defaults: Any) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"defaults": defaults, "sites": one_site(local_env(site))}))
    return path


def _foreign_lock(site: Path, expires_in: int) -> dict[str, Any]:
    """A lock taken by a run on another controller whose lease ends ``expires_in`` seconds from now."""
    holder = locks.leased(
        {
            "run_id": DEAD_RUN,
            "actor": "ci@ctl2",
            "since": "2024-01-01T00:00:00+00:00",
            "playbook": "deploy",
            "controller": "another-controller",
            "pid": 4242,
        },
        str(site),
        600,
    )
    ends = int(time.time()) + expires_in
    stamp = subprocess.run(["date", "-u", "-d", f"@{ends}", "+%Y-%m-%dT%H:%M:%SZ"], capture_output=True, text=True)
    holder.update(expires=stamp.stdout.strip(), expires_epoch=ends)
    lock = site / ".maint" / "lock"
    lock.mkdir(parents=True)
    (lock / "holder.json").write_text(json.dumps(holder) + "\n")
    return holder


def _unlock(tmp_path: Path, inv: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return maint_cli("unlock", "shop", "--env", "production", "-i", str(inv), *extra, cwd=tmp_path)


def test_unlock_refuses_an_unexpired_lease_unless_forced(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    inv = _inventory(tmp_path, site)
    holder = _foreign_lock(site, 3600)
    refused = _unlock(tmp_path, inv, "--older-than", "1s")  # the age rule is for holders without a lease
    assert refused.returncode == 3
    left = holder["expires_epoch"] - int(time.time())
    assert refused.stderr.strip() in {
        f"error: shop/production is locked by run {DEAD_RUN} by ci@ctl2 since 2024-01-01T00:00:00+00:00 "
        f"(playbook deploy), which may still be running (its lease runs until {holder['expires']}, {s}s from now); "
        "the lock was not cleared. If you are sure that run is gone: maint unlock shop --env production --force"
        for s in (left, left + 1)  # the clock may tick between the two readings
    }
    assert json.loads((site / ".maint" / "lock" / "holder.json").read_text()) == holder

    forced = _unlock(tmp_path, inv, "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.startswith(f"cleared the lock of shop/production; it was held by run {DEAD_RUN} ")
    assert "(forced; its lease runs until" in forced.stdout
    assert not (site / ".maint" / "lock").exists()


def test_unlock_clears_an_expired_lease(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    inv = _inventory(tmp_path, site)
    holder = _foreign_lock(site, -5)
    cleared = _unlock(tmp_path, inv)
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.strip() == (
        f"cleared the lock of shop/production; it was held by run {DEAD_RUN} by ci@ctl2 since "
        f"2024-01-01T00:00:00+00:00 (playbook deploy) (its lease expired at {holder['expires']})"
    )
    assert not (site / ".maint" / "lock").exists()


PLAYBOOK = """\
name: touch
stages:
  - env: production
    steps:
      - id: mark
        action: file.content
        with: {path: "{{ env.path }}/mark.txt", content: "x\\n"}
"""


def test_a_run_waits_for_a_live_lease_and_takes_an_expired_one_over(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    inv = _inventory(tmp_path, site, lock_lease=30)
    (tmp_path / "pb.yml").write_text(PLAYBOOK)
    _foreign_lock(site, 3600)

    def run() -> subprocess.CompletedProcess[str]:
        return maint_cli("run", "pb.yml", "-i", str(inv), "--state-dir", str(tmp_path / "s"), "--json", cwd=tmp_path)

    locked = run()
    assert locked.returncode == 3, locked.stdout + locked.stderr
    assert not (site / "mark.txt").exists()

    subprocess.run(["rm", "-rf", "--", str(site / ".maint" / "lock")], check=True)
    dead = _foreign_lock(site, -1)
    taken = run()
    assert taken.returncode == 0, taken.stdout + taken.stderr
    run_id = json.loads(taken.stdout.splitlines()[-1])["run_id"]
    evs = events(tmp_path / "s" / "runs" / run_id)
    lock_evs = [e for e in evs if e["event"].startswith("lock.")]
    assert [e["event"] for e in lock_evs] == ["lock.reconcile_incomplete", "lock.taken_over", "lock.released"]
    why = f"the run folder of run {DEAD_RUN} is not in the state store"
    assert (lock_evs[0]["steps"], lock_evs[0]["problems"]) == ([], [{"step": "", "action": "", "why": why}])
    assert {k: lock_evs[1][k] for k in ("dead_run", "dead_controller", "dead_pid", "expired_at", "lease")} == {
        "dead_run": DEAD_RUN,
        "dead_controller": "another-controller",
        "dead_pid": 4242,
        "expired_at": dead["expires"],
        "lease": 30,
    }
    assert lock_evs[1]["incomplete"] == [why]
    assert (site / "mark.txt").read_text() == "x\n"
    assert not (site / ".maint" / "lock").exists()
