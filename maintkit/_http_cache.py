"""One run's downloads: every site and step of a run that GETs the same URL gets one download.

cms.update (WordPress) asks the update API about each package and downloads each candidate
zip on the controller, and a run asks again in several places: the precheck, the update on
staging, the maintenance window's look at production, production's update, and every shop of
the fleet that runs the same plugin. Over the real WordPress.org that was one request and one
download of the same zip per place and per shop. With this cache the first asker downloads and
the others (waiting for it when they ask meanwhile) get the same bytes.

What is kept: answers with status 200 or 404 (404 is the API's definitive "no such package"),
for the run only (in memory, never on disk), up to :data:`MAX_BYTES` in all; an answer that no
longer fits is returned and not kept. An error (a timeout, a refused connection, a 5xx) is never
kept: the next asker tries again. Every consumer checks what it got as before (the sha256 in
the version lock, the package's header), so a shared answer changes nothing a run verifies.

Only :mod:`maintkit._http` makes the requests (``~/.netrc`` never read); this module imports it
when the first request is made.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

#: the most bytes one run keeps (bodies of 200 and 404 answers); beyond it answers are not kept
MAX_BYTES = 128 * 1024 * 1024
#: the statuses whose answers are kept
KEPT_STATUSES = frozenset({200, 404})


@dataclass(frozen=True)
class Fetched:
    """One answer: the status, the body, and whether it came from the cache."""

    status: int
    content: bytes
    reused: bool = False


class GetCache:
    """The run's GET cache (thread-safe; one download per URL at a time, see the module docstring)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.kept_bytes = 0
        #: requests sent, and answers served from the cache
        self.fetched = 0
        self.reused = 0
        self._answers: dict[str, Fetched] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, url: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(url, threading.Lock())

    def get(self, url: str, *, timeout: float) -> Fetched:
        """GET ``url`` (redirects followed) or the run's earlier answer to it.

        Raises what :func:`maintkit._http.get` raises (``requests.RequestException``)."""
        with self._lock_for(url):
            with self._guard:
                kept = self._answers.get(url)
                if kept is not None:
                    self.reused += 1
                    return Fetched(kept.status, kept.content, reused=True)
            from maintkit import _http

            resp = _http.get(url, timeout=timeout)
            answer = Fetched(resp.status_code, resp.content)
            with self._guard:
                self.fetched += 1
                if answer.status in KEPT_STATUSES and self.kept_bytes + len(answer.content) <= self.max_bytes:
                    self._answers[url] = answer
                    self.kept_bytes += len(answer.content)
            return answer


__all__ = ["KEPT_STATUSES", "MAX_BYTES", "Fetched", "GetCache"]
