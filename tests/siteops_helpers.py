"""Helpers for the site-operation tests: a tiny PHP shop, a loopback CDN API, run helpers."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: A shop in three pages: a product page with a nonce in its form, a POST that adds the
#: product to the cart kept in $_SESSION (checking the nonce), a cart and a checkout page.
#: Creating the file ``<site>/broken-cart`` makes the cart page fail with 500.
SHOP_FILES: dict[str, str] = {
    "index.php": """<?php
echo "<h1>Lab Shop</h1><a href='/product.php'>Blue Mug</a>\\n";
""",
    "product.php": """<?php
session_start();
$_SESSION['nonce'] = bin2hex(random_bytes(8));
echo "<h1>Blue Mug</h1>\\n";
echo "<form method='post' action='/cart-add.php'>";
echo "<input type='hidden' name='product' value='42'>";
echo "<input type='hidden' name='nonce' value='" . $_SESSION['nonce'] . "'>";
echo "<button>Add to cart</button></form>\\n";
""",
    "cart-add.php": """<?php
session_start();
if ($_SERVER['REQUEST_METHOD'] !== 'POST' || ($_POST['nonce'] ?? '') === ''
    || ($_POST['nonce'] ?? '') !== ($_SESSION['nonce'] ?? null)) {
    http_response_code(403);
    echo "bad nonce\\n";
    exit;
}
$_SESSION['cart'][] = $_POST['product'] === '42' ? 'Blue Mug' : 'Unknown';
header('Location: /cart/', true, 302);
""",
    "cart/index.php": """<?php
session_start();
if (file_exists(__DIR__ . '/../../../../broken-cart')) {
    http_response_code(500);
    echo "<b>Fatal error</b>: Uncaught Error in cart.php\\n";
    exit;
}
$items = $_SESSION['cart'] ?? [];
echo "<h1>Cart</h1>\\n";
echo $items ? "<ul><li>" . implode("</li><li>", $items) . "</li></ul>\\n" : "<p>Your cart is empty</p>\\n";
""",
    "checkout/index.php": """<?php
session_start();
$items = $_SESSION['cart'] ?? [];
if (!$items) { http_response_code(409); echo "empty cart\\n"; exit; }
echo "<h1>Checkout</h1><p>" . count($items) . " item(s): " . implode(', ', $items) . "</p>\\n";
""",
    "slow.php": """<?php
usleep(300000);
echo "slow page\\n";
""",
}

#: The commerce smoke flow for SHOP_FILES.
SHOP_FLOW: list[dict[str, Any]] = [
    {"name": "product", "path": "/product.php", "capture": {"nonce": "name='nonce' value='([0-9a-f]+)'"}},
    {"name": "add to cart", "path": "/cart-add.php", "method": "POST", "data": {"product": "42", "nonce": "{nonce}"}},
    {"name": "cart", "path": "/cart/", "must_match": "Blue Mug"},
    {"name": "checkout", "path": "/checkout/", "must_match": "1 item\\(s\\): Blue Mug"},
]


def write_shop(site_dir: Path, owner: str | None = None) -> Path:
    """Write the shop as release ``r1`` with ``current -> releases/r1``; return the public dir."""
    public = site_dir / "releases" / "r1" / "public"
    for rel, text in SHOP_FILES.items():
        target = public / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (site_dir / "current").symlink_to("releases/r1")
    if owner is not None:
        for root, dirs, files in os.walk(site_dir):
            for name in [*dirs, *files]:
                shutil.chown(os.path.join(root, name), owner, owner)
        os.lchown(site_dir / "current", *_ids(owner))
    return public


def _ids(user: str) -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


@dataclass
class CdnRecorder:
    """A loopback stand-in for the Cloudflare purge API: records requests, checks the bearer token."""

    token: str
    zone_id: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@contextmanager
def cdn_api(token: str, zone_id: str) -> Iterator[CdnRecorder]:
    """Serve ``POST /client/v4/zones/<zone>/purge_cache`` on 127.0.0.1 in a thread."""
    recorder = CdnRecorder(token, zone_id)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            auth_ok = self.headers.get("Authorization") == f"Bearer {recorder.token}"
            path_ok = self.path == f"/client/v4/zones/{recorder.zone_id}/purge_cache"
            recorder.requests.append({"path": self.path, "auth_ok": auth_ok, "body": body})
            if not auth_ok:
                self._answer(403, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]})
            elif not path_ok:
                self._answer(404, {"success": False, "errors": [{"code": 7003, "message": "Could not route"}]})
            else:
                self._answer(200, {"success": True, "errors": [], "messages": [], "result": {"id": recorder.zone_id}})

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/client/v4"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    """The audit events of a run folder."""
    lines = (Path(run_dir) / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_folder_text(run_dir: str | Path) -> str:
    """Everything written into a run folder, as one string (to look for leaked secrets)."""
    out = []
    for path in sorted(Path(run_dir).rglob("*")):
        if path.is_file():
            out.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)
