"""Fleet hygiene over real SSH: each connection is closed as soon as the last site using it
finishes (no reader thread, no socket, no watch thread left behind), and every command deadline
is kept by ONE watch thread (a heap of deadlines), not a timer thread per command."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import paramiko

from maintkit.results import StepStatus
from maintkit.runner import Runner
from maintkit.transport.keepalive import WATCHER
from tests.lab.sshd import LabHost
from tests.runs import run, sites_of, write_inventory

PLAYBOOK = """\
name: hygiene
concurrency: 1
stages:
  - env: production
    steps:
      - {action: file.directory, with: {path: "{{ env.path }}/app"}}
"""


def _open_sockets_to(ports: set[int]) -> int:
    """TCP connections of this process whose remote port is one of ``ports`` (/proc, exact)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) in ports and fields[9] in inodes:
                count += 1
    return count


def _ssh_threads() -> list[str]:
    return sorted(
        t.name for t in threading.enumerate() if isinstance(t, paramiko.Transport) or t.name.startswith("maint-ssh")
    )


def test_each_connection_closes_when_the_last_site_on_its_host_finishes(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]]
) -> None:
    (h1, d1), (h2, d2), (h3, d3) = ssh_hosts
    envs = {"a": h1.env(d1 / "a"), "b": h1.env(d1 / "b"), "c": h2.env(d2 / "c"), "d": h3.env(d3 / "d")}
    inventory = write_inventory(tmp_path, sites_of(envs))
    ports = {h.port for h, _ in ssh_hosts}
    seen: list[dict[str, Any]] = []
    finished: list[str] = []

    def on_event(record: dict[str, Any]) -> None:
        if record["event"] == "site.finished":
            finished.append(record["site"])

    def on_closed(key: tuple[Any, ...]) -> None:
        seen.append({"host": key[1], "after": list(finished), "threads": _ssh_threads(),
                     "sockets": _open_sockets_to(ports)})  # fmt: skip

    from maintkit.inventory import load_inventory
    from maintkit.playbook import playbook_from_text

    runner = Runner(playbook_from_text(PLAYBOOK), load_inventory(inventory), state_dir=tmp_path / "state",
                    on_event=on_event, handle_signals=False)  # fmt: skip
    runner.pool.on_closed = on_closed
    result = runner.run()
    assert result.ok, result.to_dict()
    assert [s.steps[0].status for s in result.sites] == [StepStatus.CHANGED] * 4
    assert seen == [
        {"host": h1.ip, "after": ["a", "b"], "threads": [], "sockets": 0},  # a and b share h1's connection
        {"host": h2.ip, "after": ["a", "b", "c"], "threads": [], "sockets": 0},
        {"host": h3.ip, "after": ["a", "b", "c", "d"], "threads": [], "sockets": 0},
    ]
    assert _ssh_threads() == [] and _open_sockets_to(ports) == 0
    again = run(PLAYBOOK, inventory, tmp_path / "state")
    assert again.ok and again.changed == 0


def test_one_watch_thread_keeps_every_command_deadline(ssh_hosts: list[tuple[LabHost, Path]]) -> None:
    host, _ = ssh_hosts[0]
    transport = host.transport()
    names: set[str] = set()
    original = WATCHER.at

    def at(when: float, action: Any) -> Any:
        deadline = original(when, action)
        names.update(t.name for t in threading.enumerate() if t.name.startswith("maint-ssh"))
        return deadline

    WATCHER.at = at  # type: ignore[method-assign]
    try:
        threads = [threading.Thread(target=transport.run, args=(["true"],)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert transport.round_trips == 8
        assert names == {"maint-ssh-watch"}  # keepalives and all 8 deadlines: one thread, no timers
    finally:
        WATCHER.at = original  # type: ignore[method-assign]
        transport.close()
    assert _ssh_threads() == []


def test_deadlines_fire_in_order_and_cancelled_ones_never() -> None:
    import time

    fired: list[str] = []
    last = threading.Event()
    now = time.monotonic()
    early = WATCHER.at(now + 0.05, lambda: fired.append("early"))
    WATCHER.at(now + 0.1, lambda: fired.append("second"))
    WATCHER.at(now + 0.2, lambda: (fired.append("last"), last.set()))
    early.cancel()
    assert last.wait(10)
    assert fired == ["second", "last"]
    for _ in range(100):  # the watch ends once nothing is left (it has only to wake up)
        if not WATCHER.running:
            break
        threading.Event().wait(0.01)
    assert not WATCHER.running
