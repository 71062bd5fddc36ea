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

import base64
import hashlib
import os
import socket
from collections.abc import Sequence
from shlex import quote
from typing import Protocol

from maintkit._text import head
from maintkit.errors import ConnectionLost, HostKeyError, HostUnreachable
from maintkit.transport.ssh_policy import USER_KNOWN_HOSTS, accept_new_target, known_hosts_files

__all__ = [
    "Target",
    "authentication_failed",
    "changed_host_key",
    "connection_lost",
    "fingerprint",
    "is_handshake_failure",
    "key_label",
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


def fingerprint(key_b64: str) -> str:
    """A host key's fingerprint as OpenSSH prints it: ``SHA256:`` and unpadded base64."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def key_label(key_type: str) -> str:
    """How OpenSSH names a key type in its messages (``ssh-ed25519`` -> ``ED25519``)."""
    return _KEY_LABELS.get(key_type, key_type.upper())


_KEY_LABELS = {
    "ssh-ed25519": "ED25519",
    "ssh-rsa": "RSA",
    "ssh-dss": "DSA",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
    "sk-ssh-ed25519@openssh.com": "ED25519-SK",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
}
_KEYSCAN_TYPES = {"ED25519": "ed25519", "RSA": "rsa", "DSA": "dsa", "ECDSA": "ecdsa"}


def unknown_host_key(t: Target, key_type: str, key_b64: str, *, proxied: bool = False) -> HostKeyError:
    """The host's key is not in any known_hosts file (strict policy): the offered key's type
    and fingerprint, and how to accept it (``ssh-keyscan``, or the known_hosts line itself
    when the host is only reachable through a proxy or jump host), or ``accept-new``."""
    files = ", ".join(known_hosts_files(t.known_hosts)) or "known_hosts"
    label = key_label(key_type)
    target = quote(str(accept_new_target(t.known_hosts)))
    if proxied:
        add = f"echo {quote(f'{t.known_host_name} {key_type} {key_b64}')} >> {target}"
    else:
        port = f"-p {t.port} " if t.port != 22 else ""
        kind = f"-t {_KEYSCAN_TYPES[label]} " if label in _KEYSCAN_TYPES else ""
        add = f"ssh-keyscan {port}{kind}{quote(t.hostname)} >> {target}"
    return HostKeyError(
        t.host,
        f"the host key for {t.known_host_name} is not in known_hosts ({files}); the server offered "
        f"{label} key fingerprint {fingerprint(key_b64)}. If that is the host's key (on the host: "
        f"ssh-keygen -lf /etc/ssh/ssh_host_{_KEYSCAN_TYPES.get(label, 'ed25519')}_key.pub), add it: "
        f"{add}; or set host_key_policy: accept-new for it in the inventory",
    )


def changed_host_key(t: Target, known: str, offered: str, known_in: str | None = None) -> HostKeyError:
    """The host offered another key than the known one (fingerprints); ``known_in``: the
    known_hosts file holding the old key (named with ``-f`` unless it is the user's own)."""
    where = ""
    if known_in and os.path.abspath(known_in) != os.path.abspath(os.path.expanduser(USER_KNOWN_HOSTS)):
        where = f" -f {quote(known_in)}"
    return HostKeyError(
        t.host,
        f"the host key for {t.known_host_name} has CHANGED (known: {known}, "
        f"offered: {offered}). This may be a man-in-the-middle attack; refusing to connect. "
        f"If the server was really reinstalled, remove the old entry (ssh-keygen -R {quote(t.known_host_name)}{where}) "
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


def tcp_failure(t: Target, exc: BaseException) -> HostUnreachable | None:
    """The error for a TCP connection that could not be opened (refused, a name that does not
    resolve, no answer within ``connect_timeout``); None for any other exception."""
    if isinstance(exc, ConnectionRefusedError):
        return unreachable(t, "connection refused")
    if isinstance(exc, socket.gaierror):
        return HostUnreachable(t.host, f"cannot resolve {t.hostname}: {exc.strerror or exc}")
    if isinstance(exc, TimeoutError):
        return unreachable(t, f"timed out after {t.connect_timeout:g} s")
    return None


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
