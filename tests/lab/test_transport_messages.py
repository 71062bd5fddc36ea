"""Messages a user can act on, against the real lab sshd and a closed port: the exact text."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from maintkit.errors import HostKeyError
from maintkit.results import StepStatus
from maintkit.transport.ssh import SSHTransport
from tests.lab.procs import free_port
from tests.lab.sshd import LabHost, SshLab
from tests.runs import events, local_env, one_site, run, write_inventory

pytestmark = pytest.mark.lab


@pytest.fixture
def fresh(ssh_lab: SshLab) -> Iterator[Callable[..., SSHTransport]]:
    made: list[SSHTransport] = []

    def make(host: LabHost, **kwargs: Any) -> SSHTransport:
        t = host.transport(**kwargs)
        made.append(t)
        return t

    try:
        yield make
    finally:
        for t in made:
            t.close()


def openssh_fingerprint(host: LabHost) -> str:
    """The host key's fingerprint as OpenSSH's own ssh-keygen prints it (independent of maintkit)."""
    pub = host.base / "hostkey.pub"
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def test_unknown_host_key_shows_the_offered_fingerprint_and_how_to_accept_it(
    ssh_hosts: list[tuple[LabHost, Path]], fresh: Callable[..., SSHTransport], tmp_path: Path
) -> None:
    host, scratch = ssh_hosts[0]
    known = tmp_path / "my known_hosts"
    known.write_text("")
    t = fresh(host, known_hosts=[str(known)])
    with pytest.raises(HostKeyError) as info:
        t.run(["touch", f"{scratch}/ran"])
    fp = openssh_fingerprint(host)
    assert fp.startswith("SHA256:")
    assert str(info.value) == (
        f"{host.name}: the host key for [{host.ip}]:{host.port} is not in known_hosts ({known}); "
        f"the server offered ED25519 key fingerprint {fp}. If that is the host's key (on the host: "
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), add it: "
        f"ssh-keyscan -p {host.port} -t ed25519 {host.ip} >> '{known}'; "
        "or set host_key_policy: accept-new for it in the inventory"
    )
    assert not (scratch / "ran").exists()
    # the advice works as printed: the scan adds the key and the same transport settings connect
    subprocess.run(["sh", "-c", str(info.value).split("add it: ")[1].split(";")[0]], check=True, capture_output=True)
    assert known.read_text().split() == [f"[{host.ip}]:{host.port}", *host.hostkey_pub.split()]
    assert fresh(host, known_hosts=[str(known)]).run(["id", "-un"]).stdout == "deploy\n"


def test_changed_host_key_hint_names_the_custom_known_hosts_file(
    ssh_hosts: list[tuple[LabHost, Path]], fresh: Callable[..., SSHTransport], tmp_path: Path
) -> None:
    (h1, _), (h2, scratch), _ = ssh_hosts
    known = tmp_path / "custom dir" / "known_hosts"
    known.parent.mkdir()
    known.write_text(f"[{h2.ip}]:{h2.port} {h1.hostkey_pub}\n")  # h1's key claimed for h2
    t = fresh(h2, known_hosts=[str(known)])
    with pytest.raises(HostKeyError) as info:
        t.run(["touch", f"{scratch}/ran"])
    hint = f"ssh-keygen -R '[{h2.ip}]:{h2.port}' -f '{known}'"
    assert str(info.value) == (
        f"{h2.name}: the host key for [{h2.ip}]:{h2.port} has CHANGED (known: {openssh_fingerprint(h1)}, "
        f"offered: {openssh_fingerprint(h2)}). This may be a man-in-the-middle attack; refusing to connect. "
        f"If the server was really reinstalled, remove the old entry ({hint}) and add the new key after checking it"
    )
    assert not (scratch / "ran").exists()
    # the hint works as printed: the old entry is gone from that very file
    subprocess.run(["sh", "-c", hint], check=True, capture_output=True)
    assert h1.hostkey_pub not in known.read_text()


def test_smoke_check_against_a_closed_port_says_connection_refused(tmp_path: Path) -> None:
    port = free_port()
    site = tmp_path / "site"
    site.mkdir()
    inv = write_inventory(tmp_path, one_site(local_env(site, url=f"http://127.0.0.1:{port}")))
    playbook = """\
name: smoke
stages:
  - env: production
    steps:
      - {id: smoke, action: http.check, with: {paths: [/cart/], retries: 1, timeout: 2}}
"""
    result = run(playbook, inv, tmp_path / "state")
    step = result.sites[0].steps[0]
    assert step.status is StepStatus.FAILED
    assert (
        step.error
        == f"check: 1 of 1 checks failed: GET http://127.0.0.1:{port}/cart/: connection failed: Connection refused"
    )
    logged = [e for e in events(result.run_dir) if e.get("event") == "http.request"]
    refused = (None, "connection failed: Connection refused")
    assert [(e["attempt"], e["status"], e["reason"]) for e in logged] == [(1, *refused), (2, *refused)]
