"""The demo shop's code, release by release: v1 (online when the demo starts), v2 (coupons,
with a cart that breaks) and v3 (coupons, the cart fixed).

v2's cart configuration ends with a trailing comma: the cart page cannot read it and answers
500, on PHP's built-in server and on the Python stand-in alike. v2 and v3 bring a database
migration (``db/migrations/001-coupons``) that ``bin/migrate`` applies and reverts; it reads
the database settings from the environment's shared ``.env``.
"""

from __future__ import annotations

import json

__all__ = ["BROKEN", "GOOD", "RELEASES", "release_files"]

RELEASES = ("v1", "v2", "v3")
BROKEN = "v2"
GOOD = "v3"

_STYLE = "body{font-family:sans-serif;max-width:40rem;margin:2rem auto}header{border-bottom:1px solid #ccc}\n"

_NEWS = {
    "v1": "",
    "v2": " <strong>New: coupon codes at checkout.</strong>",
    "v3": " <strong>New: coupon codes at checkout.</strong>",
}


def _page(title: str, release: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title} - Demo Shop</title>'
        f'<link rel="stylesheet" href="/assets/style.css"></head>\n'
        f'<body><header><h1>Demo Shop</h1><nav><a href="/">Home</a> <a href="/product/">Mug</a> '
        f'<a href="/cart/">Cart</a></nav></header>\n<main>{body}</main>\n'
        f"<footer><small>release {release}</small></footer></body></html>\n"
    )


CART_PHP = """<?php
// The cart: its items and currency come from config/cart.json (an unreadable file is a fatal error: 500).
session_start();
$config = json_decode(file_get_contents(__DIR__ . '/../../config/cart.json'), true, 16, JSON_THROW_ON_ERROR);
$_SESSION['items'] = $_SESSION['items'] ?? $config['items'];
$release = trim(@file_get_contents(__DIR__ . '/../../RELEASE') ?: '?');
header('Content-Type: text/html; charset=utf-8');
echo "<!doctype html><title>Cart - Demo Shop</title><h1>Your cart</h1><ul>";
foreach ($_SESSION['items'] as $item) {
    printf('<li>%d x %s, %.2f %s</li>', $item['qty'], htmlspecialchars($item['name']), $item['price'],
        htmlspecialchars($config['currency']));
}
echo "</ul><p>Demo Shop, release " . htmlspecialchars($release) . "</p>";
"""

MIGRATE_SH = r"""#!/bin/sh
# bin/migrate up|down|status: this release's database migrations (db/migrations/NNN-name.up.sql
# and .down.sql), recorded in the table schema_migrations. Settings come from the shared .env.
set -eu
app=$(cd "$(dirname "$0")/.." && pwd)
. "$app/.env"
db() { mariadb --defaults-file="$DB_DEFAULTS_FILE" --batch --skip-column-names "$DB_NAME"; }
applied() { echo "SELECT version FROM schema_migrations" | db; }
versions() {
    for f in "$app"/db/migrations/*."$1".sql; do [ -e "$f" ] && basename "$f" ".$1.sql"; done; return 0
}
pending() { have=$(applied); for v in $(versions up); do echo "$have" | grep -qx -- "$v" || echo "$v"; done; }
case "${1:-}" in
status) test -z "$(pending)" ;;
up)
    for v in $(pending); do
        { cat "$app/db/migrations/$v.up.sql"; echo "INSERT INTO schema_migrations VALUES ('$v', NOW());"; } | db
        echo "applied $v"
    done ;;
down)
    have=$(applied)
    for v in $(versions down | sort -r); do
        echo "$have" | grep -qx -- "$v" || continue
        { cat "$app/db/migrations/$v.down.sql"; echo "DELETE FROM schema_migrations WHERE version = '$v';"; } | db
        echo "reverted $v"
    done ;;
*) echo "usage: bin/migrate up|down|status" >&2; exit 2 ;;
esac
"""

_COMPOSER = {
    "name": "maint-demo/shop",
    "type": "project",
    "require": {},
    # a fixed autoloader suffix makes composer's output the same on every build (reproducible)
    "config": {"autoloader-suffix": "MaintDemoShop"},
    "repositories": [{"packagist.org": False}],
}


def _cart_json(version: str) -> str:
    config: dict[str, object] = {
        "currency": "EUR",
        "items": [{"name": "Demo mug", "price": 12.0, "qty": 1}],
    }
    if version == "v1":
        return json.dumps(config, indent=2) + "\n"
    config["coupons"] = True
    text = json.dumps(config, indent=2)
    if version == BROKEN:  # the bug of v2: a trailing comma, which JSON does not allow
        text = text[: text.rindex("}")].rstrip() + ",\n}"
    return text + "\n"


def release_files(version: str) -> dict[str, str]:
    """The files of one release of the demo shop's code (path -> content)."""
    news = _NEWS[version]
    files = {
        "RELEASE": version + "\n",
        "composer.json": json.dumps(_COMPOSER, indent=2) + "\n",
        "config/cart.json": _cart_json(version),
        "bin/migrate": MIGRATE_SH,
        "public/assets/style.css": _STYLE,
        "public/index.html": _page("Home", version, f"<h2>Welcome</h2><p>Mugs, shirts and stickers.{news}</p>"),
        "public/product/index.html": _page("Mug", version, "<h2>Demo mug</h2><p>12.00 EUR</p>"),
        "public/cart/index.php": CART_PHP,
    }
    if version != "v1":
        files["db/migrations/001-coupons.up.sql"] = "ALTER TABLE orders ADD COLUMN coupon VARCHAR(32) NULL;\n"
        files["db/migrations/001-coupons.down.sql"] = "ALTER TABLE orders DROP COLUMN coupon;\n"
    return files
