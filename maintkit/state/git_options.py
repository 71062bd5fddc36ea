"""The git state backend's options and the environment every git command of it runs with.

Options (docs/state.md): ``remote`` (required: an SSH URL, ``user@host:path``, an HTTPS URL
or a path), ``branch`` (``maint-state``), ``author`` (``maintkit <maint@localhost>``),
``ssh_key``, ``known_hosts``, ``ssh_port``, ``host_key_policy`` (``strict`` or
``accept-new``), ``token_env`` (the variable holding an HTTPS token; ``GITHUB_TOKEN`` by
default for ``https://github.com/``), ``token_user`` (``x-access-token``), ``push_attempts``
(10) and ``timeout`` (seconds per git command, 300).

No user or system git configuration is read, no terminal prompt is shown and ``ssh`` reads
no ``~/.ssh/config``. An HTTPS token travels only in this process's environment, as an
``http.<url>.extraHeader`` given through ``GIT_CONFIG_COUNT``: it is never written into
``.git/config`` nor put on a command line, and :meth:`GitOptions.clean` removes it from any
text before it is shown.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maintkit._text import redact_text, register_secret, tail

DEFAULT_BRANCH = "maint-state"
DEFAULT_AUTHOR = "maintkit <maint@localhost>"
KNOWN_OPTIONS = frozenset(
    {"remote", "branch", "author", "ssh_key", "known_hosts", "ssh_port", "host_key_policy", "token_env",
     "token_user", "push_attempts", "timeout"}
)  # fmt: skip
_BRANCH_RE = re.compile(r"^(?!-)(?!/)(?!.*\.\.)(?!.*//)(?!.*\.lock$)(?!.*/$)[A-Za-z0-9._/-]{1,200}$")
_AUTHOR_RE = re.compile(r"^\s*([^<>\n]+?)\s*<([^<>\s]+)>\s*$")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
#: git commands may only talk these protocols (no ext::, fd::)
_PROTOCOLS = "file:git:http:https:ssh"


def _display(remote: str) -> str:
    """``remote`` without any user:password@ of a URL."""
    return _USERINFO.sub(lambda m: m.group("scheme"), remote)


def _is_url(remote: str) -> bool:
    return "://" in remote


def _local_path(remote: str) -> Path | None:
    """The local path a remote names (a path or file:// URL), else None."""
    if remote.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(remote).path))
    if _is_url(remote):
        return None
    head, colon, _ = remote.partition(":")
    if colon and "/" not in head:
        return None  # scp-like: user@host:path
    return Path(remote).expanduser()


def _text_option(options: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = options.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        raise ValueError(f"state option {key} must be a non-empty text")
    return str(value).strip()


def _int_option(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"state option {key} must be a whole number") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise ValueError(f"state option {key} must be between {low} and {high}")
    return number


def _checked_remote(remote: str | None) -> str:
    if not remote:
        raise ValueError("the git state backend needs a remote (git:REMOTE[#BRANCH] or state: {remote: ...})")
    if remote.startswith("-") or "\n" in remote or "::" in remote.split("/")[0]:
        raise ValueError(f"not a usable git remote: {_display(remote)!r}")
    if _is_url(remote):
        userinfo = urllib.parse.urlsplit(remote).netloc.rpartition("@")[0]
        if ":" in userinfo:
            raise ValueError("the remote URL carries a password: give the token through token_env instead")
    local = _local_path(remote)
    return str(local.resolve()) if local is not None else remote


def _header_scope(remote: str) -> str:
    """``https://host[:port]/``: the URLs the token header is sent to."""
    parts = urllib.parse.urlsplit(remote)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/"


@dataclass(frozen=True)
class GitOptions:
    """The checked options of one git store."""

    remote: str
    branch: str = DEFAULT_BRANCH
    author_name: str = "maintkit"
    author_email: str = "maint@localhost"
    ssh_key: str | None = None
    known_hosts: str | None = None
    ssh_port: int | None = None
    host_key_policy: str = "strict"
    token_user: str = "x-access-token"  # noqa: S105 - the user name GitHub expects with a token
    push_attempts: int = 10
    timeout: float = 300.0
    token: str | None = field(default=None, repr=False)

    @property
    def display_remote(self) -> str:
        """The remote without credentials, for messages."""
        return _display(self.remote)

    @property
    def http(self) -> bool:
        """Whether the remote is reached over HTTP(S)."""
        return self.remote.startswith(("https://", "http://"))

    def key(self) -> str:
        """What names this store on the machine: ``remote#branch`` (no credentials)."""
        return f"{self.display_remote}#{self.branch}"

    def ssh_command(self) -> str:
        """``GIT_SSH_COMMAND``: ssh without ~/.ssh/config, batch mode, the host key policy in force."""
        strict = "accept-new" if self.host_key_policy == "accept-new" else "yes"
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={strict}",
                "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]  # fmt: skip
        if self.ssh_key:
            argv += ["-o", "IdentitiesOnly=yes", "-i", self.ssh_key]
        if self.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.ssh_port:
            argv += ["-p", str(self.ssh_port)]
        return " ".join(shlex.quote(a) for a in argv)

    def _auth_header(self) -> str | None:
        if not (self.token and self.http):
            return None
        pair = base64.b64encode(f"{self.token_user}:{self.token}".encode()).decode()
        return f"Authorization: Basic {pair}"

    def environ(self, root: Path, *, index: Path | None = None) -> dict[str, str]:
        """The environment of every git command on the clone at ``root``."""
        git_dir = root / ".git"
        env = {
            "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GIT_SSH_COMMAND": self.ssh_command(), "GIT_SSH_VARIANT": "ssh",
            "GIT_ALLOW_PROTOCOL": _PROTOCOLS, "GIT_LITERAL_PATHSPECS": "1", "GIT_TRACE_REDACT": "1",
            "GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(root), "GIT_INDEX_FILE": str(index or git_dir / "index"),
            "GIT_OBJECT_DIRECTORY": str(git_dir / "objects"), "GIT_ALTERNATE_OBJECT_DIRECTORIES": "",
            "GIT_NAMESPACE": "", "GIT_EDITOR": "true", "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
            "GIT_HTTP_LOW_SPEED_TIME": "60",
            "GIT_AUTHOR_NAME": self.author_name, "GIT_AUTHOR_EMAIL": self.author_email,
            "GIT_COMMITTER_NAME": self.author_name, "GIT_COMMITTER_EMAIL": self.author_email,
        }  # fmt: skip
        header = self._auth_header()
        env["GIT_CONFIG_COUNT"] = "1" if header else "0"
        if header:
            env["GIT_CONFIG_KEY_0"] = f"http.{_header_scope(self.remote)}.extraHeader"
            env["GIT_CONFIG_VALUE_0"] = header
        return env

    def clean(self, text: str) -> str:
        """``text`` without the token, its header, URL credentials or other known secrets; cut to 600."""
        header = self._auth_header()
        for secret in (self.token, header.partition("Basic ")[2] if header else None):
            if secret:
                text = text.replace(secret, "***")
        return tail(redact_text(_display(text)), 600)


def _token(options: Mapping[str, Any], remote: str, environ: Mapping[str, str]) -> str | None:
    explicit = _text_option(options, "token_env")
    name = explicit or ("GITHUB_TOKEN" if remote.startswith("https://github.com/") else None)
    if name is None:
        return None
    token = environ.get(name) or None
    if explicit and token is None:
        raise ValueError(f"state option token_env names {explicit}, which is not set")
    register_secret(token)
    return token


def _identity(options: Mapping[str, Any]) -> tuple[str, str]:
    author = _text_option(options, "author", DEFAULT_AUTHOR) or DEFAULT_AUTHOR
    match = _AUTHOR_RE.match(author)
    if not match:
        raise ValueError(f"state option author must read 'Name <email>', not {author!r}")
    return match.group(1), match.group(2)


def _path_option(options: Mapping[str, Any], key: str) -> str | None:
    value = _text_option(options, key)
    return str(Path(os.path.expanduser(value)).resolve()) if value else None


def parse_options(options: Mapping[str, Any], environ: Mapping[str, str]) -> GitOptions:
    """Checked :class:`GitOptions`; ValueError (reported as a config error) for a bad one."""
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown git state option(s): {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_OPTIONS))})"
        )
    remote = _checked_remote(_text_option(options, "remote"))
    branch = _text_option(options, "branch", DEFAULT_BRANCH) or DEFAULT_BRANCH
    if not _BRANCH_RE.match(branch):
        raise ValueError(f"state option branch: {branch!r} is not a usable branch name")
    policy = _text_option(options, "host_key_policy", "strict")
    if policy not in ("strict", "accept-new"):
        raise ValueError(f"state option host_key_policy must be strict or accept-new, not {policy!r}")
    name, email = _identity(options)
    port = options.get("ssh_port")
    return GitOptions(
        remote=remote,
        branch=branch,
        author_name=name,
        author_email=email,
        ssh_key=_path_option(options, "ssh_key"),
        known_hosts=_path_option(options, "known_hosts"),
        ssh_port=None if port is None else _int_option(options, "ssh_port", 22, 1, 65535),
        host_key_policy=policy,
        token_user=_text_option(options, "token_user", "x-access-token") or "x-access-token",
        push_attempts=_int_option(options, "push_attempts", 10, 1, 100),
        timeout=float(_int_option(options, "timeout", 300, 1, 86400)),
        token=_token(options, remote, environ),
    )


__all__ = ["DEFAULT_AUTHOR", "DEFAULT_BRANCH", "KNOWN_OPTIONS", "GitOptions", "parse_options"]
