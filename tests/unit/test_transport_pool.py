"""TransportPool hands a connection dialled ahead to its host's transport before any command
can use that host, so each host is dialled once. With a stand-in factory and transports (no
SSH here): the real connections are tested in tests/lab/test_dial_ahead.py.
"""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace
from typing import Any

from maintkit.transport.factory import TransportPool

ENV: Any = SimpleNamespace(
    connection="ssh", host="shop.example.invalid", port=22, user="deploy", become=False, key_file=None,
    proxy_command=None, proxy_jump=None, ssh_config=None, known_hosts=None, host_key_policy=None,
    connect_timeout=None, command_timeout=None, control_persist=None,
)  # fmt: skip


class Stand:
    """A transport that records what the pool hands it."""

    def __init__(self) -> None:
        self.adopted: list[Any] = []
        self.warmed = 0

    def adopt(self, early: Any) -> None:
        self.adopted.append(early)

    def warm(self, on_dial: Any) -> None:
        self.warmed += 1
        on_dial()

    def close(self) -> None:
        pass


class Factory:
    """Makes Stands; its dial ahead waits until the test lets it finish (or fails)."""

    def __init__(self, fail: bool = False) -> None:
        self.made: list[Stand] = []
        self.called, self.dialling, self.go = threading.Event(), threading.Event(), threading.Event()
        self.early, self._peer = socket.socketpair()
        self.fail = fail

    def __call__(self, env: Any) -> Stand:
        self.called.set()
        self.made.append(Stand())
        return self.made[-1]

    def dial_ahead(self, env: Any) -> socket.socket:
        self.dialling.set()
        assert self.go.wait(30)
        if self.fail:
            raise RuntimeError("a bug in dialling")
        return self.early


def _get_in_thread(pool: TransportPool) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(pool.get(ENV)))
    thread.start()
    return thread, got


def test_a_command_waits_for_the_connection_dialled_ahead_and_gets_it() -> None:
    factory = Factory()
    pool = TransportPool(factory)
    pool.warm([ENV], lambda: None)
    assert factory.dialling.wait(30)
    thread, got = _get_in_thread(pool)
    assert not factory.called.wait(0.5)  # the command's get() made no transport of its own
    factory.go.set()
    thread.join(30)
    pool.close()
    (stand,) = factory.made
    assert got == [stand]
    assert stand.adopted == [factory.early]
    assert stand.warmed == 1


def test_a_dial_that_breaks_never_leaves_a_command_waiting() -> None:
    factory = Factory(fail=True)
    pool = TransportPool(factory)
    pool.warm([ENV], lambda: None)
    assert factory.dialling.wait(30)
    thread, got = _get_in_thread(pool)
    factory.go.set()
    thread.join(30)
    pool.close()
    assert not thread.is_alive()
    (stand,) = factory.made  # made by the command's get(): the warm thread gave up
    assert got == [stand]
    assert stand.adopted == []
    assert factory.early.fileno() != -1  # nothing was dialled, nothing to close


def test_a_transport_that_is_not_dialled_ahead_is_had_at_once() -> None:
    factory = Factory()
    pool = TransportPool(factory)
    assert pool.get(ENV) is pool.get(ENV)
    assert len(factory.made) == 1
    assert factory.made[0].adopted == []


class _Recorded(threading.Thread):
    """A Thread that notes which thread started it; those named in ``refuse`` cannot start."""

    starts: list[tuple[str, str]] = []
    refuse: tuple[str, ...] = ()

    def start(self) -> None:
        if self.name in self.refuse:
            raise RuntimeError("can't start new thread")
        self.starts.append((self.name, threading.current_thread().name))
        super().start()


def _recorded(monkeypatch: Any, refuse: tuple[str, ...] = ()) -> type[_Recorded]:
    import maintkit.transport.factory as factory_module

    cls = type("Recorded", (_Recorded,), {"starts": [], "refuse": refuse})
    monkeypatch.setattr(factory_module.threading, "Thread", cls)
    return cls


def test_the_host_threads_are_started_off_the_callers_thread(monkeypatch: Any) -> None:
    """warm() returns after one thread is started; that thread starts the hosts' (starting 50
    took the run's own thread 50-70 ms), and each host is still dialled once."""
    recorded = _recorded(monkeypatch)
    factory = Factory()
    others = [SimpleNamespace(**{**vars(ENV), "host": f"h{i}.example.invalid"}) for i in range(3)]
    pool = TransportPool(factory)
    pool.warm([ENV, *others], lambda: None)
    caller = threading.current_thread().name
    assert recorded.starts[0] == ("maint-connect-start", caller)
    factory.go.set()
    pool.close()
    assert sorted(recorded.starts[1:]) == [("maint-connect", "maint-connect-start")] * 4
    assert len(factory.made) == 4
    assert all(stand.adopted == [factory.early] for stand in factory.made)


def test_a_thread_that_cannot_start_never_leaves_a_command_waiting(monkeypatch: Any) -> None:
    for refused in ("maint-connect", "maint-connect-start"):
        _recorded(monkeypatch, refuse=(refused,))
        factory, dialled = Factory(), threading.Event()
        pool = TransportPool(factory)
        pool.warm([ENV], dialled.set)
        pool.close()  # joins the starter (when there is one): every host was handed over
        assert dialled.is_set()
        stand = pool.get(ENV)  # does not wait: the site opens its own connection
        assert factory.made == [stand]
        assert stand.adopted == []
        assert not factory.dialling.is_set()
