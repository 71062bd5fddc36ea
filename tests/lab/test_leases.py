"""Site locks with leases over real SSH (lab sshd): a dead controller's lock is taken over after
its lease by another controller, which undoes what the dead run left; the heartbeat keeps a
lock alive through a long step; of two takers of one expired lock exactly one wins."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from maintkit import locks
from maintkit.transport.base import CommandResult
from tests.gates import GATED_SHELL, make_gates, open_gate, wait_started, wait_until
from tests.lab.sshd import LabHost
from tests.runs import events, maint_cli, one_site, spawn_maint

LEASE = 2


def _inventory(tmp_path: Path, host: LabHost, site: Path) -> Path:
    path = tmp_path / "inventory.yml"
    data = {"defaults": {"lock_lease": LEASE}, "sites": one_site(host.env(site))}
    path.write_text(yaml.safe_dump(data))
    return path


def _site(d: Path) -> Path:
    site = d / "site"
    site.mkdir()
    (site / "index.html").write_text("old\n")
    subprocess.run(["chown", "-R", "deploy:", str(site)], check=True)
    return site


def _gated(gates: Path) -> str:
    return f"""\
name: leased
stages:
  - env: production
    steps:
      - {{id: maint-on, action: maintenance.enable}}
      - id: config
        action: file.content
        with: {{path: "{{{{ env.path }}}}/config.txt", content: "new config\\n"}}
      - id: index
        action: file.content
        with: {{path: "{{{{ env.path }}}}/index.html", content: "new\\n"}}
      - id: work
        action: command
        with:
          argv: [sh, -c, "{GATED_SHELL.format(dir=gates)}"]
"""


AFTER = """\
name: after
stages:
  - env: production
    steps:
      - id: mark
        action: file.content
        with: {path: "{{ env.path }}/b.txt", content: "b\\n"}
"""


def _holder(site: Path) -> dict[str, Any]:
    return dict(json.loads((site / ".maint" / "lock" / "holder.json").read_text()))


def _applied(store: Path, run_id: str, step: str) -> bool:
    path = store / "runs" / run_id / "events.jsonl"
    return path.is_file() and any(e["event"] == "step.applied" and e["step"] == step for e in events(path.parent))


def _gates(d: Path) -> Path:
    gates = d / "gates"
    gates.mkdir()
    make_gates(gates, "deploy")
    return gates


def test_a_killed_controllers_lock_is_taken_over_after_its_lease_and_its_leftovers_undone(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[0]
    site, gates, shared = _site(d), _gates(d), tmp_path / "shared"
    inv = _inventory(tmp_path, h, site)
    (tmp_path / "leased.yml").write_text(_gated(gates))
    (tmp_path / "after.yml").write_text(AFTER)
    store = ("--state", f"dir:{shared}")
    a = spawn_maint("run", "leased.yml", "-i", str(inv), "--state-dir", str(tmp_path / "a"), *store, cwd=tmp_path)
    try:
        wait_started(gates, a)
        dead_run = _holder(site)["run_id"]
        # every change reaches the store as it is made: wait until the last one did
        wait_until(lambda: _applied(shared, dead_run, "index"), "controller A published step index", proc=a)
        a.send_signal(signal.SIGKILL)
        a.communicate(timeout=30)
    finally:
        open_gate(gates)
    dead = _holder(site)
    flag = site / ".maint" / "maintenance.flag"
    assert (dead["run_id"], dead["pid"], dead["controller"], dead["lease"]) == (
        dead_run,
        a.pid,
        socket.gethostname(),
        LEASE,
    )
    assert flag.is_file() and (site / "config.txt").read_text() == "new config\n"
    wait_until(lambda: time.time() >= dead["expires_epoch"], "the dead run's lease expired")

    b = maint_cli(
        "run", "after.yml", "-i", str(inv), "--state-dir", str(tmp_path / "b"), *store, "--json", cwd=tmp_path
    )
    assert b.returncode == 0, b.stdout + b.stderr
    run_b = json.loads(b.stdout.splitlines()[-1])["run_id"]

    # the host: maintenance off, the created file gone, the lock released; the updated file is reported
    assert not flag.exists() and not (site / ".maint" / "maintenance.json").exists()
    assert not (site / "config.txt").exists()
    assert (site / "index.html").read_text() == "new\n"
    assert (site / "b.txt").read_text() == "b\n"
    assert not (site / ".maint" / "lock").exists()

    evs = events(shared / "runs" / run_b)
    lock_evs = [e for e in evs if e["event"].startswith("lock.")]
    assert [e["event"] for e in lock_evs] == [
        "lock.reconcile_rolled_back",
        "lock.reconcile_maintenance_off",
        "lock.reconcile_incomplete",
        "lock.taken_over",
        "lock.released",
    ]
    rolled, off, incomplete, taken, _ = lock_evs
    assert (rolled["dead_run"], rolled["step"], rolled["action"]) == (dead_run, "config", "file.content")
    assert [(c["target"], c["summary"]) for c in rolled["changes"]] == [(f"{site}/config.txt", "created")]
    assert off["markers"] == [str(flag)]
    # what the store holds of the dead run: a prefix of its own log, at least up to step index applied
    # (the last publish may or may not have carried the check of step work that followed)
    dead_evs = events(shared / "runs" / dead_run)
    local = next((tmp_path / "a" / "stores").glob("dir-*")) / "runs" / dead_run
    assert dead_evs == events(local)[: len(dead_evs)]
    work_seen = any(e["event"] == "step.checked" and e.get("step") == "work" for e in dead_evs)
    in_flight = ["work"] if work_seen else []
    assert incomplete["steps"] == [*in_flight, "index"]
    assert incomplete["problems"] == [
        *(
            {
                "step": "work",
                "action": "command",
                "why": f"it was applying when run {dead_run} stopped: its changes are not recorded",
            }
            for _ in in_flight
        ),
        {"step": "index", "action": "file.content", "why": "its previous state is not recorded in the store"},
    ]
    assert {k: taken[k] for k in ("dead_run", "dead_controller", "dead_pid", "expired_at", "lease")} == {
        "dead_run": dead_run,
        "dead_controller": socket.gethostname(),
        "dead_pid": a.pid,
        "expired_at": dead["expires"],
        "lease": LEASE,
    }
    assert (taken["rolled_back"], taken["maintenance_off"], taken["incomplete"]) == (
        ["config"],
        [str(flag)],
        [*in_flight, "index"],
    )
    assert taken["host_clock"] >= dead["expires_epoch"]
    # what was not undone is in the client report, read from the store by a third controller
    undone = ", ".join([*in_flight, "index"])
    report = maint_cli("report", "--state-dir", str(tmp_path / "c"), *store, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (
        f"run {dead_run} died on production; when its lock was taken over, {undone} could not be undone: "
        "check the site by hand"
    ) in report.stdout

    # the dead run's own log (its full local copy): what it did, and that it never finished
    trail = [(e["event"], e.get("step")) for e in events(local) if e["event"].startswith(("step.", "stage.", "run."))]
    assert trail == [
        ("run.started", None),
        ("stage.started", None),
        ("step.checked", "maint-on"),
        ("step.applied", "maint-on"),
        ("step.verified", "maint-on"),
        ("step.checked", "config"),
        ("step.applied", "config"),
        ("step.verified", "config"),
        ("step.checked", "index"),
        ("step.applied", "index"),
        ("step.verified", "index"),
        ("step.checked", "work"),
    ]
    config = next(e for e in events(local) if e["event"] == "step.applied" and e["step"] == "config")
    assert config["changes"] == rolled["changes"]


def test_the_heartbeat_keeps_a_lock_past_its_lease_during_a_long_step(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[0]
    site, gates = _site(d), _gates(d)
    inv = _inventory(tmp_path, h, site)
    (tmp_path / "leased.yml").write_text(_gated(gates))
    (tmp_path / "after.yml").write_text(AFTER)
    a = spawn_maint("run", "leased.yml", "-i", str(inv), "--state-dir", str(tmp_path / "a"), "--json", cwd=tmp_path)
    try:
        wait_started(gates, a)
        first = _holder(site)
        # three leases long: the lock would have expired twice over without the heartbeat
        wait_until(lambda: time.time() >= first["expires_epoch"] + 2 * LEASE, "three leases passed", proc=a)
        now = _holder(site)
        assert (now["run_id"], now["gen"], now["since"]) == (first["run_id"], first["gen"], first["since"])
        assert now["expires_epoch"] > time.time() - 1  # renewed meanwhile: not expired (1 s resolution)
        b = maint_cli("run", "after.yml", "-i", str(inv), "--state-dir", str(tmp_path / "b"), cwd=tmp_path)
        assert b.returncode == 3, b.stdout + b.stderr
        assert f"is locked by run {first['run_id']}" in b.stdout
        assert "its lease runs until" in b.stdout
        assert not (site / "b.txt").exists()
    finally:
        open_gate(gates)
    out, err = a.communicate(timeout=60)
    assert a.returncode == 0, out + err
    evs = events(json.loads(out.splitlines()[-1])["run_dir"])
    released = [e for e in evs if e["event"].startswith("lock.")]
    assert [e["event"] for e in released] == ["lock.acquired", "lock.released"]
    assert released[0]["lease"] == LEASE
    assert released[1]["renewals"] >= 6  # every lease/3 for at least three leases
    assert not (site / ".maint" / "lock").exists()
    assert not (site / ".maint" / "maintenance.flag").exists()


def _expired_lock(site: Path) -> dict[str, Any]:
    """A lock of a run that died on another controller, its lease long over."""
    holder = locks.leased({"run_id": "20240101T000000Z-dead00", "controller": "elsewhere", "pid": 4242}, str(site), 60)
    holder.update(expires="2024-01-01T00:01:00Z", expires_epoch=1704067260)
    lock = site / ".maint" / "lock"
    lock.mkdir(parents=True)
    (lock / "holder.json").write_text(json.dumps(holder) + "\n")
    subprocess.run(["chown", "-R", "deploy:", str(site / ".maint")], check=True)
    return holder


def test_of_two_concurrent_takers_of_an_expired_lock_exactly_one_wins(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    h, d = ssh_hosts[0]
    site = _site(d)
    go = d / "go"
    transports = [h.transport(), h.transport()]
    try:
        for round_ in range(10):
            dead = _expired_lock(site)
            results: dict[str, CommandResult] = {}

            def take(i: int, round_: int = round_) -> None:
                holder = locks.leased({"run_id": f"run-{round_}-{i}"}, str(site), 60)
                # each says it is ready, then spins until "go" exists: both start at the same moment
                ready = f"touch -- {d}/ready.{i}; while [ ! -e {go} ]; do :; done\n"
                script = ready + locks.acquire_script(str(site), holder)
                results[holder["run_id"]] = transports[i].run_shell(script, check=False, timeout=30)

            threads = [threading.Thread(target=take, args=(i,)) for i in (0, 1)]
            for t in threads:
                t.start()
            wait_until(lambda: (d / "ready.0").exists() and (d / "ready.1").exists(), "both takers are ready")
            go.touch()
            for t in threads:
                t.join(timeout=60)
            codes = sorted((r.exit_code, run) for run, r in results.items())
            assert [c for c, _ in codes] == [0, locks.LOCK_EXIT], {k: v.stdout for k, v in results.items()}
            winner, loser = codes[0][1], codes[1][1]
            assert results[winner].stdout.startswith(locks.TAKEN_MARK + "\n")
            assert locks.parse_holder(results[winner].stdout.split(locks.TAKEN_MARK)[1]) == dead
            assert results[loser].stdout.startswith(locks.LOCKED_MARK + "\n")
            # the loser names the holder it saw: the winner, or the dead run while the winner was taking over
            assert locks.parse_holder(results[loser].stdout)["run_id"] in (winner, dead["run_id"])
            assert _holder(site)["run_id"] == winner
            assert sorted(p.name for p in (site / ".maint" / "lock").iterdir()) == ["holder.json"]
            for leftover in (site / ".maint" / "lock", go, d / "ready.0", d / "ready.1"):
                subprocess.run(["rm", "-rf", "--", str(leftover)], check=True)
    finally:
        for t in transports:
            t.close()
