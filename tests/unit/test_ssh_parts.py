"""The parts of the SSH transport that need no SSH library: the boundary itself, the keepalive
schedule, known_hosts files, ProxyCommand expansion and the error messages.

The transport as a whole is tested against real sshd servers in ``tests/lab/test_ssh_transport.py``
and ``tests/lab/test_keepalive.py``; here each part is pinned down exactly.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from maintkit.errors import ConnectionLost, HostKeyError, HostUnreachable
from maintkit.transport import ssh_errors
from maintkit.transport.keepalive import Keepalive
from maintkit.transport.ssh_policy import (
    append_known_host,
    check_settings,
    expand_proxy_command,
    known_host_name,
    known_hosts_files,
    parsed_once,
)

ROOT = Path(__file__).resolve().parents[2] / "maintkit"
SSH_LIBRARIES = {"fabric", "paramiko", "invoke"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_transport_ssh_imports_the_ssh_libraries() -> None:
    importers = sorted(
        str(path.relative_to(ROOT.parent)) for path in ROOT.rglob("*.py") if _imported_roots(path) & SSH_LIBRARIES
    )
    assert importers == ["maintkit/transport/ssh.py"]


# ---------------------------------------------------------------- keepalive schedule
class Clock:
    """A time source the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Counts keepalive requests; a request can be made to block until ``release``."""

    def __init__(self, *, block: bool = False) -> None:
        self.count = 0
        self.sent = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.lost = threading.Event()

    def ask(self) -> None:
        self.count += 1
        self.sent.set()
        self.release.wait(30)

    def on_lost(self) -> None:
        self.lost.set()


def _watch(rec: Recorder, clock: Clock, alive: bool = True) -> Keepalive:
    return Keepalive(5.0, 3, alive=lambda: alive, ask=rec.ask, on_lost=rec.on_lost, clock=clock)


def _settle(watch: Keepalive) -> None:
    """Wait until a keepalive request that was started has returned."""
    asking = watch._asking
    if asking is not None:
        asking.join(30)


def test_no_request_before_interval_seconds_of_silence() -> None:
    rec, clock = Recorder(), Clock(100.0)
    watch = _watch(rec, clock)
    assert watch.tick(104.9) is True
    assert rec.count == 0
    assert watch.lost_after is None


def test_a_request_after_interval_and_then_every_interval() -> None:
    rec, clock = Recorder(), Clock(100.0)
    watch = _watch(rec, clock)
    assert watch.tick(105.0) is True
    assert rec.sent.wait(10)
    _settle(watch)
    assert rec.count == 1
    assert watch.tick(109.0) is True  # asked 4 s ago: not yet again
    assert rec.count == 1
    assert watch.tick(110.0) is True
    _settle(watch)
    assert rec.count == 2
    assert not rec.lost.is_set()


def test_a_packet_from_the_server_resets_the_silence() -> None:
    rec, clock = Recorder(), Clock(100.0)
    watch = _watch(rec, clock)
    clock.now = 113.0
    watch.heard()
    assert watch.tick(117.0) is True  # 4 s of silence: no request, far from lost
    assert rec.count == 0
    assert watch.tick(127.9) is True
    _settle(watch)
    assert rec.count == 1
    assert watch.lost_after is None


def test_silence_of_interval_times_count_max_declares_the_connection_lost() -> None:
    rec, clock = Recorder(), Clock(100.0)
    watch = _watch(rec, clock)
    assert watch.tick(115.0) is False
    assert watch.lost_after == 15.0
    assert rec.lost.wait(10)


def test_a_blocked_request_does_not_hold_the_watch_back() -> None:
    rec, clock = Recorder(block=True), Clock(100.0)
    watch = _watch(rec, clock)
    try:
        assert watch.tick(105.0) is True
        assert rec.sent.wait(10)
        assert watch.tick(110.0) is True  # the first request still hangs: no second one
        assert rec.count == 1
        assert watch.tick(115.5) is False
        assert watch.lost_after == 15.5
        assert rec.lost.wait(10)
    finally:
        rec.release.set()
        _settle(watch)


def test_a_closed_or_stopped_connection_is_not_watched_and_not_declared_lost() -> None:
    rec = Recorder()
    closed = _watch(rec, Clock(100.0), alive=False)
    assert closed.tick(200.0) is False
    stopped = _watch(rec, Clock(100.0))
    stopped.stop()
    assert stopped.tick(200.0) is False
    assert rec.count == 0
    assert not rec.lost.is_set()
    assert closed.lost_after is None and stopped.lost_after is None


# ---------------------------------------------------------------- settings and known_hosts
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("trust-all", 10, 120, 8, 5.0, 3), "host_key_policy must be strict or accept-new, not 'trust-all'"),
        (("strict", 0, 120, 8, 5.0, 3), "timeouts and max_sessions must be positive"),
        (("strict", 10, 120, 0, 5.0, 3), "timeouts and max_sessions must be positive"),
        (("accept-new", 10, 120, 8, 5.0, 0), "keepalive_interval and keepalive_count_max must be positive"),
    ],
)
def test_settings_that_cannot_work_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_settings(*args)
    assert str(caught.value) == message


def test_known_host_names_carry_the_port_unless_22() -> None:
    assert known_host_name("10.0.0.5", 22) == "10.0.0.5"
    assert known_host_name("10.0.0.5", 2201) == "[10.0.0.5]:2201"


def test_append_known_host_creates_a_private_file_and_keeps_lines_apart(tmp_path: Path) -> None:
    path = tmp_path / "new" / "known_hosts"
    append_known_host(path, "[127.0.0.10]:2201", "ssh-ed25519", "AAAAC3Nza1")
    assert path.read_text() == "[127.0.0.10]:2201 ssh-ed25519 AAAAC3Nza1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    existing = tmp_path / "existing"
    existing.write_text("web1 ssh-rsa AAAAB3")  # no newline at the end
    append_known_host(existing, "web2", "ssh-ed25519", "AAAAC3Nza2")
    assert existing.read_text() == "web1 ssh-rsa AAAAB3\nweb2 ssh-ed25519 AAAAC3Nza2\n"


def test_known_hosts_files_lists_only_files_that_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    given = tmp_path / "kh"
    given.write_text("")
    assert known_hosts_files([str(given), str(tmp_path / "missing")]) == [str(given)]
    user_file = tmp_path / "home" / ".ssh" / "known_hosts"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("")
    assert known_hosts_files([str(given)]) == [str(user_file), str(given)]


def test_parsed_once_parses_again_only_after_the_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("web1 ssh-ed25519 AAAA\n")
    calls: list[str] = []

    def parse(p: str) -> str:
        calls.append(p)
        return Path(p).read_text()

    assert parsed_once(str(path), parse) == "web1 ssh-ed25519 AAAA\n"
    assert parsed_once(str(path), parse) == "web1 ssh-ed25519 AAAA\n"
    assert calls == [str(path)]
    path.write_text("web1 ssh-ed25519 AAAA\nweb2 ssh-ed25519 BBBB\n")
    assert parsed_once(str(path), parse) == "web1 ssh-ed25519 AAAA\nweb2 ssh-ed25519 BBBB\n"
    assert calls == [str(path), str(path)]


@pytest.mark.parametrize(
    ("command", "expanded"),
    [
        ("ip netns exec lab-hub nc %h %p", "ip netns exec lab-hub nc 10.77.0.11 2201"),
        ("ssh -W %h:%p -l %r jump", "ssh -W 10.77.0.11:2201 -l deploy jump"),
        ("echo 100%% %x %", "echo 100% %x %"),
        ("%%h stays", "%h stays"),
    ],
)
def test_proxy_command_expands_like_openssh(command: str, expanded: str) -> None:
    assert expand_proxy_command(command, "10.77.0.11", 2201, "deploy") == expanded


def test_proxy_command_without_a_user_expands_r_to_nothing() -> None:
    assert expand_proxy_command("nc %h %p #%r#", "web1", 22, None) == "nc web1 22 ##"


# ---------------------------------------------------------------- error messages
class FakeTarget:
    host = "shop-staging"
    hostname = "10.0.0.5"
    port = 2201
    user = "deploy"
    key_filename = "/keys/id_ed25519"
    connect_timeout = 7.0
    known_hosts: tuple[str, ...] = ()
    known_host_name = "[10.0.0.5]:2201"


def test_messages_name_the_host_and_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    t = FakeTarget()
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIGb1oc4Nvo5tNdBTmXFBj6b1FNpwVTdZ9ZB1VXjPs2wS"
    unknown = ssh_errors.unknown_host_key(t, "ssh-ed25519", key)
    assert isinstance(unknown, HostKeyError)
    assert unknown.host == "shop-staging"
    fp = "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(key)).digest()).decode().rstrip("=")
    assert str(unknown) == (
        "shop-staging: the host key for [10.0.0.5]:2201 is not in known_hosts (known_hosts); the server offered "
        f"ED25519 key fingerprint {fp}. If that is the host's key (on the host: ssh-keygen -lf "
        f"/etc/ssh/ssh_host_ed25519_key.pub), add it: ssh-keyscan -p 2201 -t ed25519 10.0.0.5 >> {tmp_path}/.ssh/known_hosts; "
        "or set host_key_policy: accept-new for it in the inventory"
    )
    proxied = ssh_errors.unknown_host_key(t, "ssh-ed25519", key, proxied=True)
    assert f"add it: echo '[10.0.0.5]:2201 ssh-ed25519 {key}' >> {tmp_path}/.ssh/known_hosts;" in str(proxied)
    changed = ssh_errors.changed_host_key(t, "SHA256:old", "SHA256:new")
    assert "has CHANGED (known: SHA256:old, offered: SHA256:new)" in str(changed)
    assert "(ssh-keygen -R '[10.0.0.5]:2201')" in str(changed)
    custom = ssh_errors.changed_host_key(t, "SHA256:old", "SHA256:new", "/etc/maint/known hosts")
    assert "(ssh-keygen -R '[10.0.0.5]:2201' -f '/etc/maint/known hosts')" in str(custom)
    auth = ssh_errors.authentication_failed(t, Exception("Authentication failed."))
    assert str(auth) == (
        "shop-staging: authentication failed for deploy@10.0.0.5:2201 with key /keys/id_ed25519: Authentication failed."
    )
    assert str(ssh_errors.no_handshake(t)) == (
        "shop-staging: cannot connect to 10.0.0.5:2201: no SSH handshake within 7 s "
        "(connection closed or timed out: host down, network cut, or not an SSH server)"
    )


def test_a_connection_lost_to_keepalives_is_told_apart() -> None:
    t = FakeTarget()
    lost = ssh_errors.connection_lost(t, 15.2, "sleep 60")
    assert type(lost) is ConnectionLost
    assert (
        str(lost)
        == "shop-staging: connection to 10.0.0.5:2201 lost (no reply to keepalive for 15 s) while running: sleep 60"
    )
    other = ssh_errors.connection_lost(t, None, "sleep 60")
    assert type(other) is HostUnreachable
    assert str(other) == "shop-staging: connection lost while running: sleep 60"


@pytest.mark.parametrize(
    ("exc", "handshake"),
    [
        (EOFError(), True),
        (Exception("Error reading SSH protocol banner"), True),
        (Exception("No existing session"), True),
        (Exception("Negotiation failed."), True),
        (Exception("Bad authentication type"), False),
        (OSError(os.strerror(111)), False),
    ],
)
def test_handshake_failures_are_recognised(exc: BaseException, handshake: bool) -> None:
    assert ssh_errors.is_handshake_failure(exc) is handshake
