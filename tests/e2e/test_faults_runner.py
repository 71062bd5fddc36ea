"""Faults the runner must never end "ok" on, and what a dead run leaves behind (connection: local).

- an action that changed something and then failed: its changes are rolled back;
- a finalize that fails (maintenance cannot be switched off) and a lock that cannot be
  released fail the site, with the reason;
- a full disk when the lock is taken: the real error text, nothing left behind;
- a run killed with SIGKILL: ``maint unlock`` refuses while it lives, clears its lock once it
  is gone and reports the maintenance flag it left on; the next run takes the flag over and
  switches it off.

Full and read-only file systems are real: a small tmpfs mounted on the site directory.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from maintkit.action import Action, Context, Params
from maintkit.errors import ApplyFailed
from maintkit.registry import Registry
from maintkit.results import Change, Check, RunResult, SiteStatus, StepStatus
from tests.gates import gated_shell, make_gates, open_gate, wait_started, wait_until
from tests.runs import local_env, maint_cli, one_site, run, spawn_maint, write_inventory

# ---------------------------------------------------------------------------- helpers


def shop_inventory(tmp_path: Path, site: Path) -> Path:
    """One site ``shop`` whose production is ``site`` on this machine."""
    return write_inventory(tmp_path, one_site(local_env(site)))


def events(result: RunResult | Path) -> list[dict[str, Any]]:
    run_dir = Path(result.run_dir or "") if isinstance(result, RunResult) else result
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def trail(evs: list[dict[str, Any]], *names: str) -> list[tuple[str, str | None]]:
    """(event, step) of the events named (all step events when no name is given)."""
    return [(e["event"], e.get("step")) for e in evs if (e["event"] in names if names else "step" in e)]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, small file system mounted on ``path`` (we run as root)."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    # the suite runs as root (the lab needs it): a failed mount is a broken lab, not a reason to skip
    assert res.returncode == 0, f"cannot mount a tmpfs here: {res.stderr.decode().strip()}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(fs: Path) -> None:
    """Fill the file system up to its last byte."""
    res = subprocess.run(["dd", "if=/dev/zero", f"of={fs}/fill", "bs=4096"], capture_output=True, text=True)
    assert "No space left on device" in res.stderr


# ---------------------------------------------------------------------------- 1: partial apply


class PartialParams(Params):
    path: str = Field(...)
    content: str = Field(...)


class PartialApply(Action[PartialParams]):
    """Writes a file and then fails, reporting the write (like a deploy that switched ``current``)."""

    name: ClassVar[str] = "test.partial"
    Params: ClassVar[type[PartialParams]] = PartialParams
    reversible: ClassVar[bool] = True

    def check(self, ctx: Context) -> Check:
        return Check.change("would write") if Path(self.params.path).read_text() != self.params.content else Check.ok()

    def apply(self, ctx: Context, check: Check) -> list[Change]:
        target = Path(self.params.path)
        old = target.read_text()
        target.write_text(self.params.content)
        change = Change(str(target), "content", before="old", after="new", undo=old)
        raise ApplyFailed("written, then the reload failed", action=self.name, changes=[change])

    def rollback(self, ctx: Context, changes: list[Change]) -> None:
        for change in changes:
            Path(change.target).write_text(change.undo)


def test_changes_made_before_apply_failed_are_rolled_back(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "conf.txt").write_text("old\n")
    registry = Registry()
    registry.register(PartialApply)
    text = f"""\
name: partial
stages:
  - env: production
    steps:
      - {{id: write, action: test.partial, with: {{path: "{site}/conf.txt", content: "new\\n"}}}}
      - {{id: after, action: command, with: {{argv: ["true"]}}}}
"""
    res = run(text, shop_inventory(tmp_path, site), tmp_path / "state", registry=registry)
    assert res.exit_code == 1
    s = res.sites[0]
    assert s.status is SiteStatus.ROLLED_BACK
    assert s.error == "step write failed: apply: written, then the reload failed"
    assert (site / "conf.txt").read_text() == "old\n"
    write = s.steps[0]
    assert (write.status, write.reason) == (StepStatus.FAILED, "rolled back")
    evs = events(res)
    assert trail(evs) == [
        ("step.checked", "write"),
        ("step.failed", "write"),
        ("step.rolled_back", "write"),
        ("step.not_run", "after"),
    ]
    failed = next(e for e in evs if e["event"] == "step.failed")
    assert failed["changes"] == [{"target": f"{site}/conf.txt", "summary": "content", "before": "old", "after": "new"}]
    assert not (site / ".maint" / "lock").exists()


# ---------------------------------------------------------------------------- 2: failed cleanups


def test_maintenance_that_cannot_be_switched_off_fails_the_site(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    flag = site / ".maint" / "maintenance.flag"
    text = f"""\
name: stuck
stages:
  - env: production
    steps:
      - {{id: maint-on, action: maintenance.enable}}
      - {{id: clobber, action: command, with: {{argv: [sh, -c, "rm -f {flag} && mkdir {flag} && touch {flag}/x"]}}}}
"""
    res = run(text, shop_inventory(tmp_path, site), tmp_path / "state")
    assert (res.status, res.exit_code) == ("failed", 1)
    s = res.sites[0]
    assert s.status is SiteStatus.FAILED
    assert s.error is not None and s.error.startswith(
        "finalize of step maint-on failed: could not switch maintenance off:"
    )
    assert "Is a directory" in s.error
    evs = events(res)
    fin = [e for e in evs if e["event"] == "step.finalize_failed"]
    assert [(e["step"], e["action"]) for e in fin] == [("maint-on", "maintenance.enable")]
    assert [e["status"] for e in evs if e["event"] in ("stage.finished", "site.finished")] == ["failed", "failed"]
    assert next(e for e in evs if e["event"] == "run.finished")["status"] == "failed"
    assert flag.is_dir()
    assert not (site / ".maint" / "lock").exists()


def test_a_lock_that_cannot_be_released_fails_the_site(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "site", "1m") as site:
        text = f"""\
name: readonly
stages:
  - env: production
    steps:
      - {{id: freeze, action: command, with: {{argv: [mount, -o, "remount,ro", "{site}"]}}}}
"""
        res = run(text, shop_inventory(tmp_path, site), tmp_path / "state")
        assert (res.status, res.exit_code) == ("failed", 1)
        s = res.sites[0]
        assert s.status is SiteStatus.FAILED
        assert s.error is not None and s.error.startswith("could not release the lock of shop/production:")
        assert "Read-only file system" in s.error
        evs = events(res)
        assert [e["event"] for e in evs if e["event"].startswith("lock.")] == ["lock.acquired", "lock.release_failed"]
        assert (site / ".maint" / "lock" / "holder.json").is_file()  # really still there


# ---------------------------------------------------------------------------- 4: full disk


def test_full_disk_when_taking_the_lock_reports_the_error_and_leaves_nothing(tmp_path: Path) -> None:
    text = """\
name: full
stages:
  - env: production
    steps:
      - {id: note, action: file.content, with: {path: "{{ env.path }}/note.txt", content: "x\\n"}}
"""
    with tmpfs(tmp_path / "site", "64k") as site:
        fill(site)
        res = run(text, shop_inventory(tmp_path, site), tmp_path / "state")
        assert res.exit_code == 1
        s = res.sites[0]
        assert s.status is SiteStatus.FAILED
        assert s.error == "shop/production: cannot take the lock: cat: write error: No space left on device"
        assert "__preamble_failed__" not in json.dumps(res.to_dict())
        evs = events(res)
        assert not [e for e in evs if e["event"].startswith("lock.")]
        assert [(e["step"], e["reason"]) for e in evs if e["event"] == "step.not_run"] == [
            ("note", f"the stage could not start: {s.error}")
        ]
        assert sorted(p.name for p in (site / ".maint").iterdir()) == []  # no lock dir, no temp holder
        (site / "fill").unlink()
        again = run(text, shop_inventory(tmp_path, site), tmp_path / "state")
        assert again.exit_code == 0, again.sites[0].error
        assert (site / "note.txt").read_text() == "x\n"
        assert not (site / ".maint" / "lock").exists()


# ---------------------------------------------------------------------------- 3 + 5: killed runs


GATED = """\
name: gated
stages:
  - env: production
    steps:
      - {id: maint-on, action: maintenance.enable}
      - id: work
        action: command
        with:
          argv: [sh, -c, "GATED"]
          creates: "{{ env.path }}/done"
"""
GATED = GATED.replace("GATED", gated_shell("{{ env.path }}", "touch {{ env.path }}/done"))


class Gated:
    """A ``maint run`` of GATED in a subprocess, blocked in step ``work`` until :meth:`open`."""

    def __init__(self, tmp_path: Path, site: Path) -> None:
        self.tmp_path, self.site = tmp_path, site
        self.inv = shop_inventory(tmp_path, site)
        self.pb = tmp_path / "gated.yml"
        self.pb.write_text(GATED)
        self.state = tmp_path / "state"
        make_gates(site)
        self.proc = spawn_maint("run", str(self.pb), "-i", str(self.inv), "--state-dir", str(self.state), cwd=tmp_path)
        wait_started(site, self.proc)
        self.holder = json.loads((site / ".maint" / "lock" / "holder.json").read_text())

    def open(self) -> None:
        """Let the gated step go on (its shell may outlive a killed run), and wait until it is done."""
        open_gate(self.site)
        # the shell outlives the killed run: no process of ours to wait on, so watch its result
        wait_until((self.site / "done").exists, "the gated step finished")

    def maint(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``maint ARGS`` on this run's inventory and state dir."""
        return maint_cli(*args, "-i", str(self.inv), "--state-dir", str(self.state), cwd=self.tmp_path)


def test_killed_run_leaves_maintenance_that_unlock_reports_and_the_next_run_switches_off(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    flag = site / ".maint" / "maintenance.flag"
    owner = site / ".maint" / "maintenance.json"
    gated = Gated(tmp_path, site)
    dead_run, pid = gated.holder["run_id"], gated.holder["pid"]
    try:
        assert json.loads(owner.read_text())["run_id"] == dead_run
        assert json.loads(owner.read_text())["pid"] == pid
        gated.proc.send_signal(signal.SIGKILL)
        gated.proc.communicate(timeout=30)
    finally:
        gated.open()
    assert flag.is_file() and owner.is_file()
    assert not (tmp_path / "state" / "runs" / dead_run / "summary.json").exists()

    locked = gated.maint("run", str(gated.pb))
    assert locked.returncode == 3, locked.stdout + locked.stderr
    assert f"the lock looks stale (process {pid} on this machine is gone)" in locked.stdout

    unlocked = gated.maint("unlock", "shop", "--env", "production")
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.splitlines() == [
        f"cleared the lock of shop/production; it was held by run {dead_run} by {gated.holder['actor']} "
        f"since {gated.holder['since']} (playbook gated) (process {pid} on this machine is gone)",
        f"warning: maintenance mode of shop/production is still on, left by run {dead_run} (its lock is gone): {flag}",
        "  the next run's maintenance.enable or maintenance.disable step switches it off; to do it now: "
        "maint unlock shop --env production --maintenance-off",
    ]
    assert flag.is_file(), "unlock only reports the flag unless asked to switch it off"

    again = gated.maint("run", str(gated.pb), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    run_id = json.loads(again.stdout.splitlines()[-1])["run_id"]
    evs = events(tmp_path / "state" / "runs" / run_id)
    left = [e for e in evs if e["event"] == "maintenance.leftover"]
    assert [(e["step"], e["previous_run"], e["outcome"], e["markers"]) for e in left] == [
        ("maint-on", dead_run, "taken-over", [str(flag)])
    ]
    applied = next(e for e in evs if e["event"] == "step.applied" and e["step"] == "maint-on")
    assert applied["reason"] == (
        f"maintenance is on, left by run {dead_run} (its lock is gone: run {run_id} holds it now): "
        "taking it over, it is switched off at the end of the stage"
    )
    assert [c["summary"] for c in applied["changes"]] == ["flag file taken over"]
    assert trail(evs, "step.checked", "maintenance.finalized") == [
        ("step.checked", "maint-on"),
        ("step.checked", "work"),
        ("maintenance.finalized", "maint-on"),
    ]
    assert not flag.exists() and not owner.exists() and not (site / ".maint" / "lock").exists()

    third = gated.maint("run", str(gated.pb), "--json")  # nothing left over any more
    assert third.returncode == 0
    evs = events(tmp_path / "state" / "runs" / json.loads(third.stdout.splitlines()[-1])["run_id"])
    assert not [e for e in evs if e["event"] == "maintenance.leftover"]
    assert not flag.exists() and not owner.exists()


def test_unlock_switches_off_leftover_maintenance_when_asked(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    gated = Gated(tmp_path, site)
    try:
        gated.proc.send_signal(signal.SIGKILL)
        gated.proc.communicate(timeout=30)
    finally:
        gated.open()
    res = gated.maint("unlock", "shop", "--env", "production", "--maintenance-off")
    assert res.returncode == 0, res.stderr
    flag = site / ".maint" / "maintenance.flag"
    assert res.stdout.splitlines()[1] == (
        f"switched off the maintenance mode of shop/production left on by run {gated.holder['run_id']}: {flag}"
    )
    assert not flag.exists() and not (site / ".maint" / "maintenance.json").exists()
    assert not (site / ".maint" / "lock").exists()


def test_unlock_refuses_while_the_holder_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    gated = Gated(tmp_path, site)
    try:
        res = gated.maint("unlock", "shop", "--env", "production")
        assert res.returncode == 3
        h = gated.holder
        assert res.stderr.strip() == (
            f"error: shop/production is locked by run {h['run_id']} by {h['actor']} since {h['since']} "
            f"(playbook gated), which may still be running (process {h['pid']} on this machine is still running); "
            "the lock was not cleared. If you are sure that run is gone: maint unlock shop --env production --force"
        )
        assert json.loads((site / ".maint" / "lock" / "holder.json").read_text()) == h
    finally:
        gated.open()
    out, err = gated.proc.communicate(timeout=60)
    assert gated.proc.returncode == 0, out + err
    assert not (site / ".maint" / "lock").exists()
    assert not (site / ".maint" / "maintenance.flag").exists()


def _foreign_lock(site: Path, age: timedelta) -> dict[str, Any]:
    since = (datetime.now(UTC) - age).isoformat(timespec="seconds")
    holder = {
        "run_id": "20240101T000000Z-elsewh",
        "actor": "ci@ctl2",
        "since": since,
        "playbook": "deploy",
        "controller": f"not-{socket.gethostname()}",
        "pid": 4242,
    }
    lock = site / ".maint" / "lock"
    lock.mkdir(parents=True)
    (lock / "holder.json").write_text(json.dumps(holder) + "\n")
    return holder


def test_unlock_of_a_holder_on_another_controller(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    inv = shop_inventory(tmp_path, site)

    def unlock(*extra: str) -> subprocess.CompletedProcess[str]:
        return maint_cli("unlock", "shop", "--env", "production", "-i", str(inv), *extra, cwd=tmp_path)

    holder = _foreign_lock(site, timedelta(hours=2))
    refused = unlock()
    assert refused.returncode == 3
    assert (
        f"which may still be running (it runs on {holder['controller']}, where this machine cannot tell "
        "whether it is still running)"
    ) in refused.stderr
    assert (site / ".maint" / "lock" / "holder.json").is_file()
    assert unlock("--older-than", "soon").returncode == 2

    cleared = unlock("--older-than", "90m")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.strip().endswith(f"(held since {holder['since']}, longer than 90m)")
    assert not (site / ".maint" / "lock").exists()

    _foreign_lock(site, timedelta(minutes=1))
    forced = unlock("--force")
    assert forced.returncode == 0, forced.stderr
    assert "(forced; it runs on" in forced.stdout
    assert not (site / ".maint" / "lock").exists()
    assert unlock().stdout == "shop/production was not locked\n"
