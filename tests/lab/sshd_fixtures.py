"""pytest fixtures: real sshd hosts on loopback (see tests/lab/sshd.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.sshd import LabHost, SshLab


@pytest.fixture(scope="session")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    """Three sshd hosts (127.0.0.10-12) for the whole session; users root and deploy (sudo)."""
    import tempfile

    lab = SshLab(Path(tempfile.mkdtemp(prefix="maintkit-ssh-"))).start(3)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def ssh_hosts(ssh_lab: SshLab, request: pytest.FixtureRequest) -> list[tuple[LabHost, Path]]:
    """The lab hosts, each with a fresh scratch directory (owned by deploy) for this test."""
    return [(h, ssh_lab.scratch(h, request.node.name)) for h in ssh_lab.hosts]
