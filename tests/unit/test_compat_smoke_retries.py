"""compat.check's smoke requests: a gateway answer (502/503/504) is tried again, the shop's own answer is not."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from maintkit.actions.compat import CompatCheck, CompatCheckParams
from tests.health_helpers import _Server


class _Script:
    """Statuses the server answers, one per request, for each path."""

    def __init__(self, plan: dict[str, list[int]]) -> None:
        self.plan = {k: list(v) for k, v in plan.items()}
        self.served: list[tuple[str, int]] = []


@pytest.fixture()
def server() -> Iterator[tuple[str, _Script]]:
    script = _Script({})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            status = script.plan[self.path].pop(0)
            script.served.append((self.path, status))
            body = b"ok"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = _Server(Handler)
    try:
        yield server.url, script
    finally:
        server.stop()


def _smoke(url: str, paths: list[str], **params: Any) -> tuple[list[str], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    action = CompatCheck.__new__(CompatCheck)
    action.params = CompatCheckParams(smoke=paths, smoke_backoff_s=0, **params)
    action.step_id = "compat"
    ctx = SimpleNamespace(env=SimpleNamespace(url=url), event=lambda name, **f: events.append({"event": name, **f}))
    return action._smoke_failures(ctx), events  # type: ignore[arg-type]


def test_a_gateway_answer_is_tried_again_and_passes(server: tuple[str, _Script]) -> None:
    url, script = server
    script.plan = {"/": [502, 503, 200], "/cart/": [200]}
    failures, events = _smoke(url, ["/", "/cart/"])
    assert failures == []
    assert script.served == [("/", 502), ("/", 503), ("/", 200), ("/cart/", 200)]
    assert [(e["url"], e["status"], e["attempt"]) for e in events] == [
        (f"{url}/", 502, 1), (f"{url}/", 503, 2), (f"{url}/", 200, 3), (f"{url}/cart/", 200, 1)
    ]  # fmt: skip


def test_a_gateway_that_never_recovers_fails_after_the_retries(server: tuple[str, _Script]) -> None:
    url, script = server
    script.plan = {"/": [504, 504, 504, 200]}
    failures, _ = _smoke(url, ["/"])
    assert failures == ["smoke /: HTTP 504"]
    assert script.served == [("/", 504)] * 3
    script.plan = {"/": [502, 200]}
    failures, _ = _smoke(url, ["/"], smoke_retries=0)
    assert failures == ["smoke /: HTTP 502"]


def test_the_shops_own_error_is_not_retried(server: tuple[str, _Script]) -> None:
    url, script = server
    script.plan = {"/": [500, 200]}
    failures, events = _smoke(url, ["/"])
    assert failures == ["smoke /: HTTP 500"]
    assert script.served == [("/", 500)]
    assert len(events) == 1


def test_no_answer_at_all_is_retried_then_named() -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:9/", timeout=2)  # nothing listens on the discard port here
    failures, events = _smoke("http://127.0.0.1:9", ["/"], smoke_timeout=2)
    assert failures == ["smoke /: ConnectionError"]
    assert events == []
