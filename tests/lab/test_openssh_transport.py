"""``connection: openssh``: the system's ssh with a control master that later runs reuse (lab sshd).

The contract suite (tests/lab/test_transport_contract.py) runs against this transport too;
here is what is specific to it, each proven on a real sshd and its log:

* two ``maint run`` processes of a five-step playbook on one host authenticate exactly ONCE
  (the second run's commands all go through the master the first left open);
* an unknown host key is refused with the paramiko path's exact message;
* a master serves only a run whose trust is the one it was opened under (each later transport
  below stands for a later run, which makes its transports once): the host's key replaced or
  removed in known_hosts (plain or hashed names) refuses the next run at once, with the
  paramiko path's message, and the master opened before is asked to take no new session (it
  ends once its sessions under way end; the run that opened it is refused at its next
  command); another host's entry added or removed (plain or hashed), or a comment, keeps the
  master (no login); a key file replaced by a key the host does not accept makes the next run
  fail to log in instead of riding the old master, and so does a file the ssh config includes
  that names another ``HostKeyAlias``; under ``accept-new`` the run after the first
  contact logs in once more, the next reuses; a key revoked in the host's authorized_keys
  leaves a live master serving runs until it is closed (then the next run is refused);
* a master opened for another known_hosts file, host key policy or keepalives is never reused;
* a control directory that is a symlink, open to others or owned by another user is refused;
* the hostile ``~/.ssh/config`` planted for the session changes nothing (also when the
  inventory opts into reading it, host keys stay strict);
* a timeout or a cancel stops the REMOTE command's process group;
* ``control_persist: 0`` ends the run's own master at close(); a persisting one survives it;
* ``maint connections list`` and ``close`` (exact output, exit codes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maintkit.errors import HostKeyError, HostUnreachable, TransportError
from maintkit.inventory import Environment, load_inventory
from maintkit.transport.base import CancelToken, CommandCancelled, cancellable
from maintkit.transport.factory import transport_for
from maintkit.transport.openssh import OpenSSHTransport
from maintkit.transport.openssh_control import check_master, close_master, live_masters
from tests.gates import gated_shell, open_gate, wait_started, wait_until
from tests.hostile_dotfiles import MARK
from tests.lab.openssh_helpers import (
    authentications,
    control_home,
    endless,
    gate_dir,
    in_thread,
    openssh_transport,
    paramiko_host_key_error,
    running,
    sockets,
)
from tests.lab.sshd import LOGIN_USER, LabHost, SshLab, chown_login_user
from tests.lab.test_cancel import gated, group_alive, pgid_of
from tests.lab.test_round_trips import FIVE
from tests.runs import maint_cli, maint_in_process, write_inventory

pytestmark = pytest.mark.lab


@pytest.fixture
def home() -> Iterator[Path]:
    """A private ``XDG_CACHE_HOME``; every master opened under it is ended afterwards (``ssh -O exit``)."""
    with control_home() as path:
        yield path


def _result(stdout: str) -> dict[str, Any]:
    last = json.loads(stdout.strip().splitlines()[-1])
    assert last["event"] == "result", stdout[-2000:]
    return dict(last)


# ---------------------------------------------------------------------------- reuse across runs
def test_two_runs_authenticate_once(tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], home: Path) -> None:
    host, scratch = ssh_hosts[0]
    env = host.env(scratch / "shop", connection="openssh", control_persist=600)
    write_inventory(tmp_path, {"shop": {"environments": {"production": env}}})
    (tmp_path / "five.yml").write_text(FIVE)
    extra = {"XDG_CACHE_HOME": str(home)}
    before = authentications(host)

    first = maint_cli("run", "five.yml", "--json", cwd=tmp_path, extra_env=extra)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _result(first.stdout)["changed"] == 3
    assert authentications(host) == before + 1
    assert (scratch / "shop" / "app" / "config.txt").read_text() == "site=shop\n"
    [sock] = sockets(home)
    master = check_master(sock)
    assert master

    second = maint_cli("run", "five.yml", "--json", cwd=tmp_path, extra_env=extra)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert _result(second.stdout)["changed"] == 0  # idempotent: the no-op run changes nothing
    assert authentications(host) == before + 1  # not one login: every command went through the master
    assert sockets(home) == [sock] and check_master(sock) == master


def test_the_first_command_of_a_later_transport_does_not_authenticate(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    host, _ = ssh_hosts[0]
    first = openssh_transport(host, home)
    assert first.run(["id", "-un"]).stdout == "deploy\n"
    first.close()
    assert first.connected  # a persisting master outlives close(): that is the point
    logins = authentications(host)
    later = openssh_transport(host, home)
    assert later.run(["id", "-un"]).stdout == "deploy\n"
    assert (later.round_trips, authentications(host)) == (1, logins)


def test_control_persist_0_ends_the_runs_own_master_at_close(ssh_hosts: list[tuple[LabHost, Path]], home: Path) -> None:
    host, _ = ssh_hosts[0]
    keeper = openssh_transport(host, home)
    keeper.run(["true"])
    logins = authentications(host)
    own = openssh_transport(host, home, control_persist=0)
    own.run(["true"])
    assert authentications(host) == logins + 1  # never shares the persisting master
    assert own.connected and own.socket != keeper.socket
    own.close()
    assert not own.connected and not own.socket.exists()
    own.close()  # idempotent
    assert keeper.connected


# ---------------------------------------------------------------------------- host keys
def test_an_unknown_host_key_is_refused_as_over_paramiko(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    host, _ = ssh_hosts[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    logins = authentications(host)
    t = openssh_transport(host, home, known_hosts=[str(empty)])
    with pytest.raises(HostKeyError) as info:
        t.run(["true"])
    assert str(info.value) == paramiko_host_key_error(host, empty)
    assert str(info.value).startswith(f"{host.name}: the host key for [{host.ip}]:{host.port} is not in known_hosts")
    assert authentications(host) == logins and sockets(home) == [] and empty.read_text() == ""


def _new_key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def _hash_names(known: Path) -> None:
    """Hash every name of ``known`` as OpenSSH's HashKnownHosts does (``ssh-keygen -H``)."""
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    Path(f"{known}.old").unlink()
    assert "|1|" in known.read_text()


@pytest.mark.parametrize("change", ["replaced", "removed", "replaced, hashed names"])
def test_a_changed_host_key_refuses_the_next_run_while_the_old_master_lives(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], home: Path, change: str
) -> None:
    (host, _), (other, _) = ssh_hosts[0], ssh_hosts[1]
    known = tmp_path / "known_hosts"
    kept = ssh_lab.known_hosts_line(other)
    known.write_text(f"{ssh_lab.known_hosts_line(host)}\n{kept}\n")
    hashed = change.endswith("hashed names")
    if hashed:
        _hash_names(known)
    first = openssh_transport(host, home, known_hosts=[str(known)])
    assert first.run(["echo", "one"]).stdout == "one\n"
    master = check_master(first.socket)
    assert master
    if change.startswith("replaced"):
        forged = " ".join(_new_key(tmp_path, "forged").with_suffix(".pub").read_text().split()[:2])
        known.write_text(f"[{host.ip}]:{host.port} {forged}\n{kept}\n")
    else:
        known.write_text(kept + "\n")
    if hashed:
        _hash_names(known)
    logins = authentications(host)

    later = openssh_transport(host, home, known_hosts=[str(known)])
    with pytest.raises(HostKeyError) as info:
        later.run(["true"])
    assert later.socket != first.socket
    assert str(info.value) == paramiko_host_key_error(host, known)
    expected = "has CHANGED" if change.startswith("replaced") else "is not in known_hosts"
    assert expected in str(info.value)
    assert authentications(host) == logins  # refused before any login, the old master never asked
    # the master opened before was asked to take no new session; with none under way, it ended
    assert check_master(first.socket) is None
    wait_until(lambda: not _pid_alive(master), "the superseded master exited", limit=10)
    # the run that opened it is refused at its next command, as a new run is
    with pytest.raises(HostKeyError) as again:
        first.run(["echo", "two"])
    assert str(again.value) == str(info.value) and authentications(host) == logins and sockets(home) == []


def test_a_superseded_master_takes_no_new_session_and_ends_after_its_last(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    """A later run whose trust differs (here: the host's line written twice, which changes the
    entries and still lets the key in) opens its own master and asks the old one to stop: the
    command under way on the old one ends as it would, no new session is taken there, and the
    old master exits after that command. The run that opened it gets a new connection on its next
    command, checked against the known_hosts of now (labelled again for ``maint connections``)."""
    host, scratch = ssh_hosts[0]
    known = tmp_path / "known_hosts"
    mine = ssh_lab.known_hosts_line(host)
    known.write_text(mine + "\n")
    first = openssh_transport(host, home, known_hosts=[str(known)])
    first.run(["true"])
    old_pid = check_master(first.socket)
    d = gate_dir(scratch)
    outcome_of: list[Any] = []
    worker, outcome = in_thread(lambda: outcome_of.append(first.run_shell(gated_shell(d, "echo finished"))))
    try:
        wait_started(d)
        known.write_text(f"{mine}\n{mine}\n")
        later = openssh_transport(host, home, known_hosts=[str(known)])
        assert later.run(["echo", "new"]).stdout == "new\n"
        assert later.socket != first.socket and check_master(later.socket) not in (None, old_pid)
        assert check_master(first.socket) is None  # takes no new session
        assert _pid_alive(old_pid or 0)  # ... while its command runs
    finally:
        open_gate(d)
    worker.join(30)
    assert outcome == ["returned"] and outcome_of[0].stdout == "finished\n" and outcome_of[0].exit_code == 0
    wait_until(lambda: not _pid_alive(old_pid or 0), "the superseded master exited", limit=10)
    assert [m.socket for m in live_masters(home / "maintkit" / "ssh")] == [later.socket]
    assert first.run(["echo", "again"]).stdout == "again\n"  # a new connection, labelled
    assert sorted(m.socket for m in live_masters(home / "maintkit" / "ssh")) == sorted([first.socket, later.socket])


def test_another_hosts_entry_or_a_comment_keeps_the_master(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    (host, _), (other, _) = ssh_hosts[0], ssh_hosts[1]
    known = tmp_path / "known_hosts"
    mine = ssh_lab.known_hosts_line(host)
    known.write_text(mine + "\n")
    first = openssh_transport(host, home, known_hosts=[str(known)])
    first.run(["true"])
    logins = authentications(host)
    theirs = ssh_lab.known_hosts_line(other)
    for text in (f"# a note\n{mine}\n{theirs}\n", f"\n{mine}\n# another note\n", f"{mine}\n{theirs}\n"):
        known.write_text(text)
        if text.startswith(mine):  # the other host's name hashed: tried, not counted
            known.write_text(mine + "\n")
            (tmp_path / "theirs").write_text(theirs + "\n")
            _hash_names(tmp_path / "theirs")
            known.write_text(mine + "\n" + (tmp_path / "theirs").read_text())
        later = openssh_transport(host, home, known_hosts=[str(known)])
        assert later.socket == first.socket
        assert later.run(["echo", "reused"]).stdout == "reused\n"
    assert authentications(host) == logins and sockets(home) == [first.socket]


def test_a_replaced_key_file_logs_in_again_and_is_refused(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    host, _ = ssh_hosts[0]
    key = tmp_path / "id"
    shutil.copyfile(host.client_key, key)
    key.chmod(0o600)
    first = openssh_transport(host, home, key_filename=str(key))
    first.run(["true"])
    logins = authentications(host)
    unknown = _new_key(tmp_path, "unknown")
    key.write_bytes(unknown.read_bytes())  # a key the host's authorized_keys does not hold
    later = openssh_transport(host, home, key_filename=str(key))
    with pytest.raises(HostUnreachable, match="authentication failed"):
        later.run(["true"])
    assert later.socket != first.socket
    assert authentications(host) == logins and check_master(first.socket) is None  # the old one stopped
    assert sockets(home) == []


def test_an_included_config_file_edited_refuses_the_next_run(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    """The inventory's ssh config includes a file (as ``~/.ssh/config`` often includes
    ``config.d/*``) that names the key to check by ``HostKeyAlias``: pointed at a name known_hosts
    does not hold, the next run is refused before any login instead of riding the old master."""
    host, _ = ssh_hosts[0]
    known = tmp_path / "known_hosts"
    known.write_text("shop-key " + " ".join(ssh_lab.known_hosts_line(host).split()[1:]) + "\n")
    (tmp_path / "config.d").mkdir()
    included = tmp_path / "config.d" / "shop.conf"
    included.write_text("Host shop\n    HostKeyAlias shop-key\n")
    config = tmp_path / "ssh_config"
    config.write_text(f"Include {tmp_path}/config.d/*.conf\n")
    opts: dict[str, Any] = {"known_hosts": [str(known)], "ssh_config": str(config), "alias": "shop"}
    first = openssh_transport(host, home, **opts)
    assert first.run(["echo", "one"]).stdout == "one\n"
    assert openssh_transport(host, home, **opts).socket == first.socket  # unchanged: reused
    included.write_text("Host shop\n    HostKeyAlias another-name\n")
    logins = authentications(host)
    later = openssh_transport(host, home, **opts)
    assert later.socket != first.socket
    with pytest.raises(HostKeyError, match="is not in known_hosts"):
        later.run(["true"])
    assert authentications(host) == logins and check_master(first.socket) is None  # the old one stopped


def test_a_key_revoked_on_the_host_leaves_an_open_connection_until_it_is_closed(
    ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    """What docs/security.md tells whoever revokes access: sshd reads authorized_keys when a
    connection logs in, so a live master keeps serving runs; closed, the next run is refused."""
    host, _ = ssh_hosts[0]
    first = openssh_transport(host, home)
    first.run(["true"])
    keys = ssh_lab.auth_dir / LOGIN_USER
    saved = keys.read_text()
    try:
        keys.write_text("")
        later = openssh_transport(host, home)
        assert later.socket == first.socket
        assert later.run(["echo", "still"]).stdout == "still\n"
        assert close_master(first.socket)
        with pytest.raises(HostUnreachable, match="authentication failed"):
            openssh_transport(host, home).run(["true"])
    finally:
        keys.write_text(saved)
    assert openssh_transport(host, home).run(["echo", "back"]).stdout == "back\n"


def test_accept_new_logs_in_once_more_after_the_first_contact(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    host, _ = ssh_hosts[0]
    known = tmp_path / "known_hosts"
    known.write_text("")
    logins = authentications(host)
    sockets = []
    for _ in range(3):
        t = openssh_transport(host, home, known_hosts=[str(known)], host_key_policy="accept-new")
        assert t.run(["echo", "ok"]).stdout == "ok\n"
        sockets.append(t.socket)
    assert known.read_text().split() == ssh_lab.known_hosts_line(host).split()  # recorded by the first
    assert authentications(host) == logins + 2
    assert sockets[0] != sockets[1] == sockets[2]


def test_a_master_for_another_known_hosts_file_or_policy_is_not_reused(
    tmp_path: Path, ssh_lab: SshLab, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    host, _ = ssh_hosts[0]
    a, b = tmp_path / "a_known_hosts", tmp_path / "b_known_hosts"
    for f in (a, b):
        f.write_text(ssh_lab.known_hosts_line(host) + "\n")
    logins = authentications(host)
    openssh_transport(host, home, known_hosts=[str(a)]).run(["true"])
    openssh_transport(host, home, known_hosts=[str(a)]).run(["true"])
    assert authentications(host) == logins + 1
    openssh_transport(host, home, known_hosts=[str(b)]).run(["true"])
    assert authentications(host) == logins + 2  # another known_hosts file: a login of its own
    openssh_transport(host, home, known_hosts=[str(a)], host_key_policy="accept-new").run(["true"])
    assert authentications(host) == logins + 3  # a laxer policy never shares the strict master
    assert len(sockets(home)) == 3


def test_a_master_with_other_keepalives_is_not_reused(ssh_hosts: list[tuple[LabHost, Path]], home: Path) -> None:
    """A dead host is noticed by the master's keepalives: a run asking for others (stricter or
    laxer) opens a master of its own, which has them; the same ones reuse it."""
    host, _ = ssh_hosts[0]
    logins = authentications(host)
    default = openssh_transport(host, home)
    default.run(["true"])
    stricter = openssh_transport(host, home, keepalive_interval=2, keepalive_count_max=2)
    assert stricter.socket != default.socket
    stricter.run(["true"])
    again = openssh_transport(host, home, keepalive_interval=2, keepalive_count_max=2)
    assert again.socket == stricter.socket
    again.run(["true"])
    assert authentications(host) == logins + 2
    master = check_master(stricter.socket)
    assert master
    argv = Path(f"/proc/{master}/cmdline").read_bytes().split(b"\0")
    assert b"ServerAliveInterval=2" in argv and b"ServerAliveCountMax=2" in argv


# ---------------------------------------------------------------------------- the control directory
@pytest.mark.parametrize("how", ["mode-0755", "symlink", "other-owner"])
def test_an_unsafe_control_directory_is_refused(ssh_hosts: list[tuple[LabHost, Path]], home: Path, how: str) -> None:
    host, _ = ssh_hosts[0]
    control = home / "maintkit" / "ssh"
    control.parent.mkdir(mode=0o700, parents=True)
    if how == "symlink":
        real = home / "elsewhere"
        real.mkdir(mode=0o700)
        control.symlink_to(real)
        why = "it is a symbolic link"
    else:
        control.mkdir(mode=0o700)
        if how == "mode-0755":
            control.chmod(0o755)
            why = f"its mode is 0755; only you may use it (chmod 700 {control})"
        else:
            chown_login_user(control)
            why = f"it is owned by uid {control.stat().st_uid}, not by you (uid {os.geteuid()})"
    logins = authentications(host)
    t = openssh_transport(host, home)
    with pytest.raises(TransportError) as info:
        t.run(["true"])
    assert str(info.value) == f"{host.name}: refusing the OpenSSH control directory {control}: {why}"
    assert authentications(host) == logins and list(control.iterdir()) == []


# ---------------------------------------------------------------------------- hostile ~/.ssh/config
def _environment(directory: Path, **fields: Any) -> Environment:
    """The environment of a one-site inventory loaded from a file (so what it sets wins over ssh config)."""
    inv = load_inventory(write_inventory(directory, {"shop": {"environments": {"production": fields}}}, unique=True))
    return inv.sites["shop"].environments["production"]


def test_the_hostile_ssh_config_changes_nothing(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], home: Path
) -> None:
    host, _ = ssh_hosts[0]
    planted = Path(os.path.expanduser("~/.ssh/config")).read_text()
    assert MARK in planted and "Port 1" in planted and "StrictHostKeyChecking no" in planted
    environ = {"XDG_CACHE_HOME": str(home)}
    t = transport_for(_environment(tmp_path, **host.env("/srv/x", connection="openssh")), environ)
    assert isinstance(t, OpenSSHTransport)
    assert t._ssh_argv()[:3] == ["ssh", "-F", "/dev/null"]  # the file is not even read
    who = t.run(["sh", "-c", 'echo "$(id -un) $SSH_CONNECTION"']).stdout.split()
    assert (who[0], who[3:]) == ("deploy", [host.ip, str(host.port)])
    # opting into ~/.ssh/config reads it (its StrictHostKeyChecking no, UserKnownHostsFile
    # /dev/null), yet host keys stay strict: an unknown key is refused, nothing authenticates
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    opted = _environment(tmp_path, **host.env("/srv/x", connection="openssh", ssh_config=True, known_hosts=str(empty)))
    logins = authentications(host)
    with pytest.raises(HostKeyError, match="is not in known_hosts"):
        transport_for(opted, environ).run(["true"])
    assert authentications(host) == logins


def test_a_jump_host_and_a_proxy_command(
    tmp_path: Path, ssh_hosts: list[tuple[LabHost, Path]], netns_host: LabHost, home: Path
) -> None:
    (h1, _), (h2, _) = ssh_hosts[0], ssh_hosts[1]
    environ = {"XDG_CACHE_HOME": str(home)}
    jump = f"deploy@{h1.ip}:{h1.port}"
    env = _environment(tmp_path, **h2.env("/srv/x", connection="openssh", proxy_jump=jump))
    at_jump, at_target = authentications(h1), authentications(h2)
    t = transport_for(env, environ)
    assert t.run(["hostname"]).ok
    assert (authentications(h1), authentications(h2)) == (at_jump + 1, at_target + 1)  # through h1, to h2
    # the jump host is checked as strictly: its key missing from known_hosts, it is refused with
    # the paramiko path's message (ssh logs the hop's failure to a file: under ControlPersist the
    # proxy's stderr goes nowhere)
    only_target = tmp_path / "only_target"
    only_target.write_text("".join(x + "\n" for x in h2.known_hosts.read_text().splitlines() if h2.ip in x))
    fields = h2.env("/srv/x", proxy_jump=jump, known_hosts=str(only_target))
    errors = []
    for kind in ("openssh", "ssh"):
        t = transport_for(_environment(tmp_path, **fields, connection=kind), environ)
        with pytest.raises(HostKeyError) as info:
            t.run(["true"])
        t.close()
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith(f"{h2.ip}: through jump host {h1.ip}: the host key for [{h1.ip}]:{h1.port} is not")
    # a proxy_command (the namespaced host is reachable only through it)
    ns = _environment(tmp_path, **netns_host.env("/srv/x", connection="openssh"))
    assert transport_for(ns, environ).run(["id", "-un"]).stdout == "deploy\n"


# ---------------------------------------------------------------------------- stopping commands
def test_a_timeout_stops_the_remote_command(ssh_hosts: list[tuple[LabHost, Path]], home: Path) -> None:
    host, _ = ssh_hosts[0]
    t = openssh_transport(host, home)
    command, mark = endless()
    res = t.run_shell(command, timeout=2, check=False)
    assert (res.timed_out, res.exit_code) == (True, 124)
    wait_until(lambda: not running(mark), f"the remote sleep {mark} gone", limit=5)
    assert t.run(["echo", "usable"]).stdout == "usable\n"


@pytest.mark.parametrize("become", [False, True], ids=["deploy", "sudo"])
def test_a_cancel_stops_the_remote_process_group(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path, become: bool
) -> None:
    host, scratch = ssh_hosts[0]
    d = gate_dir(scratch)
    t = openssh_transport(host, home, become=become)
    token = CancelToken()

    def work() -> None:
        with cancellable(token):
            t.run_shell(gated(d), timeout=600)

    worker, outcome = in_thread(work)
    try:
        wait_started(d)
        pgid = pgid_of(d)
        assert group_alive(pgid)
        assert token.cancel("stop now") == 1
        worker.join(30)
    finally:
        open_gate(d)
    assert not worker.is_alive()
    [exc] = outcome
    assert isinstance(exc, CommandCancelled) and str(exc) == f"{host.name}: command stopped: stop now"
    wait_until(lambda: not group_alive(pgid), f"remote process group {pgid} gone", limit=5)
    assert not (d / "done").exists()


def test_a_refused_port_is_the_paramiko_paths_error(ssh_hosts: list[tuple[LabHost, Path]], home: Path) -> None:
    host, _ = ssh_hosts[0]
    t = openssh_transport(host, home, port=1)
    with pytest.raises(HostUnreachable) as info:
        t.run(["true"])
    assert str(info.value) == f"{host.name}: cannot connect to {host.ip}:1: connection refused"


# ---------------------------------------------------------------------------- maint connections
def test_maint_connections_list_and_close(
    ssh_hosts: list[tuple[LabHost, Path]], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    (h1, _), (h2, _) = ssh_hosts[0], ssh_hosts[1]
    assert maint_in_process("connections", "list").stdout == "no open connections\n"
    for h in (h1, h2):
        warmed: list[str] = []
        openssh_transport(h, home).warm(lambda: warmed.append("dial"))
        assert warmed
    masters = {m.host: m for m in live_masters(home / "maintkit" / "ssh")}
    assert sorted(masters) == ["h1", "h2"]
    listed = maint_in_process("connections", "list")
    assert listed.exit_code == 0
    lines = sorted(listed.stdout.splitlines())
    for line, h in zip(lines, (h1, h2), strict=True):
        pid = masters[h.name].pid
        assert re.fullmatch(rf"{h.name}  deploy@{re.escape(h.ip)}:{h.port}  up \d+s  pid {pid}", line), line

    closed = maint_in_process("connections", "close", h1.ip)
    assert (closed.exit_code, closed.stdout) == (0, f"closed h1 (deploy@{h1.ip}:{h1.port})\n")
    wait_until(lambda: not _pid_alive(masters["h1"].pid), "the h1 master exited", limit=10)
    assert [m.host for m in live_masters(home / "maintkit" / "ssh")] == ["h2"]
    assert maint_in_process("connections", "close", "h1").stdout == "no open connection to h1\n"

    everything = maint_in_process("connections", "close", "--all")
    assert (everything.exit_code, everything.stdout) == (0, f"closed h2 (deploy@{h2.ip}:{h2.port})\n")
    wait_until(lambda: not _pid_alive(masters["h2"].pid), "the h2 master exited", limit=10)
    assert maint_in_process("connections", "list").stdout == "no open connections\n"
    assert maint_in_process("connections", "close", "--all").stdout == "no open connections\n"

    for bad in (("connections", "close"), ("connections", "close", "h1", "--all")):
        res = maint_in_process(*bad)
        assert (res.exit_code, res.stderr) == (2, "error: give a HOST or --all (not both)\n")


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
