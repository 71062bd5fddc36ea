"""The demo shop's web front: PHP's built-in server with a router when PHP is installed,
else a small Python server (static files plus a cookie cart)."""

from __future__ import annotations

import html
import http.server
import json
import os
import secrets
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from maintkit.demo.common import DemoServerError, free_port, terminate, wait_http

__all__ = ["ROUTER_PHP", "ThreadedServer", "WebFront", "shop_handler", "start_web"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".js": "application/javascript",
    ".txt": "text/plain",
}


class _ShopHandler(http.server.BaseHTTPRequestHandler):
    """Static files from ``docroot`` (resolved per request, so a symlink switch shows at once),
    plus a small dynamic cart at ``/cart/`` (used when PHP is not installed)."""

    server_version = "maint-demo"
    sys_version = ""
    docroot: ClassVar[Path]
    release_hint: ClassVar[str] = "?"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(
        self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _root(self) -> Path | None:
        try:
            return self.docroot.resolve(strict=True)
        except OSError:
            return None

    def do_HEAD(self) -> None:
        """Answer like GET, without the body."""
        self.do_GET()

    def do_GET(self) -> None:
        """A file under the docroot, the cart, 404 or 503 (nothing deployed yet)."""
        root = self._root()
        if root is None:
            self._send(503, b"<h1>503</h1><p>No release deployed yet.</p>")
            return
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path.rstrip("/") == "/cart":
            self._cart(root)
            return
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root):
            self._send(404, b"not found")
            return
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            self._send(404, b"<h1>404</h1><p>not found</p>")
            return
        self._send(200, target.read_bytes(), _TYPES.get(target.suffix, "application/octet-stream"))

    def _cart(self, root: Path) -> None:
        """The stand-in for the release's PHP cart: like it, reads ``config/cart.json`` (500 when it cannot)."""
        release_file = root.parent / "RELEASE"
        release = release_file.read_text().strip() if release_file.is_file() else self.release_hint
        try:
            config = json.loads((root.parent / "config" / "cart.json").read_text())
            currency = html.escape(str(config["currency"]))
            items = "".join(
                f"<li>{int(i['qty'])} x {html.escape(str(i['name']))}, {float(i['price']):.2f} {currency}</li>"
                for i in config["items"]
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            why = html.escape(str(exc))
            self._send(500, f"<h1>500</h1><p>the cart cannot read config/cart.json: {why}</p>".encode())
            return
        cookie = self.headers.get("Cookie", "")
        session = cookie.split("cart=", 1)[1].split(";", 1)[0] if "cart=" in cookie else secrets.token_hex(8)
        body = (
            "<!doctype html><title>Cart - Demo Shop</title><h1>Your cart</h1>"
            f"<ul>{items}</ul><p>Demo Shop, release {html.escape(release)}</p>"
        ).encode()
        self._send(200, body, extra={"Set-Cookie": f"cart={session}; Path=/; HttpOnly"})


def shop_handler(docroot: Path, release_hint: str) -> type[http.server.BaseHTTPRequestHandler]:
    """A request handler class serving ``docroot`` (see :class:`_ShopHandler`)."""
    return type("Handler", (_ShopHandler,), {"docroot": docroot, "release_hint": release_hint})


class ThreadedServer:
    """An HTTP(S) server in a daemon thread."""

    def __init__(
        self, handler: type[http.server.BaseHTTPRequestHandler], port: int, context: ssl.SSLContext | None = None
    ) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"maint-demo-{self.port}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


ROUTER_PHP = r"""<?php
// Router for PHP's built-in server: serves <path>/current/public resolved per request,
// so a release switch (symlink) shows at once: PHP's realpath cache would keep the old release.
clearstatcache(true);
$root = realpath(getenv('MAINT_DEMO_DOCROOT'));
if ($root === false) { http_response_code(503); echo "No release deployed yet.\n"; return true; }
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$file = realpath($root . $path);
if ($file === false || strncmp($file, $root, strlen($root)) !== 0) {
    http_response_code(404); echo "not found\n"; return true;
}
if (is_dir($file)) {
    foreach (['index.php', 'index.html'] as $index) {
        if (is_file($file . '/' . $index)) { $file = $file . '/' . $index; break; }
    }
}
if (!is_file($file)) { http_response_code(404); echo "not found\n"; return true; }
if (substr($file, -4) === '.php') { chdir(dirname($file)); require $file; return true; }
$types = [
    'html' => 'text/html; charset=utf-8', 'css' => 'text/css', 'js' => 'application/javascript', 'txt' => 'text/plain',
];
header('Content-Type: ' . ($types[pathinfo($file, PATHINFO_EXTENSION)] ?? 'application/octet-stream'));
readfile($file);
return true;
"""


@dataclass
class WebFront:
    """The demo shop's web server on 127.0.0.1:``port``, PHP's when available."""

    port: int
    kind: str
    _server: ThreadedServer | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The PHP server's pid (None for the in-process Python server)."""
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        """Stop the server (the PHP process by its pid)."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None


def start_web(docroot: Path, workdir: Path, preferred_port: int | None = None, use_php: bool = True) -> WebFront:
    """Start the web front serving ``docroot`` (``<path>/current/public``)."""
    php = shutil.which("php") if use_php else None
    port = free_port(preferred_port)
    if php:
        router = workdir / "router.php"
        router.write_text(ROUTER_PHP)
        log = (workdir / "php-server.log").open("ab")
        env = {**os.environ, "MAINT_DEMO_DOCROOT": str(docroot), "PHP_CLI_SERVER_WORKERS": "4"}
        proc = subprocess.Popen(
            [php, "-S", f"127.0.0.1:{port}", "-t", str(workdir), str(router)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        front = WebFront(port, "php", _proc=proc)
    else:
        front = WebFront(port, "python", _server=ThreadedServer(shop_handler(docroot, "?"), port))
    try:
        wait_http(front.url + "/")
    except DemoServerError:
        front.stop()
        raise
    return front
