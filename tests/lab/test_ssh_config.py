"""``~/.ssh/config`` as an opt-in, and ProxyJump over a real second sshd hop.

The jump host is an sshd in the lab's hub network namespace, reached from here through a
socat forwarder on 127.0.0.1; the target is a lab host in its own namespace, which this
machine cannot reach at all except through that jump host.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintkit.errors import HostUnreachable
from maintkit.transport.ssh import SSHTransport
from tests.lab.procs import free_port, read_pidfile, stop_pid, stop_popen, wait_port
from tests.lab.sshd import LabHost, SshLab, _keygen, _pub, _sshd_config
from tests.runs import maint_cli

pytestmark = pytest.mark.lab

JUMP_IP = "10.77.0.1"  # the hub's bridge address
JUMP_PORT = 2202

PLAYBOOK = """\
name: who
stages:
  - env: production
    steps:
      - id: who
        action: command
        with:
          argv: [sh, -c, 'printf "%s@%s\\n" "$(id -un)" "$(hostname)" > {{ env.path }}/who']
          creates: "{{ env.path }}/who"
"""


@dataclass
class Jump:
    """The jump sshd (in the hub namespace) and its forwarder on 127.0.0.1:port."""

    port: int
    hostkey_pub: str
    log: Path

    def accepted(self) -> int:
        return self.log.read_text().count("Accepted publickey for deploy")


@pytest.fixture
def jump(ssh_lab: SshLab, netns_host: LabHost, tmp_path: Path) -> Iterator[Jump]:
    hub = ssh_lab._ensure_hub()  # the namespace the target's bridge lives in
    d = tmp_path / "jump"
    d.mkdir()
    _keygen(d / "hostkey", "maintkit-lab-jump")
    (d / "sshd_config").write_text(_sshd_config(d, JUMP_IP, JUMP_PORT, ssh_lab.auth_dir))
    log = d / "sshd.log"
    subprocess.run(
        ["ip", "netns", "exec", hub, "/usr/sbin/sshd", "-f", str(d / "sshd_config"), "-E", str(log)], check=True
    )
    pid = read_pidfile(d / "sshd.pid", log=log)
    port = free_port()
    forward = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
         f"EXEC:ip netns exec {hub} socat STDIO TCP\\:{JUMP_IP}\\:{JUMP_PORT}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port("127.0.0.1", port)
        yield Jump(port, _pub(d / "hostkey"), log)
    finally:
        stop_popen(forward)
        stop_pid(pid)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def write_inventory(tmp_path: Path, env: dict[str, Any]) -> Path:
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"sites": {"shop": {"environments": {"production": env}}}}))
    (tmp_path / "who.yml").write_text(PLAYBOOK)
    return inv


def maint_run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return maint_cli(
        "run", "who.yml", "-i", "inventory.yml", "--state-dir", str(tmp_path / "state"), *extra, cwd=tmp_path
    )


def read_remote(host: LabHost, path: str) -> str:
    t = host.transport()
    try:
        return t.run(["cat", "--", path]).stdout
    finally:
        t.close()


# ---------------------------------------------------------------- opt-in and precedence
def test_an_alias_resolves_through_the_config_file_and_inventory_values_win(
    ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path
) -> None:
    host, scratch = ssh_hosts[0]
    config = write_config(
        tmp_path / "ssh_config",
        f"Host shop-a-prod\n"
        f"    HostName {host.ip}\n"
        f"    Port {host.port}\n"
        f"    User nobody\n"  # the inventory's user wins
        f"    IdentityFile {host.client_key}\n"
        f"    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {host.known_hosts}\n"
        "Host *\n    Port 1\n",
    )
    site = scratch  # owned by deploy
    write_inventory(tmp_path, {"host": "shop-a-prod", "user": "deploy", "path": str(site), "ssh_config": str(config)})
    first = maint_run(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert read_remote(host, f"{site}/who") == f"deploy@{read_remote(host, '/etc/hostname').strip()}\n"
    again = maint_run(tmp_path, "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert '"changed": 0' in again.stdout.splitlines()[-1]


def test_without_opting_in_no_config_file_is_read(ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path) -> None:
    host, scratch = ssh_hosts[0]
    config = write_config(tmp_path / "ssh_config", f"Host shop-a-prod\n    HostName {host.ip}\n    Port {host.port}\n")
    env = {"host": "shop-a-prod", "user": "deploy", "path": str(scratch), "key_file": str(host.client_key)}
    write_inventory(tmp_path, {**env, "known_hosts": str(host.known_hosts)})
    off = maint_run(tmp_path)
    assert off.returncode != 0
    assert "shop-a-prod: cannot resolve shop-a-prod: Name or service not known" in off.stdout + off.stderr
    # the suite's hostile ~/.ssh/config (Host * -> Port 1, User nobody) is not read either:
    # the lab address with no port in the inventory is tried on port 22, not on port 1
    write_inventory(tmp_path, {**env, "host": host.ip, "known_hosts": str(host.known_hosts)})
    default = maint_run(tmp_path)
    assert f"cannot connect to {host.ip}:22: connection refused" in default.stdout + default.stderr
    write_inventory(tmp_path, {**env, "known_hosts": str(host.known_hosts), "ssh_config": str(config)})
    on = maint_run(tmp_path)
    assert on.returncode == 0, on.stdout + on.stderr


def test_strict_host_key_checking_no_in_the_file_does_not_weaken_the_policy(
    ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path
) -> None:
    host, scratch = ssh_hosts[1]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = write_config(
        tmp_path / "ssh_config",
        f"Host shop-b\n    HostName {host.ip}\n    Port {host.port}\n    IdentityFile {host.client_key}\n"
        "    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n    ConnectTimeout 600\n",
    )
    write_inventory(
        tmp_path,
        {
            "host": "shop-b",
            "user": "deploy",
            "path": str(scratch),
            "known_hosts": str(empty),
            "ssh_config": str(config),
        },
    )
    result = maint_run(tmp_path)
    assert result.returncode != 0
    assert f"the host key for [{host.ip}]:{host.port} is not in known_hosts ({empty})" in result.stdout + result.stderr
    assert empty.read_text() == ""
    assert not (scratch / "who").exists()


def test_a_config_file_others_may_write_is_refused_before_anything_runs(
    ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path
) -> None:
    host, scratch = ssh_hosts[0]
    config = write_config(tmp_path / "ssh_config", f"Host x\n    HostName {host.ip}\n")
    config.chmod(0o666)
    write_inventory(tmp_path, {"host": "x", "path": str(scratch), "ssh_config": str(config)})
    result = maint_run(tmp_path)
    assert result.returncode == 2
    assert (
        f"{config}: ssh_config: bad owner or permissions (mode 0666, uid 0): "
        "it must be owned by you or root and writable by nobody else"
    ) in result.stderr


# ---------------------------------------------------------------- ProxyJump
def test_proxy_jump_from_the_config_reaches_a_host_only_the_jump_host_can_reach(
    netns_host: LabHost, jump: Jump, tmp_path: Path
) -> None:
    target = netns_host
    direct = SSHTransport(target.ip, port=target.port, user="deploy", key_filename=str(target.client_key),
                          known_hosts=[str(target.known_hosts)], connect_timeout=2)  # fmt: skip
    with pytest.raises(HostUnreachable):
        direct.run(["true"])  # no route from here: only through the jump host
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{jump.port} {jump.hostkey_pub}\n[{target.ip}]:{target.port} {target.hostkey_pub}\n")
    config = write_config(
        tmp_path / "ssh_config",
        f"Host bastion\n    HostName 127.0.0.1\n    Port {jump.port}\n    User deploy\n"
        f"Host shop-c\n    HostName {target.ip}\n    Port {target.port}\n    ProxyJump bastion\n"
        "Host *\n    StrictHostKeyChecking no\n",
    )
    site = target.root_dir / f"site-{tmp_path.name}"
    env = {"host": "shop-c", "user": "deploy", "path": str(site), "key_file": str(target.client_key)}
    write_inventory(tmp_path, {**env, "known_hosts": str(known), "ssh_config": str(config)})
    subprocess.run(["install", "-d", "-o", "deploy", str(site)], check=True)
    first = maint_run(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (site / "who").read_text() == f"deploy@lab-{target.name}\n"  # the namespaced host's own name
    assert jump.accepted() == 1, "one connection to the jump host for the whole run"
    again = maint_run(tmp_path, "--json")
    assert again.returncode == 0 and '"changed": 0' in again.stdout.splitlines()[-1]
    assert jump.accepted() == 2


def test_the_jump_host_key_is_checked_by_the_same_policy(netns_host: LabHost, jump: Jump, tmp_path: Path) -> None:
    target = netns_host
    known = tmp_path / "known_hosts"
    known.write_text(f"[{target.ip}]:{target.port} {target.hostkey_pub}\n")  # the jump host's key is missing
    site = target.root_dir / f"site-{tmp_path.name}"
    write_inventory(
        tmp_path,
        {"host": target.ip, "port": target.port, "user": "deploy", "path": str(site),
         "key_file": str(target.client_key), "known_hosts": str(known),
         "proxy_jump": f"deploy@127.0.0.1:{jump.port}"},
    )  # fmt: skip
    result = maint_run(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"through jump host 127.0.0.1: the host key for [127.0.0.1]:{jump.port} is not in known_hosts" in out
    assert jump.accepted() == 0, "nothing was authenticated on an unverified jump host"
    assert known.read_text() == f"[{target.ip}]:{target.port} {target.hostkey_pub}\n"
