"""The transport for an environment, and one shared transport per host for a whole run.

The SSH settings come from the inventory; ``MAINT_SSH_KEY_FILE`` and ``MAINT_KNOWN_HOSTS``
(set by the GitHub Action) fill in what it leaves out. They are read from the environ the
caller passes (the runner passes the one it was given), never from a hidden global.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from maintkit.transport.base import Transport
from maintkit.transport.dial import Early, dial_ahead, discard
from maintkit.transport.ssh_settings import ssh_settings

if TYPE_CHECKING:
    from maintkit.inventory import Environment

TransportFactory = Callable[["Environment"], Transport]


def transport_for(env: Environment, environ: Mapping[str, str] | None = None) -> Transport:
    """Create the transport for an environment (SSH over paramiko; the system's OpenSSH for
    ``connection: openssh``; this machine for ``connection: local``).

    ``environ`` (default: the process environment) supplies ``MAINT_SSH_KEY_FILE`` and
    ``MAINT_KNOWN_HOSTS``. With ``ssh_config`` set, the OpenSSH config file fills in what the
    inventory leaves out; precedence: inventory > ssh config > ``MAINT_*`` > defaults.
    """
    if env.connection == "local":
        from maintkit.transport.local import LocalTransport

        return LocalTransport(
            name=env.host or "local", become=bool(env.become), command_timeout=env.command_timeout or 600.0
        )
    source = os.environ if environ is None else environ
    if env.connection == "openssh":
        return _openssh(env, source)
    from maintkit.transport.ssh import SSHTransport

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


def _openssh(env: Environment, environ: Mapping[str, str]) -> Transport:
    """The OpenSSH transport of ``env`` (``connection: openssh``): the same settings as over
    paramiko, sockets in the per-user control directory (``XDG_CACHE_HOME`` from ``environ``)."""
    from maintkit.transport.openssh import DEFAULT_CONTROL_PERSIST, OpenSSHTransport
    from maintkit.transport.openssh_control import control_dir
    from maintkit.transport.ssh_config import config_path

    settings = ssh_settings(env, environ)
    target = settings.target
    persist = env.control_persist
    return OpenSSHTransport(
        target.hostname,
        **_common(env),
        **target.kwargs(),
        become=bool(env.become),
        proxy_command=settings.proxy_command,
        jumps=settings.jumps,
        name=env.host,
        alias=target.name,
        ssh_config=config_path(env.ssh_config),
        control_persist=DEFAULT_CONTROL_PERSIST if persist is None else persist,
        control_dir=control_dir(environ),
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


class _Factory:
    """:func:`transport_for` with the ``MAINT_*`` fallbacks of ``environ`` (None: the process
    environment), and :meth:`dial_ahead` for :meth:`TransportPool.warm`."""

    def __init__(self, environ: Mapping[str, str] | None) -> None:
        self._environ = environ

    def __call__(self, env: Environment) -> Transport:
        return transport_for(env, self._environ)

    def dial_ahead(self, env: Environment) -> Early | None:
        """``env``'s TCP connection, opened before the SSH library is loaded (see
        :mod:`maintkit.transport.dial`)."""
        return dial_ahead(env, self._environ, _common(env)["connect_timeout"])


def factory_for(environ: Mapping[str, str]) -> TransportFactory:
    """A transport factory that reads its ``MAINT_*`` fallbacks from ``environ``."""
    return _Factory(environ)


#: The transport for an environment, with fallbacks from the process environment.
default_transport_factory: TransportFactory = _Factory(None)


class TransportPool:
    """One transport per distinct host connection for the whole run.

    Sites :meth:`claim` the connections they may use before the run starts and :meth:`release`
    them when they finish: a connection no unfinished site claims is closed at once (its
    socket and its reader thread gone), so a fleet of hundreds of hosts never holds more
    connections than sites in flight. :meth:`warm` opens connections ahead of the first command.
    ``on_closed(key)`` (optional) is called after a released connection was closed.
    """

    def __init__(self, factory: TransportFactory, on_closed: Callable[[tuple[Any, ...]], None] | None = None) -> None:
        self._factory = factory
        self._pool: dict[tuple[Any, ...], Transport] = {}
        self._claims: dict[str, set[tuple[Any, ...]]] = {}  # site -> keys it may still use
        self._users: dict[tuple[Any, ...], int] = {}  # key -> unfinished sites claiming it
        self._warming: list[threading.Thread] = []
        self._dialling: dict[tuple[Any, ...], threading.Event] = {}  # set once handed over
        self._lock = threading.Lock()
        self.on_closed = on_closed

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
            env.control_persist,
        )

    def get(self, env: Environment) -> Transport:
        """The shared transport for ``env``'s host. While :meth:`warm` is dialling that host
        ahead, this waits until the connection is handed over: one attempt per host."""
        with self._lock:
            dialling = self._dialling.get(self.key(env))
        if dialling is not None:
            dialling.wait()
        return self._get(env)

    def _get(self, env: Environment, early: Early | None = None) -> Transport:
        """:meth:`get` without waiting; ``early`` (a connection dialled ahead) is handed to the
        transport before any other thread can use it (closed when it cannot take it)."""
        k = self.key(env)
        with self._lock:
            if k not in self._pool:
                self._pool[k] = self._factory(env)
            transport = self._pool[k]
            adopt = getattr(transport, "adopt", None)
            if early is not None and adopt is not None:
                adopt(early)
                early = None
        discard(early)
        return transport

    def claim(self, site: str, envs: Iterable[Environment]) -> None:
        """``site`` may use the connections of ``envs`` until :meth:`release` is called for it."""
        keys = {self.key(e) for e in envs}
        with self._lock:
            for k in keys - self._claims.get(site, set()):
                self._users[k] = self._users.get(k, 0) + 1
            self._claims.setdefault(site, set()).update(keys)

    def release(self, site: str) -> None:
        """``site`` finished: close every connection no unfinished site claims any more."""
        idle: list[tuple[tuple[Any, ...], Transport]] = []
        with self._lock:
            for k in self._claims.pop(site, set()):
                self._users[k] -= 1
                if self._users[k] == 0:
                    del self._users[k]
                    transport = self._pool.pop(k, None)
                    if transport is not None:
                        idle.append((k, transport))
        for k, transport in idle:
            with contextlib.suppress(Exception):  # closing must never mask the site's outcome
                transport.close()
            if self.on_closed is not None:
                self.on_closed(k)

    def warm(self, envs: Iterable[Environment], on_dial: Callable[[], None]) -> None:
        """Open the connections of ``envs`` now, one background thread per distinct host.

        ``on_dial()`` is called once the first attempt is under way (at once when there is
        nothing to open). A failed attempt is raised by the host's first command, not here.
        Until its connection is handed over, :meth:`get` for a host waits (registered before
        this returns); the threads are started by one thread of their own, so the caller goes
        on at once (starting 50 threads took the run's thread 50-70 ms).
        """
        dial = _Once(on_dial)
        chosen: dict[tuple[Any, ...], Environment] = {}
        for env in envs:
            if env.connection != "local":
                chosen.setdefault(self.key(env), env)
        if not chosen:
            dial()
            return
        with self._lock:
            for k in chosen:
                self._dialling.setdefault(k, threading.Event())
        args = (list(chosen.values()), dial)
        starter = threading.Thread(target=self._start_warming, args=args, name="maint-connect-start", daemon=True)
        with self._lock:
            self._warming.append(starter)
        try:
            starter.start()
        except RuntimeError:  # no thread to spare: every site opens its own connection
            with self._lock:
                self._warming.remove(starter)
            for env in chosen.values():
                self._handed_over(env)
            dial()

    def _start_warming(self, envs: list[Environment], dial: Callable[[], None]) -> None:
        """One thread per host of ``envs`` (see :meth:`warm`), then wait for them all. A thread
        that cannot start hands its host over at once: the site then opens its own connection."""
        started: list[threading.Thread] = []
        for env in envs:
            thread = threading.Thread(target=self._warm_one, args=(env, dial), name="maint-connect", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no more threads: never leave get() waiting
                self._handed_over(env)
                dial()
                continue
            started.append(thread)
        for thread in started:
            thread.join()

    def _warm_one(self, env: Environment, dial: Callable[[], None]) -> None:
        # a bad setting or a failed attempt is reported by the host's first command, not here
        early: Early | None = None
        with contextlib.suppress(Exception):
            ahead = getattr(self._factory, "dial_ahead", None)
            early = ahead(env) if ahead is not None else None
            transport, early = self._get(env, early), None
            self._handed_over(env)
            warm = getattr(transport, "warm", None)
            if warm is not None:
                warm(dial)
        self._handed_over(env)
        discard(early)  # only when the transport could not be made
        dial()

    def _handed_over(self, env: Environment) -> None:
        """The connection dialled ahead for ``env`` is in its transport (or never will be)."""
        with self._lock:
            dialling = self._dialling.pop(self.key(env), None)
        if dialling is not None:
            dialling.set()

    def close(self) -> None:
        """Close every connection (after the connections still being opened ahead are up)."""
        with self._lock:
            warming, self._warming = self._warming, []
        for thread in warming:
            thread.join()
        with self._lock:
            transports = list(self._pool.values())
            self._pool.clear()
            self._claims.clear()
            self._users.clear()
        for t in transports:
            with contextlib.suppress(Exception):  # closing must never mask the run's outcome
                t.close()


class _Once:
    """Calls ``fn`` the first time it is called, never again (thread-safe)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn, self._lock, self._done = fn, threading.Lock(), False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        with contextlib.suppress(Exception):
            self._fn()


__all__ = ["TransportFactory", "TransportPool", "default_transport_factory", "factory_for", "transport_for"]
