"""A stage whose step expects to change takes its lock in its first round trip.

backup.create expects a change when no ``max_age`` is set, or when the state index records no
backup younger than it: the stage then locks and reads every probe under the lock in ONE round
trip (no read-only look first). When the index records a fresh backup it does not: the stage
reads first and, finding nothing to do, never locks. A wrong guess (the host has a fresh backup
the index does not know) costs the release and changes nothing else. Every session is counted
on the lab's sshd through the real SSH transport.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintkit import locks
from maintkit.results import RunResult, SiteStatus, StepStatus
from maintkit.runner.settled import NEVER_SETTLED
from tests.lab import test_backup
from tests.lab.recording import Recorder
from tests.lab.sshd import SshLab
from tests.lab.test_backup import SECRET_VAR, Shop
from tests.runs import one_step

pytestmark = pytest.mark.lab

shop = test_backup.shop  # the fixture: a site on h1 with its database

FRESH = one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}", max_age="20h")


def events(result: RunResult) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (Path(str(result.run_dir)) / "events.jsonl").read_text().splitlines()]


def stage_locked(result: RunResult) -> bool:
    [finished] = [e for e in events(result) if e["event"] == "stage.finished"]
    return bool(finished["locked"])


def test_a_due_backup_locks_first_and_a_fresh_one_never_locks(shop: Shop, ssh_lab: SshLab) -> None:
    h1 = ssh_lab.hosts[0]
    rec = Recorder()
    first = shop.run(text=FRESH, transport_factory=rec)
    assert first.ok, first.sites[0].error
    assert first.sites[0].steps[0].status is StepStatus.CHANGED
    # the folders and the password's option file, the dump, the option file removed, the rename
    assert rec.kinds(h1, shop.path, first.run_id) == ["lock+read", *["step"] * 4, "unlock"]
    [acquired] = [e for e in events(first) if e["event"] == "lock.acquired"]
    assert (acquired["for_step"], acquired["early"]) == (
        "backup.create",
        "the state index records no backup younger than 20h",
    )
    assert stage_locked(first)

    rec = Recorder()
    again = shop.run(text=FRESH, transport_factory=rec)
    assert again.ok and again.sites[0].steps[0].status is StepStatus.UNCHANGED
    assert rec.kinds(h1, shop.path, again.run_id) == ["read"]  # the index knows the fresh backup
    assert not stage_locked(again)
    assert not [e for e in events(again) if e["event"].startswith("lock.")]
    assert len(shop.manifests()) == 1


def test_a_wrong_guess_costs_the_release_and_changes_nothing(shop: Shop, ssh_lab: SshLab, tmp_path: Path) -> None:
    h1 = ssh_lab.hosts[0]
    made = shop.run(text=FRESH)
    assert made.ok and made.sites[0].steps[0].status is StepStatus.CHANGED
    elsewhere = dataclasses.replace(shop, state=tmp_path / "another-controller")  # an empty state index
    rec = Recorder()
    result = elsewhere.run(text=FRESH, transport_factory=rec)
    assert result.ok
    step = result.sites[0].steps[0]
    assert step.status is StepStatus.UNCHANGED and step.reason.startswith("backup ")
    assert rec.kinds(h1, shop.path, result.run_id) == ["lock+read", "unlock"]
    assert stage_locked(result)
    assert [e["event"] for e in events(result) if e["event"].startswith("lock.")] == ["lock.acquired", "lock.released"]
    assert len(shop.manifests()) == 1 and not (shop.path / ".maint" / "lock").exists()


def test_a_lock_another_run_holds_is_refused_in_the_first_round_trip(shop: Shop, ssh_lab: SshLab) -> None:
    h1 = ssh_lab.hosts[0]
    holder = locks.leased(
        {"run_id": "20990101T000000Z-0ther0", "actor": "ci@elsewhere", "playbook": "other",
         "since": "2099-01-01T00:00:00+00:00", "controller": "elsewhere", "pid": 4242},
        str(shop.path),
        600,
    )  # fmt: skip
    t = h1.transport()
    try:
        assert t.run_shell(locks.acquire_script(str(shop.path), holder), check=False).exit_code == 0
    finally:
        t.close()
    rec = Recorder()
    result = shop.run(text=FRESH, transport_factory=rec)
    assert result.exit_code == 3
    [site] = result.sites
    assert site.status is SiteStatus.LOCKED and site.error is not None
    assert site.error.startswith(f"shop/production is locked by {locks.describe(holder)}. Wait for it to finish")
    assert rec.kinds(h1, shop.path, result.run_id) == ["lock+read"]  # refused: nothing to unlock
    assert shop.manifests() == []
    assert json.loads((shop.path / ".maint" / "lock" / "holder.json").read_text())["run_id"] == holder["run_id"]


def test_the_early_lock_reads_only_up_to_the_step_that_changes(shop: Shop, ssh_lab: SshLab) -> None:
    """The later steps' probes are left out of the first round trip (the backup's change would
    drop them): they come with the backup's last round trip, once."""
    h1 = ssh_lab.hosts[0]
    marker = shop.path / "later-step-marker"
    steps = [
        {"id": "backup", "action": "backup.create", "with": {"database": True, "password": "{{ secrets." + SECRET_VAR + " }}"}},
        {"id": "later", "action": "command", "with": {"argv": ["cat", str(marker)], "read_only": True}},
    ]  # fmt: skip
    text = yaml.safe_dump({"name": "early", "stages": [{"env": "production", "steps": steps}]})
    marker.write_text("read\n")
    rec = Recorder()
    result = shop.run(text=text, transport_factory=rec)
    assert result.ok, result.sites[0].error
    sent = [text for _, text in rec.by_host[h1.ip].sent]
    kinds = rec.kinds(h1, shop.path, result.run_id)
    assert kinds[0] == "lock+read" and kinds[-1] == "unlock"
    reads = [i for i, text in enumerate(sent) if str(marker) in text]
    assert len(reads) == 1 and 0 < reads[0] < len(sent) - 1  # not under the lock's read: after the change
    assert "mv -T" in sent[reads[0]]  # the backup's rename, then the reads after it
    assert result.sites[0].steps[1].status is StepStatus.UNCHANGED


@pytest.mark.parametrize("guard", [None, "unless"])
def test_a_command_without_a_guard_locks_first(shop: Shop, ssh_lab: SshLab, guard: str | None) -> None:
    """A command with no creates/removes/unless/onlyif runs every run: its stage locks in its
    first round trip; with a guard the stage reads first (the guard may say there is nothing to do)."""
    h1 = ssh_lab.hosts[0]
    target = shop.path / "touched"
    step: dict[str, Any] = {"id": "touch", "action": "command", "with": {"argv": ["touch", str(target)]}}
    if guard:
        step["with"]["unless"] = ["test", "-e", str(target)]
    text = yaml.safe_dump({"name": "early", "stages": [{"env": "production", "steps": [step]}]})
    if guard:  # a stage that never finished here locks first too (runner/settled.py): one that did
        settle = shop.run(text=text)
        assert settle.ok and target.exists()
        assert [e.get("early") for e in events(settle) if e["event"] == "lock.acquired"] == [NEVER_SETTLED]
        target.unlink()
    rec = Recorder()
    result = shop.run(text=text, transport_factory=rec)
    assert result.ok and result.sites[0].steps[0].status is StepStatus.CHANGED and target.exists()
    kinds = rec.kinds(h1, shop.path, result.run_id)
    if guard:  # read first; the lock before the change
        assert kinds[:2] == ["read", "lock+read"] and kinds[-1] == "unlock", kinds
    else:
        assert kinds == ["lock+read", "step", "unlock"]
    [acquired] = [e for e in events(result) if e["event"] == "lock.acquired"]
    assert acquired.get("early") == (None if guard else "always runs (no creates/removes/unless/onlyif guard)")


def test_a_reload_locks_first(shop: Shop, ssh_lab: SshLab) -> None:
    """service.reload without only_if_changed always runs: locked in the first round trip."""
    h1 = ssh_lab.hosts[0]
    target = shop.path / "reloaded"
    step = {"id": "reload", "action": "service.reload", "with": {"command": ["touch", str(target)]}}
    text = yaml.safe_dump({"name": "early", "stages": [{"env": "production", "steps": [step]}]})
    rec = Recorder()
    result = shop.run(text=text, transport_factory=rec)
    assert result.ok and target.exists(), result.sites[0].error
    assert rec.kinds(h1, shop.path, result.run_id) == ["lock+read", "step", "unlock"]
    [acquired] = [e for e in events(result) if e["event"] == "lock.acquired"]
    assert acquired["early"] == "a reload always runs"
