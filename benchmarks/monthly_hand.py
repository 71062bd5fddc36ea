"""The monthly update done by hand, for ``monthly.py`` and ``monthly_cost.py``: what an admin
runs for one copy of a shop (a dump, the download, WordPress's own upgrader in one PHP run, the
cache flush and OPcache reset, ``php -l`` and the smoke pages), over one paramiko connection per
host, one exec session per command; every operation is checked, and a failure stops the
benchmark. See ``monthly.py``'s docstring for how the two sides are compared.
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_cpu  # noqa: E402

from maintkit.actions.cms.drivers.wordpress_state import wp_helper_source  # noqa: E402
from tests.cms_helpers import WpSite  # noqa: E402
from tests.lab.sshd import LOGIN_USER, LabHost, SshLab  # noqa: E402
from tests.lab.wp_fixtures import Shop  # noqa: E402

#: the smoke paths of the lab's inventory (tests/lab/wp_fixtures.py site_entry), fetched by
#: compat.check and http.check on staging, by http.check on production
SMOKE_PATHS = ["/", "/cart/"]

# ---------------------------------------------------------------------------- by hand

#: the operations of one copy by hand, in the playbook's order, and the maint step each one does
HAND_OPS = {"backup": "backup", "download": "update", "upgrade": "update", "cache": "cache", "lint": "compat",
            "compat_curl": "compat", "smoke_curl": "smoke"}  # fmt: skip


class Remote:
    """One SSH connection (paramiko, as the login user) to a lab host, shared by the threads;
    one exec session per command, as ``ssh host command`` over a reused connection."""

    def __init__(self, host: LabHost) -> None:
        import paramiko

        self.client = paramiko.SSHClient()
        self.client.load_host_keys(str(host.known_hosts))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.client.connect(
            host.ip, port=host.port, username=LOGIN_USER, key_filename=str(host.client_key),
            look_for_keys=False, allow_agent=False, timeout=10, channel_timeout=10,
        )  # fmt: skip

    def run(self, argv: list[str], stdin: bytes = b"", what: str = "") -> str:
        """Run ``argv`` (quoted) on the host; its stdout; stop the benchmark when it fails."""
        _in, out, err = self.client.exec_command(shlex.join(argv), timeout=300)
        if stdin:
            _in.write(stdin)
        _in.channel.shutdown_write()
        text, errors = out.read().decode(), err.read().decode()
        if out.channel.recv_exit_status() != 0:
            raise SystemExit(f"by hand, {what or argv[0]} failed: {errors[-2000:]}{text[-2000:]}")
        return text

    def close(self) -> None:
        """Close the connection."""
        self.client.close()


#: OPcache reset inside the pool, as cachetool does it: a throw-away script requested over FastCGI
#: (no worker restarts, so the other shops' requests are not cut: the playbook's setting below)
_FCGI_RESET = (
    'f=$(mktemp --suffix=.php) && chmod 644 "$f" && '
    'printf \'<?php opcache_reset(); echo "MAINT-OPCACHE-RESET";\' > "$f" && '
    'env -i SCRIPT_FILENAME="$f" SCRIPT_NAME=/r.php REQUEST_METHOD=GET cgi-fcgi -bind -connect "$1"; '
    'rc=$?; rm -f -- "$f"; exit $rc'
)


#: WordPress booted from the PHP CLI as an admin's script does: argv ABSPATH, then the site URL
#: (its host names the site); maintenance mode bypassed for this process only
WP_BOOT_PHP = r"""
error_reporting(E_ERROR | E_PARSE);
ini_set('display_errors', 'stderr');
$GLOBALS['wp_filter'] = ['enable_maintenance_mode' => [10 => [[
    'function' => function () { return false; }, 'accepted_args' => 1]]]];
$u = parse_url($argv[2]);
if (!empty($u['host'])) {
    $_SERVER['HTTP_HOST'] = $u['host'] . (isset($u['port']) ? ':' . $u['port'] : '');
    $_SERVER['SERVER_NAME'] = $u['host'];
    if (($u['scheme'] ?? '') === 'https') { $_SERVER['HTTPS'] = 'on'; }
}
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET';
define('WP_USE_THEMES', false);
require $argv[1] . '/wp-load.php';
"""

#: An admin's flush from the PHP CLI (cache.clear's own before it used the PHP helper): WordPress's
#: object cache and rewrite rules. argv: ABSPATH, site URL, "1" to flush rewrite rules.
WP_FLUSH_PHP = (
    WP_BOOT_PHP
    + r"""
$ok = wp_cache_flush();
if ($argv[3] === '1') { flush_rewrite_rules(false); }
echo "\nMAINTKIT-FLUSHED " . ($ok ? '1' : '0') . "\n";
"""
)


def hand_commands(shop: Shop, env: str, zip_url: str) -> dict[str, list[str]]:
    """The commands an admin runs on the host for one copy (``bash -c`` scripts, values quoted)."""
    site, q = shop.site(env), shlex.quote
    out = shop.host_dir / f"by-hand-{site.name}"
    dump = (
        f"set -eo pipefail; mkdir -p -- {q(str(out))}; "
        f"mariadb-dump --defaults-file={q(str(shop.host_dir / (site.db_name + '.cnf')))} --single-transaction "
        f"--routines --triggers --no-tablespaces --hex-blob -- {q(site.db_name)} | gzip -c > {q(str(out / 'db.sql.gz'))}; "
        f"stat -c %s -- {q(str(out / 'db.sql.gz'))}; sha256sum -- {q(str(out / 'db.sql.gz'))}"
    )
    lint = f"cd -- {q(str(site.plugin_dir))} && find . -type f -name '*.php' -exec php -l {{}} \\; >/dev/null"
    return {
        "backup": ["bash", "-c", dump],
        "download": ["curl", "-fsS", "--max-time", "60", "-o", str(out / "shop-cart.zip"), "--", zip_url],
        "upgrade": ["php", "--", str(site.path), "install", json.dumps(
            {"type": "plugin", "zip": str(out / "shop-cart.zip"), "slug": "shop-cart", "active": True})],
        "flush": ["sh", "-c", f"cd -- {q(str(site.path))} && exec \"$@\"", "sh",
                  "php", "-r", WP_FLUSH_PHP, "--", str(site.path), site.url, "1"],
        "opcache": ["sh", "-c", _FCGI_RESET, "sh", f"127.0.0.1:{shop.web.php_port}"],
        "lint": ["bash", "-c", lint],
    }  # fmt: skip


def curl_pages(site: WpSite, paths: list[str]) -> None:
    """``curl`` of every smoke path (as http.check, from the controller, with its retry policy:
    2 more attempts after a failure, 1 s then 2 s later); all 200."""
    for path in paths:
        codes = []
        for attempt in range(3):
            argv = ["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}", f"{site.url}{path}"]
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            codes.append(proc.stdout.strip())
            if proc.returncode == 0 and codes[-1] == "200":
                break
            if attempt < 2:
                time.sleep(2.0**attempt)  # http.check's backoff: 1 s, then 2 s
        else:
            raise SystemExit(f"by hand, curl of {site.name}{path}: {codes} exit {proc.returncode} {proc.stderr[-500:]}")


def by_hand_one(shop: Shop, env: str, remote: Remote, zip_url: str) -> dict[str, float]:
    """One copy by hand, operation after operation in the playbook's order; seconds per operation."""
    site, cmds, took = shop.site(env), hand_commands(shop, env, zip_url), {}

    def timed(name: str, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        fn()
        took[name] = time.perf_counter() - start

    def upgrade() -> None:
        out = remote.run(cmds["upgrade"], stdin=wp_helper_source(), what=f"upgrade of {site.name}")
        if '"ok":true' not in out.split("@@MAINTKIT-JSON@@")[-1]:
            raise SystemExit(f"by hand, Plugin_Upgrader on {site.name}: {out[-1000:]}")

    def cache() -> None:
        if "MAINTKIT-FLUSHED 1" not in remote.run(cmds["flush"], what=f"cache flush of {site.name}"):
            raise SystemExit(f"by hand, the cache flush of {site.name} did not report success")
        if "MAINT-OPCACHE-RESET" not in remote.run(cmds["opcache"], what="OPcache reset"):
            raise SystemExit(f"by hand, the OPcache reset for {site.name} did not report success")

    timed("backup", lambda: remote.run(cmds["backup"], what=f"backup of {site.name}"))
    timed("download", lambda: remote.run(cmds["download"], what="download"))
    timed("upgrade", upgrade)
    timed("cache", cache)
    if env == "staging":  # compat.check runs on staging only: php -l, its smoke pages
        timed("lint", lambda: remote.run(cmds["lint"], what=f"php -l of {site.name}"))
        timed("compat_curl", lambda: curl_pages(site, SMOKE_PATHS))
    timed("smoke_curl", lambda: curl_pages(site, SMOKE_PATHS))
    return took


def by_hand(lab: SshLab, shops: list[Shop], zip_url: str, concurrency: int) -> dict[str, Any]:
    """Every copy by hand, ``concurrency`` shops at once (each shop: staging, then production)."""
    start, machine = time.perf_counter(), machine_cpu()
    remotes = {"staging": Remote(lab.hosts[0]), "production": Remote(lab.hosts[1])}
    try:

        def one_shop(shop: Shop) -> list[tuple[str, dict[str, float]]]:
            return [(env, by_hand_one(shop, env, remotes[env], zip_url)) for env in ("staging", "production")]

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            samples = [s for per_shop in pool.map(one_shop, shops) for s in per_shop]
    finally:
        for remote in remotes.values():
            remote.close()
    wall, machine = time.perf_counter() - start, machine_cpu() - machine
    per_op = {
        f"{env}/{op}": statistics.median(t[op] for e, t in samples if e == env and op in t)
        for env in ("staging", "production")
        for op in HAND_OPS
        if any(e == env and op in t for e, t in samples)
    }
    return {"wall": wall, "machine_cpu": machine, "median_s": per_op, "samples": samples}
