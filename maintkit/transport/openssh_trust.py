"""What a reused OpenSSH connection's trust rests on, as a digest in its control socket's name.

A master checks the host key once, when it opens; every later session on it is trusted on
that check. So that a run never reuses a master opened under other trust than its own, the
socket's name (:func:`~maintkit.transport.openssh_control.socket_name`) carries, besides the
settings, a digest of what the check and the login read (:func:`trust_digest`):

* of every known_hosts file, the entries that can decide the host's key: each line that
  names the host (``host`` or ``[host]:port``, plainly or hashed: a hashed ``|1|`` name is
  tried as OpenSSH tries it), and every line OpenSSH could match to it without naming it
  (wildcards or negations, ``@cert-authority`` and ``@revoked``, a malformed line), in file
  order. With an ssh config file read, the whole file (its ``HostKeyAlias`` could make
  another name the one looked up);
* the contents of the key file and of the ssh config file, and of every file that config
  includes (``Include``, nested, whatever block it sits in; a relative name both beside the
  including file and in ``~/.ssh``, where ``ssh -F`` reads it), with the list of those files, so
  a file added to an included folder counts as well.

Names are compared as OpenSSH compares them: in lower case. A key replaced or removed in
known_hosts, a new key file or an edited config therefore makes the next run open (and check)
a connection of its own at once, and that run asks the master opened before to take no new
session (:func:`~maintkit.transport.openssh_control.stop_superseded`). An entry added or
removed for another host changes nothing. Files are read once per process while their size
and mtime stay the same (:func:`~maintkit.transport.ssh_policy.parsed_once`, as on the
paramiko path).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from maintkit.transport.ssh_config import MAX_INCLUDE_DEPTH, include_candidates, include_patterns
from maintkit.transport.ssh_policy import parsed_once

__all__ = ["config_files", "host_names", "trust_digest"]

T = TypeVar("T")

#: a host field with one of these can match a host without naming it
_PATTERN_CHARS = frozenset("*?!")
_FIELDS = re.compile(r"[ \t]+")
#: a hashed name is OpenSSH's HMAC-SHA1 of the name (its format, read here, not a choice of ours)
_SHA1_SIZE = 20
#: how much of a config file is read for its Include lines (maintkit's own reader refuses more)
_CONFIG_BYTES = 1 << 20


@dataclass
class _KnownHosts:
    """One known_hosts file: its lines by the plain names they carry, its hashed names (tried
    one by one, as OpenSSH does), and the lines that may match any host."""

    plain: dict[str, list[int]] = field(default_factory=dict)
    hashed: list[tuple[bytes, bytes, int]] = field(default_factory=list)
    anyone: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> _KnownHosts:
        """The file's lines as OpenSSH reads them: split on newlines, fields on spaces and tabs."""
        out = cls()
        for raw in text.split("\n"):
            line = raw.strip(" \t\r")
            if line and not line.startswith("#"):
                out._add(line)
        return out

    def _add(self, line: str) -> None:
        i = len(self.lines)
        self.lines.append(line)
        fields = _FIELDS.split(line)
        hosts = fields[0]
        if line.startswith("@") or len(fields) < 2:
            self.anyone.append(i)  # a marker applies by its pattern; a broken line is kept whole
        elif hosts.startswith("|"):
            hashed = _hashed(hosts)
            if hashed is None:
                self.anyone.append(i)
            else:
                self.hashed.append((*hashed, i))
        else:
            names = hosts.split(",")
            if any(_PATTERN_CHARS & set(n) for n in names):
                self.anyone.append(i)
            for name in dict.fromkeys(n.lower() for n in names):
                self.plain.setdefault(name, []).append(i)

    def entries_for(self, names: Sequence[str]) -> list[str]:
        """The lines that name one of ``names`` or may match any host, in file order."""
        found = set(self.anyone)
        lowered = [n.lower() for n in names]
        for name in lowered:
            found.update(self.plain.get(name, ()))
        encoded = [n.encode() for n in lowered]
        for salt, expected, i in self.hashed:
            if any(hmac.compare_digest(hmac.digest(salt, n, "sha1"), expected) for n in encoded):
                found.add(i)
        return [self.lines[i] for i in sorted(found)]


def _hashed(hosts: str) -> tuple[bytes, bytes] | None:
    """The salt and hash of a hashed host field (``|1|salt|hash``, HMAC-SHA1), None when malformed."""
    parts = hosts.split("|")
    if len(parts) != 4 or parts[0] or parts[1] != "1":
        return None
    try:
        salt, expected = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except (ValueError, binascii.Error):
        return None
    return (salt, expected) if len(expected) == _SHA1_SIZE else None


def _bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _table(path: str) -> _KnownHosts:
    return _KnownHosts.parse(_bytes(path).decode("utf-8", "replace"))


def _cached(path: str, parse: Callable[[str], T], kind: str) -> T | str:
    """``parse(path)`` once per file version (:func:`~maintkit.transport.ssh_policy.parsed_once`),
    or a word for why the file cannot be read (which the digest then carries)."""
    try:
        return cast(T, parsed_once(path, parse, kind=kind))
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.errno})"


def _sha256(path: str) -> bytes:
    return hashlib.sha256(_bytes(path)).digest()


def _config(path: str) -> tuple[bytes, list[str]]:
    """A config file's SHA-256 and the names its ``Include`` lines give (one read per version)."""
    data = _bytes(path)
    return hashlib.sha256(data).digest(), include_patterns(data[:_CONFIG_BYTES].decode("utf-8", "replace"))


def config_files(config: str) -> list[tuple[str, bytes | str]]:
    """``config`` and every file it includes, nested (each file read once), in reading order:
    each with its SHA-256, or a word for why it cannot be read."""
    out: list[tuple[str, bytes | str]] = []
    seen: set[str] = set()

    def walk(path: str, depth: int) -> None:
        read = _cached(path, _config, "openssh-trust-config")
        out.append((path, read if isinstance(read, str) else read[0]))
        if path in seen or depth >= MAX_INCLUDE_DEPTH or isinstance(read, str):
            return
        seen.add(path)
        for pattern in read[1]:
            for found in include_candidates(path, pattern):
                walk(found, depth + 1)

    walk(config, 0)
    return out


def host_names(hostname: str, port: int) -> tuple[str, str]:
    """The names OpenSSH looks a host up by in known_hosts: ``host`` (port 22) and ``[host]:port``."""
    return hostname, f"[{hostname}]:{port}"


def trust_digest(
    known_hosts: Sequence[str],
    names: Sequence[str],
    *,
    key_file: str | None = None,
    ssh_config: str | None = None,
) -> str:
    """A digest of the known_hosts entries that concern ``names`` (every entry with an ssh
    config), the key file's and the config files' contents (see the module's docstring)."""
    h = hashlib.sha256()
    for path in map(os.path.expanduser, known_hosts):
        h.update(b"\0known_hosts\0" + os.fsencode(path) + b"\0")
        if ssh_config:
            whole = _cached(path, _bytes, "openssh-trust-bytes")
            h.update(whole.encode() if isinstance(whole, str) else whole)
            continue
        table = _cached(path, _table, "openssh-trust-known-hosts")
        lines = [table] if isinstance(table, str) else table.entries_for(names)
        h.update("\n".join(lines).encode("utf-8", "replace"))
    files: list[tuple[str, str, bytes | str]] = []
    if key_file:
        key = os.path.expanduser(key_file)
        files.append(("key", key, _cached(key, _sha256, "openssh-trust-sha256")))
    if ssh_config:
        files += [("config", path, sha) for path, sha in config_files(os.path.expanduser(ssh_config))]
    for label, path, sha in files:
        h.update(f"\0{label}\0".encode() + os.fsencode(path) + b"\0")
        h.update(sha.encode() if isinstance(sha, str) else sha)
    return h.hexdigest()[:16]
