"""Gates for tests that must act while a command is in a known state: FIFOs, never timing.

A gated command announces that it started by writing to the ``started`` FIFO (``echo go >
started``: the write blocks until the test listens) and then waits by reading the ``gate``
FIFO (``read x < gate``) until the test opens it. The test wakes on the event itself; the
only clock is the generous deadline that turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

#: shell that announces the start and then waits for the gate (both FIFOs made by :func:`make_gates`)
GATED_SHELL = "echo go > {dir}/started; read x < {dir}/gate"


def make_gates(directory: Path, owner: str | None = None) -> None:
    """Create the ``started`` and ``gate`` FIFOs in ``directory`` (writable by ``owner``)."""
    for name in ("started", "gate"):
        os.mkfifo(directory / name, 0o666)
        os.chmod(directory / name, 0o666)
        if owner:
            shutil.chown(directory / name, owner, owner)


def wait_started(directory: Path, proc: subprocess.Popen[str] | None = None, limit: float = 30.0) -> None:
    """Block until the gated command wrote to ``started`` (fails if ``proc`` dies or after ``limit``)."""
    fd = os.open(directory / "started", os.O_RDONLY | os.O_NONBLOCK)
    deadline = time.monotonic() + limit
    try:
        while True:
            # select wakes on the write itself; its timeout only lets us notice a dead process
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                os.read(fd, 64)
                return
            if proc is not None:
                assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{directory}/started never written"
    finally:
        os.close(fd)


def open_gate(directory: Path) -> None:
    """Let a gated command that is still waiting go on (after a kill it may be gone: then nobody reads)."""
    with contextlib.suppress(OSError):
        os.close(os.open(directory / "gate", os.O_WRONLY | os.O_NONBLOCK))


def wait_until(predicate: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """For state with no event to wait on (a transport noticing a dead peer): poll, fail after ``limit``."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)
