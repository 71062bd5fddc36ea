"""Noticing a dead SSH connection: the keepalive schedule, independent of the SSH library.

paramiko's ``set_keepalive`` sends requests that want no reply, so they cannot tell a live
connection from a cut one. Here every packet from the server counts as a sign of life
(replies, command output, window adjustments: the transport calls :meth:`Keepalive.heard`).
After ``interval`` seconds of silence, and every ``interval`` seconds after that, a request
that wants a reply is sent (``ask``; OpenSSH answers every ``keepalive@openssh.com`` global
request, with a failure for names it does not know). After ``interval * count_max`` seconds
of silence the connection is declared lost: ``lost_after`` is set and ``on_lost`` is called
(it closes the connection, which fails a running command at once).

ONE thread (:class:`Watcher`) looks after every connection's keepalive, not a thread per host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["WATCHER", "Keepalive", "Watcher", "watch_transport"]


class Keepalive:
    """Notices a dead connection within ``interval * count_max`` seconds.

    ``alive`` tells whether the connection is still open, ``ask`` sends one request that
    wants a reply (it may block on a cut network: it runs in a helper thread), ``on_lost``
    closes the connection; ``clock`` is the time source :meth:`tick` is given readings of.
    :meth:`start` hands it to the shared watch.
    """

    def __init__(
        self,
        interval: float,
        count_max: int,
        *,
        alive: Callable[[], bool],
        ask: Callable[[], None],
        on_lost: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.limit = interval * count_max
        #: seconds without a packet from the server when the connection was declared lost
        self.lost_after: float | None = None
        self._alive = alive
        self._send = ask
        self._on_lost = on_lost
        self._clock = clock
        self._heard = clock()
        self._asked = 0.0
        self._asking: threading.Thread | None = None
        self._stop = threading.Event()

    def heard(self) -> None:
        """A packet arrived from the server (called by the transport's reader thread)."""
        self._heard = self._clock()

    def start(self) -> None:
        """Start watching (in the shared watch thread)."""
        WATCHER.add(self)

    def stop(self) -> None:
        """Stop watching (the connection is being closed on purpose)."""
        self._stop.set()
        WATCHER.discard(self)

    def tick(self, now: float) -> bool:
        """One look at the connection; False once there is nothing more to watch."""
        if self._stop.is_set() or not self._alive():
            return False
        silent = now - self._heard
        if silent >= self.limit:
            self.lost_after = silent
            # closing a cut connection can block on its send buffer: never inside the shared watch
            threading.Thread(target=self._on_lost, name="maint-ssh-lost", daemon=True).start()
            return False
        if silent >= self.interval and now - self._asked >= self.interval:
            self._asked = now
            self._ask()
        return True

    def _ask(self) -> None:
        """Send one keepalive from a helper thread: a full send buffer on a cut network
        blocks the sender, and the watch must go on to declare the connection lost."""
        if self._asking is not None and self._asking.is_alive():
            return
        self._asking = threading.Thread(target=self._send, name="maint-ssh-keepalive-send", daemon=True)
        self._asking.start()


class Watcher:
    """ONE thread watches every connection's keepalive (not a thread per host); it starts with
    the first connection and ends when none is left."""

    def __init__(self) -> None:
        self._items: set[Keepalive] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, item: Keepalive) -> None:
        """Watch ``item`` (starting the thread when it is not running)."""
        with self._lock:
            self._items.add(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="maint-ssh-keepalive", daemon=True)
                self._thread.start()

    def discard(self, item: Keepalive) -> None:
        """Stop watching ``item``."""
        with self._lock:
            self._items.discard(item)

    def _run(self) -> None:
        while True:
            with self._lock:
                items = list(self._items)
                if not items:
                    self._thread = None
                    return
            now = time.monotonic()
            for item in items:
                if not item.tick(now):
                    self.discard(item)
            time.sleep(min(1.0, *(i.interval / 2 for i in items)))  # the watch's own period


WATCHER = Watcher()


def watch_transport(
    transport: Any, schedule: tuple[float, int], *, ask: Callable[[], None], on_lost: Callable[[], None]
) -> Keepalive:
    """Start a keepalive watch on an SSH ``transport`` (``schedule``: interval and count_max).

    Every packet the transport's reader thread reads (``packetizer.read_message``) is a sign
    of life; ``ask`` sends one keepalive that wants a reply, ``on_lost`` drops the connection.
    """
    watch = Keepalive(schedule[0], schedule[1], alive=transport.is_active, ask=ask, on_lost=on_lost)
    packetizer = transport.packetizer
    read = packetizer.read_message

    def read_message() -> Any:
        message = read()
        watch.heard()
        return message

    packetizer.read_message = read_message  # the transport's reader thread calls this
    watch.start()
    return watch
