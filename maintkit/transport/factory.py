"""The transport for an environment, and one shared transport per host for a whole run.

The SSH settings come from the inventory; ``MAINT_SSH_KEY_FILE`` and ``MAINT_KNOWN_HOSTS``
(set by the GitHub Action) fill in what it leaves out. They are read from the environ the
caller passes (the runner passes the one it was given), never from a hidden global.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from maintkit.transport.base import Transport
from maintkit.transport.ssh_settings import ssh_settings

if TYPE_CHECKING:
    from maintkit.inventory import Environment

TransportFactory = Callable[["Environment"], Transport]


def transport_for(env: Environment, environ: Mapping[str, str] | None = None) -> Transport:
    """Create the transport for an environment (SSH, or local for ``connection: local``).

    ``environ`` (default: the process environment) supplies ``MAINT_SSH_KEY_FILE`` and
    ``MAINT_KNOWN_HOSTS``. With ``ssh_config`` set, the OpenSSH config file fills in what the
    inventory leaves out; precedence: inventory > ssh config > ``MAINT_*`` > defaults.
    """
    if env.connection == "local":
        from maintkit.transport.local import LocalTransport

        return LocalTransport(
            name=env.host or "local", become=bool(env.become), command_timeout=env.command_timeout or 600.0
        )
    from maintkit.transport.ssh import SSHTransport

    source = os.environ if environ is None else environ
    settings = ssh_settings(env, source)
    via: SSHTransport | None = None
    for hop in settings.jumps:
        via = SSHTransport(hop.hostname, **_common(env), **hop.kwargs(), via=via, name=hop.name)
    return SSHTransport(
        settings.target.hostname,
        **_common(env),
        **settings.target.kwargs(),
        become=bool(env.become),
        proxy_command=settings.proxy_command,
        via=via,
        name=env.host,
    )


def _common(env: Environment) -> dict[str, Any]:
    """The settings every hop of an environment's connection shares: policy and timeouts."""
    return {
        "host_key_policy": env.host_key_policy or "strict",
        "connect_timeout": env.connect_timeout or 10.0,
        "command_timeout": env.command_timeout or 600.0,
        "keepalive_interval": env.keepalive_interval or 5.0,
        "keepalive_count_max": env.keepalive_count_max or 3,
    }


def factory_for(environ: Mapping[str, str]) -> TransportFactory:
    """A transport factory that reads its ``MAINT_*`` fallbacks from ``environ``."""

    def factory(env: Environment) -> Transport:
        return transport_for(env, environ)

    return factory


def default_transport_factory(env: Environment) -> Transport:
    """The transport for ``env``, with fallbacks from the process environment."""
    return transport_for(env)


class TransportPool:
    """One transport per distinct host connection for the whole run."""

    def __init__(self, factory: TransportFactory) -> None:
        self._factory = factory
        self._pool: dict[tuple[Any, ...], Transport] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(env: Environment) -> tuple[Any, ...]:
        """What makes two environments share a connection."""
        return (
            env.connection,
            env.host,
            env.port,
            env.user,
            env.become,
            env.key_file,
            env.proxy_command,
            env.proxy_jump,
            env.ssh_config,
            env.known_hosts,
            env.host_key_policy,
            env.connect_timeout,
            env.command_timeout,
        )

    def get(self, env: Environment) -> Transport:
        """The shared transport for ``env``'s host."""
        k = self.key(env)
        with self._lock:
            if k not in self._pool:
                self._pool[k] = self._factory(env)
            return self._pool[k]

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            for t in self._pool.values():
                with contextlib.suppress(Exception):  # closing must never mask the run's outcome
                    t.close()
            self._pool.clear()


__all__ = ["TransportFactory", "TransportPool", "default_transport_factory", "factory_for", "transport_for"]
