"""The run's heartbeat: one thread renewing the lease of every site lock the run holds.

A lock's lease (``lock_lease`` seconds, docs/state.md#leases) is renewed every third of its
length over the connection the run already has to that host (SSH commands on one connection
from several threads are separate channels), also while a step runs for twenty minutes. The
thread starts with the first lock the run takes and ends when the run holds none. A renewal
that finds another run holding the lock (the lease ran out, and another controller took it
over) reports ``lock.lost`` and asks the run to stop.
"""

from __future__ import annotations

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
    """Renews the leases of every lock one run holds, from one thread. Thread-safe."""

    def __init__(self) -> None:
        self._leases: dict[tuple[str, str], Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, lease: Lease) -> None:
        """Start renewing ``lease`` (a third of its length from now)."""
        lease.due = time.monotonic() + lease.interval
        with self._lock:
            self._leases[(lease.site, lease.env)] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="maint-lease-heartbeat", daemon=True)
                self._thread.start()
        self._wake.set()

    def drop(self, site: str, env: str) -> int:
        """Stop renewing the lease of ``site``/``env`` (waits for a renewal in flight); its renewal count."""
        with self._lock:
            lease = self._leases.pop((site, env), None)
        if lease is None:
            return 0
        with lease.busy:
            return lease.renewals

    def held(self) -> list[tuple[str, str]]:
        """The (site, env) pairs whose leases are being renewed."""
        with self._lock:
            return sorted(self._leases)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._leases:
                    self._thread = None
                    return
                leases = list(self._leases.values())
            for lease in leases:
                if time.monotonic() >= lease.due:
                    self._renew(lease)
            with self._lock:
                due = min((x.due for x in self._leases.values()), default=time.monotonic())
            self._wake.wait(max(0.02, due - time.monotonic()))
            self._wake.clear()

    def _current(self, lease: Lease) -> bool:
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
