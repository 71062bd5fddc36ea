"""Real sshd instances on loopback aliases, one per test host, each with its own host key.

Usable outside pytest (benchmarks)::

    lab = SshLab(Path("/tmp/x")).start(3)          # hosts on 127.0.0.10, .11, .12
    lab.hosts[0].env(path="/tmp/x/hosts/h1/root/site")   # inventory environment fields
    lab.stop()

Users: ``root`` and ``deploy`` (created if missing; NOPASSWD sudo through a drop-in that
``stop()`` removes). One client key is authorized for both. ``known_hosts`` lists every host's
key as ``[127.0.0.N]:PORT ssh-ed25519 ...``. Each host has a scratch directory owned by deploy.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
SUDOERS = Path("/etc/sudoers.d/maintkit-lab")
PORT = 2201


class LabError(RuntimeError):
    """A lab server could not start (tests fail; they never skip)."""


@dataclass
class LabHost:
    """One sshd instance."""

    name: str
    ip: str
    port: int
    client_key: Path
    known_hosts: Path
    root_dir: Path
    hostkey_pub: str
    pid: int = 0
    base: Path = field(default_factory=Path)

    def env(self, path: str | Path, *, user: str = "deploy", **extra: Any) -> dict[str, Any]:
        """Inventory environment fields that reach this host."""
        return {
            "host": self.ip,
            "port": self.port,
            "user": user,
            "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "path": str(path),
            **extra,
        }

    def ssh_argv(self, *command: str, user: str = "deploy") -> list[str]:
        """An OpenSSH client command line for this host (handy in tests)."""
        return [
            "ssh", "-q", "-i", str(self.client_key), "-p", str(self.port),
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", f"{user}@{self.ip}", *command,
        ]  # fmt: skip


def ensure_deploy_user() -> None:
    """Create the non-root login user ``deploy`` if missing (usable with UsePAM no)."""
    try:
        pwd.getpwnam("deploy")
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", "deploy"], check=True)
        subprocess.run(["usermod", "-p", "*", "deploy"], check=True)


def chown_deploy(path: Path) -> None:
    """Give a path to the deploy user."""
    pw = pwd.getpwnam("deploy")
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _wait_port(ip: str, port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((ip, port)) == 0:
                return True
        time.sleep(0.02)
    return False


def kill_tree(pid: int, grace: float = 2.0) -> None:
    """Stop a process and its children (children first), KILL after a grace period."""
    subprocess.run(["pkill", "-TERM", "-P", str(pid)], check=False)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class SshLab:
    """A set of sshd hosts on 127.0.0.N (N = first_ip, first_ip+1, ...)."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="maintkit-ssh-"))
        self.hosts: list[LabHost] = []
        self.client_key = self.base / "client_ed25519"
        self.known_hosts = self.base / "known_hosts"

    def start(self, n: int = 3, first_ip: int = 10, port: int = PORT) -> SshLab:
        """Start ``n`` hosts; raise LabError if any does not come up."""
        if not Path(SSHD).exists():
            raise LabError(f"{SSHD} missing: install openssh-server (scripts/lab-packages.sh)")
        ensure_deploy_user()
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        if not self.client_key.exists():
            _keygen(self.client_key)
        auth = self.base / "auth"
        auth.mkdir(exist_ok=True)
        for user in ("root", "deploy"):
            (auth / user).write_text(self.client_key.with_suffix(".pub").read_text())
            os.chmod(auth / user, 0o644)
        SUDOERS.write_text("deploy ALL=(ALL) NOPASSWD:ALL\n")
        os.chmod(SUDOERS, 0o440)
        lines = []
        for i in range(n):
            host = self._start_host(len(self.hosts) + 1, f"127.0.0.{first_ip + i}", port, auth)
            self.hosts.append(host)
            lines.append(f"[{host.ip}]:{host.port} {host.hostkey_pub}\n")
        with open(self.known_hosts, "a") as fh:
            fh.writelines(lines)
        os.chmod(self.known_hosts, 0o644)
        for host in self.hosts:
            if not _wait_port(host.ip, host.port):
                log = (self.base / "hosts" / host.name / "sshd.log").read_text(errors="replace")[-800:]
                self.stop()
                raise LabError(f"sshd for {host.name} ({host.ip}:{host.port}) did not start:\n{log}")
        return self

    def _start_host(self, index: int, ip: str, port: int, auth: Path) -> LabHost:
        name = f"h{index}"
        d = self.base / "hosts" / name
        d.mkdir(parents=True, exist_ok=True)
        _keygen(d / "hostkey")
        root = d / "root"
        root.mkdir(exist_ok=True)
        chown_deploy(root)
        os.chmod(root, 0o755)
        conf = d / "sshd_config"
        conf.write_text(
            f"Port {port}\nListenAddress {ip}\nHostKey {d / 'hostkey'}\nPidFile {d / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {auth}/%u\nStrictModes no\nPasswordAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nMaxStartups 100:30:200\nMaxSessions 50\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\n"
        )
        proc = subprocess.run([SSHD, "-f", str(conf), "-E", str(d / "sshd.log")], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"sshd for {name} failed to start: {proc.stderr.strip()}")
        pid = _read_pid(d / "sshd.pid")
        pub = " ".join((d / "hostkey.pub").read_text().split()[:2])
        return LabHost(name, ip, port, self.client_key, self.known_hosts, root, pub, pid, d)

    def scratch(self, host: LabHost, label: str) -> Path:
        """A fresh directory owned by deploy on ``host`` (same machine, distinct tree)."""
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:60]
        path = Path(tempfile.mkdtemp(prefix=f"{safe}-", dir=host.root_dir))
        chown_deploy(path)
        os.chmod(path, 0o755)
        return path

    def rotate_hostkey(self, host: LabHost) -> None:
        """Give a host a new key (to prove a changed key is refused): restart its sshd."""
        kill_tree(host.pid)
        for suffix in ("", ".pub"):
            (host.base / f"hostkey{suffix}").unlink()
        _keygen(host.base / "hostkey")
        subprocess.run([SSHD, "-f", str(host.base / "sshd_config"), "-E", str(host.base / "sshd.log")], check=True)
        host.pid = _read_pid(host.base / "sshd.pid")
        if not _wait_port(host.ip, host.port):
            raise LabError(f"sshd for {host.name} did not restart")

    def stop(self) -> None:
        """Stop every sshd (children first) and remove the sudo drop-in and the files."""
        for host in self.hosts:
            if host.pid:
                kill_tree(host.pid)
        self.hosts = []
        SUDOERS.unlink(missing_ok=True)
        if os.environ.get("MAINTKIT_LAB_KEEP") != "1":
            shutil.rmtree(self.base, ignore_errors=True)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _read_pid(path: Path) -> int:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.01)
    raise LabError(f"no pid file {path}")
