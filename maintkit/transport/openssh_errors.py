"""What the OpenSSH transport's failures are called: ``ssh``'s stderr (exit 255, before the
remote shell started) turned into the errors the paramiko path raises, with the same wording
(:mod:`maintkit.transport.ssh_errors`).

====================================================  ==========================================
``No ED25519 host key is known for ...``              :class:`HostKeyError` (unknown key, with the
                                                      offered key's fingerprint from ``ssh-keyscan``)
``REMOTE HOST IDENTIFICATION HAS CHANGED``            :class:`HostKeyError` ("CHANGED")
``Permission denied``, unreadable identity            :class:`HostUnreachable` ("authentication failed")
refused, timed out, unresolvable, no handshake        :class:`HostUnreachable`
a control socket that cannot be used                  :class:`TransportError`
====================================================  ==========================================
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maintkit.errors import HostKeyError, HostUnreachable, TransportError
from maintkit.transport import ssh_errors
from maintkit.transport.ssh_policy import known_host_name, known_hosts_files
from maintkit.transport.ssh_settings import Endpoint

__all__ = ["hop_failure", "ssh_failure"]

_UNKNOWN = re.compile(r"No (\S+) host key is known for")
_OFFERED = re.compile(r"key sent by the remote host is\s+(SHA256:[A-Za-z0-9+/=]+)")
_OFFENDING = re.compile(r"Offending \S+ key in (.+):(\d+)")
_LABEL_TYPES = {"ED25519": "ssh-ed25519", "RSA": "ssh-rsa", "ECDSA": "ecdsa-sha2-nistp256", "DSA": "ssh-dss"}


def ssh_failure(t: ssh_errors.Target, text: str, *, proxied: bool) -> TransportError:
    """The error for ssh's stderr ``text`` on a connection to ``t`` (``proxied``: through a proxy/jump)."""
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return _changed(t, text)
    unknown = _UNKNOWN.search(text)
    if unknown is not None or "Host key verification failed" in text:
        return _unknown(t, unknown.group(1) if unknown else "", proxied=proxied)
    last = _last_line(text)
    if "Permission denied" in text or "Too many authentication failures" in text:
        return ssh_errors.authentication_failed(t, Exception(last))
    if "Connection refused" in text:
        return ssh_errors.unreachable(t, "connection refused")
    if "Could not resolve hostname" in text:
        return HostUnreachable(t.host, f"cannot resolve {t.hostname}: {last.rsplit(': ', 1)[-1]}")
    if "banner exchange" in text or "kex_exchange_identification" in text or "Connection closed by" in text:
        return ssh_errors.no_handshake(t)
    if "timed out" in text:
        return ssh_errors.unreachable(t, f"timed out after {t.connect_timeout:g} s")
    if "ControlPath" in text or "ControlSocket" in text or "Control socket" in text or "mux_client" in text:
        return TransportError(t.host, f"the OpenSSH control socket cannot be used: {last}")
    return ssh_errors.unreachable(t, last or "ssh exited with status 255")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _changed(t: ssh_errors.Target, text: str) -> HostKeyError:
    """CHANGED: the offered fingerprint from ssh's banner, the known one from the offending line."""
    offered = _OFFERED.search(text)
    origin = _OFFENDING.search(text)
    known, path = "unknown", None
    if origin is not None:
        path = origin.group(1)
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(path).read_text().splitlines()[int(origin.group(2)) - 1].split()
            known = ssh_errors.fingerprint(fields[3] if fields[0].startswith("@") else fields[2])
    return ssh_errors.changed_host_key(t, known, offered.group(1) if offered else "unknown", path)


def _unknown(t: ssh_errors.Target, label: str, *, proxied: bool) -> HostKeyError:
    """Unknown key: the paramiko path's message, the offered key read with ``ssh-keyscan`` (a
    host reachable only through a proxy cannot be scanned: the message then names the type)."""
    key_type = _LABEL_TYPES.get(label.upper(), "")
    offered = None if proxied or not key_type else _keyscan(t, key_type)
    if offered is not None:
        return ssh_errors.unknown_host_key(t, key_type, offered, proxied=proxied)
    files = ", ".join(known_hosts_files(t.known_hosts)) or "known_hosts"
    kind = f"an {label} key" if label else "a key"
    return HostKeyError(
        t.host,
        f"the host key for {t.known_host_name} is not in known_hosts ({files}); the server offered {kind}. "
        "If that is the host's key, add its known_hosts line to the inventory's known_hosts file; "
        "or set host_key_policy: accept-new for it in the inventory",
    )


def _keyscan(t: ssh_errors.Target, key_type: str) -> str | None:
    """The base64 host key of type ``key_type`` the host offers (None when it cannot be read)."""
    kind = key_type.removeprefix("ssh-").split("-")[0]
    timeout = max(1, int(t.connect_timeout))
    argv = ["ssh-keyscan", "-T", str(timeout), "-p", str(t.port), "-t", kind, "--", t.hostname]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == key_type:
            return fields[2]
    return None


@dataclass(frozen=True)
class _Hop:
    """A jump host as the messages name it (an :class:`~maintkit.transport.ssh_errors.Target`)."""

    host: str
    hostname: str
    port: int
    user: str | None
    key_filename: str | None
    connect_timeout: float
    known_hosts: Sequence[str]

    @property
    def known_host_name(self) -> str:
        return known_host_name(self.hostname, self.port)


def hop_failure(host: str, hops: Sequence[Endpoint], logs: Sequence[Path], timeout: float) -> TransportError | None:
    """The first jump host that logged a failure, as the paramiko path says it:
    ``HOST: through jump host HOP: ...`` (None when no hop logged one)."""
    for i, (hop, log) in enumerate(zip(hops, logs, strict=True)):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            t = _Hop(hop.name, hop.hostname, hop.port, hop.user, hop.key_file, timeout, hop.known_hosts)
            exc = ssh_failure(t, text, proxied=i > 0)
            return type(exc)(host, f"through jump host {exc}")
    return None
