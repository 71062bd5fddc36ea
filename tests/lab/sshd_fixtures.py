"""pytest fixtures: real sshd hosts on loopback (see :mod:`tests.lab.sshd`).

Registered as a plugin by ``tests/conftest.py``. Nothing starts unless a test asks for it.

* ``ssh_lab`` (session): an :class:`~tests.lab.sshd.SshLab` with three hosts h1-h3 on
  127.0.0.10-12 (free ports), users root and deploy (NOPASSWD sudo), one client key,
  a known_hosts file listing all three.
* ``ssh_hosts`` (function): ``[(host, scratch_dir), ...]`` for h1-h3, each scratch directory
  fresh for this test and owned by deploy. ``host.env(scratch / "site")`` gives the
  inventory fields; ``host.transport()`` an SSHTransport as deploy.
* ``netns_host`` (function): one host in its own network namespace, reached through
  ``host.proxy_command``; ``ssh_lab.cut(host)`` / ``ssh_lab.restore(host)`` cut and restore
  its link. Torn down after the test (processes inside first, then the namespace).

A host that cannot start raises, so the tests that need it fail (they never skip).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.sshd import LabHost, SshLab


@pytest.fixture(scope="session")
def ssh_lab() -> Iterator[SshLab]:
    """Three sshd hosts (127.0.0.10-12) for the whole session; users root and deploy (sudo)."""
    lab = SshLab()
    try:
        lab.start(3)
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def ssh_hosts(ssh_lab: SshLab, request: pytest.FixtureRequest) -> list[tuple[LabHost, Path]]:
    """The lab hosts, each with a fresh scratch directory (owned by deploy) for this test."""
    return [(h, ssh_lab.scratch(h, request.node.name)) for h in ssh_lab.hosts]


@pytest.fixture
def netns_host(ssh_lab: SshLab) -> Iterator[LabHost]:
    """A host in its own network namespace (cut its link with ``ssh_lab.cut(host)``)."""
    host = ssh_lab.start_netns()
    try:
        yield host
    finally:
        ssh_lab.stop_netns(host)
