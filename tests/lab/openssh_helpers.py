"""OpenSSH transport helpers for lab tests: a private control directory whose masters are
ended (``ssh -O exit``) when the test ends, transports to lab hosts, and the count of
authentications a lab sshd accepted (from its log)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from maintkit.errors import HostKeyError
from maintkit.transport.openssh import OpenSSHTransport
from maintkit.transport.openssh_control import check_master, close_master
from tests.gates import make_gates, wait_until
from tests.lab.procs import cmdline_names
from tests.lab.sshd import LOGIN_USER, LabHost, chown_login_user


@contextlib.contextmanager
def control_home() -> Iterator[Path]:
    """A short directory (sockets must fit in 108 bytes) to use as ``XDG_CACHE_HOME``; on exit
    every master under it is ended with ``ssh -O exit`` and the directory removed."""
    home = Path(tempfile.mkdtemp(prefix="mk", dir="/tmp"))
    try:
        yield home
    finally:
        end_masters(home / "maintkit" / "ssh")
        shutil.rmtree(home, ignore_errors=True)


def end_masters(directory: Path) -> None:
    """``ssh -O exit`` every control socket in ``directory`` and wait until none answers."""
    if not directory.is_dir():
        return
    socks = [p for p in directory.iterdir() if p.is_socket()]
    for sock in socks:
        close_master(sock)
    wait_until(lambda: all(check_master(s) is None for s in socks), "every master ended", limit=10)


def openssh_transport(host: LabHost, home: Path, *, user: str = LOGIN_USER, **kwargs: Any) -> OpenSSHTransport:
    """An OpenSSHTransport to ``host`` with its sockets under ``home`` (an ``XDG_CACHE_HOME``)."""
    opts: dict[str, Any] = {
        "port": host.port,
        "user": user,
        "key_filename": str(host.client_key),
        "known_hosts": [str(host.known_hosts)],
        "name": host.name,
        "control_dir": home / "maintkit" / "ssh",
    }
    opts.update(kwargs)
    return OpenSSHTransport(host.ip, **opts)


def sockets(home: Path) -> list[Path]:
    """The control sockets under ``home`` (an ``XDG_CACHE_HOME``), sorted."""
    d = home / "maintkit" / "ssh"
    return sorted(p for p in d.iterdir() if p.is_socket()) if d.is_dir() else []


def paramiko_host_key_error(host: LabHost, known_hosts: Path) -> str:
    """The message the built-in (paramiko) client refuses ``host`` with under ``known_hosts``."""
    t = host.transport(known_hosts=[str(known_hosts)])
    try:
        with pytest.raises(HostKeyError) as info:
            t.run(["true"])
    finally:
        t.close()
    return str(info.value)


def authentications(host: LabHost) -> int:
    """How many logins the host's sshd accepted so far (``Accepted publickey`` lines of its log)."""
    try:
        return host.log.read_text(errors="replace").count("Accepted publickey for ")
    except FileNotFoundError:
        return 0


def gate_dir(scratch: Path) -> Path:
    """``scratch/g`` (owned by the login user) with the ``started`` and ``gate`` FIFOs."""
    d = scratch / "g"
    d.mkdir()
    chown_login_user(d)
    make_gates(d, LOGIN_USER)
    return d


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException | str]]:
    """``call()`` started in a thread; the list gets "returned" or the exception it raised."""
    outcome: list[BaseException | str] = []

    def work() -> None:
        try:
            call()
            outcome.append("returned")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    return worker, outcome


def endless() -> tuple[str, str]:
    """A remote command that never ends on its own, and the mark it runs under: ``exec sleep``
    with a duration no other process uses (found in any process's command line)."""
    mark = f"3600.{secrets.randbelow(10**6):06d}"
    return f"exec sleep {mark}", mark


def running(mark: str) -> bool:
    """Whether a process on this machine (the lab hosts run here) carries ``mark`` in its command line."""
    return cmdline_names(mark)
