"""The demo shop on disk: a git repository with two releases, the site directory, an inventory.

Layout of the demo directory (default ``./maint-demo``)::

    repo.git/            bare git repository, tags v1 and v2 (the shop's code)
    shop/                the environment's path: releases/, shared/, current -> releases/...
    shop/shared/var/cache/   the page cache that cache.clear empties
    tls/                 a demo CA and a server certificate (made with cryptography)
    db/                  a private MariaDB data directory (when MariaDB is installed)
    inventory.yml        the demo's inventory (connection: local)
    .maint/              run folders (the audit log) of the demo's runs
    report.md, report.html
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

SITE = "demo-shop"
ENV = "production"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "maint demo",
    "GIT_AUTHOR_EMAIL": "demo@maint.invalid",
    "GIT_COMMITTER_NAME": "maint demo",
    "GIT_COMMITTER_EMAIL": "demo@maint.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}

_STYLE = "body{font-family:sans-serif;max-width:40rem;margin:2rem auto}header{border-bottom:1px solid #ccc}\n"


def _page(title: str, release: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title} - Demo Shop</title>'
        f'<link rel="stylesheet" href="/assets/style.css"></head>\n'
        f'<body><header><h1>Demo Shop</h1><nav><a href="/">Home</a> <a href="/product/">Mug</a> '
        f'<a href="/cart/">Cart</a></nav></header>\n<main>{body}</main>\n'
        f"<footer><small>release {release}</small></footer></body></html>\n"
    )


CART_PHP = """<?php
session_start();
$_SESSION['items'] = $_SESSION['items'] ?? [['name' => 'Demo mug', 'price' => 12.00, 'qty' => 1]];
$release = trim(@file_get_contents(__DIR__ . '/../../RELEASE') ?: '?');
header('Content-Type: text/html; charset=utf-8');
echo "<!doctype html><title>Cart - Demo Shop</title><h1>Your cart</h1><ul>";
foreach ($_SESSION['items'] as $item) {
    printf('<li>%d x %s, %.2f EUR</li>', $item['qty'], htmlspecialchars($item['name']), $item['price']);
}
echo "</ul><p>release " . htmlspecialchars($release) . "</p>";
"""


def release_files(version: str) -> dict[str, str]:
    """The files of one release of the demo shop's code."""
    files = {
        "RELEASE": version + "\n",
        "composer.json": json.dumps(
            {"name": "maint-demo/shop", "type": "project", "require": {}, "repositories": [{"packagist.org": False}]},
            indent=2,
        )
        + "\n",
        "public/assets/style.css": _STYLE,
        "public/index.html": _page("Home", version, "<h2>Welcome</h2><p>Mugs, shirts and stickers.</p>"),
        "public/product/index.html": _page("Mug", version, "<h2>Demo mug</h2><p>12.00 EUR</p>"),
        "public/cart/index.php": CART_PHP,
    }
    if version == "v2":
        files["public/index.html"] = _page(
            "Home",
            version,
            "<h2>Welcome</h2><p>Mugs, shirts and stickers. <strong>New: free shipping over 50 EUR.</strong></p>",
        )
        files["public/checkout/index.html"] = _page("Checkout", version, "<h2>Checkout</h2><p>Address, payment.</p>")
    return files


def _git(args: list[str], cwd: Path, home: Path) -> str:
    git = shutil.which("git")
    if git is None:
        raise RuntimeError("git is not installed")
    env = {**os.environ, **_GIT_ENV, "HOME": str(home)}
    res = subprocess.run([git, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {res.stderr.strip()[-300:]}")
    return res.stdout


def make_repository(bare: Path) -> None:
    """Create ``bare`` (once) with two tagged releases of the shop, v1 and v2."""
    if (bare / "HEAD").is_file():
        return
    with tempfile.TemporaryDirectory(prefix="maint-demo-git-") as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[safe]\n\tdirectory = *\n")
        work.mkdir()
        _git(["init", "-q", "-b", "main"], work, home)
        for version in ("v1", "v2"):
            for rel, content in release_files(version).items():
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            _git(["add", "-A"], work, home)
            _git(["commit", "-q", "-m", f"Demo shop {version}"], work, home)
            _git(["tag", version], work, home)
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git(["clone", "-q", "--bare", str(work), str(bare)], bare.parent, home)


def seed_cache(cache_dir: Path) -> None:
    """Put a few stale cached pages into the page cache (only when it is new)."""
    if cache_dir.is_dir():
        return
    cache_dir.mkdir(parents=True)
    for name in ("index", "product", "cart"):
        (cache_dir / f"{name}.html").write_text(f"<!-- cached {name} page of release v1 -->\n")


def write_inventory(path: Path, shop: Path, url: str, vars: dict[str, Any]) -> None:
    """The demo's inventory: one site, one local environment."""
    data = {
        "sites": {
            SITE: {
                "platform": "generic",
                "environments": {
                    ENV: {"connection": "local", "path": str(shop), "url": url, "vars": vars},
                },
            }
        }
    }
    header = (
        "# The demo shop made by `maint demo`: everything runs on this machine (connection: local).\n"
        "# Rewritten by each `maint demo` (its ports may change).\n"
    )
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
