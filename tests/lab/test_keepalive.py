"""SSH keepalives that want a reply: a cut network is noticed within seconds, not at the deadline.

The host lives in its own network namespace; ``ssh_lab.cut`` takes its link down (packets
vanish, no RST), so only the missing keepalive replies can tell the connection is dead.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from maintkit.errors import ConnectionLost, HostUnreachable, InventoryError
from maintkit.inventory import parse_inventory
from maintkit.results import CommandResult
from maintkit.runner import default_transport_factory
from maintkit.transport.ssh import SSHTransport
from tests.gates import GATED_SHELL, make_gates, wait_started, wait_until
from tests.lab.sshd import LabHost, SshLab
from tests.lab.test_ssh_transport import fresh  # noqa: F401  (fixture)

pytestmark = pytest.mark.lab

HANG_GUARD = 90.0  # a call that has not returned by then is hanging (the test fails)
DEADLINE = 120.0  # the command deadline: far beyond what keepalives need


@pytest.fixture
def namespaced(fresh: Callable[..., SSHTransport], netns_host: LabHost) -> Callable[..., SSHTransport]:  # noqa: F811
    """Transports to the namespaced host (closed after the test by ``fresh``)."""
    return lambda **kwargs: fresh(netns_host, connect_timeout=3, command_timeout=DEADLINE, **kwargs)


class Blocked:
    """A remote command that announces it started (a file) and then waits for a gate that
    never opens; it runs in a thread, which records when and how the call ended."""

    def __init__(self, t: SSHTransport, scratch: Path) -> None:
        make_gates(scratch)
        script = GATED_SHELL.format(dir=shlex.quote(str(scratch)))
        self.outcome: Any = None
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._call, args=(t, script), daemon=True)
        self._thread.start()
        wait_started(scratch)

    def _call(self, t: SSHTransport, script: str) -> None:
        try:
            self.outcome = t.run(["sh", "-c", script])
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            self.outcome = exc
        self.ended_at = time.monotonic()

    def join(self) -> Any:
        self._thread.join(HANG_GUARD)
        assert not self._thread.is_alive(), "the call hung"
        return self.outcome


def test_a_cut_network_is_reported_lost_within_seconds_not_at_the_deadline(
    ssh_lab: SshLab, netns_host: LabHost, namespaced: Callable[..., SSHTransport], request: pytest.FixtureRequest
) -> None:
    t = namespaced()  # defaults: keepalive every 5 s of silence, lost after 15 s
    assert (t.keepalive_interval, t.keepalive_count_max) == (5.0, 3)
    blocked = Blocked(t, ssh_lab.scratch(netns_host, request.node.name))
    ssh_lab.cut(netns_host)
    cut_at = time.monotonic()
    err = blocked.join()
    took = blocked.ended_at - cut_at
    assert isinstance(err, ConnectionLost), err
    assert isinstance(err, HostUnreachable)  # callers that handle unreachable hosts handle this too
    assert took < 20.0, f"noticed only after {took:.1f} s"
    message = str(err)
    assert message.startswith(f"{netns_host.name}: connection to {netns_host.ip}:{netns_host.port} lost ("), message
    assert "(no reply to keepalive for 1" in message  # 15 or 16 s of silence
    assert "timed out" not in message and "124" not in message
    assert not t.connected
    ssh_lab.restore(netns_host)
    back = t.run(["echo", "back"])  # a new connection is opened
    assert isinstance(back, CommandResult) and back.stdout == "back\n"


def test_keepalive_settings_shorten_the_detection(
    ssh_lab: SshLab, netns_host: LabHost, namespaced: Callable[..., SSHTransport], request: pytest.FixtureRequest
) -> None:
    t = namespaced(keepalive_interval=1, keepalive_count_max=2)
    blocked = Blocked(t, ssh_lab.scratch(netns_host, request.node.name))
    ssh_lab.cut(netns_host)
    cut_at = time.monotonic()
    err = blocked.join()
    took = blocked.ended_at - cut_at
    assert isinstance(err, ConnectionLost), err
    assert took < 5.0, f"noticed only after {took:.1f} s"
    assert "lost (no reply to keepalive for 2 s) while running: sh -c " in str(err), str(err)
    ssh_lab.restore(netns_host)


def test_an_idle_connection_on_a_cut_network_is_dropped_and_reopened_later(
    ssh_lab: SshLab, netns_host: LabHost, namespaced: Callable[..., SSHTransport]
) -> None:
    t = namespaced(keepalive_interval=1, keepalive_count_max=2)
    assert t.run(["true"]).ok and t.connected
    ssh_lab.cut(netns_host)
    wait_until(lambda: not t.connected, "the dead connection was dropped", limit=10.0)
    ssh_lab.restore(netns_host)
    assert t.run(["echo", "again"]).stdout == "again\n"
    assert t.connected


def test_a_silent_command_on_a_live_connection_is_not_mistaken_for_a_cut(
    namespaced: Callable[..., SSHTransport],
) -> None:
    """The server answers keepalives while a command prints nothing for longer than the
    keepalive limit (1 s here): the command finishes on the same connection."""
    t = namespaced(keepalive_interval=0.25, keepalive_count_max=4)
    before = t.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).stdout
    res = t.run(["sh", "-c", "sleep 3; echo done"])
    assert (res.exit_code, res.stdout) == (0, "done\n")
    after = t.run(["sh", "-c", 'echo "$SSH_CONNECTION"']).stdout
    assert after == before  # same client port: the connection was never replaced
    assert t.round_trips == 3


def test_the_inventory_sets_keepalives_per_environment(tmp_path: Path) -> None:
    from maintkit._yaml import SourceMap

    data = {
        "defaults": {"keepalive_interval": 2},
        "sites": {
            "shop": {
                "environments": {
                    "staging": {"host": "10.0.0.1", "path": "/srv/shop"},
                    "production": {"host": "10.0.0.2", "path": "/srv/shop", "keepalive_count_max": 6},
                }
            }
        },
    }
    inv = parse_inventory(data, SourceMap("inv.yml", {}))
    staging = default_transport_factory(inv.sites["shop"].env("staging"))
    production = default_transport_factory(inv.sites["shop"].env("production"))
    assert isinstance(staging, SSHTransport) and isinstance(production, SSHTransport)
    assert (staging.keepalive_interval, staging.keepalive_count_max) == (2.0, 3)
    assert (production.keepalive_interval, production.keepalive_count_max) == (2.0, 6)
    plain = parse_inventory({"sites": data["sites"]}, SourceMap("inv.yml", {}))
    default = default_transport_factory(plain.sites["shop"].env("staging"))
    assert isinstance(default, SSHTransport)
    assert (default.keepalive_interval, default.keepalive_count_max) == (5.0, 3)


@pytest.mark.parametrize(("field", "value"), [("keepalive_interval", 0), ("keepalive_count_max", 0)])
def test_keepalive_settings_must_be_positive(field: str, value: int) -> None:
    from maintkit._yaml import SourceMap

    data = {"defaults": {field: value}, "sites": {"shop": {"environments": {"prod": {"path": "/srv"}}}}}
    with pytest.raises(InventoryError) as info:
        parse_inventory(data, SourceMap("inv.yml", {}))
    assert [p.field for p in info.value.problems] == [f"defaults.{field}"]
