"""Where and how an environment connects: the inventory, then ``~/.ssh/config`` (when the
inventory opts in), then ``MAINT_SSH_KEY_FILE``/``MAINT_KNOWN_HOSTS``, then defaults.

Pure logic, no SSH library: :func:`ssh_settings` gives the target and its jump hosts
(OpenSSH's ProxyJump, from the inventory's ``proxy_jump`` or the config file), each an
:class:`Endpoint`; :mod:`maintkit.transport.factory` turns them into transports.

What an inventory sets (in the environment or in ``defaults``) always wins; the config file
only fills in what it leaves out. Known-hosts files add up (the inventory's first: it is
where ``accept-new`` records keys). Host key policy and timeouts never come from the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maintkit.errors import ConfigError, Problem
from maintkit.transport.ssh_config import HostConfig, SSHConfig, config_path, parse_jumps, read_ssh_config
from maintkit.transport.ssh_policy import parsed_once

if TYPE_CHECKING:
    from maintkit.inventory import Environment

__all__ = ["Endpoint", "Settings", "load_config", "ssh_settings"]


@dataclass(frozen=True)
class Endpoint:
    """One host of a connection: ``name`` as given (an alias), ``hostname`` where it is."""

    name: str
    hostname: str
    port: int
    user: str | None
    key_file: str | None
    known_hosts: tuple[str, ...]
    identities_only: bool = False

    def kwargs(self) -> dict[str, Any]:
        """The SSHTransport keyword arguments of this endpoint."""
        return {
            "port": self.port,
            "user": self.user,
            "key_filename": self.key_file,
            "known_hosts": list(self.known_hosts),
            "identities_only": self.identities_only,
        }


@dataclass(frozen=True)
class Settings:
    """The target, the jump hosts to reach it (first hop first) and a proxy command."""

    target: Endpoint
    jumps: tuple[Endpoint, ...] = ()
    proxy_command: str | None = None


def load_config(setting: bool | str | None) -> SSHConfig | None:
    """The config file an inventory's ``ssh_config`` names, parsed (once per file version)."""
    path = config_path(setting)
    if path is None:
        return None
    try:
        return parsed_once(path, read_ssh_config)  # type: ignore[no-any-return]
    except OSError as exc:
        what = "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read: {exc.strerror or exc}"
        raise ConfigError(Problem(path, None, "ssh_config", f"{what} (the inventory's ssh_config names it)")) from None


def _key_file(files: tuple[str, ...]) -> str | None:
    """The first IdentityFile that exists (else the first: its error names it), like OpenSSH."""
    return next((f for f in files if os.path.isfile(f)), files[0] if files else None)


def ssh_settings(env: Environment, environ: Mapping[str, str]) -> Settings:
    """The connection of ``env``: precedence inventory > ssh config > ``MAINT_*`` > defaults."""
    config = load_config(env.ssh_config)
    mine = env.set_in_inventory
    found = config.lookup(env.host, user=env.user) if config else HostConfig()
    env_key = environ.get("MAINT_SSH_KEY_FILE") or None
    inventory_key = env.key_file  # user, key_file, known_hosts, proxies: no default but the inventory's
    known = [os.path.expanduser(k) for k in (env.known_hosts, environ.get("MAINT_KNOWN_HOSTS")) if k]
    target = Endpoint(
        name=env.host,
        hostname=found.hostname or env.host,
        port=(env.port if mine("port") else found.port or env.port) or 22,
        user=env.user if env.user is not None else found.user,
        key_file=_expand(inventory_key or _key_file(found.identity_files) or env_key),
        known_hosts=(*known, *found.known_hosts),
        identities_only=found.identities_only,
    )
    if env.proxy_command or env.proxy_jump or config is None:
        jump_spec, command = env.proxy_jump, env.proxy_command
    else:
        jump_spec, command = found.proxy_jump, found.proxy_command
    jump_spec = None if (jump_spec or "").lower() == "none" else jump_spec
    command = None if (command or "").lower() == "none" else command
    hop_key = _expand(inventory_key or env_key)
    jumps = tuple(_hop(spec, config, hop_key, tuple(known)) for spec in parse_jumps(jump_spec or ""))
    return Settings(target, jumps, command)


Hop = tuple[str | None, str, int | None]


def _hop(spec: Hop, config: SSHConfig | None, key: str | None, known: tuple[str, ...]) -> Endpoint:
    """One jump host: its ``[user@]host[:port]`` wins over its config entry (like OpenSSH's -J)."""
    user, host, port = spec
    found = config.lookup(host, user=user, port=port) if config else HostConfig()
    return Endpoint(
        name=host,
        hostname=found.hostname or host,
        port=port or found.port or 22,
        user=user or found.user,
        key_file=_expand(_key_file(found.identity_files) or key),
        known_hosts=(*known, *found.known_hosts),
        identities_only=found.identities_only,
    )


def _expand(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else None
