"""Every SSH connection gets a fabric Config of its own: a Connection writes into the Config it is given."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from maintkit.transport.ssh import SSHTransport


def test_a_fabric_connection_writes_into_its_config() -> None:
    """Why a Config is never shared: building a Connection modifies it (invoke then rebuilds its
    merged dict), so a thread reading a shared Config at that moment found keys missing."""
    config = Config(lazy=True, ssh_config=paramiko.SSHConfig())
    merges: list[int] = []
    original = config.merge

    def counting_merge() -> None:
        merges.append(1)
        original()

    config.merge = counting_merge  # type: ignore[method-assign]
    Connection("127.0.0.1", user="x", port=22, config=config, connect_kwargs={"timeout": 1})
    assert merges, "fabric no longer writes into the Config: sharing one would be safe again"


def test_each_transport_builds_its_connection_on_a_config_of_its_own(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    made: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def build() -> None:
        try:
            barrier.wait()
            transport = SSHTransport("127.0.0.1", port=22, user="x", known_hosts=[str(known)])
            conn = transport._new_connection()
            assert conn.config.gateway is None  # readable while the other 15 are being built
            made.append(conn)
        except BaseException as exc:  # reported below, with the thread's exception
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({id(conn.config) for conn in made}) == 16
