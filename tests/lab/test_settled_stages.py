"""The index remembers the stages that finished; a stage that never did locks in its first round trip.

Over the real SSH lab, every command counted (:class:`tests.lab.recording.Recorder`):

* a stage that never finished on an environment with these steps takes the lock in its first
  round trip (``lock.acquired`` says why); the run's record in ``runs.jsonl`` lists the
  stage's fingerprint under ``settled``, and the next run reads without a lock, in one round trip;
* a changed parameter is a new stage: the lock comes first again;
* the lock's read of such a stage leaves out a read-only step after a step that may change
  (its command runs once, after the change, in the change's round trip);
* a wrong guess (the host is already as wanted) costs the release and the read of what was
  left out, nothing else, and the stage is remembered from then on;
* a stage that failed is not remembered; plan mode neither locks nor remembers anything; a
  stage of read-only steps never locks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from maintkit.results import StepStatus
from maintkit.runner.settled import NEVER_SETTLED
from maintkit.state.index import settled_stages
from tests.lab.recording import Recorder
from tests.lab.sshd import LabHost
from tests.lab.test_round_trips import FIVE
from tests.runs import events, run, sites_of, write_inventory

READ_ONLY = """\
name: look
stages:
  - env: production
    steps:
      - {action: command, with: {argv: [hostname], read_only: true}}
"""


#: a file, then a read-only command that notes each run (and what it read) in ``runs``
COUNTED = """\
name: counted
stages:
  - env: production
    steps:
      - {action: file.content, with: {path: "{{ env.path }}/conf.txt", content: "v1\\n"}}
      - action: command
        with: {argv: [sh, -c, 'printf "run %s\\n" "$(cat -- "$0/conf.txt")" >> "$0/runs"', "{{ env.path }}"], read_only: true}
"""


def _kinds(playbook: str, inv: Path, state: Path, host: LabHost, site: Path, **kw: object) -> tuple[object, list[str]]:
    rec = Recorder()
    res = run(playbook, inv, state, transport_factory=rec, **kw)
    return res, rec.kinds(host, site, res.run_id)


def _records(state: Path) -> list[dict[str, object]]:
    lines = (state / "index" / "shop" / "runs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _early(res: object) -> list[object]:
    return [e.get("early") for e in events(res.run_dir) if e["event"] == "lock.acquired"]  # type: ignore[attr-defined]


def test_a_new_stage_locks_first_and_is_remembered(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    h, d = ssh_hosts[0]
    site, state = d / "site", tmp_path / "state"
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(site)}))

    first, kinds = _kinds(FIVE, inv, state, h, site)
    assert first.ok and first.changed == 3  # type: ignore[attr-defined]
    assert kinds == ["lock+read", "step", "unlock"]  # the three changes in one round trip
    assert _early(first) == [NEVER_SETTLED]
    [record] = _records(state)
    assert record["status"] == "ok" and len(record["settled"]) == 1  # type: ignore[arg-type]
    assert settled_stages(state, "shop", "production", "five") == frozenset(record["settled"])  # type: ignore[arg-type]

    again, kinds = _kinds(FIVE, inv, state, h, site)
    assert again.ok and again.changed == 0  # type: ignore[attr-defined]
    assert kinds == ["read"]
    assert _records(state)[-1]["settled"] == record["settled"]

    changed = FIVE.replace('content: "site={{ site.name }}\\n"', 'content: "site={{ site.name }} v2\\n"')
    assert changed != FIVE
    third, kinds = _kinds(changed, inv, state, h, site)
    assert third.ok and third.changed == 1  # type: ignore[attr-defined]
    # the old content (for the undo), the write, the commands' reads after it, the release
    assert kinds == ["lock+read", "step", "step", "step", "unlock"]
    assert _early(third) == [NEVER_SETTLED]
    assert _records(state)[-1]["settled"] != record["settled"]
    assert (site / "app" / "config.txt").read_text() == "site=shop v2\n"


def test_a_read_only_step_after_a_change_runs_once(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    """The lock's read of a new stage leaves out a read-only step after a step that may change:
    the change's round trip reads it after the change, so its command runs once, on what the
    change made."""
    h, d = ssh_hosts[0]
    site, state = d / "counted-site", tmp_path / "state"
    site.mkdir()
    shutil.chown(site, "deploy", "deploy")
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(site)}))

    first, kinds = _kinds(COUNTED, inv, state, h, site)
    assert first.ok and first.changed == 1  # type: ignore[attr-defined]
    assert kinds == ["lock+read", "step", "unlock"]
    assert (site / "runs").read_text() == "run v1\n"  # once, after the change

    again, kinds = _kinds(COUNTED, inv, state, h, site)
    assert again.ok and again.changed == 0 and kinds == ["read"]  # type: ignore[attr-defined]
    assert (site / "runs").read_text() == "run v1\nrun v1\n"


def test_a_wrong_guess_costs_the_release_and_the_left_out_reads(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[1]
    site, state = d / "site", tmp_path / "state"
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(site)}))
    assert run(FIVE, inv, tmp_path / "elsewhere").ok  # the host made as wanted by another state store
    before = sorted(str(p.relative_to(site)) for p in site.rglob("*"))

    first, kinds = _kinds(FIVE, inv, state, h, site)
    assert first.ok and first.changed == 0  # type: ignore[attr-defined]
    assert {s.status for s in first.sites[0].steps} == {StepStatus.UNCHANGED}  # type: ignore[attr-defined]
    # the read-only command after the steps that may change was left out of the lock's read
    # (their changes would have read it after them): it is read when its step comes
    assert kinds == ["lock+read", "step", "unlock"]
    assert sorted(str(p.relative_to(site)) for p in site.rglob("*")) == before
    assert not (site / ".maint" / "lock").exists()

    again, kinds = _kinds(FIVE, inv, state, h, site)
    assert again.changed == 0 and kinds == ["read"]  # type: ignore[attr-defined]


def test_a_failed_stage_is_not_remembered(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    h, d = ssh_hosts[2]
    site, state = d / "site", tmp_path / "state"
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(site)}))
    failing = FIVE.replace('argv: ["true"], unless: ["true"]', 'argv: ["false"], unless: ["false"]')
    first = run(failing, inv, state)
    assert not first.ok
    assert "settled" not in _records(state)[-1]
    assert not (site / "app").exists()  # rolled back

    second, kinds = _kinds(failing, inv, state, h, site)
    assert not second.ok  # type: ignore[attr-defined]
    assert kinds[0] == "lock+read"  # still never finished here
    assert _early(second) == [NEVER_SETTLED]


def test_plan_mode_and_read_only_stages_never_lock(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    h, d = ssh_hosts[0]
    site, state = d / "plan-site", tmp_path / "state"
    site.mkdir()
    shutil.chown(site, "deploy", "deploy")
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(site)}))

    plan, kinds = _kinds(FIVE, inv, state, h, site, check=True)
    assert plan.ok and kinds == ["step"]  # type: ignore[attr-defined]  # one read, without even a look at the lock
    assert not (state / "index" / "shop" / "runs.jsonl").exists()  # a plan is not recorded

    look, kinds = _kinds(READ_ONLY, inv, state, h, site)
    assert look.ok and kinds == ["read"]  # type: ignore[attr-defined]
    assert "settled" not in _records(state)[-1]  # nothing that could change: no guess to make
    assert _early(look) == []
