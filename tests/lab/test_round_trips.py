"""Round trips per host over real SSH (lab sshd): what each run sends, session by session.

Every transport of a run is wrapped in :class:`Recording`, which notes each command before
the real SSH transport sends it; the SSH transport's own count of the sessions it opened
(``round_trips``) must agree. A PATH shim on the host (:mod:`tests.lab.argv_shim`) records the
programs the read runs. What is proven:

* plan mode: one session per host, no lock;
* a first run that changes: the read-only read, then the lock taken with every probe read
  again, the steps' own commands, and one unlock;
* a no-op run of the same five steps: exactly ONE session per host (one ``stat`` for every
  path, its link targets included, and one ``sha256sum``; no ``readlink``), no lock, no unlock;
* a lock held by another live run is refused, with today's message, without touching it;
* a lock taken between the read and the lock (held at a gate) is found, and nothing changes;
* a fact that changed between the read and the lock sends the stage through its checks again.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from maintkit import locks
from maintkit.results import RunResult, SiteStatus, StepStatus
from maintkit.runner.settled import NEVER_SETTLED
from tests.gates import gated_shell, make_gates, open_gate, wait_started
from tests.lab.argv_shim import argv_shim
from tests.lab.recording import Recorder
from tests.lab.sshd import LabHost, SshLab
from tests.runs import events, run, sites_of, write_inventory

FIVE = """\
name: five
stages:
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}/app", mode: "0750"}}
      - {action: file.content, with: {path: "{{ env.path }}/app/config.txt", content: "site={{ site.name }}\\n"}}
      - {action: file.symlink, with: {path: "{{ env.path }}/current", target: "{{ env.path }}/app"}}
      - {action: command, with: {argv: [hostname], read_only: true}}
      - {action: command, with: {argv: ["true"], unless: ["true"]}}
"""

#: the programs a first run of FIVE starts on a host whose login shell is bash: the lock (.maint,
#: then the lock itself) with the read (the read-only command, after the steps that may change,
#: is left for the read after their changes); in one round trip the directory (mkdir -m), the
#: file (cat, mv; its guard, a missing path, is tested by the shell alone) and the link (ln),
#: then ONE read after them all (a stat of the three paths, the file's hash, the read-only
#: command: its only run); the release
FIRST_RUN_PROGRAMS = Counter(
    {"hostname": 1, "mkdir": 3, "stat": 1, "cat": 1, "mv": 1, "sha256sum": 1, "ln": 1, "rm": 1}
)


def _run(playbook: str, inv: Path, state: Path, **kwargs: Any) -> tuple[RunResult, Recorder]:
    rec = Recorder()
    return run(playbook, inv, state, transport_factory=rec, **kwargs), rec


def _lock_events(result: RunResult) -> list[str]:
    return [e["event"] for e in events(result.run_dir) if e["event"].startswith("lock.")]


def test_plan_then_first_run_then_noop_count_every_session(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    (h1, d1) = ssh_hosts[0]
    with argv_shim(ssh_lab, d1 / "shim", [*FIRST_RUN_PROGRAMS, "readlink", "chmod", "date"]) as shim:
        envs = {f"shop-{h.name}": h.env(d / "site") for h, d in ssh_hosts}
        envs["shop-h1"] = h1.env(d1 / "site", key_file=str(shim.key_file))  # its programs run through the shims
        inv = write_inventory(tmp_path, sites_of(envs))

        plan, rec = _run(FIVE, inv, tmp_path / "state", check=True)
        assert plan.ok
        for h, d in ssh_hosts:
            assert rec.sessions(h) == 1
            assert not (d / "site" / ".maint").exists()
        assert _lock_events(plan) == []

        assert Counter(call.argv[0] for call in shim.calls()) == {"hostname": 1}  # the plan's one read
        for recorded in shim.calls_dir.iterdir():
            recorded.unlink()
        first, rec = _run(FIVE, inv, tmp_path / "state")
        assert first.ok and first.changed == 3 * 3
        for h, d in ssh_hosts:
            # never finished here with these steps: the lock is taken in the first round trip; the
            # three changes go in one round trip (the directory's, then the file's and the link's,
            # each after its guard)
            assert rec.kinds(h, d / "site", first.run_id) == ["lock+read", "step", "unlock"]
            assert rec.sessions(h) == 3
            assert not (d / "site" / ".maint" / "lock").exists()
        evs = events(first.run_dir)
        acquired = [e for e in evs if e["event"] == "lock.acquired"]
        assert sorted(e["site"] for e in acquired) == ["shop-h1", "shop-h2", "shop-h3"]
        assert {(e.get("for_step"), e["early"]) for e in acquired} == {(None, NEVER_SETTLED)}  # the whole stage
        assert [e["locked"] for e in evs if e["event"] == "stage.finished"] == [True] * 3
        # the directory's step names the steps its round trip carries; each is recorded in order
        needed = [(e["site"], e["step"], e.get("chained")) for e in evs if e.get("status") == "needed"]
        carried = [
            {"step": "file.content", "action": "file.content"},
            {"step": "file.symlink", "action": "file.symlink"},
        ]
        assert sorted(needed) == sorted(
            x for s in ["shop-h1", "shop-h2", "shop-h3"]
            for x in [(s, "file.directory", carried), (s, "file.content", None), (s, "file.symlink", None)]
        )  # fmt: skip

        # h1's programs: each of maint's guarantees and no more (the lock, the atomic write and
        # its verify, a fresh read after the changes); a new directory and a new link are made
        # in place, and the release of a lock in the middle of its lease needs no claim
        assert Counter(call.argv[0] for call in shim.calls()) == FIRST_RUN_PROGRAMS
        for recorded in shim.calls_dir.iterdir():  # only the no-op run's calls from here on
            recorded.unlink()
        noop, rec = _run(FIVE, inv, tmp_path / "state")
        assert noop.ok and noop.changed == 0
        assert {s.status for site in noop.sites for s in site.steps} == {StepStatus.UNCHANGED}
        for h, d in ssh_hosts:
            assert rec.kinds(h, d / "site", noop.run_id) == ["read"]
            assert rec.sessions(h) == 1
        assert _lock_events(noop) == []
        assert [e["locked"] for e in events(noop.run_dir) if e["event"] == "stage.finished"] == [False] * 3
        # the read of h1: every path (and the one link's target) in one stat, the one file hashed once
        programs = Counter(call.argv[0] for call in shim.calls())
        assert programs == {"stat": 1, "sha256sum": 1, "hostname": 1}
        [stat] = [c.argv for c in shim.calls() if c.argv[0] == "stat"]
        site = d1 / "site"
        assert stat[-3:] == [f"{site}/app", f"{site}/app/config.txt", f"{site}/current"]


OTHER = "20990101T000000Z-0ther1"


def _hold_lock(host: LabHost, site: Path, run_id: str = OTHER) -> dict[str, Any]:
    """Take ``site``'s lock as another live run would (a lease of 600 s); its holder record."""
    holder = locks.leased(
        {"run_id": run_id, "actor": "ci@elsewhere", "playbook": "other", "since": "2099-01-01T00:00:00+00:00",
         "controller": "elsewhere", "pid": 4242},
        str(site),
        600,
    )  # fmt: skip
    t = host.transport()
    try:
        assert t.run_shell(locks.acquire_script(str(site), holder), check=False).exit_code == 0
    finally:
        t.close()
    return dict(json.loads((site / ".maint" / "lock" / "holder.json").read_text()))


def _refusal(holder: dict[str, Any], site_name: str = "shop") -> re.Pattern[str]:
    """The message a refused lock has always given for a live holder on another controller."""
    return re.compile(
        re.escape(f"{site_name}/production is locked by {locks.describe(holder)}. Wait for it to finish, or if it "
                  f"died: maint unlock {site_name} --env production (its lease runs until {holder['expires']}, ")
        + r"\d+s from now: a later run takes the lock over then\)"
    )  # fmt: skip


def test_a_noop_run_on_a_site_another_run_holds_is_refused_without_taking_the_lock(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[0]
    site = d / "site"
    inv = write_inventory(tmp_path, sites_of({"shop": h.env(site)}))
    assert run(FIVE, inv, tmp_path / "state").ok  # converged: the next run has nothing to do
    holder = _hold_lock(h, site)
    before = (site / ".maint" / "lock" / "holder.json").read_bytes()
    res, rec = _run(FIVE, inv, tmp_path / "state")
    assert res.exit_code == 3
    [shop] = res.sites
    assert shop.status is SiteStatus.LOCKED and shop.steps == []
    assert _refusal(holder).fullmatch(shop.error or ""), shop.error
    assert rec.kinds(h, site, res.run_id) == ["read"] and rec.sessions(h) == 1
    assert (site / ".maint" / "lock" / "holder.json").read_bytes() == before
    assert sorted(p.name for p in (site / ".maint" / "lock").iterdir()) == ["holder.json"]
    not_run = [e for e in events(res.run_dir) if e["event"] == "step.not_run"]
    assert [e["reason"] for e in not_run] == ["the site is locked by another run"] * 5
    assert _lock_events(res) == []


def _gated_guard(gates: Path, site: Path) -> str:
    """A guard command that waits at the gate the first time it runs; "must run" (exit 1) until ``ran`` exists."""
    return f"[ -e {gates}/passed ] || {{ {gated_shell(gates)}; touch {gates}/passed; }}; [ -e {site}/ran ]"


def _race_playbook(gates: Path, site: Path) -> str:
    return f"""\
name: race
stages:
  - env: production
    steps:
      - id: config
        action: file.content
        with: {{path: "{{{{ env.path }}}}/config.txt", content: "new\\n"}}
      - id: work
        action: command
        with:
          argv: [touch, "{{{{ env.path }}}}/ran"]
          unless: {json.dumps(_gated_guard(gates, site))}
"""


def _race(tmp_path: Path, host: LabHost, d: Path, meanwhile: Any) -> tuple[RunResult, Recorder, Path]:
    """Run the race playbook on a converged site; ``meanwhile`` runs while its first read waits at the gate."""
    site, gates = d / "site", d / "gates"
    gates.mkdir()
    shutil.chown(gates, "deploy", "deploy")  # the guard marks its one pass there
    make_gates(gates, "deploy")
    site.mkdir()
    (site / "config.txt").write_text("new\n")
    shutil.chown(site, "deploy", "deploy")
    shutil.chown(site / "config.txt", "deploy", "deploy")
    inv = write_inventory(tmp_path, sites_of({"shop": host.env(site)}))
    # one run with nothing to do first: the stage has finished here, so the next run reads
    # before it locks (a stage that never did takes the lock in its first round trip)
    for made in (gates / "passed", site / "ran"):
        made.touch()
        shutil.chown(made, "deploy", "deploy")
    settled = run(_race_playbook(gates, site), inv, tmp_path / "state")
    assert settled.ok and settled.changed == 0
    for made in (gates / "passed", site / "ran"):
        made.unlink()
    out: dict[str, Any] = {}

    def go() -> None:
        out["res"], out["rec"] = _run(_race_playbook(gates, site), inv, tmp_path / "state")

    runner = threading.Thread(target=go)
    runner.start()
    try:
        wait_started(gates)  # the read has read config.txt and waits inside the guard
        meanwhile(site)
    finally:
        open_gate(gates)
        runner.join(timeout=120)
    assert not runner.is_alive()
    return out["res"], out["rec"], site


def test_a_lock_taken_between_the_read_and_the_lock_is_found(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[1]
    taken: dict[str, Any] = {}
    res, rec, site = _race(tmp_path, h, d, lambda site: taken.update(_hold_lock(h, site)))
    assert res.exit_code == 3
    [shop] = res.sites
    assert shop.status is SiteStatus.LOCKED
    assert _refusal(taken).fullmatch(shop.error or ""), shop.error
    # the first step was checked on the read (nothing to do); the second needed the lock and never ran
    assert [(s.step, s.status) for s in shop.steps] == [("config", StepStatus.UNCHANGED)]
    assert [e["step"] for e in events(res.run_dir) if e["event"] == "step.not_run"] == ["work"]
    assert rec.kinds(h, site, res.run_id) == ["read", "lock+read"]  # refused: nothing to unlock
    assert not (site / "ran").exists()
    assert json.loads((site / ".maint" / "lock" / "holder.json").read_text()) == taken
    assert _lock_events(res) == []


def test_a_fact_changed_before_the_lock_sends_the_stage_through_its_checks_again(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[2]
    res, rec, site = _race(tmp_path, h, d, lambda site: (site / "config.txt").write_text("tampered\n"))
    assert res.ok, res.to_dict()
    [shop] = res.sites
    assert [(s.step, s.status) for s in shop.steps] == [("config", StepStatus.CHANGED), ("work", StepStatus.CHANGED)]
    assert (site / "config.txt").read_text() == "new\n" and (site / "ran").exists()
    trail = [(e["event"], e.get("step") or e.get("for_step")) for e in events(res.run_dir)
             if e["event"].startswith(("step.", "lock.", "stage.re"))]  # fmt: skip
    assert trail == [
        ("step.checked", "config"),  # unchanged on the first read
        ("lock.acquired", "work"),
        ("stage.rechecked", "work"),
        ("step.checked", "config"),  # needed: the re-read under the lock saw the tampered file
        ("step.applied", "config"),
        ("step.verified", "config"),
        ("step.checked", "work"),
        ("step.applied", "work"),
        ("step.verified", "work"),
        ("lock.released", None),
    ]
    [again] = [e for e in events(res.run_dir) if e["event"] == "stage.rechecked"]
    assert (again["changed_steps"], again["reason"]) == (["config"], "what the checks read changed before the lock")
    # the steps' own commands: config's old content (its undo), its write; the touch, the guard read twice
    assert rec.kinds(h, site, res.run_id) == ["read", "lock+read", *["step"] * 5, "unlock"]
