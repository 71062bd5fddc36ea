"""The run's GET cache (maintkit/_http_cache.py) against a real HTTP server on loopback, which
counts the requests it answers: one download per URL, errors never kept, the byte budget."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests

from maintkit._http_cache import GetCache
from tests.health_helpers import _Server, serving


class Server(_Server):
    """Answers ``/<status>/<size>`` with that status and ``size`` bytes; ``/gate/...`` first
    waits for :attr:`gate`. ``/flaky`` answers 500 once, then 200. Counts every request."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()
        self.gate = threading.Event()
        self.waiting = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                outer.asked[self.path] += 1
                parts = self.path.strip("/").split("/")
                if parts[0] == "gate":
                    outer.waiting.set()
                    outer.gate.wait(30)
                    parts = parts[1:]
                if parts[0] == "flaky":
                    status, size = (500 if outer.asked[self.path] == 1 else 200), 10
                else:
                    status, size = int(parts[0]), int(parts[1])
                body = b"x" * size
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
        self.base = self.url

    def stop(self) -> None:
        self.gate.set()  # a held request must not keep the server from shutting down
        super().stop()


@pytest.fixture()
def server() -> Iterator[Server]:
    with serving(Server()) as s:
        yield s


def test_one_download_per_url_and_the_same_bytes_to_every_asker(server: Server) -> None:
    cache = GetCache()
    answers = [cache.get(f"{server.base}/200/1000", timeout=10) for _ in range(3)]
    other = cache.get(f"{server.base}/200/5", timeout=10)

    assert [(a.status, a.content, a.reused) for a in answers] == [
        (200, b"x" * 1000, False),
        (200, b"x" * 1000, True),
        (200, b"x" * 1000, True),
    ]
    assert (other.status, other.content) == (200, b"xxxxx")
    assert server.asked == Counter({"/200/1000": 1, "/200/5": 1})
    assert (cache.fetched, cache.reused, cache.kept_bytes) == (2, 2, 1005)


def test_askers_meanwhile_wait_for_the_one_download(server: Server) -> None:
    cache = GetCache()
    url = f"{server.base}/gate/200/64"
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(cache.get(url, timeout=30)))
    first.start()
    assert server.waiting.wait(30)  # the first download is in flight, held by the server
    others = [threading.Thread(target=lambda: results.append(cache.get(url, timeout=30))) for _ in range(3)]
    for t in others:
        t.start()
    server.gate.set()
    for t in [first, *others]:
        t.join(30)

    assert server.asked == Counter({"/gate/200/64": 1})
    assert (
        sorted((r.status, r.content, r.reused) for r in results)
        == [(200, b"x" * 64, False)] + [(200, b"x" * 64, True)] * 3
    )


def test_a_404_is_kept_and_a_5xx_is_asked_again(server: Server) -> None:
    cache = GetCache()
    missing = [cache.get(f"{server.base}/404/2", timeout=10).status for _ in range(2)]
    flaky = [cache.get(f"{server.base}/flaky", timeout=10) for _ in range(3)]

    assert missing == [404, 404]
    assert [(a.status, a.reused) for a in flaky] == [(500, False), (200, False), (200, True)]
    assert server.asked == Counter({"/404/2": 1, "/flaky": 2})


def test_answers_beyond_the_budget_are_returned_and_not_kept(server: Server) -> None:
    cache = GetCache(max_bytes=100)
    small = [cache.get(f"{server.base}/200/60", timeout=10) for _ in range(2)]
    large = [cache.get(f"{server.base}/200/50", timeout=10) for _ in range(2)]  # 60 + 50 > 100

    assert [len(a.content) for a in small + large] == [60, 60, 50, 50]
    assert [a.reused for a in small + large] == [False, True, False, False]
    assert server.asked == Counter({"/200/60": 1, "/200/50": 2})
    assert cache.kept_bytes == 60


def test_an_unreachable_url_raises_and_is_not_kept(server: Server) -> None:
    cache = GetCache()
    with pytest.raises(requests.ConnectionError):
        cache.get("http://127.0.0.1:9/", timeout=2)  # nothing listens on the discard port here
    with pytest.raises(requests.ConnectionError):
        cache.get("http://127.0.0.1:9/", timeout=2)
    assert (cache.fetched, cache.reused, cache.kept_bytes) == (0, 0, 0)
