"""Noticing a dead SSH connection: the keepalive schedule, independent of the SSH library.

paramiko's ``set_keepalive`` sends requests that want no reply, so they cannot tell a live
connection from a cut one. Here every packet from the server counts as a sign of life
(replies, command output, window adjustments: the transport calls :meth:`Keepalive.heard`).
After ``interval`` seconds of silence, and every ``interval`` seconds after that, a request
that wants a reply is sent (``ask``; OpenSSH answers every ``keepalive@openssh.com`` global
request, with a failure for names it does not know). After ``interval * count_max`` seconds
of silence the connection is declared lost: ``lost_after`` is set and ``on_lost`` is called
(it closes the connection, which fails a running command at once).

ONE thread (:class:`Watcher`) looks after every connection's keepalive, not a thread per host,
and after every command's deadline (:meth:`Watcher.at`: a heap of deadlines, not a
``threading.Timer`` per command). It runs only while there is something to watch: closing the
last connection ends it.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["WATCHER", "Deadline", "Keepalive", "Watcher", "watch_transport"]


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


class Deadline:
    """One command deadline in the shared watch: ``action`` runs at ``when`` unless cancelled first."""

    __slots__ = ("action", "cancelled", "when")

    def __init__(self, when: float, action: Callable[[], None]) -> None:
        self.when, self.action, self.cancelled = when, action, False

    def __lt__(self, other: Deadline) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        """Forget this deadline (the command got past the point it guarded)."""
        WATCHER.cancel(self)


class Watcher:
    """ONE thread watches every connection's keepalive and every command deadline (a heap of
    deadlines, not a ``threading.Timer`` per command). It starts with the first connection or
    deadline and ends as soon as neither is left (closing the last connection joins it)."""

    def __init__(self) -> None:
        self._items: set[Keepalive] = set()
        self._heap: list[Deadline] = []
        self._cancelled = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._quit: threading.Event | None = None  # the running thread's stop flag

    @property
    def running(self) -> bool:
        """True while the watch thread runs."""
        with self._cond:
            return self._thread is not None

    def add(self, item: Keepalive) -> None:
        """Watch ``item`` (starting the thread when it is not running)."""
        with self._cond:
            self._items.add(item)
            self._start()
            self._cond.notify()

    def discard(self, item: Keepalive) -> None:
        """Stop watching ``item``; the thread ends (and is joined) when nothing is left."""
        with self._cond:
            self._items.discard(item)
            ended = self._retire_if_idle()
        _join(ended)

    def at(self, when: float, action: Callable[[], None]) -> Deadline:
        """Run ``action`` (in a helper thread: it may block on a cut network) at monotonic
        time ``when``, unless the returned deadline is cancelled first."""
        deadline = Deadline(when, action)
        with self._cond:
            heapq.heappush(self._heap, deadline)
            self._start()
            if self._heap[0] is deadline:
                self._cond.notify()
        return deadline

    def cancel(self, deadline: Deadline) -> None:
        """Forget ``deadline`` (see :meth:`Deadline.cancel`)."""
        with self._cond:
            if deadline.cancelled:
                return
            deadline.cancelled = True
            self._cancelled += 1
            ended = self._retire_if_idle()
        _join(ended)

    # ---- under the lock -----------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            self._quit = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._quit,), name="maint-ssh-watch", daemon=True)
            self._thread.start()

    def _compact(self) -> None:
        """Drop cancelled deadlines from the top, and all of them when most (or all) are cancelled."""
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
            self._cancelled -= 1
        if self._cancelled == len(self._heap) or (self._cancelled > 32 and self._cancelled * 2 > len(self._heap)):
            self._heap = [d for d in self._heap if not d.cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _retire_if_idle(self) -> threading.Thread | None:
        """Nothing left to watch: stop the thread (returned, to be joined outside the lock)."""
        self._compact()
        if self._items or self._heap or self._thread is None or self._quit is None:
            return None
        thread, self._thread = self._thread, None
        self._quit.set()
        self._cond.notify_all()
        return thread

    def _due(self, now: float) -> list[Deadline]:
        due: list[Deadline] = []
        while self._heap and self._heap[0].when <= now:
            deadline = heapq.heappop(self._heap)
            if deadline.cancelled:
                self._cancelled -= 1
            else:
                deadline.cancelled = True  # fired: a later cancel() is a no-op
                due.append(deadline)
        return due

    # ---- the thread -----------------------------------------------------------------
    def _run(self, quit_: threading.Event) -> None:
        next_tick = 0.0
        while True:
            with self._cond:
                if quit_.is_set():
                    return
                now = time.monotonic()
                due = self._due(now)
                items = list(self._items) if now >= next_tick else []
            for deadline in due:
                threading.Thread(target=deadline.action, name="maint-ssh-deadline", daemon=True).start()
            if items:
                for item in items:
                    if not item.tick(now):
                        self._forget(item)
                next_tick = now + min(1.0, *(i.interval / 2 for i in items))  # the watch's own period
            with self._cond:
                if quit_.is_set():
                    return
                if self._retire_if_idle() is not None:
                    return
                wake = min(next_tick if self._items else math.inf, self._heap[0].when if self._heap else math.inf)
                self._cond.wait(max(0.0, wake - time.monotonic()))

    def _forget(self, item: Keepalive) -> None:
        """Stop watching ``item`` from the watch thread itself (never joins)."""
        with self._cond:
            self._items.discard(item)


def _join(thread: threading.Thread | None) -> None:
    """Wait for a retired watch thread (it only has to wake up), unless it is this thread."""
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=2.0)


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
