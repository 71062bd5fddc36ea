"""A run dials its first hosts' TCP connections before paramiko is loaded, and the SSH session
runs on that very connection: host key, errors and the number of attempts are as before.

Against the lab's real sshd (its log names the client port of every accepted login) and real
listening sockets on loopback.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maintkit.errors import HostUnreachable
from maintkit.inventory import Environment, load_inventory
from maintkit.transport.dial import dial_ahead
from maintkit.transport.factory import TransportPool, factory_for
from tests.lab.sshd import LabHost
from tests.runs import sites_of, watched_cli, write_inventory

BOOT = watched_cli(
    """
    import maintkit.transport.dial as dial
    seen = []
    original = dial.open_tcp

    def open_tcp(host, port, timeout):
        loaded = sorted(m for m in ("paramiko", "fabric", "invoke") if m in sys.modules)
        sock = original(host, port, timeout)
        seen.append({"loaded": loaded, "port": sock.getsockname()[1], "nodelay": sock.getsockopt(6, 1)})
        return sock

    dial.open_tcp = open_tcp
    """
)

PLAYBOOK = """\
name: dial
stages:
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}/app"}}
"""

ACCEPTED = re.compile(r"Accepted publickey for \S+ from \S+ port (\d+)")


def _accepted_ports(host: LabHost, since: int) -> list[int]:
    return [int(p) for p in ACCEPTED.findall(host.log.read_text(errors="replace")[since:])]


@pytest.mark.parametrize("flags", [[], ["-vv"]], ids=["plain", "traced"])
def test_the_tcp_connection_goes_out_before_paramiko_is_loaded_and_carries_the_session(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], flags: list[str]
) -> None:
    host, scratch = next((h, s) for h, s in ssh_hosts if h.proxy_command is None)
    inventory = write_inventory(tmp_path, sites_of({"shop": host.env(scratch / "site")}))
    (tmp_path / "dial.yml").write_text(PLAYBOOK)
    out, since = tmp_path / "dials.json", len(host.log.read_text(errors="replace"))
    argv = [sys.executable, "-c", BOOT, str(out), "run", str(tmp_path / "dial.yml"), "-i", str(inventory),
            "--state-dir", str(tmp_path / "state"), *flags]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (scratch / "site" / "app").is_dir()
    (dial,) = json.loads(out.read_text())
    assert dial["loaded"] == []  # paramiko, fabric and invoke load while the connection comes up
    assert dial["nodelay"] == 1
    assert _accepted_ports(host, since) == [dial["port"]]  # the one login of the run, on that socket


@pytest.fixture
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP port on loopback that accepts connections and closes them at once (not SSH)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()
    thread.join(timeout=5)


def _env(lab: LabHost, scratch: Path, tmp_path: Path, **fields: Any) -> Environment:
    inventory = write_inventory(tmp_path, sites_of({"shop": lab.env(scratch / "site", **fields)}), unique=True)
    return load_inventory(inventory).sites["shop"].environments["production"]


def _warmed_error(env: Environment) -> tuple[HostUnreachable, list[str]]:
    """What the first command raises once a pool warmed ``env``'s connection, after the attempt
    went out (as a run waits for it), and how often the pool said it dialled."""
    pool, dialled, under_way = TransportPool(factory_for(os.environ)), [], threading.Event()

    def on_dial() -> None:
        dialled.append("dial")
        under_way.set()

    pool.claim("shop", [env])
    pool.warm([env], on_dial)
    assert under_way.wait(30)
    try:
        with pytest.raises(HostUnreachable) as caught:
            pool.get(env).run(["true"])
    finally:
        pool.close()
    return caught.value, dialled


def test_a_server_that_drops_the_early_connection_is_reported_once_and_not_dialled_again(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], listener: tuple[int, list[socket.socket]]
) -> None:
    port, accepted = listener
    host, scratch = ssh_hosts[0]
    env = _env(host, scratch, tmp_path, host="127.0.0.1", port=port, proxy_command=None, connect_timeout=3)
    error, dialled = _warmed_error(env)
    assert str(error) == (
        f"127.0.0.1: cannot connect to 127.0.0.1:{port}: no SSH handshake within 3 s "
        "(connection closed or timed out: host down, network cut, or not an SSH server)"
    )
    assert len(accepted) == 1  # the early connection only: the command did not dial again
    assert dialled == ["dial"]


def test_a_refused_early_connection_reads_as_a_refused_connection(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connections are refused
    host, scratch = ssh_hosts[0]
    env = _env(host, scratch, tmp_path, host="127.0.0.1", port=port, proxy_command=None)
    warmed, _ = _warmed_error(env)
    cold = factory_for(os.environ)(env)  # the same host without the early dial: paramiko dials
    try:
        with pytest.raises(HostUnreachable) as direct:
            cold.run(["true"])
    finally:
        cold.close()
    assert str(warmed) == str(direct.value) == f"127.0.0.1: cannot connect to 127.0.0.1:{port}: connection refused"


def test_an_early_connection_nobody_used_is_closed_with_its_transport(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    host, scratch = next((h, s) for h, s in ssh_hosts if h.proxy_command is None)
    env = _env(host, scratch, tmp_path)
    early = dial_ahead(env, os.environ, 5.0)
    assert isinstance(early, socket.socket)
    transport = factory_for(os.environ)(env)
    transport.adopt(early)  # type: ignore[attr-defined]
    assert not transport.connected
    transport.close()
    assert early.fileno() == -1


def test_a_transport_busy_connecting_turns_an_early_connection_down_without_waiting(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    server, conns, accepted = socket.create_server(("127.0.0.1", 0)), [], threading.Event()

    def serve() -> None:  # accept and say nothing: the SSH handshake waits for a banner
        conns.append(server.accept()[0])
        accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    host, scratch = ssh_hosts[0]
    env = _env(host, scratch, tmp_path, host="127.0.0.1", port=server.getsockname()[1], proxy_command=None)
    transport = factory_for(os.environ)(env)
    failed: list[Exception] = []

    def connect() -> None:
        try:
            transport.connect()  # type: ignore[attr-defined]
        except HostUnreachable as exc:
            failed.append(exc)

    connecting = threading.Thread(target=connect)
    connecting.start()
    assert accepted.wait(30)  # the handshake is under way: the transport is busy
    offered, peer = socket.socketpair()
    transport.adopt(offered)  # type: ignore[attr-defined]
    assert offered.fileno() == -1  # turned down and closed ...
    assert connecting.is_alive()  # ... while the other attempt still waits for its banner
    conns[0].close()
    connecting.join(30)
    transport.close()
    server.close()
    peer.close()
    assert len(failed) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"connection": "local"},
        {"connection": "openssh"},
        {"proxy_command": "nc %h %p"},
        {"proxy_jump": "bastion.example.invalid"},
    ],
    ids=["local", "openssh", "proxy_command", "proxy_jump"],
)
def test_only_direct_ssh_connections_are_dialled_ahead(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], fields: dict[str, Any]
) -> None:
    host, scratch = ssh_hosts[0]
    env = _env(host, scratch, tmp_path, **fields)
    assert dial_ahead(env, os.environ, 5.0) is None
