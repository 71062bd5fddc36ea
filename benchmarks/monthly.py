"""Benchmark: the built-in monthly-update on the WordPress lab, against the same operations by hand.

    python benchmarks/monthly.py --sites 1,5,20 [--rounds N] [--concurrency N] [--next-month]
        [--php-cache on|off] [--api-delay-ms MS] [--json FILE]

Run as root: it starts the lab the test suite uses (tests/lab/): two sshd hosts (staging on the
first, production on the second), nginx + php-fpm, MariaDB, a WordPress 6.1 template with the
``shop-cart`` 1.0.0 plugin, and the stand-in for the WordPress.org update API offering
shop-cart 1.1.0. For every size N it makes N fresh shops (a staging and a production copy
each: own tree, database and nginx server block), then:

- **maint first**: ``maint run monthly-update`` (backup, precheck, one plugin update on staging,
  cache, compat, smoke, then the same version promoted to production); afterwards every copy
  must run shop-cart 1.1.0 and answer 200 on /cart/ with it, or the benchmark stops;
- **maint no-op**: the same command again; it must change nothing;
- **by hand**: N other fresh shops (shop-cart 1.0.0, like the maint shops before their run),
  each copy (staging, then production) done the way an admin does the same job with the same
  tools, over the same sshd hosts as the login user (one paramiko connection per host, one
  exec session per command, like ``ssh host command`` over a reused connection):
  ``mariadb-dump`` (the options backup.create uses) ``| gzip`` with its size and ``sha256sum``;
  ``curl`` of the zip from the update API onto the host; the upgrade through WordPress's own
  ``Plugin_Upgrader`` in ONE ``php`` run (maintkit's PHP helper, ``install``: what
  ``wp plugin update`` does); the cache clear the playbook does (a WordPress flush from the
  PHP CLI, ``wp_cache_flush()`` and ``flush_rewrite_rules()``, then the OPcache reset); on staging ``php -l`` of every PHP file of the plugin
  (``find -exec``, one process per file) and ``curl`` of the smoke paths for compat.check;
  ``curl`` of the smoke paths for http.check (one curl per check, from the controller). Every
  copy must then run shop-cart 1.1.0 and answer 200 on /cart/ with it, as after the maint run.
  Shops run with the same number at once as maint (``--concurrency``, default the playbook's 4);
- **overhead** = maint first wall / by-hand wall - 1;
- **next month** (``--next-month``): the update API then offers shop-cart 1.2.0 and both sides
  do the job again on the same shops: ``maint run monthly-update`` (a site maint has run on
  before: its compiled-PHP cache under ``.maint/php-cache`` is warm) and the by-hand
  operations on the by-hand shops (``-e backup_max_age=1s``: the first run's backup is not
  reused, as a month later); **overhead_next** = the first over the second - 1.
  ``--php-cache off`` runs maint with ``php_cache: false`` (for comparing the two).
  ``--api-delay-ms MS``: every answer of the update API stand-in (the API's JSON and the zips,
  for both sides) waits MS first, as WordPress.org's does from a distant server.

Besides wall time, each side's machine CPU is taken from ``/proc/stat`` (every process on the
machine: maint or the by-hand client, sshd, PHP, MariaDB, nginx), and ``overhead_cpu`` is
maint's first run over the by-hand machine CPU - 1: with shops at once on two cores the wall
times of both sides move by about 10% between runs of the same code. ``--rounds N`` measures
every size N times (fresh shops each time) and prints the medians of both overheads.

From the first run's audit log (``events.jsonl``) it prints where the time goes: the median per
shop of each step's duration per environment, and inside ``cms.update`` the split it records
(``timing_ms``: PHP helper boots, database dump, snapshots, package reads, switches) and its
number of PHP boots; then each maint step next to the by-hand operations doing its work.
Before maint's first run and before the job by hand it prints how long creating 341 files in the
lab's folder took (``common.file_creation_ms``, ``fs_probe_ms`` in the JSON): right after many
files were deleted (a test run, another benchmark's clean-up) this machine's filesystem creates
files several times slower, and maint's first run creates more of them (its PHP cache).
Nothing is asserted about time: measuring is this script's job, never the
test suite's. ``--json FILE`` writes every raw figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import file_creation_ms, machine_cpu, overheads_by_size, precompile  # noqa: E402

# the job by hand (re-exported: monthly_cost.py and wp_packages.py use them through this module)
from monthly_hand import (  # noqa: E402, F401
    HAND_OPS,
    SMOKE_PATHS,
    WP_BOOT_PHP,
    Remote,
    by_hand,
    by_hand_one,
    curl_pages,
)

from tests import runs  # noqa: E402
from tests.cms_helpers import (  # noqa: E402
    WpTemplate,
    build_wordpress_template,
    make_shop_cart_zip,
    wp_plugin_version,
)
from tests.lab.labdirs import lab_tmpdir  # noqa: E402
from tests.lab.mariadb import MariaDB  # noqa: E402
from tests.lab.sshd import SshLab  # noqa: E402
from tests.lab.web import WebStack  # noqa: E402
from tests.lab.wp_fixtures import Shop, make_shop, serve_update_api, site_entry  # noqa: E402

PLAYBOOK_CONCURRENCY = 4  # maintkit/playbooks/monthly-update.yml
#: steps of the breakdown, in playbook order (steps a run skips show as "-")
STEPS = ("backup", "precheck", "update", "cache", "compat", "smoke", "maintenance-on", "maintenance-off")
#: the split cms.update records (``timing_ms``)
PARTS = ("php", "dump", "snapshots", "sources", "package_upload", "switch")


def lab_dir(prefix: str) -> Path:
    """A fresh world-searchable directory under /tmp (the web and database users reach it),
    with its owner file: a later lab sweeps it if this run is killed (tests/lab/labdirs.py)."""
    return lab_tmpdir(f"maintkit-monthly-{prefix}-", mode=0o755)


# ---------------------------------------------------------------------------- maint runs


def timed_maint(argv: list[str]) -> dict[str, float]:
    """Wall and CPU (user+sys of the child) seconds of one ``maint`` command; its exit code."""
    before, machine = resource.getrusage(resource.RUSAGE_CHILDREN), machine_cpu()
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=runs.maint_env(), check=False)
    wall = time.perf_counter() - start
    machine = machine_cpu() - machine
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(
            f"maint failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "machine_cpu": machine}


def newest_run(state: Path) -> Path:
    """The run folder the last ``maint run`` wrote."""
    folders = sorted((state / "runs").iterdir())
    if not folders:
        raise SystemExit(f"no run folder under {state}/runs")
    return folders[-1]


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """The run's audit log."""
    text = (run_dir / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_outcome(shops: list[Shop], version: str) -> None:
    """Every copy runs ``version`` of shop-cart and its cart answers 200 with it: else stop."""
    for shop in shops:
        for site in (shop.staging, shop.production):
            found = wp_plugin_version(site.path, "shop-cart")
            page = requests.get(f"{site.url}/cart/", timeout=30)
            if found != version or page.status_code != 200 or f"shop-cart {version}" not in page.text:
                raise SystemExit(f"{site.name}: shop-cart {found}, /cart/ HTTP {page.status_code}: not {version}")


def changed_steps(log: list[dict[str, Any]]) -> list[str]:
    """``site/env/step`` of every step the run changed (a no-op has none)."""
    return [f"{e['site']}/{e['env']}/{e['step']}" for e in log if e.get("event") == "step.verified"]


# ---------------------------------------------------------------------------- where the time goes


def breakdown(log: list[dict[str, Any]]) -> dict[str, Any]:
    """Median per shop of each step's duration (ms) per environment, and of cms.update's split."""
    steps: dict[tuple[str, str], list[float]] = defaultdict(list)
    parts: dict[tuple[str, str], list[float]] = defaultdict(list)
    boots: dict[str, list[int]] = defaultdict(list)
    finals = ("step.verified", "step.checked", "step.failed")
    for e in log:
        if e.get("event") not in finals or e.get("status") == "needed":
            continue
        steps[(e["env"], e["step"])].append(float(e.get("duration_ms") or 0.0))
        data = e.get("data") or {}
        if e["step"] == "update" and "timing_ms" in data:
            for part, ms in data["timing_ms"].items():
                parts[(e["env"], part)].append(float(ms))
            boots[e["env"]].append(int(data.get("php_boots", 0)))
    return {
        "steps_ms": {f"{env}/{step}": statistics.median(v) for (env, step), v in sorted(steps.items())},
        "update_parts_ms": {f"{env}/{part}": statistics.median(v) for (env, part), v in sorted(parts.items())},
        "php_boots": {env: statistics.median(v) for env, v in sorted(boots.items())},
    }


def print_breakdown(n: int, figures: dict[str, Any]) -> None:
    """The breakdown of one size as a table (median ms per shop)."""
    steps, parts = figures["steps_ms"], figures["update_parts_ms"]

    def cell(table: dict[str, float], key: str) -> str:
        return f"{table[key]:.0f}" if key in table else "-"

    print(f"\nwhere the time goes, {n} shop(s), first run (median ms per shop)")
    print("step | staging | production")
    print("---|---|---")
    for step in STEPS:
        print(f"{step} | {cell(steps, 'staging/' + step)} | {cell(steps, 'production/' + step)}")
    print("inside update | staging | production")
    print("---|---|---")
    for part in PARTS:
        print(f"{part} | {cell(parts, 'staging/' + part)} | {cell(parts, 'production/' + part)}")
    boots = figures["php_boots"]
    print(f"PHP boots of cms.update (apply and verify) | {boots.get('staging', '-')} | {boots.get('production', '-')}")


def print_side_by_side(n: int, maint: dict[str, Any], hand: dict[str, Any]) -> None:
    """Each maint step next to the by-hand operations doing its work (median ms per copy)."""
    steps, ops = maint["steps_ms"], hand["median_s"]
    print(f"\nmaint vs by hand, {n} shop(s), first run (median ms per copy)")
    print("maint step | maint staging | by hand staging | maint production | by hand production | by hand ops")
    print("---|---|---|---|---|---")
    for step in ("backup", "precheck", "update", "cache", "compat", "smoke"):
        mine = [op for op, target in HAND_OPS.items() if target == step]
        cells = []
        for env in ("staging", "production"):
            cells.append(f"{steps[env + '/' + step]:.0f}" if env + "/" + step in steps else "-")
            took = [ops[f"{env}/{op}"] for op in mine if f"{env}/{op}" in ops]
            cells.append(f"{1000 * sum(took):.0f}" if took else "-")
        print(f"{step} | {' | '.join(cells)} | {' + '.join(mine) or '-'}")


# ---------------------------------------------------------------------------- one size


def make_shops(lab: SshLab, template: WpTemplate, n: int, tag: str, base: Path) -> list[Shop]:
    """``n`` fresh shops: staging on lab host 1, production on lab host 2."""
    h1, h2 = lab.hosts[0], lab.hosts[1]
    return [make_shop(template, h1, h2, lab.scratch(h1, f"{tag}-{i}"), base / f"{tag}-{i}") for i in range(n)]


def run_size(lab: SshLab, template: WpTemplate, n: int, api: Api, work: Path, opts: argparse.Namespace, tag: str = "") -> dict[str, Any]:  # fmt: skip
    """Both maint runs on ``n`` fresh shops, the by-hand operations on ``n`` other fresh shops
    (then, with ``--next-month``, both again with shop-cart 1.2.0); the raw figures."""
    concurrency = opts.concurrency
    shops = make_shops(lab, template, n, f"{tag}n{n}", work)
    settings = {"repository": None, "api_url": api.url, "php_cache": opts.php_cache == "on"}
    sites = {f"shop{i:02d}": site_entry(shop, settings) for i, shop in enumerate(shops)}
    for entry, shop in zip(sites.values(), shops, strict=True):  # one php-fpm for every shop: no reloads
        entry["vars"]["opcache"] = {"fastcgi": f"127.0.0.1:{shop.web.php_port}", "user": shop.web.user, "sudo": True}
    if any(entry["vars"]["smoke_paths"] != SMOKE_PATHS for entry in sites.values()):
        raise SystemExit("the inventory's smoke_paths differ from the by-hand SMOKE_PATHS")
    inventory = runs.write_inventory(work, sites, unique=True)
    state = work / f"state-{tag}{n}"
    argv = runs.maint_argv("run", "monthly-update", "-i", str(inventory), "--state-dir", str(state))
    argv += ["--concurrency", str(concurrency)]
    probes = {"maint_first": file_creation_ms(work)}  # the filesystem's state (common.file_creation_ms)
    first = timed_maint(argv)
    first_log = read_events(newest_run(state))
    check_outcome(shops, "1.1.0")
    noop = timed_maint(argv)
    noop_log = read_events(newest_run(state))
    if changed_steps(noop_log):
        raise SystemExit(f"the second run changed {changed_steps(noop_log)}")
    check_outcome(shops, "1.1.0")
    hand_shops = make_shops(lab, template, n, f"{tag}h{n}", work)  # 1.0.0, as the maint shops were
    for shop in hand_shops:
        site_entry(shop, settings)  # writes the database option files the dumps use
    probes["by_hand"] = file_creation_ms(work)
    hand = by_hand(lab, hand_shops, f"{api.url}/downloads/shop-cart-1.1.0.zip", concurrency)
    print(f"creating 341 files in the lab's folder: {probes['maint_first']:.0f} ms before maint's first run, "
          f"{probes['by_hand']:.0f} ms before the job by hand")  # fmt: skip
    check_outcome(hand_shops, "1.1.0")
    nxt = next_month(lab, api, argv, state, shops, hand_shops, concurrency) if opts.next_month else {}
    for shop in [*shops, *hand_shops]:
        for site in (shop.staging, shop.production):
            template.web.remove_site(site.name)
            template.mariadb.drop_database(site.db_name, site.db_user)
            shutil.rmtree(site.path, ignore_errors=True)
    return {
        "sites": n,
        "concurrency": concurrency,
        "maint_first": first,
        "maint_noop": noop,
        "by_hand": hand,
        "overhead": first["wall"] / hand["wall"] - 1,
        "overhead_cpu": first["machine_cpu"] / hand["machine_cpu"] - 1,
        "first_run": breakdown(first_log),
        "noop_run": breakdown(noop_log),
        "php_cache": opts.php_cache,
        "fs_probe_ms": probes,
        **nxt,
    }


@dataclass
class Api:
    """The update API stand-in: its URL and shop-cart's newest version it offers (changeable)."""

    url: str
    latest: list[str]


def next_month(lab: SshLab, api: Api, argv: list[str], state: Path, shops: list[Shop], hand_shops: list[Shop], concurrency: int) -> dict[str, Any]:  # fmt: skip
    """shop-cart 1.2.0 offered: maint again on its shops, by hand again on the by-hand shops."""
    api.latest[0] = "1.2.0"
    try:  # a month later the first run's backup is too old to reuse: a new one is taken
        maint = timed_maint([*argv, "-e", "backup_max_age=1s"])
        log = read_events(newest_run(state))
        check_outcome(shops, "1.2.0")
        hand = by_hand(lab, hand_shops, f"{api.url}/downloads/shop-cart-1.2.0.zip", concurrency)
        check_outcome(hand_shops, "1.2.0")
    finally:
        api.latest[0] = "1.1.0"
    return {
        "maint_next": maint,
        "by_hand_next": hand,
        "overhead_next": maint["wall"] / hand["wall"] - 1,
        "overhead_next_cpu": maint["machine_cpu"] / hand["machine_cpu"] - 1,
        "next_run": breakdown(log),
    }


def print_summary(rows: list[dict[str, Any]]) -> None:
    """One line per size and round; with several rounds, the median overheads per size."""
    print(
        "\nsites | maint first wall / cpu / machine | maint no-op wall / cpu | by hand wall / machine | overhead wall, machine cpu"
    )
    print("---|---|---|---|---")
    for r in rows:
        f, o, h = r["maint_first"], r["maint_noop"], r["by_hand"]
        print(f"{r['sites']} | {f['wall']:.2f} / {f['cpu']:.2f} / {f['machine_cpu']:.2f} | {o['wall']:.2f} / {o['cpu']:.2f} | "
              f"{h['wall']:.2f} / {h['machine_cpu']:.2f} | {100 * r['overhead']:+.0f}%, {100 * r['overhead_cpu']:+.0f}%")  # fmt: skip
    if any("maint_next" in r for r in rows):
        print("\nnext month: sites | maint wall / cpu / machine | by hand wall / machine | overhead wall, machine cpu")
        print("---|---|---|---")
        for r in rows:
            if "maint_next" in r:
                m, h = r["maint_next"], r["by_hand_next"]
                print(f"{r['sites']} | {m['wall']:.2f} / {m['cpu']:.2f} / {m['machine_cpu']:.2f} | {h['wall']:.2f} / "
                      f"{h['machine_cpu']:.2f} | {100 * r['overhead_next']:+.0f}%, {100 * r['overhead_next_cpu']:+.0f}%")  # fmt: skip
    if len(rows) > len({r["sites"] for r in rows}):
        print("\nsites | median overhead over the rounds: wall, machine cpu")
        print("---|---")
        for n, (wall, cpu) in overheads_by_size(rows).items():
            print(f"{n} | {100 * wall:+.0f}%, {100 * cpu:+.0f}%")


def start_wordpress_lab(stack: ExitStack) -> tuple[SshLab, Path, WpTemplate]:
    """The lab of the WordPress benchmarks: two sshd hosts, nginx + php-fpm, MariaDB and the
    WordPress template, stopped and their folders removed when ``stack`` closes; (the lab, the
    work folder, the template)."""
    lab = stack.enter_context(SshLab())
    lab.start(2)
    bases = [lab_dir(p) for p in ("web", "db", "work")]
    stack.callback(lambda: [shutil.rmtree(b, ignore_errors=True) for b in bases])
    web = stack.enter_context(WebStack(bases[0]))
    mariadb = stack.enter_context(MariaDB(bases[1]))
    return lab, bases[2], build_wordpress_template(bases[2], web, mariadb)


def main() -> None:
    """Start the lab, measure every size (``--rounds`` times), print the tables (and write ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sites", default="1,5,20", help="comma-separated numbers of shops")
    ap.add_argument("--concurrency", type=int, default=PLAYBOOK_CONCURRENCY, help="shops at once (maint and by hand)")
    ap.add_argument("--rounds", type=int, default=1, help="measure every size this many times (fresh shops each)")
    ap.add_argument("--json", metavar="FILE", help="write the raw figures here")
    ap.add_argument("--next-month", action="store_true", help="then both sides again with shop-cart 1.2.0 offered")
    ap.add_argument("--php-cache", choices=("on", "off"), default="on", help="maint's php_cache (default on)")
    ap.add_argument(
        "--api-delay-ms", type=float, default=0.0,
        help="every answer of the update API stand-in waits this long first, as a distant server's (default 0)",
    )  # fmt: skip
    args = ap.parse_args()
    sizes = [int(x) for x in args.sites.split(",")]
    rows = []
    precompile()
    with ExitStack() as stack:
        lab, work, template = start_wordpress_lab(stack)
        zips = work / "downloads"
        make_shop_cart_zip(zips, "1.1.0")
        make_shop_cart_zip(zips, "1.2.0")
        latest = ["1.1.0"]
        delay = functools.partial(time.sleep, args.api_delay_ms / 1000) if args.api_delay_ms > 0 else None
        api = Api(stack.enter_context(serve_update_api(zips, latest, before_answer=delay)), latest)
        for r in range(args.rounds):
            for n in sizes:
                rows.append(run_size(lab, template, n, api, work, args, tag=f"r{r}"))
                print_breakdown(n, rows[-1]["first_run"])
                print_side_by_side(n, rows[-1]["first_run"], rows[-1]["by_hand"])
                if args.next_month:
                    print(f"\nnext month ({n} shops):")
                    print_breakdown(n, rows[-1]["next_run"])
                    print_side_by_side(n, rows[-1]["next_run"], rows[-1]["by_hand_next"])
    print_summary(rows)
    if args.json:
        raw = {"python": sys.version.split()[0], "api_delay_ms": args.api_delay_ms, "rows": rows}
        Path(args.json).write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab starts sshd, nginx, php-fpm and MariaDB")
    main()
