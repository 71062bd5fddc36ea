"""OpenSSH client configuration (``~/.ssh/config``), read only when the inventory asks for it.

A small parser of ssh_config(5) that needs no SSH library and runs nothing: ``Host``
blocks with patterns (``*``, ``?``, ``!negation``), ``Match all`` / ``Match host`` /
``Match originalhost``, ``Include`` (globs, relative to the including file's directory,
nested at most :data:`MAX_INCLUDE_DEPTH` deep) and, like OpenSSH, the first value found for
a keyword wins (``IdentityFile`` accumulates). ``Match`` blocks with other criteria
(``exec``, ``user``, ``canonical``...) are never applied: nothing is executed to decide.

Only connection settings are taken: ``HostName``, ``Port``, ``User``, ``IdentityFile``,
``IdentitiesOnly``, ``ProxyJump``, ``ProxyCommand`` and ``UserKnownHostsFile``. Everything
that would weaken maintkit (``StrictHostKeyChecking``, ``ConnectTimeout``...) is ignored:
host keys and timeouts are exactly as strict as without the file.

Like OpenSSH, a config file that others may write (group/world-writable, or owned by
someone else than the user or root) is refused.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import pwd
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from maintkit.errors import ConfigError, Problem

__all__ = [
    "MAX_INCLUDE_DEPTH",
    "USER_SSH_CONFIG",
    "HostConfig",
    "SSHConfig",
    "config_path",
    "include_candidates",
    "include_patterns",
    "parse_jumps",
    "read_ssh_config",
]

USER_SSH_CONFIG = "~/.ssh/config"
MAX_INCLUDE_DEPTH = 16
MAX_CONFIG_BYTES = 1 << 20

#: the keywords maintkit takes from the file (lower case)
TAKEN = frozenset(
    {"hostname", "port", "user", "identityfile", "identitiesonly", "proxyjump", "proxycommand", "userknownhostsfile"}
)


@dataclass(frozen=True)
class _Condition:
    """One ``Host`` or ``Match`` line: ``kind`` is host, match-host, match-originalhost, all or never."""

    kind: str
    patterns: tuple[str, ...] = ()

    def matches(self, original: str, hostname: str) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "never":
            return False
        name = hostname if self.kind == "match-host" else original
        return _match_list(name, self.patterns)


@dataclass(frozen=True)
class _Entry:
    conditions: tuple[_Condition, ...]
    key: str
    args: tuple[str, ...]
    file: str
    line: int


@dataclass(frozen=True)
class HostConfig:
    """What the file says about one host (None: not set). ``proxy_jump`` / ``proxy_command``
    is ``"none"`` when the file turns it off; at most one of them is set (the first found)."""

    hostname: str | None = None
    port: int | None = None
    user: str | None = None
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    proxy_jump: str | None = None
    proxy_command: str | None = None
    known_hosts: tuple[str, ...] = ()
    source: str = ""


@dataclass
class SSHConfig:
    """A parsed config file (with its includes): :meth:`lookup` gives one host's settings."""

    path: str
    entries: list[_Entry] = field(default_factory=list)

    def lookup(self, host: str, *, user: str | None = None, port: int | None = None) -> HostConfig:
        """The settings for ``host`` (the name given, an alias); ``user``/``port`` are the
        values already decided (they fill ``%r``/``%p`` in file names)."""
        found: dict[str, tuple[str, ...]] = {}
        identity: list[tuple[str, ...]] = []
        order: list[str] = []
        for e in self.entries:
            hostname = _expand(found["hostname"][0], host, None, None, e) if "hostname" in found else host
            if not all(c.matches(host.lower(), hostname.lower()) for c in e.conditions):
                continue
            if e.key == "identityfile":
                identity.append(e.args)
            elif e.key not in found:
                found[e.key] = e.args
                order.append(e.key)
        return self._build(host, found, identity, order, user, port)

    def _build(
        self,
        host: str,
        found: dict[str, tuple[str, ...]],
        identity: list[tuple[str, ...]],
        order: list[str],
        user: str | None,
        port: int | None,
    ) -> HostConfig:
        e = _Entry((), "", (), self.path, 0)
        hostname = _expand(found["hostname"][0], host, None, None, e) if "hostname" in found else None
        the_port = _port(found["port"][0], e) if "port" in found else None
        the_user = found["user"][0] if "user" in found else None
        name, r, p = hostname or host, user or the_user, port or the_port or 22
        files = tuple(_expand_path(a[0], name, r, p, host, e) for a in identity if a[0].lower() != "none")
        known = tuple(
            _expand_path(a, name, r, p, host, e) for a in found.get("userknownhostsfile", ()) if a.lower() != "none"
        )
        proxy = next((k for k in order if k in ("proxyjump", "proxycommand")), None)
        only = found.get("identitiesonly", ("no",))[0].lower() == "yes"
        return HostConfig(
            hostname=hostname,
            port=the_port,
            user=the_user,
            identity_files=files,
            identities_only=only,
            proxy_jump=" ".join(found["proxyjump"]) if proxy == "proxyjump" else None,
            proxy_command=" ".join(found["proxycommand"]) if proxy == "proxycommand" else None,
            known_hosts=known,
            source=self.path,
        )


def config_path(setting: bool | str | None) -> str | None:
    """The file an inventory's ``ssh_config`` names: ``true`` is ``~/.ssh/config``; off: None."""
    if setting is None or setting is False:
        return None
    return os.path.expanduser(USER_SSH_CONFIG if setting is True else str(setting))


def read_ssh_config(path: str) -> SSHConfig:
    """Parse ``path`` and its includes. Raises ConfigError (file, line, what is wrong)."""
    config = SSHConfig(path)
    _read(Path(path), (), config.entries, 0)
    return config


def _problem(file: str, line: int | None, message: str) -> ConfigError:
    return ConfigError(Problem(file, line, "ssh_config", message))


def _check_owner(path: Path) -> None:
    """Refuse a file others may change (OpenSSH: "Bad owner or permissions")."""
    st = path.stat()
    if st.st_uid not in (os.geteuid(), 0) or st.st_mode & 0o022:
        raise _problem(
            str(path), None, f"bad owner or permissions (mode {st.st_mode & 0o7777:04o}, uid {st.st_uid}): "
            "it must be owned by you or root and writable by nobody else",
        )  # fmt: skip


def _read(path: Path, outer: tuple[_Condition, ...], out: list[_Entry], depth: int) -> None:
    try:
        _check_owner(path)
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise _problem(str(path), None, f"larger than {MAX_CONFIG_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _problem(str(path), None, "no such file (the inventory's ssh_config names it)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _problem(str(path), None, f"cannot read: {exc}") from None
    block: tuple[_Condition, ...] = ()
    for number, raw in enumerate(text.splitlines(), 1):
        words = _split(raw, str(path), number)
        if not words:
            continue
        key, args = words[0].lower(), tuple(words[1:])
        if key == "proxycommand":  # the rest of the line, as written: it is a shell command
            args = (_raw_rest(raw),)
        here = _Entry(outer + block, key, args, str(path), number)
        if key in ("host", "match"):
            block = (_host_condition(args, here) if key == "host" else _match_condition(args, here),)
        elif key == "include":
            _include(path, args, outer + block, out, depth, here)
        elif key in TAKEN:
            _check_value(here)
            out.append(here)


def _split(raw: str, file: str, number: int) -> list[str]:
    """``Keyword value...`` or ``Keyword=value``; quotes as OpenSSH reads them; comments dropped."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return []
    head, sep, rest = line.partition("=")
    if sep and len(head.split()) == 1:
        line = f"{head.strip()} {rest.strip()}"
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        lexer.escape = ""
        return list(lexer)
    except ValueError as exc:
        raise _problem(file, number, f"cannot parse {raw.strip()!r}: {exc}") from None


def _raw_rest(raw: str) -> str:
    """What follows the keyword (and its ``=`` or blanks) on a line."""
    line = raw.strip()
    i = 0
    while i < len(line) and not line[i].isspace() and line[i] != "=":
        i += 1
    rest = line[i:].lstrip()
    return rest[1:].lstrip() if rest.startswith("=") else rest


def _host_condition(args: tuple[str, ...], e: _Entry) -> _Condition:
    if not args:
        raise _problem(e.file, e.line, "Host needs at least one pattern")
    return _Condition("host", args)


def _match_condition(args: tuple[str, ...], e: _Entry) -> _Condition:
    if [a.lower() for a in args] == ["all"]:
        return _Condition("all")
    if len(args) == 2 and args[0].lower() in ("host", "originalhost"):
        return _Condition("match-" + args[0].lower(), tuple(args[1].split(",")))
    return _Condition("never")  # exec, user, canonical...: never applied


def _include(
    path: Path, args: tuple[str, ...], conds: tuple[_Condition, ...], out: list[_Entry], depth: int, e: _Entry
) -> None:
    if depth >= MAX_INCLUDE_DEPTH:
        raise _problem(e.file, e.line, f"Include nested more than {MAX_INCLUDE_DEPTH} deep")
    for pattern in args:
        for name in _globbed(_beside(str(path), pattern)):
            _read(Path(name), conds, out, depth + 1)


def include_patterns(text: str) -> list[str]:
    """The names the ``Include`` lines of a config file's ``text`` give, in order, whatever block
    they sit in (a line that does not parse gives none; nothing raises). For the trust digest of a
    reused OpenSSH connection (:mod:`maintkit.transport.openssh_trust`)."""
    out: list[str] = []
    for raw in text.splitlines():
        try:
            words = _split(raw, "", 0)
        except ConfigError:
            continue
        if words and words[0].lower() == "include":
            out += words[1:]
    return out


def include_candidates(including: str, pattern: str) -> list[str]:
    """The files an ``Include pattern`` in ``including`` may read, globbed in lexical order: a
    relative name beside ``including`` (as maintkit reads it) and in ``~/.ssh`` (as ``ssh -F``
    reads it), ``~`` expanded."""
    places = [_beside(including, pattern), os.path.join(os.path.expanduser("~/.ssh"), os.path.expanduser(pattern))]
    return [found for place in dict.fromkeys(places) for found in _globbed(place)]


def _beside(including: str, pattern: str) -> str:
    """An Include name as maintkit reads it: ``~`` expanded, a relative name beside ``including``."""
    return os.path.join(os.path.dirname(including), os.path.expanduser(pattern))


def _globbed(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern))


def _check_value(e: _Entry) -> None:
    if not e.args:
        raise _problem(e.file, e.line, f"{e.key} needs a value")
    if e.key == "port":
        _port(e.args[0], e)
    if e.key == "identitiesonly" and e.args[0].lower() not in ("yes", "no"):
        raise _problem(e.file, e.line, f"IdentitiesOnly must be yes or no, not {e.args[0]!r}")


def _port(value: str, e: _Entry) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise _problem(e.file, e.line, f"Port must be a number from 1 to 65535, not {value!r}")
    return int(value)


def _match_list(name: str, patterns: tuple[str, ...]) -> bool:
    """OpenSSH's pattern lists: any positive pattern matches and no negated one does."""
    hit = False
    for pattern in (p for item in patterns for p in item.split(",") if p):
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(name, pattern.lstrip("!").lower()):
            if negated:
                return False
            hit = True
    return hit


def _local_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _expand(text: str, host: str, user: str | None, port: int | None, e: _Entry, original: str = "") -> str:
    """OpenSSH's ``%`` tokens: %% %h %p %r %u %d %n (an unknown token is an error)."""
    values = {
        "%": "%",
        "h": host,
        "p": str(port or 22),
        "r": user or _local_user(),
        "u": _local_user(),
        "d": os.path.expanduser("~"),
        "n": original or host,
    }
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "%":
            token = text[i + 1 : i + 2]
            if token not in values:
                raise _problem(e.file, e.line, f"unknown token %{token} in {text!r}")
            out.append(values[token])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _expand_path(text: str, host: str, user: str | None, port: int, original: str, e: _Entry) -> str:
    """A file name of the config: ``~`` and ``%`` tokens expanded."""
    return os.path.expanduser(_expand(text, host, user, port, e, original))


def parse_jumps(spec: str) -> list[tuple[str | None, str, int | None]]:
    """ProxyJump's hops, first first: ``[user@]host[:port]`` (or ``ssh://...``), comma-separated.

    Returns ``(user, host, port)`` for each; raises ValueError for a hop that is not one.
    """
    hops: list[tuple[str | None, str, int | None]] = []
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        text = raw[len("ssh://") :] if raw.startswith("ssh://") else raw
        user, _, rest = text.rpartition("@")
        port: str | None = None
        if rest.startswith("["):  # [::1]:22
            host, _, after = rest[1:].partition("]")
            port = after[1:] if after.startswith(":") else None
        elif rest.count(":") == 1:
            host, port = rest.split(":")
        else:
            host = rest
        bad = any(c.isspace() or c in "/'\"`$;&|" for c in host + user)
        if not host or bad or (port is not None and not port.isdigit()):
            raise ValueError(f"not a jump host ([user@]host[:port]): {raw!r}")
        number = int(port) if port else None
        if number is not None and not 1 <= number <= 65535:
            raise ValueError(f"jump host port out of range: {raw!r}")
        hops.append((user or None, host, number))
    return hops
