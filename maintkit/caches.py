"""The run's shared caches: probe results per host (:class:`ProbeCache`) and per-run memos
(:class:`RunMemo`). Both are thread-safe: the sites of a run work in parallel.

:mod:`maintkit.action` re-exports both (``from maintkit.action import ProbeCache, RunMemo``
keeps working).
"""

from __future__ import annotations

import threading
from typing import Any

from maintkit.probes import RawOutput

__all__ = ["ProbeCache", "RunMemo"]


class ProbeCache:
    """Per-run cache of probe results, one namespace per host; thread-safe."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, RawOutput]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, host: str, key: str) -> RawOutput | None:
        """Cached raw output or None."""
        with self._lock:
            value = self._data.get(host, {}).get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def has(self, host: str, key: str) -> bool:
        """Is ``key`` cached for ``host``? (not counted as a hit or a miss)"""
        with self._lock:
            return key in self._data.get(host, {})

    def put(self, host: str, key: str, raw: RawOutput) -> None:
        """Store one raw output."""
        with self._lock:
            self._data.setdefault(host, {})[key] = raw

    def invalidate(self, host: str, keep: set[str] | None = None) -> None:
        """Forget everything about ``host`` (after any change there), except the ``keep`` keys."""
        with self._lock:
            entries = self._data.pop(host, None)
            if entries and keep:
                self._data[host] = {k: v for k, v in entries.items() if k in keep}


class RunMemo:
    """Values computed once per run and shared by every site and step (thread-safe).

    Actions keep per-run memos here (for example a git ref resolved to one commit for every
    site of the run) instead of in module globals; it lives and dies with the run.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, ...], Any] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: tuple[str, ...]) -> Any | None:
        """The value stored under ``key``, or None."""
        with self._guard:
            return self._values.get(key)

    def put(self, key: tuple[str, ...], value: Any) -> None:
        """Store ``value`` under ``key`` for the rest of the run."""
        with self._guard:
            self._values[key] = value

    def lock(self, key: tuple[str, ...]) -> threading.Lock:
        """One lock per ``key`` for this run (serialises work on one shared resource)."""
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())
