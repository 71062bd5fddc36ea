"""``connection: openssh`` runs its commands as sessions the master opens in-process (PROTOCOL.mux).

* Over a live master, no ``ssh`` is started for a command (starting a process fails the
  test): stdout bytes, stderr, exit codes (255 included, which is the command's own status
  here, not a failure of ssh), stdin as bytes and as a stream, and 3 MiB of output arrive exact.
* At most 8 commands run at once on one master (sshd refuses sessions beyond MaxSessions), held
  by a gate FIFO;
  a command whose turn does not come within its timeout times out without running; 8 commands
  timing out at once are all stopped on the host, at most 2 kills at a time.
* A master that went away between two commands: the next command starts ``ssh`` as before,
  which opens a new master, and the one after goes in-process again.
* A master killed while a command runs: the call raises the lost-connection error instead of
  waiting, and the transport looks for a master again.
* No descriptor is left open by sessions, a timeout, a refused session or a fallback.
* A master that refuses a session (its failure message) is reported as unavailable, with its
  reason, and nothing is left open; a socket that does not speak the protocol likewise.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maintkit.errors import HostUnreachable
from maintkit.transport import openssh as openssh_module
from maintkit.transport import openssh_mux
from maintkit.transport.openssh_control import check_master, close_master
from maintkit.transport.openssh_mux import MuxUnavailable, open_session
from tests.gates import gated_shell, open_gate, wait_started, wait_until
from tests.lab.openssh_helpers import control_home, endless, gate_dir, in_thread, openssh_transport, running
from tests.lab.sshd import LabHost
from tests.lab.test_cancel import gated, group_alive, pgid_of

pytestmark = pytest.mark.lab


@pytest.fixture
def home() -> Iterator[Path]:
    """A private ``XDG_CACHE_HOME``; every master opened under it is ended afterwards."""
    with control_home() as path:
        yield path


@pytest.fixture
def no_ssh_process(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Any ``ssh`` the transport would start for a command is refused (and recorded)."""
    started: list[list[str]] = []

    def refuse(argv: list[str], **kwargs: Any) -> None:
        started.append(list(argv))
        raise OSError("no process may be started here")

    monkeypatch.setattr(openssh_module, "_SshProcess", refuse)
    return started


def _fds() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            continue
    return out


def test_commands_over_a_live_master_start_no_ssh(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path, no_ssh_process: list[list[str]]
) -> None:
    host, scratch = ssh_hosts[0]
    t = openssh_transport(host, home)
    assert t.run(["true"]).exit_code == 0  # opens the master (``ssh -N``), then runs in-process
    before = _fds()

    res = t.run_shell("printf 'a\\000b\\n'; printf 'to stderr\\n' >&2; exit 3", check=False)
    assert (res.exit_code, res.stdout_bytes, res.stderr) == (3, b"a\x00b\n", "to stderr\n")
    assert t.run_shell("exit 255", check=False).exit_code == 255
    assert t.run(["cat"], stdin=b"bytes in\n\x00\xff").stdout_bytes == b"bytes in\n\x00\xff"
    blob = os.urandom(3 * 1024 * 1024)
    assert t.run(["sha256sum"], stdin=io.BytesIO(blob)).stdout.split()[0] == hashlib.sha256(blob).hexdigest()
    big = t.run_shell("head -c 3145728 /dev/zero | tr '\\0' x")
    assert big.stdout_bytes == b"x" * 3145728
    t.put(b"written\n", f"{scratch}/put.txt", mode=0o640)
    assert (scratch / "put.txt").read_bytes() == b"written\n"
    assert t.get(f"{scratch}/put.txt") == b"written\n"
    assert no_ssh_process == []
    assert (t.mux_sessions, t.spawned) == (t.round_trips, 0)
    assert t.round_trips == 8
    wait_until(lambda: _fds() == before, "every descriptor of the sessions closed", limit=10)


def test_output_after_the_exit_status_arrives_whole(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path, no_ssh_process: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The master sends the exit status as soon as sshd does, while output may still be on its
    way (sshd has not sent its end of file); hanging up the control connection then makes the
    master close the session's streams and drop the rest (an ``ssh`` client keeps the
    connection until the master hangs up). Seen as a 3 MiB read cut to about 1 MiB on a busy
    machine. Here a process the command leaves writes all of its output, and only once the
    exit status has been read (its gate is opened right then)."""
    host, scratch = ssh_hosts[0]
    d = gate_dir(scratch)
    t = openssh_transport(host, home)
    t.run(["true"])
    before = _fds()
    read_one = openssh_mux.MuxSession._read_one

    def read_then_open_the_gate(session: openssh_mux.MuxSession) -> None:
        read_one(session)
        if session.returncode is not None:
            wait_started(d)
            open_gate(d)

    monkeypatch.setattr(openssh_mux.MuxSession, "_read_one", read_then_open_the_gate)
    size = 3 * 1024 * 1024
    late = gated_shell(d, f"head -c {size} /dev/zero | tr '\\0' y; printf late >&2")
    res = t.run_shell(f"( {late} ) & exit 7", check=False)
    assert (res.exit_code, res.stderr) == (7, "late")
    assert res.stdout_bytes == b"y" * size
    assert (no_ssh_process, t.mux_sessions, t.spawned) == ([], 2, 0)
    wait_until(lambda: _fds() == before, "every descriptor of the sessions closed", limit=10)


def test_a_master_that_went_away_is_replaced_by_ssh_then_used_in_process(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    host, _ = ssh_hosts[0]
    t = openssh_transport(host, home)
    assert t.run(["echo", "one"]).stdout == "one\n"
    assert close_master(t.socket)
    assert check_master(t.socket) is None
    before = _fds()
    assert t.run(["echo", "two"]).stdout == "two\n"  # no master: ssh runs it and opens one
    assert check_master(t.socket) is not None
    assert t.run(["echo", "three"]).stdout == "three\n"
    assert (t.mux_sessions, t.spawned) == (2, 1)
    wait_until(lambda: _fds() == before, "every descriptor of the sessions closed", limit=10)


def test_a_master_killed_while_a_command_runs_is_a_lost_connection(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path, no_ssh_process: list[list[str]]
) -> None:
    host, scratch = ssh_hosts[0]
    d = gate_dir(scratch)
    t = openssh_transport(host, home)
    t._ensure_master()  # the master, opened outside the refused spawn
    master = check_master(t.socket)
    assert master
    worker, outcome = in_thread(lambda: t.run_shell(gated(d), timeout=600))
    try:
        wait_started(d)
        pgid = pgid_of(d)
        os.kill(master, signal.SIGKILL)
        worker.join(30)
    finally:
        open_gate(d)
    assert not worker.is_alive()
    [exc] = outcome
    assert isinstance(exc, HostUnreachable)
    assert str(exc).startswith(f"{host.name}: connection lost while running: ")
    try:
        assert t._ready is False  # the next command looks for (or opens) a master again
        assert no_ssh_process == []
    finally:  # nothing on the host was told to stop: the test ends the command's group itself
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    wait_until(lambda: not group_alive(pgid), f"remote process group {pgid} gone", limit=10)


def test_a_timeout_over_a_session_leaves_nothing_open(ssh_hosts: list[tuple[LabHost, Path]], home: Path) -> None:
    host, scratch = ssh_hosts[0]
    t = openssh_transport(host, home)
    t.run(["true"])
    before = _fds()
    command, mark = endless()
    res = t.run_shell(command, timeout=1, check=False)
    assert (res.timed_out, res.exit_code) == (True, 124)
    wait_until(lambda: not running(mark), f"the remote sleep {mark} gone", limit=10)
    assert t.run(["echo", "usable"]).stdout == "usable\n"
    assert (t.mux_sessions, t.spawned) == (3, 0)
    wait_until(lambda: _fds() == before, "every descriptor of the sessions closed", limit=10)


# ---------------------------------------------------------------------------- masters that refuse
def _fake_master(path: Path, answer: bytes | None) -> threading.Thread:
    """A socket at ``path`` that answers the hello as a master does, reads the session request
    and its three descriptors, then sends ``answer`` (None: hangs up instead of a hello)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            if answer is None:
                return
            conn.sendall(struct.pack(">III", 8, 1, 4))
            for _ in range(2):  # the client's hello, then the request
                size = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))[0]
                conn.recv(size, socket.MSG_WAITALL)
            for _ in range(3):
                _, fds, _, _ = socket.recv_fds(conn, 1, 1)
                for fd in fds:
                    os.close(fd)
            conn.sendall(struct.pack(">I", len(answer)) + answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_refused_session_is_unavailable_with_the_masters_reason(tmp_path: Path) -> None:
    reason = b"Session open refused by peer"
    failure = struct.pack(">III", 0x80000003, 1, len(reason)) + reason  # MUX_S_FAILURE
    sock = tmp_path / "m"
    before = _fds()
    thread = _fake_master(sock, failure)
    with pytest.raises(MuxUnavailable) as info:
        open_session(sock, "true", has_stdin=True)
    assert str(info.value) == "the control master refused the session: Session open refused by peer"
    thread.join(10)
    assert _fds() == before


def test_a_socket_that_hangs_up_is_unavailable(tmp_path: Path) -> None:
    sock = tmp_path / "m"
    before = _fds()
    thread = _fake_master(sock, None)
    with pytest.raises(MuxUnavailable):
        open_session(sock, "true", has_stdin=False)
    thread.join(10)
    assert _fds() == before
    with pytest.raises(MuxUnavailable):
        open_session(tmp_path / "nothing-here", "true", has_stdin=False)
    assert _fds() == before


def test_no_ssh_client_carries_the_command_line(ssh_hosts: list[tuple[LabHost, Path]], home: Path) -> None:
    host, scratch = ssh_hosts[0]
    d = gate_dir(scratch)
    t = openssh_transport(host, home)
    t.run(["true"])
    marker = "maint-secret-marker-7f3a"
    worker, outcome = in_thread(lambda: t.run_shell(f": {marker}; " + gated_shell(d), timeout=600))
    try:
        wait_started(d)
        clients = subprocess.run(["pgrep", "-a", "-x", "ssh"], capture_output=True, text=True).stdout
    finally:
        open_gate(d)
        worker.join(30)
    assert marker not in clients
    assert not worker.is_alive()
    assert outcome == ["returned"]


def test_at_most_eight_commands_run_at_once_on_one_master(ssh_hosts: list[tuple[LabHost, Path]], home: Path) -> None:
    """sshd refuses sessions on one connection beyond its MaxSessions (10 by default; the lab
    allows 50): as over paramiko, at most 8 run at once and the others wait for a turn, within
    their own timeout."""
    host, scratch = ssh_hosts[0]
    d = gate_dir(scratch)
    t = openssh_transport(host, home)
    t.run(["true"])
    began = d / "began"
    # each command takes one line of the gate FIFO (the read builtin reads a pipe byte by byte)
    script = f"echo x >> {began}; read x < {d}/gate; echo done"
    workers = [in_thread(lambda: t.run_shell(script, timeout=120)) for _ in range(12)]

    def started() -> int:
        return len(began.read_text().splitlines()) if began.exists() else 0

    try:
        wait_until(lambda: started() == 8, "eight commands running", limit=30)
        late = t.run_shell(script, timeout=1, check=False)  # no turn within its timeout: never ran
        assert (late.timed_out, late.exit_code, late.stdout) == (True, 124, "")
        assert started() == 8
    finally:
        gate = os.open(d / "gate", os.O_RDWR)  # held open: the lines wait for the later readers
        os.write(gate, b"go\n" * 12)
        for worker, _ in workers:
            worker.join(60)
        os.close(gate)
    assert [outcome for _, outcome in workers] == [["returned"]] * 12
    assert started() == 12
    assert t.most_sessions == 8


def test_eight_commands_timing_out_at_once_are_all_stopped_two_kills_at_a_time(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    """Stopping a command on the host takes one more session on the master, while the command
    still holds its own: with 8 commands, at most 2 kills run at once (8 + 2 = sshd's default
    MaxSessions), and every remote process group is gone all the same."""
    host, _ = ssh_hosts[0]
    t = openssh_transport(host, home)
    t.run(["true"])
    commands = [endless() for _ in range(8)]
    workers = [in_thread(lambda c=c: t.run_shell(c, timeout=1, check=False)) for c, _ in commands]
    for worker, _ in workers:
        worker.join(60)
    assert [outcome for _, outcome in workers] == [["returned"]] * 8
    for _, mark in commands:
        wait_until(lambda mark=mark: not running(mark), f"the remote sleep {mark} gone", limit=15)
    assert 1 <= t.most_kills <= 2
    assert t.most_sessions == 8
