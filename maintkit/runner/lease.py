"""The run's heartbeat: one thread renewing the lease of every site lock the run holds.

A lock's lease (``lock_lease`` seconds, docs/state.md#leases) is renewed every third of its
length over the connection the run already has to that host (SSH commands on one connection
from several threads are separate channels), also while a step runs for twenty minutes. The
thread starts with the first lock the run takes and ends when the run holds none. A renewal
that finds another run holding the lock (the lease ran out, and another controller took it
over) reports ``lock.lost`` and asks the run to stop.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from maintkit import locks as site_locks
from maintkit._text import tail
from maintkit.errors import MaintkitError
from maintkit.transport.base import Transport

Emit = Callable[..., Any]

#: seconds to wait before trying again after a renewal that failed or found a taker looking
_RETRY = 1.0


@dataclass
class Lease:
    """One held lock whose lease the heartbeat renews."""

    site: str
    env: str
    host: str
    path: str
    gen: str
    seconds: int
    transport: Transport
    emit: Emit
    on_lost: Callable[[], None]
    #: monotonic time of the next renewal
    due: float = 0.0
    renewals: int = 0
    #: held while a renewal of this lease runs (a release waits for it)
    busy: threading.Lock = field(default_factory=threading.Lock)

    @property
    def interval(self) -> float:
        """Seconds between renewals: a third of the lease."""
        return self.seconds / 3


class Heartbeat:
    """Renews the leases of every lock one run holds, from one thread. Thread-safe.

    The leases wait in a heap ordered by their next renewal: taking a lock costs a push, and
    wakes the thread only when that lease is due before every other one (never, when all
    leases have the same length), so a fleet of hundreds of locks costs the same per lock as
    a few. Between renewals the thread holds no lease (nor its transport), and it ends as soon
    as the run holds none.
    """

    def __init__(self) -> None:
        self._leases: dict[tuple[str, str], Lease] = {}
        #: (due, n, key): a lease's next renewal; an entry whose lease was dropped or renewed since is skipped
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._pushed = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: how many times the thread looked at its heap (each start and each wake-up): a counter for tests
        self.looks = 0

    def hold(self, lease: Lease) -> None:
        """Start renewing ``lease`` (a third of its length from now)."""
        lease.due = time.monotonic() + lease.interval
        key = (lease.site, lease.env)
        with self._lock:
            self._leases[key] = lease
            first = self._push(key, lease.due)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="maint-lease-heartbeat", daemon=True)
                self._thread.start()
                return
        if first:
            self._wake.set()

    def drop(self, site: str, env: str) -> int:
        """Stop renewing the lease of ``site``/``env`` (waits for a renewal in flight); its renewal count."""
        with self._lock:
            lease = self._leases.pop((site, env), None)
            last = not self._leases
        if lease is None:
            return 0
        if last:
            self._wake.set()  # nothing left to renew: the thread ends now, not at the next renewal
        with lease.busy:
            return lease.renewals

    def held(self) -> list[tuple[str, str]]:
        """The (site, env) pairs whose leases are being renewed."""
        with self._lock:
            return sorted(self._leases)

    def _push(self, key: tuple[str, str], due: float) -> bool:
        """Queue ``key``'s renewal at ``due`` (under the lock); True when it is now the first due."""
        self._pushed += 1
        heapq.heappush(self._heap, (due, self._pushed, key))
        if len(self._heap) > 2 * len(self._leases) + 32:  # mostly entries of dropped or renewed leases
            self._heap = [(d, n, k) for d, n, k in self._heap if (x := self._leases.get(k)) is not None and x.due == d]
            heapq.heapify(self._heap)
        return self._heap[0][2] == key and self._heap[0][0] == due

    def _next_due(self, now: float) -> tuple[Lease | None, float | None]:
        """(a lease due now, None) or (None, when the next one is due); (None, None): none held, the thread ends."""
        with self._lock:
            self.looks += 1
            while self._heap:
                due, _, key = self._heap[0]
                lease = self._leases.get(key)
                if lease is None or lease.due != due:  # dropped, or renewed and queued again
                    heapq.heappop(self._heap)
                    continue
                if due > now:
                    return None, due
                heapq.heappop(self._heap)
                return lease, None
            if not self._leases:
                self._thread = None
                return None, None
            return None, now + 1.0  # not reached: every held lease has an entry

    def _loop(self) -> None:
        while True:
            self._wake.clear()  # before looking: a lease held from now on wakes the wait below
            lease, wake_at = self._next_due(time.monotonic())
            if lease is not None:
                self._renew(lease)
                with self._lock:
                    if self._current(lease, locked=True):
                        self._push((lease.site, lease.env), lease.due)
                del lease  # sleep without holding a lease (nor its transport)
                continue
            if wake_at is None:
                return
            self._wake.wait(max(0.02, wake_at - time.monotonic()))

    def _current(self, lease: Lease, locked: bool = False) -> bool:
        if locked:
            return self._leases.get((lease.site, lease.env)) is lease
        with self._lock:
            return self._leases.get((lease.site, lease.env)) is lease

    def _renew(self, lease: Lease) -> None:
        """Renew one lease; on a lost lock, stop renewing it and tell the run."""
        with lease.busy:
            if not self._current(lease):
                return
            where = {"site": lease.site, "env": lease.env, "host": lease.host}
            script = site_locks.renew_script(lease.path, lease.gen, lease.seconds)
            try:
                res = lease.transport.run_shell(script, check=False, timeout=max(1.0, lease.interval))
            except MaintkitError as exc:
                lease.due = time.monotonic() + min(_RETRY, lease.interval)
                lease.emit("lock.renew_failed", **where, error=str(exc))
                return
            if res.exit_code == 0:
                lease.due = time.monotonic() + lease.interval
                lease.renewals += 1
                return
            if res.exit_code not in (site_locks.LOST_EXIT, 4):
                lease.due = time.monotonic() + min(_RETRY, lease.interval)
                if res.exit_code != 7:  # 7: a taker was looking at the lock at that moment
                    lease.emit("lock.renew_failed", **where, error=tail(res.stdout or res.stderr, 300))
                return
            with self._lock:
                self._leases.pop((lease.site, lease.env), None)
        holder = site_locks.parse_holder(res.stdout)
        lease.emit("lock.lost", **where, holder=holder or None, renewals=lease.renewals)
        lease.on_lost()


__all__ = ["Heartbeat", "Lease"]
