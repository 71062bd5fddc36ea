"""Helpers for the health tests: a small shop on loopback whose answers a test switches, a
receiver that records what is posted or pushed to it, and a project running the built-in
``health`` playbook on ``connection: local`` sites.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from maintkit.state.index import series

SHOP_PAGES = ("/", "/product/blue-mug/", "/cart/", "/checkout/")
#: health_max_latency_ms for tests not about latency: the playbook's 3000 ms would turn a stall of
#: the shared test machine into an outage the test did not make
NO_LATENCY_LIMIT = 600_000


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class Shop(_Server):
    """A shop answering its pages with ``status`` (200 by default); ``requests`` records each (method, path)."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self) -> None:
                path = self.path.split("?")[0]
                outer.requests.append((self.command, self.path))
                status = outer.status if path in SHOP_PAGES else 404
                body = f"<html><body>shop {path}</body></html>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._answer()

        super().__init__(Handler)


class Receiver(_Server):
    """Records every POST and PUT: method, path, content type and body (JSON decoded when it is JSON)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _record(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                ctype = self.headers.get("Content-Type", "")
                body: Any = json.loads(raw) if "json" in ctype else raw
                outer.requests.append({"method": self.command, "path": self.path, "type": ctype, "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self._record()

            def do_PUT(self) -> None:
                self._record()

        super().__init__(Handler)


@contextmanager
def serving(server: _Server) -> Iterator[Any]:
    """``server``, stopped at the end."""
    try:
        yield server
    finally:
        server.stop()


def health_project(root: Path, url: str, *, envs: tuple[str, ...] = ("production",), vars_: str = "") -> Path:
    """An inventory with one site ``shop`` (``connection: local``) in ``envs``, all served by ``url``
    (no latency limit unless ``vars_`` sets ``health_max_latency_ms``)."""
    lines = ["sites:", "  shop:"]
    if "health_max_latency_ms" not in vars_:
        vars_ = f"{vars_.strip()}\nhealth_max_latency_ms: {NO_LATENCY_LIMIT}"
    lines += ["    vars:", *[f"      {v}" for v in vars_.strip().splitlines()]]
    lines.append("    environments:")
    for env in envs:
        path = root / "srv" / env
        path.mkdir(parents=True, exist_ok=True)
        lines.append(f"      {env}: {{connection: local, path: {path}, url: '{url}'}}")
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    return root


def points(root: Path, name: str, env: str = "production", site: str = "shop") -> list[dict[str, Any]]:
    """The points of series ``name`` in the project's local store (``root/.maint``)."""
    return series(root / ".maint", site, env, name)


__all__ = ["SHOP_PAGES", "Receiver", "Shop", "health_project", "points", "serving"]
