"""Cancellation that fits CI: a signal stops the remote command that runs now, the stage rolls back,
maintenance is switched off and the lock released, before GitHub Actions would SIGKILL the job.

GitHub Actions cancels a job with SIGINT, SIGTERM about 7.5 s later and SIGKILL 2.5 s after that.
The tests send the signals on that schedule (timestamps from the SIGINT; each wait ends early when
the process exits) to a real ``maint`` process whose step runs a gated command on a lab sshd host
that never finishes on its own, and check the host afterwards: the command's process group is
gone, nginx answers 200, the lock is released and the audit log tells what happened.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from maintkit.cli.common import interrupt_note
from maintkit.cli.reporters.plain import INTERRUPT_MESSAGE
from maintkit.runner.signals import Interrupts
from maintkit.transport.base import CANCEL_GRACE, CancelToken, CommandCancelled, cancellable
from maintkit.transport.local import LocalTransport
from tests.gates import gated_shell, make_gates, open_gate, wait_started, wait_until
from tests.lab.sshd import LabHost, SshLab
from tests.lab.test_site_ops import Shop, lab_host, make_shop, ops_web  # noqa: F401  (fixtures)
from tests.runs import events, maint_cli, one_site, spawn_maint, write_inventory

pytestmark = pytest.mark.lab

#: GitHub Actions' schedule after the SIGINT of a cancelled job (seconds)
SIGTERM_AFTER = 7.5
SIGKILL_AFTER = 10.0


def gated(directory: Path, *, ignore_term: bool = False) -> str:
    """Shell that records its process group, starts a child (blocked on a FIFO of its own),
    announces itself and waits for the gate (which the tests never open while it should run: it
    never finishes on its own)."""
    d = directory
    trap = "trap '' TERM; " if ignore_term else ""
    # the child blocks on a FIFO of its own that nobody writes (no clock): it ends only when stopped
    child = f'sh -c \'mkfifo "$1" 2>/dev/null; exec 4<>"$1"; read x <&4\' child {d}/child &'
    return f"{trap}ps -o pgid= -p $$ > {d}/pgid; {child} " + gated_shell(d, f"touch {d}/done")


def gates(parent: Path, name: str) -> Path:
    """A directory owned by deploy with the ``started`` and ``gate`` FIFOs."""
    d = parent / name
    d.mkdir()
    os.chown(d, *_deploy_ids())
    make_gates(d, "deploy")
    return d


def _deploy_ids() -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam("deploy")
    return pw.pw_uid, pw.pw_gid


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` exists (the lab hosts run on this machine)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def pgid_of(directory: Path) -> int:
    return int((directory / "pgid").read_text().strip())


# ---------------------------------------------------------------------------- the transports


@pytest.fixture()
def transports(ssh_lab: SshLab) -> Iterator[dict[str, Any]]:
    """The three ways a command runs: over SSH as deploy, over SSH through sudo, locally."""
    host = ssh_lab.hosts[0]
    made = {"ssh": host.transport(), "ssh-sudo": host.transport(become=True), "local": LocalTransport()}
    try:
        yield made
    finally:
        for t in made.values():
            t.close()


@pytest.mark.parametrize("ignore_term", [False, True], ids=["obeys-TERM", "ignores-TERM"])
@pytest.mark.parametrize("kind", ["ssh", "ssh-sudo", "local"])
def test_cancel_stops_the_whole_process_group_of_the_running_command(
    ssh_hosts: list[tuple[LabHost, Path]], transports: dict[str, Any], kind: str, ignore_term: bool
) -> None:
    t = transports[kind]
    d = gates(ssh_hosts[0][1], "g")
    token = CancelToken()
    outcome: list[BaseException | str] = []

    def run() -> None:
        with cancellable(token):
            try:
                t.run_shell(gated(d, ignore_term=ignore_term), timeout=600)
                outcome.append("returned")
            except BaseException as exc:
                outcome.append(exc)
            # told once: what the block runs next (an action undoing its partial change) runs
            t.run(["touch", "--", str(d / "cleaned-up")])

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_started(d)
        pgid = pgid_of(d)
        assert group_alive(pgid)
        started = time.monotonic()
        assert token.cancel("the run was interrupted (SIGINT)") == 1
        worker.join(CANCEL_GRACE + 10)
        took = time.monotonic() - started
    finally:
        open_gate(d)
    assert not worker.is_alive()
    [exc] = outcome
    assert isinstance(exc, CommandCancelled)
    assert str(exc) == f"{t.host}: command stopped: the run was interrupted (SIGINT)"
    wait_until(lambda: not group_alive(pgid), f"process group {pgid} gone", limit=2)
    assert not (d / "done").exists()
    assert (d / "cleaned-up").exists()
    if ignore_term:  # SIGTERM did nothing: SIGKILL after the grace period
        assert CANCEL_GRACE <= took < CANCEL_GRACE + 3, took
    else:
        assert took < 2, took
    # a new block under the cancelled token: its first command is refused, the next one runs
    with cancellable(token):
        with pytest.raises(CommandCancelled):
            t.run(["touch", "--", str(d / "never")])
        t.run(["touch", "--", str(d / "undo")])
    assert not (d / "never").exists() and (d / "undo").exists()
    # commands outside any block are not touched
    assert t.run(["echo", "still", "usable"]).stdout == "still usable\n"
    assert token.wait(5)


def test_a_command_that_ends_before_the_cancel_is_left_alone(transports: dict[str, Any]) -> None:
    token = CancelToken()
    for t in transports.values():
        with cancellable(token):
            res = t.run_shell("echo out; echo err >&2")
        assert (res.exit_code, res.stdout, res.stderr) == (0, "out\n", "err\n")  # no pgid line in stderr
    assert token.cancel("late") == 0
    assert token.cancel("again") == 0 and token.reason == "late"


# ---------------------------------------------------------------------------- the signal schedule


def test_interrupts_first_cancels_second_reports_third_abandons() -> None:
    stop = threading.Event()
    seen: list[tuple[str, dict[str, Any]]] = []
    abandoned: list[bool] = []
    irq = Interrupts(stop, lambda event, **fields: seen.append((event, fields)), lambda: abandoned.append(True))
    irq.activity.doing("shop", "production", "running step work")
    irq.signal("SIGINT")
    assert stop.is_set() and irq.token.cancelled and irq.token.reason == "the run was interrupted (SIGINT)"
    irq.activity.doing("shop", "production", "rolling back step maint-on")
    irq.activity.doing("blog", "staging", "releasing the lock")
    irq.signal("SIGTERM")
    assert abandoned == []
    irq.activity.doing("blog", "staging", None)
    irq.signal("SIGINT")
    assert abandoned == [True]
    rolling = {"site": "shop", "env": "production", "doing": "rolling back step maint-on"}
    assert seen == [
        ("run.interrupt_requested", {"signal": "SIGINT"}),
        (
            "run.cleanup_pending",
            {
                "signal": "SIGTERM",
                "waiting_for": [{"site": "blog", "env": "staging", "doing": "releasing the lock"}, rolling],
            },
        ),
        ("run.cleanup_abandoned", {"signal": "SIGINT", "waiting_for": [rolling]}),
    ]


def test_interrupt_notes_say_what_is_waited_for_and_what_is_left() -> None:
    busy = [
        {"site": "blog", "env": "staging", "doing": "releasing the lock"},
        {"site": "shop", "env": "production", "doing": "rolling back step maint-on"},
    ]
    assert interrupt_note({"event": "run.cleanup_pending", "waiting_for": busy[1:]}) == (
        "still rolling back step maint-on on shop/production; "
        "Ctrl-C again to abandon cleanup (leaves the site locked and in maintenance)"
    )
    assert interrupt_note({"event": "run.cleanup_pending", "waiting_for": busy}) == (
        "still releasing the lock on blog/staging; rolling back step maint-on on shop/production; "
        "Ctrl-C again to abandon cleanup (leaves the sites locked and in maintenance)"
    )
    assert interrupt_note({"event": "run.cleanup_pending", "waiting_for": []}) == (
        "still finishing the run (summary, state); "
        "Ctrl-C again to abandon cleanup (leaves the site locked and in maintenance)"
    )
    assert interrupt_note({"event": "run.cleanup_abandoned", "waiting_for": busy}) == (
        "cleanup abandoned: blog/staging, shop/production may be left locked and in maintenance; clear with: "
        "maint unlock blog --env staging --maintenance-off; maint unlock shop --env production --maintenance-off"
    )
    assert interrupt_note({"event": "run.interrupt_requested", "signal": "SIGINT"}) is None


# ---------------------------------------------------------------------------- a real run, cancelled


def playbook(tmp_path: Path, steps: list[dict[str, Any]]) -> Path:
    path = tmp_path / "cancel.yml"
    path.write_text(yaml.safe_dump({"name": "cancel", "stages": [{"env": "production", "steps": steps}]}))
    return path


def github_cancel(proc: subprocess.Popen[str], sigint_at: float) -> tuple[float, list[str]]:
    """After the SIGINT sent at ``sigint_at``: SIGTERM at +7.5 s if the process still runs, then
    wait until +10 s (where SIGKILL would come). The seconds from the SIGINT to the exit, and the
    further signals sent. Fails if the process would have been SIGKILLed."""
    sent: list[str] = []
    try:
        proc.wait(timeout=max(0.0, sigint_at + SIGTERM_AFTER - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        sent.append("SIGTERM")
        try:
            proc.wait(timeout=max(0.0, sigint_at + SIGKILL_AFTER - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)
            pytest.fail("still running when GitHub Actions would have sent SIGKILL")
    return time.monotonic() - sigint_at, sent


def git_store(host: LabHost, bare: Path) -> dict[str, str]:
    """``MAINT_STATE`` for a git store on a new bare repository served by ``host`` (as deploy)."""
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env=GIT_ENV)
    subprocess.run(["chown", "-R", "deploy:deploy", str(bare)], check=True)
    spec = {
        "backend": "git",
        "remote": f"ssh://deploy@{host.ip}:{host.port}{bare}",
        "ssh_key": str(host.client_key),
        "known_hosts": str(host.known_hosts),
        "author": "maint lab <maint@lab.invalid>",
    }
    return {"MAINT_STATE": json.dumps(spec)}


GIT_ENV = {
    "PATH": "/usr/bin:/bin",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


@pytest.mark.parametrize(
    ("store", "ignore_term"),
    [("local", False), ("local", True), ("git", False)],
    ids=["obeys-TERM", "ignores-TERM", "git-store"],
)
def test_github_cancel_cleans_up_before_sigkill(
    tmp_path: Path,
    lab_host: LabHost,  # noqa: F811
    make_shop: Callable[..., Shop],  # noqa: F811
    record_property: Callable[[str, object], None],
    store: str,
    ignore_term: bool,
) -> None:
    shop = make_shop()
    bare = shop.path / "maint-state.git"
    store_env = git_store(lab_host, bare) if store == "git" else {}
    work = gates(shop.path, "work")
    inv = write_inventory(tmp_path, one_site(lab_host.env(shop.path, url=shop.url)))
    pb = playbook(
        tmp_path,
        [
            {"id": "maint-on", "action": "maintenance.enable"},
            {"id": "work", "action": "command", "with": {"argv": ["sh", "-c", gated(work, ignore_term=ignore_term)]}},
            {"id": "after", "action": "command", "with": {"argv": ["true"]}},
        ],
    )
    state = tmp_path / "state"
    proc = spawn_maint("run", str(pb), "-i", str(inv), "--state-dir", str(state), cwd=tmp_path, extra_env=store_env)
    try:
        wait_started(work, proc)
        pgid = pgid_of(work)
        assert requests.get(shop.url + "/", timeout=5).status_code == 503
        assert (shop.path / ".maint" / "lock").is_dir()
        sigint_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        seconds, sent = github_cancel(proc, sigint_at)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        open_gate(work)
    record_property("cleanup_seconds", round(seconds, 2))
    print(f"\ncleanup after SIGINT ({store} store, {'ignores' if ignore_term else 'obeys'} SIGTERM): {seconds:.2f} s")
    assert proc.returncode == 3, out + err
    assert sent == []  # done before GitHub's SIGTERM
    assert seconds < (CANCEL_GRACE + 2 if ignore_term else 2.5), seconds
    assert INTERRUPT_MESSAGE in err.splitlines()

    wait_until(lambda: not group_alive(pgid), f"process group {pgid} gone", limit=2)
    assert not (work / "done").exists()
    assert requests.get(shop.url + "/", timeout=5).status_code == 200
    assert not shop.flag.exists()
    assert not (shop.path / ".maint" / "lock").exists()

    [run_dir] = [p.parent for p in state.glob("**/runs/*/summary.json")]
    evs = events(run_dir)
    assert [e["event"] for e in evs if e["event"].startswith("run.")] == [
        "run.started",
        "run.interrupt_requested",
        "run.finished",
    ]
    assert next(e for e in evs if e["event"] == "run.interrupt_requested")["signal"] == "SIGINT"
    assert evs[-1]["status"] == "interrupted"
    steps = [(e["event"], e.get("step"), e.get("status")) for e in evs if e["event"].startswith("step.")]
    assert steps == [
        ("step.checked", "maint-on", "needed"),
        ("step.applied", "maint-on", "changed"),
        ("step.verified", "maint-on", "changed"),
        ("step.checked", "work", "needed"),
        ("step.failed", "work", "failed"),
        ("step.rolled_back", "maint-on", "rolled-back"),
        ("step.not_run", "after", "not-run"),
    ]
    failed = next(e for e in evs if e["event"] == "step.failed")
    assert failed["error"] == f"apply: {lab_host.ip}: command stopped: the run was interrupted (SIGINT)"
    assert next(e for e in evs if e["event"] == "step.not_run")["reason"] == "the run was interrupted"
    assert [e["event"] for e in evs if e["event"].startswith("lock.")] == ["lock.acquired", "lock.released"]
    [stage] = [e for e in evs if e["event"] == "stage.finished"]
    [site] = [e for e in evs if e["event"] == "site.finished"]
    assert (stage["status"], site["status"]) == ("interrupted", "interrupted")
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    verify = maint_cli("audit", "verify", run_dir.name, "--state-dir", str(state), cwd=tmp_path, extra_env=store_env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    if store == "git":  # the sealed run folder reached the remote before maint exited
        pushed = subprocess.run(
            ["git", f"--git-dir={bare}", "show", f"maint-state:runs/{run_dir.name}/summary.json"],
            capture_output=True, text=True, check=True, env=GIT_ENV,
        )  # fmt: skip
        assert json.loads(pushed.stdout)["status"] == "interrupted"


class Lines:
    """The lines a process writes on a pipe, read in a thread, waited for one by one."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, expected: str, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while expected not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never printed {expected!r}; printed: {self.seen}"
            try:
                self.seen.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue


@pytest.fixture()
def slow_rollback(
    tmp_path: Path,
    lab_host: LabHost,  # noqa: F811
    make_shop: Callable[..., Shop],  # noqa: F811
) -> Iterator[tuple[Shop, subprocess.Popen[str], Lines, Path, Path]]:
    """A run interrupted during step ``work`` whose rollback of step ``prepare`` waits for a gate:
    (shop, the maint process, its stderr lines, the state dir, the undo's gates)."""
    shop = make_shop()
    work, undo = gates(shop.path, "work"), gates(shop.path, "undo")
    inv = write_inventory(tmp_path, one_site(lab_host.env(shop.path, url=shop.url)))
    undo_shell = gated_shell(undo, f"touch {undo}/undone")
    pb = playbook(
        tmp_path,
        [
            {"id": "maint-on", "action": "maintenance.enable"},
            {"id": "prepare", "action": "command", "with": {"argv": ["true"], "undo": ["sh", "-c", undo_shell]}},
            {"id": "work", "action": "command", "with": {"argv": ["sh", "-c", gated(work)]}},
        ],
    )
    state = tmp_path / "state"
    proc = spawn_maint("run", str(pb), "-i", str(inv), "--state-dir", str(state), cwd=tmp_path)
    try:
        stderr = Lines(proc.stderr)
        wait_started(work, proc)
        proc.send_signal(signal.SIGINT)
        stderr.wait_for(INTERRUPT_MESSAGE)
        wait_started(undo, proc)  # the rollback of "prepare" runs (and waits for its gate)
        proc.send_signal(signal.SIGINT)
        stderr.wait_for(
            "still rolling back step prepare on shop/production; "
            "Ctrl-C again to abandon cleanup (leaves the site locked and in maintenance)"
        )
        yield shop, proc, stderr, state, undo
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        open_gate(work)
        open_gate(undo)


def test_second_ctrl_c_says_what_cleanup_waits_for_and_cleanup_goes_on(
    slow_rollback: tuple[Shop, subprocess.Popen[str], Lines, Path, Path],
) -> None:
    shop, proc, _stderr, state, undo = slow_rollback
    assert requests.get(shop.url + "/", timeout=5).status_code == 503  # not yet cleaned up
    open_gate(undo)
    assert proc.wait(timeout=30) == 3
    assert (undo / "undone").exists()
    assert requests.get(shop.url + "/", timeout=5).status_code == 200
    assert not (shop.path / ".maint" / "lock").exists()
    [run_dir] = (state / "runs").iterdir()
    evs = events(run_dir)
    [pending] = [e for e in evs if e["event"] == "run.cleanup_pending"]
    assert (pending["signal"], pending["waiting_for"]) == (
        "SIGINT",
        [{"site": "shop", "env": "production", "doing": "rolling back step prepare"}],
    )
    rolled = [e["step"] for e in evs if e["event"] == "step.rolled_back"]
    assert rolled == ["prepare", "maint-on"]
    assert evs[-1]["event"] == "run.finished" and evs[-1]["status"] == "interrupted"


def test_third_ctrl_c_abandons_cleanup_and_says_what_is_left(
    tmp_path: Path, slow_rollback: tuple[Shop, subprocess.Popen[str], Lines, Path, Path]
) -> None:
    shop, proc, stderr, state, undo = slow_rollback
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 3
    stderr.wait_for(
        "cleanup abandoned: shop/production may be left locked and in maintenance; "
        "clear with: maint unlock shop --env production --maintenance-off"
    )
    assert requests.get(shop.url + "/", timeout=5).status_code == 503
    assert (shop.path / ".maint" / "lock").is_dir()
    [run_dir] = (state / "runs").iterdir()
    evs = events(run_dir)
    assert evs[-1]["event"] == "run.cleanup_abandoned"
    assert evs[-1]["waiting_for"] == [{"site": "shop", "env": "production", "doing": "rolling back step prepare"}]
    assert not (run_dir / "summary.json").exists()
    open_gate(undo)  # the abandoned undo command goes on by itself on the host

    inv = tmp_path / "inventory.yml"
    unlocked = maint_cli(
        "unlock", "shop", "--env", "production", "--maintenance-off", "-i", str(inv), "--state-dir", str(state),
        cwd=tmp_path,
    )  # fmt: skip
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr
    assert requests.get(shop.url + "/", timeout=5).status_code == 200
    assert not (shop.path / ".maint" / "lock").exists()


def test_a_stopped_command_with_undo_is_undone_by_the_rollback(
    tmp_path: Path,
    lab_host: LabHost,  # noqa: F811
    make_shop: Callable[..., Shop],  # noqa: F811
) -> None:
    shop = make_shop()
    work = gates(shop.path, "work")
    inv = write_inventory(tmp_path, one_site(lab_host.env(shop.path, url=shop.url)))
    undo = ["touch", str(shop.path / "undone")]
    pb = playbook(
        tmp_path, [{"id": "work", "action": "command", "with": {"argv": ["sh", "-c", gated(work)], "undo": undo}}]
    )
    state = tmp_path / "state"
    proc = spawn_maint("run", str(pb), "-i", str(inv), "--state-dir", str(state), cwd=tmp_path)
    try:
        wait_started(work, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        open_gate(work)
    assert proc.returncode == 3, out + err
    assert (shop.path / "undone").exists()  # it may have done part of its work: its undo ran
    [run_dir] = (state / "runs").iterdir()
    steps = [(e["event"], e.get("step")) for e in events(run_dir) if e["event"].startswith("step.")]
    assert steps == [("step.checked", "work"), ("step.failed", "work"), ("step.rolled_back", "work")]
    assert not (shop.path / ".maint" / "lock").exists()
