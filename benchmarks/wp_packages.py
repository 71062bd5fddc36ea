"""Benchmark: one cms.update of several plugins and themes on a WordPress copy, against the same upgrades by hand.

    python benchmarks/wp_packages.py [--sites 3] [--rounds 3] [--json FILE]

Run as root, with nothing else running: it starts the lab of ``benchmarks/monthly.py`` (sshd,
nginx + php-fpm, MariaDB, the WordPress template with shop-cart 1.0.0, akismet 5.0.2 and the
twentytwentythree theme 1.0) and a folder of zips offering three updates: shop-cart 1.1.0,
akismet 5.0.3 and twentytwentythree 1.0.1. Each round makes ``--sites`` fresh shops for each
side and, on their staging copies:

- **maint**: ONE ``maint run`` of a playbook holding ``cms.update`` alone on all of them
  (``--concurrency 1``), the zips as its ``repository``, with ``benchmarks/costhook`` on its
  ``PYTHONPATH`` (the machine's CPU during every SSH command, as in ``monthly_cost.py``); the
  step's PHP starts (``php_boots``) and the SSH commands of the run are counted;
- **by hand**, copy after copy: the three zips written onto the host (one ``cat`` each over one
  SSH connection), then ONE ``php`` process that installs all three through WordPress's own
  upgraders over the installed ones (``Plugin_Upgrader`` / ``Theme_Upgrader`` with
  ``overwrite_package``: what ``wp plugin update`` and ``wp theme update`` do, here in one
  process) and flushes the object cache and the rewrite rules.

Every copy must then run the three new versions and answer 200 on /cart/, or the benchmark
stops. It prints per round and as medians, per copy: each side's machine CPU (every process:
sshd, PHP, MariaDB, maint, its start included), its wall time, maint's PHP starts and SSH
commands, and maint's overhead. maint
does more than the job by hand: it reads the state first, dumps the database, snapshots each
package, unpacks beside the live folders and verifies after the switch (docs/actions-cms.md):
the overhead is the price of those, and of maint's own work. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import monthly as m
import requests
from common import median
from costhook.sitecustomize import machine_ns
from monthly_cost import maint_cost

from tests import runs
from tests.cms_helpers import make_plugin_zip, make_shop_cart_zip, make_theme_zip, theme_version, wp_plugin_version

UPDATE_ONLY = "name: update-only\nstages:\n  - env: staging\n    steps:\n      - {id: update, action: cms.update}\n"
#: what the zips offer: (type, slug, version)
PACKAGES = (("plugin", "shop-cart", "1.1.0"), ("plugin", "akismet", "5.0.3"), ("theme", "twentytwentythree", "1.0.1"))

#: the upgrades by hand in ONE PHP process, WordPress booted as the flush by hand in monthly.py
#: does. argv: ABSPATH, site URL, then type:zip pairs
HAND_UPGRADE_PHP = (
    m.WP_BOOT_PHP
    + r"""
foreach (['file', 'plugin', 'theme', 'misc', 'class-wp-upgrader'] as $f) { require_once ABSPATH . "wp-admin/includes/$f.php"; }
add_filter('filesystem_method', function () { return 'direct'; });
foreach (array_slice($argv, 3) as $pair) {
    [$type, $zip] = explode(':', $pair, 2);
    $skin = new Automatic_Upgrader_Skin();
    $up = $type === 'theme' ? new Theme_Upgrader($skin) : new Plugin_Upgrader($skin);
    ob_start();
    $ok = $up->install($zip, ['overwrite_package' => true]);
    ob_end_clean();
    if ($ok !== true) { fwrite(STDERR, "upgrade of $zip failed\n"); exit(1); }
}
wp_cache_flush();
flush_rewrite_rules(false);
echo "\nMAINT-HAND-UPGRADED\n";
"""
)


def check(site: Any) -> None:
    """The copy runs the three new versions and its cart answers 200: else stop."""
    found = (
        wp_plugin_version(site.path, "shop-cart"),
        wp_plugin_version(site.path, "akismet"),
        theme_version(site.path),
    )
    page = requests.get(f"{site.url}/cart/", timeout=30)
    if found != tuple(v for _, _, v in PACKAGES) or page.status_code != 200:
        raise SystemExit(f"{site.name}: {found}, /cart/ HTTP {page.status_code}")


def maint_side(shops: list[m.Shop], zips: Path, work: Path, r: int) -> dict[str, Any]:
    """maint's update of the three packages on the shops' staging copies, with the cost hook;
    per copy."""
    settings = {"repository": {"path": str(zips)}, "api_url": None}
    sites = {f"shop{i:02d}": m.site_entry(s, settings, envs=("staging",)) for i, s in enumerate(shops)}
    inventory = runs.write_inventory(work, sites, unique=True)
    (work / "update.yml").write_text(UPDATE_ONLY)
    state = work / f"state{r}"
    argv = runs.maint_argv(
        "run", str(work / "update.yml"), "-i", str(inventory), "--state-dir", str(state), "--concurrency", "1"
    )
    cost = maint_cost(argv, state, work / "cost.json", [])
    events = m.read_events(m.newest_run(state))
    boots = {
        e["site"]: e["data"]["php_boots"]
        for e in events
        if e.get("step") == "update" and "php_boots" in e.get("data", {})
    }
    for shop in shops:
        check(shop.staging)
    n = len(shops)
    commands = [{"cpu": c["cpu"], "step": c.get("step"), "line": c["line"][:80]} for c in cost["records"]]
    return {"cpu": cost["cpu"] / n, "wall": cost["wall"] / n, "commands": cost["commands"] / n,
            "between": cost["between"] / n, "php_boots": sorted(boots.values()), "each": commands}  # fmt: skip


def hand_side(lab: m.SshLab, shops: list[m.Shop], zips: Path) -> dict[str, Any]:
    """Per copy, the three zips onto the host, then ONE PHP process upgrading them and flushing;
    per copy."""
    remote = m.Remote(lab.hosts[0])
    c0, t0 = machine_ns(), time.time()
    try:
        for shop in shops:
            hand_one(remote, shop, zips)
    finally:
        remote.close()
    n = len(shops)
    cpu, wall = (machine_ns() - c0) / 1e9, time.time() - t0
    for shop in shops:
        check(shop.staging)
    return {"cpu": cpu / n, "wall": wall / n, "commands": len(PACKAGES) + 2, "php_boots": [1] * n}


def hand_one(remote: m.Remote, shop: m.Shop, zips: Path) -> None:
    """One copy by hand (see the module's docstring)."""
    site = shop.staging
    out = shop.host_dir / f"by-hand-{site.name}"
    remote.run(["mkdir", "-p", "--", str(out)])
    pairs = []
    for kind, slug, version in PACKAGES:
        dest = str(out / f"{slug}.zip")
        remote.run(["sh", "-c", 'cat > "$1"', "sh", dest], stdin=(zips / f"{slug}-{version}.zip").read_bytes())
        pairs.append(f"{kind}:{dest}")
    argv = ["sh", "-c", 'cd -- "$1" && shift && exec "$@"', "sh", str(site.path)]
    answer = remote.run([*argv, "php", "-r", HAND_UPGRADE_PHP, "--", str(site.path), site.url, *pairs])
    if "MAINT-HAND-UPGRADED" not in answer:
        raise SystemExit(f"by hand, the upgrade of {site.name} did not report success: {answer[-500:]}")


def main() -> None:
    """Start the lab, measure both sides ``--rounds`` times on fresh shops, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sites", type=int, default=3, help="shops per side and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    m.precompile()
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        lab, work, template = m.start_wordpress_lab(stack)
        zips = work / "zips"
        zips.mkdir()
        make_shop_cart_zip(zips, "1.1.0")
        make_plugin_zip(zips, "akismet", "5.0.3", name="Akismet Anti-Spam")
        make_theme_zip(template.tree, zips, "1.0.1")
        for r in range(args.rounds):
            shops = m.make_shops(lab, template, 2 * args.sites, f"p{r}", work)
            maint_shops, hand_shops = shops[: args.sites], shops[args.sites :]
            row = {"maint": maint_side(maint_shops, zips, work, r), "by_hand": hand_side(lab, hand_shops, zips)}
            row["overhead"] = row["maint"]["cpu"] / row["by_hand"]["cpu"] - 1
            rows.append(row)
            mt, hd = row["maint"], row["by_hand"]
            print(f"round {r + 1}, per copy: maint {mt['cpu']:.2f} s machine CPU, {mt['wall']:.2f} s wall, "
                  f"{mt['commands']:.0f} SSH commands, PHP starts in the step {mt['php_boots']}, "
                  f"{mt['between']:.2f} s of its own between commands; by hand "
                  f"{hd['cpu']:.2f} s, {hd['wall']:.2f} s; maint's overhead {row['overhead']:+.0%}")  # fmt: skip
    cpu = {side: median([row[side]["cpu"] for row in rows]) for side in ("maint", "by_hand")}
    print(f"\nmedians over {len(rows)} rounds, per copy: maint {cpu['maint']:.2f} s, by hand {cpu['by_hand']:.2f} s "
          f"of machine CPU; maint's overhead {median([row['overhead'] for row in rows]):+.0%}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"packages": PACKAGES, "rounds": rows}, indent=1) + "\n")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab starts sshd, nginx, php-fpm and MariaDB")
    main()
