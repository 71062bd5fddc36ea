"""Real sshd hosts for tests and benchmarks: one sshd per loopback alias, each with its own key.

Usable outside pytest (a benchmark script, a demo)::

    from tests.lab.sshd import SshLab

    with SshLab() as lab:                       # base directory: a fresh /tmp/maintkit-ssh-*
        lab.start(3)                            # hosts h1..h3 on 127.0.0.10, .11, .12
        h1 = lab.hosts[0]
        site = lab.scratch(h1, "shop")          # a directory owned by deploy
        t = h1.transport()                      # SSHTransport as deploy (or user="root")
        t.run(["id", "-un"]).stdout             # "deploy\\n"
        lab.write_inventory(Path("inv.yml"), {"shop-a": h1, "shop-b": 1})
    # stopped: sshds (children first), sudo drop-in, files

What :meth:`SshLab.start` sets up:

* ``/run/sshd`` (sshd insists on it) and the login user ``deploy`` (``useradd -m``; password
  ``*`` so the account is not "locked" with UsePAM off). It is left in place at the end.
* one client ed25519 key (``lab.client_key``) authorized for ``root`` and ``deploy``
  (``AuthorizedKeysFile <base>/auth/%u``);
* a NOPASSWD sudo rule for deploy in ``/etc/sudoers.d/maintkit-lab-<token>`` (one file per
  lab so that concurrent test sessions do not remove each other's rule), removed by ``stop()``,
  and by a later run's sweep when this one was killed (its owner comment: ``tests/lab/labdirs.py``);
* per host ``hN``: an ed25519 host key, ``sshd_config`` (ListenAddress, Port, HostKey,
  PidFile, StrictModes no, PasswordAuthentication no, UsePAM no, PermitRootLogin
  prohibit-password, MaxStartups 100:30:200, MaxSessions 50, sftp) and a scratch root
  ``<base>/hosts/hN/root`` owned by deploy;
* ``lab.known_hosts``: ``[127.0.0.10]:PORT ssh-ed25519 AAAA...`` for every host.

Ports are picked free per address (``port=None``), so several labs (several test sessions)
can run side by side on the same aliases. One sshd per address gives every host a distinct
key; 60 hosts (127.0.0.10-69) start in a few seconds.

Hosts in network namespaces (for network faults), reached through ``proxy_command``::

    h = lab.start_netns()        # sshd on 10.77.0.11:2201 inside its own namespace
    h.transport().run(["hostname"])
    lab.cut(h)                   # ip -n NS link set eth0 down: commands now time out
    lab.restore(h)
    lab.stop_netns(h)            # processes inside stopped first, then ip netns del

Inventory fields for a lab host (``LabHost.env(path)``): ``host``, ``port``, ``user``,
``key_file``, ``known_hosts`` and, for namespaced hosts, ``proxy_command``. Other
environment keys the inventory accepts: ``path``, ``url``, ``platform``, ``vars``,
``become``, ``host_key_policy``, ``connection`` (ssh|local), ``connect_timeout``,
``command_timeout``.

Set ``MAINTKIT_LAB_KEEP=1`` to keep the base directory (configs, logs) after ``stop()``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.gates import wait_until
from tests.lab.labdirs import lab_tmpdir, sudo_rule
from tests.lab.procs import LabStartError, free_port, log_tail, read_pidfile, run_checked, stop_pid, wait_port

if TYPE_CHECKING:
    from maintkit.transport.ssh import SSHTransport

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
LOGIN_USER = "deploy"
NETNS_PORT = 2201
NETNS_SUBNET = "10.77.0"

#: Kept for compatibility: a lab that cannot start raises this (a :class:`LabStartError`).
LabError = LabStartError

_user_lock = threading.Lock()


@dataclass
class LabHost:
    """One sshd host of the lab.

    ``ip``/``port`` is where it listens (for namespaced hosts: inside the namespace, reached
    with ``proxy_command``). ``root_dir`` is a directory owned by deploy for site paths.
    """

    name: str
    ip: str
    port: int
    client_key: Path
    known_hosts: Path
    root_dir: Path
    hostkey_pub: str
    pid: int = 0
    base: Path = field(default_factory=Path)
    proxy_command: str | None = None
    netns: str | None = None

    @property
    def user_key(self) -> Path:
        """The client private key authorized for root and deploy (same as ``client_key``)."""
        return self.client_key

    @property
    def log(self) -> Path:
        """This host's sshd log."""
        return self.base / "sshd.log"

    def env(self, path: str | Path, *, user: str = LOGIN_USER, **extra: Any) -> dict[str, Any]:
        """Inventory environment fields that reach this host (``extra`` adds or overrides keys)."""
        env: dict[str, Any] = {
            "host": self.ip,
            "port": self.port,
            "user": user,
            "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "path": str(path),
        }
        if self.proxy_command:
            env["proxy_command"] = self.proxy_command
        env.update(extra)
        return env

    def transport(self, *, user: str = LOGIN_USER, **kwargs: Any) -> SSHTransport:
        """An :class:`~maintkit.transport.ssh.SSHTransport` to this host (close it when done)."""
        from maintkit.transport.ssh import SSHTransport

        opts: dict[str, Any] = {
            "port": self.port,
            "user": user,
            "key_filename": str(self.client_key),
            "known_hosts": [str(self.known_hosts)],
            "proxy_command": self.proxy_command,
            "name": self.name,
        }
        opts.update(kwargs)
        return SSHTransport(self.ip, **opts)

    def ssh_argv(self, *command: str, user: str = LOGIN_USER) -> list[str]:
        """An OpenSSH client command line for this host (handy in tests)."""
        argv = ["ssh", "-F", "/dev/null", "-q", "-i", str(self.client_key), "-p", str(self.port),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes"]  # fmt: skip
        if self.proxy_command:
            argv += ["-o", f"ProxyCommand={self.proxy_command}"]
        return [*argv, f"{user}@{self.ip}", *command]


# ---------------------------------------------------------------- machine setup
def ensure_login_user(name: str = LOGIN_USER) -> None:
    """Create the non-root login user if missing (password ``*``: usable with UsePAM no)."""
    with _user_lock:
        try:
            pwd.getpwnam(name)
            return
        except KeyError:
            pass
        proc = subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], capture_output=True, text=True)
        try:
            pwd.getpwnam(name)  # another session may have created it at the same moment
        except KeyError:
            raise LabStartError(f"useradd {name} failed: {proc.stderr.strip()}") from None
        run_checked(["usermod", "-p", "*", name])


ensure_deploy_user = ensure_login_user


def chown_login_user(path: Path, name: str = LOGIN_USER) -> None:
    """Give ``path`` to the login user."""
    pw = pwd.getpwnam(name)
    os.chown(path, pw.pw_uid, pw.pw_gid)


chown_deploy = chown_login_user


def _keygen(path: Path, comment: str) -> None:
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _pub(path: Path) -> str:
    """``ssh-ed25519 AAAA...`` (type and key, no comment) from a .pub file."""
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


def _sshd_config(d: Path, ip: str, port: int, auth: Path) -> str:
    return "\n".join(
        [
            f"Port {port}",
            f"ListenAddress {ip}",
            f"HostKey {d / 'hostkey'}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {auth}/%u",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            f"Subsystem sftp {SFTP_SERVER}",
            "",
        ]
    )


class SshLab:
    """A set of sshd hosts on 127.0.0.N (and optionally in network namespaces)."""

    def __init__(self, base: str | Path | None = None) -> None:
        self.base = Path(base) if base else lab_tmpdir("maintkit-ssh-")
        self.token = secrets.token_hex(3)
        self.hosts: list[LabHost] = []
        self.netns_hosts: list[LabHost] = []
        self.client_key = self.base / "client_ed25519"
        self.known_hosts = self.base / "known_hosts"
        self.auth_dir = self.base / "auth"
        self.sudoers = Path(f"/etc/sudoers.d/maintkit-lab-{self.token}")
        self._hub: str | None = None
        self._lock = threading.Lock()
        self._prepared = False
        self._netns_count = 0

    def __enter__(self) -> SshLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- start
    def _prepare(self) -> None:
        """Everything hosts share: user, client key, authorized keys, sudo rule, known_hosts."""
        if self._prepared:
            return
        if not os.access(SSHD, os.X_OK):
            raise LabStartError(f"{SSHD} is missing: install openssh-server (see the lab packages)")
        ensure_login_user()
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)  # deploy must reach its scratch directories
        if not self.client_key.exists():
            _keygen(self.client_key, "maintkit-lab-client")
        self.auth_dir.mkdir(exist_ok=True)
        for user in ("root", LOGIN_USER):
            (self.auth_dir / user).write_text(_pub(self.client_key) + "\n")
            (self.auth_dir / user).chmod(0o644)
        self._write_sudoers()
        self.known_hosts.touch(mode=0o644)
        self._prepared = True

    def _write_sudoers(self) -> None:
        tmp = self.base / "sudoers"
        tmp.write_text(sudo_rule(f"{LOGIN_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"))  # its owner: a killed run's is swept
        tmp.chmod(0o440)
        run_checked(["visudo", "-c", "-q", "-f", str(tmp)], what="visudo check of the lab sudo rule")
        shutil.copyfile(tmp, self.sudoers)
        self.sudoers.chmod(0o440)

    def start(self, n: int = 3, first_ip: int = 10, port: int | None = None, net: str = "127.0.0") -> SshLab:
        """Start ``n`` more hosts on <net>.<first_ip>, +1, ... and return the lab.

        ``port=None`` picks a free port per address; ``net`` (e.g. ``127.0.1``) lets a
        benchmark start more than 254 hosts. Raises :class:`LabStartError` when a host does
        not come up (the hosts already started are stopped).
        """
        if first_ip < 1 or first_ip + n - 1 > 254:
            raise ValueError(f"addresses must stay within {net}.1-254")
        if not net.startswith("127."):
            raise ValueError("lab hosts live on loopback addresses only")
        self._prepare()
        first_index = len(self.hosts) + 1
        jobs = [(first_index + i, f"{net}.{first_ip + i}") for i in range(n)]
        try:
            with ThreadPoolExecutor(max_workers=min(8, max(1, n))) as pool:
                started = list(pool.map(lambda job: self._start_host(job[0], job[1], port), jobs))
        except BaseException:
            self.stop()
            raise
        self.hosts.extend(started)
        self._append_known_hosts(started)
        return self

    def _host_dir(self, name: str) -> Path:
        d = self.base / "hosts" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _start_host(self, index: int, ip: str, port: int | None) -> LabHost:
        name = f"h{index}"
        d = self._host_dir(name)
        _keygen(d / "hostkey", f"maintkit-lab-{name}")
        root = d / "root"
        root.mkdir(exist_ok=True)
        chown_login_user(root)
        root.chmod(0o755)
        host = LabHost(name, ip, 0, self.client_key, self.known_hosts, root, _pub(d / "hostkey"), base=d)
        self._launch(host, port)
        return host

    def _launch(self, host: LabHost, port: int | None) -> None:
        """Write the config and start sshd (retrying with another port if the one picked got taken)."""
        conf = host.base / "sshd_config"
        last = ""
        for _attempt in range(5):
            host.port = port or free_port(host.ip)
            conf.write_text(_sshd_config(host.base, host.ip, host.port, self.auth_dir))
            (host.base / "sshd.pid").unlink(missing_ok=True)
            proc = subprocess.run([SSHD, "-f", str(conf), "-E", str(host.log)], capture_output=True, text=True)
            if proc.returncode == 0:
                host.pid = read_pidfile(host.base / "sshd.pid", log=host.log)
                wait_port(host.ip, host.port, pid=host.pid, log=host.log)
                return
            last = (proc.stderr.strip() + log_tail(host.log, 600)).strip()
            if port is not None:
                break
        raise LabStartError(f"sshd for {host.name} ({host.ip}:{host.port}) did not start: {last}")

    def _append_known_hosts(self, hosts: list[LabHost]) -> None:
        with self._lock, open(self.known_hosts, "a", encoding="ascii") as fh:
            fh.writelines(f"[{h.ip}]:{h.port} {h.hostkey_pub}\n" for h in hosts)

    # ---------------------------------------------------------------- helpers for tests
    def hostkey_pub(self, host: LabHost) -> str:
        """The host's public key as ``ssh-ed25519 AAAA...``."""
        return host.hostkey_pub

    def known_hosts_line(self, host: LabHost) -> str:
        """The known_hosts line for ``host`` (``[ip]:port type key``)."""
        return f"[{host.ip}]:{host.port} {host.hostkey_pub}"

    def scratch(self, host: LabHost, label: str) -> Path:
        """A fresh directory (mode 0755, owned by deploy) under ``host.root_dir``."""
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:60] or "t"
        path = Path(tempfile.mkdtemp(prefix=f"{safe}-", dir=host.root_dir))
        chown_login_user(path)
        path.chmod(0o755)
        return path

    def rotate_hostkey(self, host: LabHost) -> None:
        """Give a host a new key and restart its sshd (the lab's known_hosts keeps the old key)."""
        if host.netns:
            raise ValueError("rotate_hostkey is for loopback hosts")
        stop_pid(host.pid)
        _keygen(host.base / "hostkey", f"maintkit-lab-{host.name}")
        host.hostkey_pub = _pub(host.base / "hostkey")
        self._launch(host, host.port)

    def inventory_dict(
        self,
        sites: Mapping[str, int | LabHost],
        *,
        env: str = "production",
        user: str = LOGIN_USER,
        **extra: Any,
    ) -> dict[str, Any]:
        """An inventory mapping: each site gets one environment on the given host
        (index into ``hosts`` or a LabHost) with a fresh scratch directory as ``path``."""
        out: dict[str, Any] = {}
        for site, ref in sites.items():
            host = self.hosts[ref] if isinstance(ref, int) else ref
            path = self.scratch(host, site) / "site"
            out[site] = {"environments": {env: host.env(path, user=user, **extra)}}
        return {"sites": out}

    def write_inventory(self, path: Path, sites: Mapping[str, int | LabHost], **kwargs: Any) -> Path:
        """Write :meth:`inventory_dict` as YAML to ``path``."""
        import yaml

        path.write_text(yaml.safe_dump(self.inventory_dict(sites, **kwargs), sort_keys=False))
        return path

    # ---------------------------------------------------------------- network namespaces
    def _ns(self, suffix: str) -> str:
        return f"mk{self.token}-{suffix}"

    def _ensure_hub(self) -> str:
        """The hub namespace with the bridge ``br0`` at 10.77.0.1/24 (created once)."""
        if self._hub is None:
            hub = self._ns("hub")
            run_checked(["ip", "netns", "add", hub])
            self._hub = hub
            for cmd in (
                ["link", "set", "lo", "up"],
                ["link", "add", "br0", "type", "bridge"],
                ["addr", "add", f"{NETNS_SUBNET}.1/24", "dev", "br0"],
                ["link", "set", "br0", "up"],
            ):
                run_checked(["ip", "-n", hub, *cmd])
        return self._hub

    def start_netns(self, hostname: str | None = None) -> LabHost:
        """Start one host in its own network namespace, reachable only through the hub.

        The veth pair is created directly inside the namespaces (nothing appears in the
        root namespace). ``host.proxy_command`` is ``ip netns exec HUB nc IP PORT``.
        """
        self._prepare()
        hub = self._ensure_hub()
        with self._lock:
            self._netns_count += 1  # never reused: a name/address always means the same key
            index = self._netns_count
            if index > 240:
                raise LabStartError("too many namespaced hosts for one lab")
            name = f"n{index}"
            ns = self._ns(name)
            ip = f"{NETNS_SUBNET}.{10 + index}"
            host = LabHost(name, ip, NETNS_PORT, self.client_key, self.known_hosts, Path(), "", netns=ns)
            self.netns_hosts.append(host)
        d = self._host_dir(name)
        host.base = d
        run_checked(["ip", "netns", "add", ns])
        peer = f"v{name}"
        for argv in (
            ["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", hub],
            ["ip", "-n", hub, "link", "set", peer, "master", "br0"],
            ["ip", "-n", hub, "link", "set", peer, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ):
            run_checked(argv)
        _keygen(d / "hostkey", f"maintkit-lab-{name}")
        host.hostkey_pub = _pub(d / "hostkey")
        host.root_dir = d / "root"
        host.root_dir.mkdir(exist_ok=True)
        chown_login_user(host.root_dir)
        host.root_dir.chmod(0o755)
        conf = d / "sshd_config"
        conf.write_text(_sshd_config(d, ip, NETNS_PORT, self.auth_dir))
        label = hostname or f"lab-{name}"
        script = f"hostname {label} && exec {SSHD} -f {conf} -E {host.log}"
        run_checked(["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c", script], what=f"sshd in {ns}")
        host.pid = read_pidfile(d / "sshd.pid", log=host.log)
        host.proxy_command = f"ip netns exec {hub} nc {ip} {NETNS_PORT}"
        self._wait_netns_port(host)
        self._append_known_hosts([host])
        return host

    def _wait_netns_port(self, host: LabHost, timeout: float = 10.0) -> None:
        assert self._hub is not None
        probe = ["ip", "netns", "exec", self._hub, "nc", "-z", "-w", "1", host.ip, str(host.port)]
        wait_until(
            lambda: subprocess.run(probe, capture_output=True, check=False).returncode == 0,
            f"sshd in {host.netns} answers",
            timeout,
            explain=lambda: log_tail(host.log),
            error=LabStartError,
        )

    def cut(self, host: LabHost) -> None:
        """Cut the host's network (``ip -n NS link set eth0 down``): packets vanish, no RST."""
        run_checked(["ip", "-n", _netns(host), "link", "set", "eth0", "down"])

    def restore(self, host: LabHost) -> None:
        """Bring the host's network back up; return once its sshd answers from the hub again
        (after a cut the hub's ARP entry is FAILED for a moment: "No route to host")."""
        run_checked(["ip", "-n", _netns(host), "link", "set", "eth0", "up"])
        self._wait_netns_port(host)

    def stop_netns(self, host: LabHost) -> None:
        """Stop everything running in the host's namespace (sshd children first), delete it."""
        ns = _netns(host)
        if host.pid:
            stop_pid(host.pid)
            host.pid = 0
        _kill_namespace(ns)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        with self._lock:
            if host in self.netns_hosts:
                self.netns_hosts.remove(host)
            self._forget_known_host(host)

    def _forget_known_host(self, host: LabHost) -> None:
        """Drop a host's line from the lab's known_hosts (you hold the lock)."""
        with contextlib.suppress(FileNotFoundError):
            line = f"[{host.ip}]:{host.port} {host.hostkey_pub}"
            kept = [x for x in self.known_hosts.read_text().splitlines(keepends=True) if x.strip() != line]
            self.known_hosts.write_text("".join(kept))

    # ---------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop every sshd (children first), delete namespaces, remove the sudo rule and files."""
        for host in list(self.netns_hosts):
            self.stop_netns(host)
        if self._hub is not None:
            _kill_namespace(self._hub)
            subprocess.run(["ip", "netns", "del", self._hub], capture_output=True, check=False)
            self._hub = None
        for host in self.hosts:
            if host.pid:
                stop_pid(host.pid)
                host.pid = 0
        self.hosts = []
        self.sudoers.unlink(missing_ok=True)
        if os.environ.get("MAINTKIT_LAB_KEEP") != "1":
            shutil.rmtree(self.base, ignore_errors=True)


def _netns(host: LabHost) -> str:
    if not host.netns:
        raise ValueError(f"{host.name} is not in a network namespace")
    return host.netns


def _kill_namespace(ns: str) -> None:
    """Stop every process still inside namespace ``ns`` (each with its children first)."""
    proc = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    for pid in (int(p) for p in proc.stdout.split() if p.isdigit()):
        with contextlib.suppress(ProcessLookupError):
            stop_pid(pid, grace=2.0)
