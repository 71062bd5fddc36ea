"""Shared WordPress lab fixtures (a registered pytest plugin, see tests/conftest.py).

``wp_template`` installs WordPress once per session (shop-cart 1.0.0 active, a /cart/ page);
``shop`` gives each test a staging and a production copy of it reached over SSH on two lab
hosts, plus an empty plugin-zip repository; ``core_zip`` is a WordPress core package one patch
release ahead; ``update_api`` is a loopback stand-in for the WordPress.org update API. The
helpers (``write_inventory``, ``run``, ``steps``, ``events``, ``cart``) are imported by name;
``make_shop``, ``site_entry`` and ``serve_update_api`` are the fixtures' bodies as plain
functions (benchmarks/monthly.py builds many shops with them).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from maintkit.inventory import Inventory, load_inventory
from maintkit.playbook import load_playbook
from maintkit.results import RunResult, StepResult
from tests import runs
from tests.cms_helpers import WpSite, WpTemplate, build_wordpress_template, chown_tree, make_core_zip
from tests.lab.labdirs import lab_tmpdir
from tests.lab.mariadb import MariaDB
from tests.lab.sshd import LabHost
from tests.lab.web import WebStack


@pytest.fixture(scope="session")
def wp_template(web_stack: WebStack, mariadb: MariaDB) -> Iterator[WpTemplate]:
    """WordPress installed once (shop-cart 1.0.0 active, a /cart/ page); copied per test."""
    base = lab_tmpdir("maintkit-lab-wp-", mode=0o755)
    try:
        yield build_wordpress_template(base, web_stack, mariadb)
    finally:
        if os.environ.get("MAINTKIT_LAB_KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class Shop:
    """A staging/production pair of one WordPress shop."""

    staging: WpSite
    production: WpSite
    staging_host: LabHost
    production_host: LabHost
    repo: Path  # on the controller
    host_dir: Path  # a deploy-owned directory (repositories "on the host", option files)
    web: WebStack
    mariadb: MariaDB
    tmp: Path

    def site(self, env: str) -> WpSite:
        return self.staging if env == "staging" else self.production


@pytest.fixture()
def shop(
    wp_template: WpTemplate,
    web_stack: WebStack,
    mariadb: MariaDB,
    ssh_hosts: list[tuple[LabHost, Path]],
    tmp_path: Path,
) -> Shop:
    (h1, scratch1), (h2, _scratch2) = ssh_hosts[0], ssh_hosts[1]
    return make_shop(wp_template, h1, h2, scratch1, tmp_path)


def make_shop(
    wp_template: WpTemplate, staging_host: LabHost, production_host: LabHost, host_dir: Path, tmp: Path
) -> Shop:
    """A staging and a production copy of the template (own trees and databases), an empty zip
    repository under ``tmp`` (the ``shop`` fixture; benchmarks/monthly.py makes many)."""
    staging = wp_template.make_site(owner="deploy")
    production = wp_template.make_site(owner="deploy")
    repo = tmp / "zips"
    repo.mkdir(parents=True)
    return Shop(
        staging, production, staging_host, production_host, repo, host_dir, wp_template.web, wp_template.mariadb, tmp
    )


def _defaults_file(shop: Shop, site: WpSite) -> str:
    """An option file for deploy (backup.create dumps with it)."""
    path = shop.host_dir / f"{site.db_name}.cnf"
    path.write_text(shop.mariadb.my_cnf_text(site.db_user, site.db_password))
    path.chmod(0o600)
    chown_tree(path, "deploy")
    return str(path)


def write_inventory(
    shop: Shop,
    /,
    cms_update: dict[str, Any] | None = None,
    *,
    envs: tuple[str, ...] = ("staging", "production"),
    site_fields: dict[str, Any] | None = None,
    **vars: Any,
) -> Inventory:
    """Inventory of one site ``shop``: staging on lab host 1, production on lab host 2.

    ``envs`` chooses the environments (a production-only shop: ``("production",)``),
    ``site_fields`` adds site fields (``direct_updates``), ``vars`` the site's variables."""
    sites = {"shop": site_entry(shop, cms_update, envs=envs, site_fields=site_fields, **vars)}
    return load_inventory(runs.write_inventory(shop.tmp, sites, unique=True))


def site_entry(
    shop: Shop,
    /,
    cms_update: dict[str, Any] | None = None,
    *,
    envs: tuple[str, ...] = ("staging", "production"),
    site_fields: dict[str, Any] | None = None,
    **vars: Any,
) -> dict[str, Any]:
    """The inventory entry of ``shop`` (see :func:`write_inventory`)."""
    settings = {"repository": {"path": str(shop.repo)}, "api_url": None, "schema_options": ["shop_cart_db_version"]}
    site_vars = {
        "cms_update": {**settings, **(cms_update or {})},
        "smoke_paths": ["/", "/cart/"],
        "max_latency_ms": 20000,
        "error_logs": [str(shop.web.php_error_log)],
        "cache_targets": ["platform", "opcache"],
        "opcache": {"pidfile": str(shop.web.php_pid_file), "sudo": True},
        **vars,
    }
    hosts = {"staging": shop.staging_host, "production": shop.production_host}
    environments = {}
    for env in envs:
        site = shop.site(env)
        environments[env] = hosts[env].env(
            site.path,
            url=site.url,
            vars={"db_name": site.db_name, "db_defaults_file": _defaults_file(shop, site)},
        )
    return {"platform": "wordpress", "vars": site_vars, "environments": environments, **(site_fields or {})}


def run(shop: Shop, inventory: Inventory, playbook: Any = None, **kwargs: Any) -> RunResult:
    """Run (by default the built-in monthly-update) with the test's own state dir."""
    pb = playbook if playbook is not None else load_playbook("monthly-update")
    return runs.run(pb, inventory, shop.tmp / "state", **kwargs)


#: a ``sh`` function for ``php`` shims: ``php_args "$@"`` sets ``root`` and ``cmd`` (the helper's
#: WordPress root and command, second and third after any ``-d`` settings)
PHP_ARGS_SH = 'php_args() { while [ "$1" = -d ]; do shift 2; done; root=$2; cmd=$3; }\n'


def steps(result: RunResult, env: str) -> dict[str, StepResult]:
    """Step results of one environment by step id."""
    return {s.step: s for site in result.sites for s in site.steps if s.env == env}


def events(result: RunResult) -> list[dict[str, Any]]:
    """The run's audit log."""
    text = (Path(str(result.run_dir)) / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def cart(site: WpSite) -> requests.Response:
    """GET a site's /cart/ page."""
    return requests.get(f"{site.url}/cart/", timeout=20)


@pytest.fixture(scope="session")
def core_zip(wp_template: WpTemplate, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WordPress 6.1.10 core package built from the installed 6.1.9 tree."""
    return make_core_zip(wp_template.tree, tmp_path_factory.mktemp("core"), "6.1.10")


@pytest.fixture()
def update_api(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback stand-in for the WordPress.org update API (and a download server): (base URL, zip dir)."""
    zips = tmp_path / "downloads"
    zips.mkdir()
    with serve_update_api(zips) as url:
        yield url, zips


@contextmanager
def serve_update_api(
    zips: Path,
    latest: list[str] | None = None,
    *,
    served: list[str] | None = None,
    before_answer: Callable[[], None] | None = None,
) -> Iterator[str]:
    """Serve the update API stand-in (shop-cart 1.0.0 and 1.1.0, core 6.1.9) and the zips in
    ``zips`` under ``/downloads/`` on a free loopback port; yields the base URL.

    ``latest`` (a one-item list the caller may change while it serves) is shop-cart's newest
    version offered (default 1.1.0). ``served`` gets every request's path and query, in order.
    ``before_answer`` is called before each answer (benchmarks/monthly.py delays them there, as a
    distant server's would be)."""
    newest = latest if latest is not None else ["1.1.0"]
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if served is not None:
                served.append(self.path)
            if before_answer is not None:
                before_answer()
            url = urlparse(self.path)
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            query = parse_qs(url.query)
            if url.path == "/plugins/info/1.2/" and query.get("request[slug]") == ["shop-cart"]:
                version = newest[0]
                versions = {
                    v: f"{base}/downloads/shop-cart-{v}.zip" for v in dict.fromkeys(["1.0.0", "1.1.0", version])
                }
                info = {
                    "slug": "shop-cart",
                    "version": version,
                    "requires_php": "7.4",
                    "download_link": f"{base}/downloads/shop-cart-{version}.zip",
                    "versions": {**versions, "trunk": f"{base}/downloads/shop-cart.zip"},
                }
                self._send(200, json.dumps(info).encode())
            elif url.path in ("/plugins/info/1.2/", "/themes/info/1.2/"):
                self._send(200, json.dumps({"error": "Plugin not found."}).encode())
            elif url.path == "/core/version-check/1.7/":
                offer = {"response": "latest", "version": "6.1.9", "packages": {"full": f"{base}/downloads/wp.zip"}}
                self._send(200, json.dumps({"offers": [offer]}).encode())
            elif url.path.startswith("/downloads/") and (zips / url.path.rsplit("/", 1)[1]).is_file():
                self._send(200, (zips / url.path.rsplit("/", 1)[1]).read_bytes(), "application/zip")
            else:
                self._send(404, b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
