"""Gates for tests that must act while a command is in a known state: FIFOs, never timing.

A gated command first opens the ``gate`` FIFO read-write (``exec 3<> gate``: never blocks,
and from then on a writer always finds a reader), announces that it started by writing to the
``started`` FIFO (``echo go > started``: the write blocks until the test listens) and then
waits for one line on the gate (``read x <&3``) until the test writes it. The test wakes on
the event itself; the only clock is the generous deadline that turns a hang into a failure.
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
from typing import Any, NoReturn

#: shell that announces the start and then waits for the gate (both FIFOs made by :func:`make_gates`)
GATED_SHELL = "exec 3<> {dir}/gate; echo go > {dir}/started; read x <&3; exec 3<&-"


def gated_shell(directory: str | Path, then: str = "") -> str:
    """:data:`GATED_SHELL` for ``directory`` (a path, or a template such as ``{{ env.path }}``), then ``then``."""
    return GATED_SHELL.format(dir=directory) + (f"; {then}" if then else "")


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
    """Let a gated command that is still waiting go on: write the line it reads (its ``read``
    succeeds). After a kill it may be gone: then nobody reads and nothing is written."""
    with contextlib.suppress(OSError):
        fd = os.open(directory / "gate", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"go\n")
        finally:
            os.close(fd)


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    limit: float = 30.0,
    *,
    proc: subprocess.Popen[Any] | None = None,
    explain: Callable[[], str] | None = None,
    error: type[Exception] = AssertionError,
) -> None:
    """The suite's one polling helper, for state with no event to wait on (a server coming up,
    a transport noticing a dead peer): check ``predicate`` every 20 ms.

    Fails with ``error`` after ``limit`` seconds, or at once when ``proc`` (the process that
    should bring the state about) has exited; ``explain()`` (a log tail) ends the message.
    """
    deadline = time.monotonic() + limit
    while not predicate():
        if proc is not None and proc.poll() is not None:
            _fail(error, f"{what}: the process exited with status {proc.returncode}", explain)
        if time.monotonic() >= deadline:
            _fail(error, f"never happened within {limit:g} s: {what}", explain)
        time.sleep(0.02)


def _fail(error: type[Exception], message: str, explain: Callable[[], str] | None) -> NoReturn:
    raise error(f"{message}; {explain()}" if explain is not None else message)
