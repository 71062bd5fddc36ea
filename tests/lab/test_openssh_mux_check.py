"""Asking a control master whether it is alive costs no process: OpenSSH's mux protocol, spoken directly."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from maintkit.transport import openssh_control
from maintkit.transport.openssh_control import check_master, control_argv, mux_alive
from tests.lab.openssh_helpers import control_home, openssh_transport
from tests.lab.sshd import LabHost


@pytest.fixture()
def home() -> Iterator[Path]:
    with control_home() as path:
        yield path


def _ssh_check_pid(sock: Path) -> int:
    done = subprocess.run(control_argv(sock, "check"), capture_output=True, text=True, check=True)
    text = done.stderr + done.stdout
    return int(text.split("pid=", 1)[1].split(")", 1)[0])


def _no_process(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    started: list[list[str]] = []

    def run(argv: list[str], *args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        started.append(list(argv))
        raise AssertionError(f"a process was started: {argv}")

    monkeypatch.setattr(openssh_control.subprocess, "run", run)
    return started


def test_a_live_master_reports_the_pid_ssh_reports(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, _ = ssh_hosts[0]
    transport = openssh_transport(host, home)
    assert transport.run(["true"]).exit_code == 0
    pid = _ssh_check_pid(transport.socket)
    started = _no_process(monkeypatch)
    assert mux_alive(transport.socket) == pid
    assert check_master(transport.socket) == pid
    assert transport.connected is True
    assert started == []


def test_no_socket_or_a_dead_one_is_no_master_without_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _no_process(monkeypatch)
    assert check_master(tmp_path / "missing") is None
    stale = tmp_path / "stale"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(stale))
    server.close()  # the file stays, nothing listens: what a killed master leaves
    assert stale.is_socket()
    assert check_master(stale) is None
    assert started == []


def test_a_socket_that_does_not_speak_the_protocol_is_left_to_ssh(tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(odd))
    server.listen(4)

    def answer() -> None:
        for _ in range(2):  # our hello, then ssh -O check's
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)  # the client's hello first: a peer gone before it is sent is another case
                conn.sendall(b"\x00\x00\x00\x04junk")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ValueError, match="not an OpenSSH control master"):
            mux_alive(odd)
        assert check_master(odd) is None  # ssh -O check refuses it too
    finally:
        server.close()
        thread.join(timeout=10)
