"""Steps' changes in one round trip (maintkit.runner.chain), over real SSH (lab sshd).

What is proven, each on the files the host really has and in the audit log:

* a guard that reads differently stops the round trip before the link's change: the link is
  checked again on what the host has then (a file seen through a link the step before just
  made is updated, its old content kept for the rollback, never "created" and later deleted);
* a link whose change fails ends the round trip: the steps after it never run, the stage rolls
  back the change before it, and the tree is exactly what it was;
* a leader whose verify fails after its links' changes ran: every link is still recorded
  (applied, verified) and the rollback undoes them all, in reverse order;
* a chained round trip that times out (a link's program never ends): the link fails with the
  timeout named, the steps whose change ran before it are verified by a read of their own and
  rolled back, the tree is exactly what it was and the lock is released;
* a dead run's takeover reports the steps a chained round trip carried as applying when it died.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from maintkit.action import Context
from maintkit.actions.file import FileDirectory
from maintkit.errors import VerifyFailed
from maintkit.registry import Registry
from maintkit.results import SiteStatus, StepStatus
from maintkit.runner.reconcile import unfinished_stage
from maintkit.transport.base import quote
from tests.deploy_helpers import tree
from tests.lab.argv_shim import argv_shim
from tests.lab.recording import Recorder
from tests.lab.sshd import LabHost, SshLab, chown_login_user
from tests.runs import events, one_site, run, write_inventory

#: the playbooks of the tests below: their steps, ``SITE`` standing for the site's folder
STEPS: dict[str, list[str]] = {
    "fails-inside": [
        '{id: dir, action: file.directory, with: {path: "SITE/d"}}',
        '{id: write, action: file.content, with: {path: "SITE/d/missing-parent/f", content: "x"}}',
        '{id: link, action: file.symlink, with: {path: "SITE/l", target: "SITE/d"}}',
    ],
    "settled": [
        '{id: dir, action: file.directory, with: {path: "SITE/d"}}',
        '{id: write, action: file.content, with: {path: "SITE/d/f", content: "x"}}',
        '{id: link, action: file.symlink, with: {path: "SITE/l", target: "SITE/d/f"}}',
    ],
    "two-writes": [
        '{id: dir, action: file.directory, with: {path: "SITE/d"}}',
        '{id: one, action: file.content, with: {path: "SITE/d/one", content: "first\\n"}}',
        '{id: two, action: file.content, with: {path: "SITE/d/two", content: "second\\n"}}',
    ],
    "leader-fails": [
        '{id: dir, action: test.dir_fails_verify, with: {path: "SITE/d"}}',
        '{id: write, action: file.content, with: {path: "SITE/f", content: "x"}}',
        '{id: link, action: file.symlink, with: {path: "SITE/l", target: "SITE/f"}}',
    ],
}


def _run(text: str, host: LabHost, site: Path, tmp_path: Path, **kw: Any) -> tuple[Any, Recorder]:
    inv = write_inventory(tmp_path, one_site(host.env(site)))
    rec = Recorder()
    return run(text, inv, tmp_path / "state", transport_factory=rec, **kw), rec


def _owned(*paths: Path) -> None:
    """Made by the test (as root): given to the login user, as the site's files are."""
    for p in paths:
        chown_login_user(p)


def _playbook(name: str, *steps: str) -> str:
    """A playbook of one production stage with these steps (YAML flow mappings)."""
    return f"name: {name}\nstages:\n  - env: production\n    steps:\n" + "".join(f"      - {s}\n" for s in steps)


def _new_site(ssh_hosts: list[tuple[LabHost, Path]], **files: str) -> tuple[LabHost, Path]:
    """The first host and a new site folder on it holding ``files`` (name: text), the login user's."""
    host, scratch = ssh_hosts[0]
    site = scratch / "site"
    site.mkdir()
    for name, text in files.items():
        (site / name).write_text(text)
    _owned(site, *(site / name for name in files))
    return host, site


def _site_and_playbook(ssh_hosts: list[tuple[LabHost, Path]], name: str, **files: str) -> tuple[LabHost, Path, str]:
    """:func:`_new_site`, and the playbook ``name`` of :data:`STEPS` for that site."""
    host, site = _new_site(ssh_hosts, **files)
    return host, site, _playbook(name, *(step.replace("SITE", str(site)) for step in STEPS[name]))


def _files(site: Path) -> dict[str, Any]:
    """The site's tree without maint's own ``.maint`` folder (its lock's parent stays)."""
    return {k: v for k, v in tree(site).items() if k != ".maint" and not k.startswith(".maint/")}


def _statuses(result: Any) -> list[tuple[str, StepStatus]]:
    return [(s.step, s.status) for s in result.sites[0].steps]


def test_a_guard_that_reads_differently_sends_the_link_through_its_check_again(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, scratch = ssh_hosts[0]
    site = scratch / "site"
    (site / "a").mkdir(parents=True)
    (site / "a" / "x").write_text("old\n")
    _owned(site, site / "a", site / "a" / "x")
    playbook = _playbook(
        "through-a-link",
        f'{{id: link, action: file.symlink, with: {{path: "{site}/cur", target: "{site}/a"}}}}',
        f'{{id: write, action: file.content, with: {{path: "{site}/cur/x", content: "new\\n"}}}}',
    )
    result, rec = _run(playbook, host, site, tmp_path)
    assert result.sites[0].status is SiteStatus.OK, result.sites[0].error
    assert _statuses(result) == [("link", StepStatus.CHANGED), ("write", StepStatus.CHANGED)]
    assert (site / "a" / "x").read_text() == "new\n"
    # planned before the link existed, the write would have "created" cur/x (and a rollback
    # would delete it); checked again through the new link, it updates a.x
    [write] = [s for s in result.sites[0].steps if s.step == "write"]
    assert [(c.summary, c.target) for c in write.changes] == [("updated", f"{site}/cur/x")]
    # the chain ran the link's change and stopped at the write's guard; the write went on its
    # own: the old content read for its rollback, then the write
    assert rec.kinds(host, site, result.run_id) == ["lock+read", "step", "step", "step", "unlock"]
    evs = events(result.run_dir)
    needed = [(e["step"], e.get("chained")) for e in evs if e.get("status") == "needed"]
    assert needed == [("link", [{"step": "write", "action": "file.content"}]), ("write", None)]

    again, rec = _run(playbook, host, site, tmp_path)
    assert again.ok and again.changed == 0
    assert rec.kinds(host, site, again.run_id) == ["read"]


def test_a_link_whose_change_fails_ends_the_round_trip_and_the_stage_rolls_back(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, site, playbook = _site_and_playbook(ssh_hosts, "fails-inside", keep="kept\n")
    before = _files(site)
    result, rec = _run(playbook, host, site, tmp_path)
    assert result.sites[0].status is SiteStatus.ROLLED_BACK
    assert _statuses(result) == [("dir", StepStatus.ROLLED_BACK), ("write", StepStatus.FAILED)]
    [write] = [s for s in result.sites[0].steps if s.step == "write"]
    assert write.error is not None and f"{site}/d/missing-parent/f" in write.error
    assert _files(site) == before  # the directory removed again; the link never made
    assert rec.kinds(host, site, result.run_id) == ["lock+read", "step", "step", "unlock"]  # the chain, the rollback
    evs = events(result.run_dir)
    assert [e["event"] for e in evs if e.get("step") == "link" and e["event"].startswith("step.")] == ["step.not_run"]
    [checked] = [e for e in evs if e.get("step") == "dir" and e.get("status") == "needed"]
    assert [c["step"] for c in checked["chained"]] == ["write", "link"]


def test_links_of_a_stage_that_reads_first_are_planned_on_that_read_and_guarded(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, site, playbook = _site_and_playbook(ssh_hosts, "settled")
    first, rec = _run(playbook, host, site, tmp_path)
    assert first.ok and rec.kinds(host, site, first.run_id) == ["lock+read", "step", "unlock"]
    for name in ("l", "d/f", "d"):  # what the run made goes again: the stage finished here before
        p = site / name
        p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    again, rec = _run(playbook, host, site, tmp_path)
    assert again.ok and again.changed == 3
    # read first (the stage settled here), the lock with the directory's probes read again, then
    # the three changes: the file's and the link's planned on the first read, their guards
    # reading it again under the lock
    assert rec.kinds(host, site, again.run_id) == ["read", "lock+read", "step", "unlock"]
    assert (site / "d" / "f").read_text() == "x" and (site / "l").readlink() == site / "d" / "f"


def test_one_change_per_round_trip_reads_stdin_and_the_event_names_exactly_the_steps_carried(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, site, playbook = _site_and_playbook(ssh_hosts, "two-writes")
    result, rec = _run(playbook, host, site, tmp_path)
    assert result.ok and result.changed == 3
    assert (site / "d" / "one").read_text() == "first\n" and (site / "d" / "two").read_text() == "second\n"
    # both writes send their content on stdin: the second cannot ride with the first
    assert rec.kinds(host, site, result.run_id) == ["lock+read", "step", "step", "unlock"]
    needed = [(e["step"], e.get("chained")) for e in events(result.run_dir) if e.get("status") == "needed"]
    assert needed == [("dir", [{"step": "one", "action": "file.content"}]), ("one", None), ("two", None)]


class _FailsVerify(FileDirectory):
    """file.directory whose verify always fails (after its change and its links' changes ran)."""

    name: ClassVar[str] = "test.dir_fails_verify"

    def verify(self, ctx: Context) -> None:
        raise VerifyFailed("refused by the test")


def test_links_that_ran_are_recorded_and_rolled_back_when_the_leader_fails_its_verify(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, site, playbook = _site_and_playbook(ssh_hosts, "leader-fails")
    before = _files(site)
    registry = Registry()
    registry.register(_FailsVerify)
    result, rec = _run(playbook, host, site, tmp_path, registry=registry)
    assert result.sites[0].status is SiteStatus.ROLLED_BACK
    assert _statuses(result) == [
        ("dir", StepStatus.FAILED),
        ("write", StepStatus.ROLLED_BACK),
        ("link", StepStatus.ROLLED_BACK),
    ]
    assert _files(site) == before
    evs = [e for e in events(result.run_dir) if e["event"] in ("step.applied", "step.verified", "step.rolled_back")]
    assert [(e["event"], e["step"]) for e in evs] == [
        ("step.applied", "dir"),
        ("step.applied", "write"),
        ("step.verified", "write"),
        ("step.applied", "link"),
        ("step.verified", "link"),
        ("step.rolled_back", "link"),
        ("step.rolled_back", "write"),
        ("step.rolled_back", "dir"),
    ]
    # the chain, then one rollback command per step
    assert rec.kinds(host, site, result.run_id) == ["lock+read", "step", "step", "step", "step", "unlock"]


def test_a_takeover_reports_the_steps_a_chained_round_trip_carried() -> None:
    where = {"site": "shop", "env": "production"}
    evs = [
        {"event": "stage.started", **where},
        {"event": "step.checked", **where, "step": "dir", "action": "file.directory", "status": "needed",
         "chained": [{"step": "write", "action": "file.content"}, {"step": "link", "action": "file.symlink"}]},
        {"event": "step.applied", **where, "step": "dir", "action": "file.directory",
         "changes": [{"target": "/srv/d", "summary": "created"}]},
    ]  # fmt: skip
    applied, pending = unfinished_stage(evs, "shop", "production")
    assert [d.step for d in applied] == ["dir"]
    assert [(d.step, d.action) for d in pending] == [("write", "file.content"), ("link", "file.symlink")]


def test_a_chained_round_trip_that_times_out_fails_the_link_and_the_stage_rolls_back(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, site, playbook = _site_and_playbook(ssh_hosts, "settled", keep="kept\n")
    before = _files(site)
    gate = site.parent / "gate"  # a FIFO nobody writes: the link's `ln` waits on it for ever
    os.mkfifo(gate, 0o666)
    chown_login_user(gate)
    with argv_shim(ssh_lab, site.parent / "shim", ["ln"]) as shim:
        (shim.bin_dir / "ln").write_text(f"#!/bin/sh\nexec 3<> {quote(str(gate))}; read x <&3\n")
        env = host.env(site, key_file=str(shim.key_file), command_timeout=1)
        rec = Recorder()
        result = run(playbook, write_inventory(tmp_path, one_site(env)), tmp_path / "state", transport_factory=rec)
    assert result.sites[0].status is SiteStatus.ROLLED_BACK
    assert _statuses(result) == [
        ("dir", StepStatus.ROLLED_BACK),
        ("write", StepStatus.ROLLED_BACK),
        ("link", StepStatus.FAILED),
    ]
    [link] = [s for s in result.sites[0].steps if s.step == "link"]
    took = link.error.removeprefix(f"apply: {site}/l: timed out after ").removesuffix(" s")  # type: ignore[union-attr]
    assert 3.0 <= float(took) < 30.0  # each step's 1 s, for the three
    assert _files(site) == before and not (site / ".maint" / "lock").exists()
    # the `ln` that hung was stopped on the host: nothing holds the gate open any more (sshd
    # refuses the signal request for the shim key's forced command: the group was killed over
    # a new channel)
    with pytest.raises(OSError) as no_reader:
        os.close(os.open(gate, os.O_WRONLY | os.O_NONBLOCK))
    assert no_reader.value.errno == errno.ENXIO
    # the chain (cut by the timeout: no read after it), a read for each of the two verifies,
    # the two rollbacks, the release; and the transport's own round trip that killed the group
    assert rec.kinds(host, site, result.run_id) == ["lock+read", *["step"] * 5, "unlock"]
    assert rec.by_host[host.ip].inner.round_trips == len(rec.by_host[host.ip].sent) + 1  # type: ignore[attr-defined]
    evs = events(result.run_dir)
    assert [e["step"] for e in evs if e["event"] == "step.verified"] == ["dir", "write"]
    assert [e["step"] for e in evs if e["event"] == "step.rolled_back"] == ["write", "dir"]
