"""What SSH failures are called: the messages of the errors raised at the SSH boundary.

``maintkit/transport/ssh.py`` recognises the library's exceptions; the errors and their
messages are made here:

==========================================================  ===================================
unknown host key                                            :class:`HostKeyError`
changed host key                                            :class:`HostKeyError` ("CHANGED")
refused, timed out, name not resolved, EOF in the banner,   :class:`HostUnreachable`
proxy command failure, connection lost during a command
no reply to keepalives while connected                      :class:`ConnectionLost` (a HostUnreachable)
authentication failed (key not accepted, unreadable key)    :class:`HostUnreachable` (message
                                                            says "authentication failed")
server refuses another session (MaxSessions)                :class:`TransportError`
non-zero exit with ``check=True``, timeout                  :class:`CommandFailed` (``.result``)
==========================================================  ===================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from maintkit._text import head
from maintkit.errors import ConnectionLost, HostKeyError, HostUnreachable
from maintkit.transport.ssh_policy import known_hosts_files

__all__ = [
    "Target",
    "authentication_failed",
    "changed_host_key",
    "connection_lost",
    "is_handshake_failure",
    "no_handshake",
    "unknown_host_key",
    "unreachable",
]


class Target(Protocol):
    """What the messages name: the host as the inventory calls it and where it was reached."""

    @property
    def host(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str | None: ...
    @property
    def key_filename(self) -> str | None: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def known_hosts(self) -> Sequence[str]: ...
    @property
    def known_host_name(self) -> str: ...


def _where(t: Target) -> str:
    return f"{t.hostname}:{t.port}"


def unknown_host_key(t: Target) -> HostKeyError:
    """The host's key is not in any known_hosts file (strict policy)."""
    files = ", ".join(known_hosts_files(t.known_hosts)) or "known_hosts"
    return HostKeyError(
        t.host,
        f"the host key for {t.known_host_name} is not in known_hosts ({files}); add it "
        f"(ssh-keyscan -p {t.port} {t.hostname} >> KNOWN_HOSTS, after checking the "
        "fingerprint) or set host_key_policy: accept-new",
    )


def changed_host_key(t: Target, known: str, offered: str) -> HostKeyError:
    """The host offered another key than the known one (fingerprints)."""
    return HostKeyError(
        t.host,
        f"the host key for {t.known_host_name} has CHANGED (known: {known}, "
        f"offered: {offered}). This may be a man-in-the-middle attack; refusing to connect. "
        f"If the server was really reinstalled, remove the old entry (ssh-keygen -R '{t.known_host_name}') "
        "and add the new key after checking it",
    )


def authentication_failed(t: Target, exc: BaseException) -> HostUnreachable:
    """The server did not accept the key."""
    who = t.user or "(local user)"
    key = f" with key {t.key_filename}" if t.key_filename else ""
    return HostUnreachable(t.host, f"authentication failed for {who}@{_where(t)}{key}: {exc}")


def unreachable(t: Target, why: str) -> HostUnreachable:
    """``cannot connect to HOST:PORT: why``."""
    return HostUnreachable(t.host, f"cannot connect to {_where(t)}: {why}")


def no_handshake(t: Target) -> HostUnreachable:
    """The TCP connection came up but no SSH handshake completed."""
    return unreachable(
        t,
        f"no SSH handshake within {t.connect_timeout:g} s "
        "(connection closed or timed out: host down, network cut, or not an SSH server)",
    )


def is_handshake_failure(exc: BaseException) -> bool:
    """paramiko's ways of saying the SSH handshake never completed."""
    text = str(exc)
    return isinstance(exc, EOFError) or any(
        part in text for part in ("protocol banner", "No existing session", "Negotiation failed")
    )


def connection_lost(t: Target, lost_after: float | None, line: str) -> HostUnreachable:
    """The error for a connection that died while ``line`` ran (``lost_after``: keepalive silence)."""
    if lost_after is not None:
        return ConnectionLost(
            t.host,
            f"connection to {_where(t)} lost (no reply to keepalive for "
            f"{lost_after:.0f} s) while running: {head(line, 200)}",
        )
    return HostUnreachable(t.host, f"connection lost while running: {head(line, 200)}")
