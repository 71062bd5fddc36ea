"""Dialling a host before the SSH library is loaded.

A run opens its first sites' connections ahead of their first command
(:meth:`maintkit.transport.factory.TransportPool.warm`). The TCP connection itself needs no
SSH library, so it goes out first, from the connecting thread, while paramiko and fabric are
still being imported (about 70 ms): the TCP handshake and the server's start of the session
(sshd forks and re-executes itself for every connection) overlap the imports instead of
following them. The SSH handshake then runs on that socket, with the host key checked exactly as
on a socket paramiko opens itself.

Only direct connections are dialled ahead: a jump host or a proxy command opens the
connection its own way. Nothing here imports paramiko (``tests/lab/test_dial_ahead.py`` checks
that the dial goes out before paramiko, fabric and invoke are loaded).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from maintkit.errors import ConfigError
from maintkit.transport.ssh_settings import ssh_settings

if TYPE_CHECKING:
    from maintkit.inventory import Environment

__all__ = ["Early", "dial_ahead", "discard", "open_tcp"]

#: A connection dialled ahead: its socket, or why it could not be opened.
Early = socket.socket | OSError


def open_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``host:port`` (every address the name resolves to, in order, as
    paramiko tries them) within ``timeout`` seconds, with TCP_NODELAY. Raises OSError."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def dial_ahead(env: Environment, environ: Mapping[str, str] | None, timeout: float) -> Early | None:
    """Open ``env``'s TCP connection now: the socket, the OSError that stopped it, or None when
    ``env`` does not connect straight to its host over paramiko (``connection: local`` or
    ``openssh``, a jump host, a proxy command, settings that do not load: the transport reports
    those itself)."""
    if env.connection in ("local", "openssh"):
        return None
    try:
        settings = ssh_settings(env, os.environ if environ is None else environ)
    except ConfigError:
        return None
    if settings.jumps or settings.proxy_command:
        return None
    try:
        return open_tcp(settings.target.hostname, settings.target.port, timeout)
    except OSError as exc:
        return exc


def discard(early: Early | None) -> None:
    """Close a socket dialled ahead that nobody will use."""
    if isinstance(early, socket.socket):
        early.close()
