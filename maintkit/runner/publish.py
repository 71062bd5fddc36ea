"""Publishing the run's state: run folder and index files, at stage boundaries and at the end.

One publisher thread per run, one publish in flight: requests that arrive while a publish
runs are merged into the next one (their paths joined, the latest message kept), so a
50-site run whose stages all end at about the same moment pays a few publishes, not 50.
A publish that fails keeps its paths for the next one; the final publish (:meth:`Publisher.close`)
includes everything not yet published and is waited for. Its failure is what the caller
reports as "state not saved"; an earlier failure that a later publish made good is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from maintkit.errors import MaintkitError
from maintkit.state.base import StateStore

#: called with the reason of each failed publish (not the final one)
OnError = Callable[[str], None]


class Publisher:
    """Coalescing, single-flight publishing of paths under a store's root."""

    def __init__(self, store: StateStore, on_error: OnError | None = None) -> None:
        self.store = store
        self.on_error = on_error
        self.publishes = 0
        self._pending: set[Path] = set()
        self._carry: set[Path] = set()  # paths of a failed publish: they go with the next one
        self._message = ""
        self._closing = False
        #: set once :meth:`close` was called (no request is taken after it)
        self.closing = threading.Event()
        self._final_error: str | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def request(self, paths: Iterable[Path], message: str) -> None:
        """Ask for ``paths`` to be published soon (merged with any request not yet started)."""
        with self._cond:
            if self._closing:
                return
            self._pending.update(Path(p) for p in paths)
            self._message = message
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="maint-state-publish", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def close(self, paths: Iterable[Path], message: str) -> str | None:
        """Publish ``paths`` and everything still pending, wait; the reason it failed, or None."""
        with self._cond:
            self._pending.update(Path(p) for p in paths)
            self._message = message
            self._closing = True
            self.closing.set()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._cond:
            pending, self._pending, self._carry = sorted(self._pending | self._carry), set(), set()
        if pending:
            self._final_error = self._publish(pending, message)
        return self._final_error

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return  # close() publishes what is left, in the caller's thread
                batch, self._pending, self._carry = sorted(self._pending | self._carry), set(), set()
                message = self._message
            error = self._publish(batch, message)
            if error is not None:
                with self._cond:
                    self._carry.update(batch)  # kept for the next (or the final) publish, not retried at once
                if self.on_error is not None:
                    self.on_error(error)

    def _publish(self, paths: Sequence[Path], message: str) -> str | None:
        self.publishes += 1
        try:
            self.store.publish(list(paths), message)
        except MaintkitError as exc:
            return str(exc) or type(exc).__name__
        except Exception as exc:  # a backend's bug must not take the run (or its final publish) down
            return f"{type(exc).__name__}: {exc}"
        return None


__all__ = ["OnError", "Publisher"]
