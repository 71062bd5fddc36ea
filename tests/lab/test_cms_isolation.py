"""One bad plugin never blocks the good ones: isolation on a real WordPress staging/production pair.

shop-cart 1.2.0 (its cart page dies with a PHP fatal error and it migrates its schema) and a
harmless ``seo`` 2.1.0 are offered in one monthly update. Staging keeps seo 2.1.0 and holds
shop-cart 1.2.0 back with the failing check's message; the lock validates only seo; production
(``--promote-from``) receives exactly seo; a second run changes nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from maintkit.cli.reporters.plain import PlainReporter
from maintkit.report.builder import build_report
from maintkit.results import StepStatus
from tests.cms_helpers import WpSite, chown_tree, make_plugin_zip, make_shop_cart_zip, tree_digest, wp_plugin_version
from tests.lab.wp_fixtures import Shop, cart, events, run, steps, write_inventory

pytestmark = pytest.mark.lab

SEO_MAIN = """<?php
/**
 * Plugin Name: SEO
 * Version: {version}
 * Requires at least: 5.8
 * Requires PHP: 7.4
 */
if (!defined('ABSPATH')) {{
    exit;
}}
add_action('wp_head', function () {{
    echo '<meta name="lab-seo" content="{version}">';
}});
"""
HELD_REASON = "the cart answered HTTP 500"


def seo_files(version: str) -> dict[str, str]:
    """The files of one ``seo`` version: it prints a meta tag naming its version on every page."""
    return {"seo.php": SEO_MAIN.format(version=version)}


def install_seo(site: WpSite, version: str) -> None:
    """Put ``seo`` ``version`` into the site and activate it (as WordPress does, through its own API)."""
    plugin = site.path / "wp-content" / "plugins" / "seo"
    plugin.mkdir(parents=True)
    for rel, text in seo_files(version).items():
        (plugin / rel).write_text(text)
    chown_tree(plugin, site.owner)
    script = "require 'wp-load.php'; require_once ABSPATH . 'wp-admin/includes/plugin.php'; "
    script += "$r = activate_plugin('seo/seo.php'); if (is_wp_error($r)) { exit(1); } echo 'active';"
    out = subprocess.run(["php", "-r", script], cwd=site.path, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.endswith("active")


def seo_meta(site: WpSite) -> str | None:
    """The version the home page's ``lab-seo`` meta tag names (None: the plugin does not run)."""
    text = requests.get(f"{site.url}/", timeout=20).text
    marker = '<meta name="lab-seo" content="'
    return text.split(marker, 1)[1].split('"', 1)[0] if marker in text else None


@pytest.fixture()
def two_updates(shop: Shop) -> Shop:
    """The shop with seo 2.0.0 active on both environments; shop-cart 1.2.0 (broken) and seo 2.1.0 offered."""
    for site in (shop.staging, shop.production):
        install_seo(site, "2.0.0")
    make_shop_cart_zip(shop.repo, "1.2.0", broken=True, schema="2")
    make_plugin_zip(shop.repo, "seo", "2.1.0", seo_files("2.1.0"))
    return shop


def test_the_bad_plugin_is_held_back_and_production_gets_exactly_the_good_one(
    two_updates: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = two_updates
    inv = write_inventory(shop)
    cart_tree = {env: tree_digest(shop.site(env).plugin_dir) for env in ("staging", "production")}
    reporter = PlainReporter(check=False, diff=False)

    monday = run(shop, inv, env="staging", on_event=reporter.on_event)

    assert monday.ok, json.dumps(monday.to_dict(), indent=1)[-3000:]
    # staging: seo 2.1.0 runs, shop-cart is exactly 1.0.0 again and its cart answers
    assert wp_plugin_version(shop.staging.path, "seo") == "2.1.0"
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.0.0"
    assert tree_digest(shop.staging.plugin_dir) == cart_tree["staging"]
    shop.web.reload_php()
    assert seo_meta(shop.staging) == "2.1.0"
    page = cart(shop.staging)
    assert page.status_code == 200 and "shop-cart 1.0.0" in page.text
    # the update step says what was kept and what was held, and why
    update = steps(monday, "staging")["update"]
    assert update.status is StepStatus.CHANGED
    assert [(u["name"], u["from"], u["to"]) for u in update.data["updates"]] == [("seo", "2.0.0", "2.1.0")]
    assert [(h["name"], h["version"], h["from"], h["reason"]) for h in update.data["held"]] == [
        ("shop-cart", "1.2.0", "1.0.0", HELD_REASON)
    ]
    retries = update.data["isolation"]["retries"]
    assert update.data["isolation"]["mode"] == "bisect" and 1 <= retries <= update.data["isolation"]["max_retries"] == 4
    assert f"held back: shop-cart 1.2.0 ({HELD_REASON})" in update.reason
    # the lock validates seo only and lists shop-cart as held with the reason
    lock = json.loads((Path(str(monday.run_dir)) / "locks" / "shop.json").read_text())
    assert lock["status"] == "validated"
    assert (lock["packages"]["plugin:seo"]["version"], lock["packages"]["plugin:seo"]["updated"]) == ("2.1.0", True)
    assert lock["packages"]["plugin:seo"]["from"] == "2.0.0"
    cart_entry = lock["packages"]["plugin:shop-cart"]
    assert (cart_entry["version"], cart_entry["updated"]) == ("1.0.0", False)
    held = lock["held"]["plugin:shop-cart"]
    assert (held["version"], held["from"], held["reason"], held["run_id"]) == (
        "1.2.0",
        "1.0.0",
        HELD_REASON,
        monday.run_id,
    )
    # the audit log records every attempt
    log = events(monday)
    started = [e for e in log if e["event"] == "isolation.started"]
    assert len(started) == 1 and sorted(started[0]["packages"]) == ["seo 2.1.0", "shop-cart 1.2.0"]
    assert started[0]["reason"] == HELD_REASON and started[0]["max_attempts"] == 4
    attempts = [e for e in log if e["event"] == "isolation.attempt"]
    assert [e["attempt"] for e in attempts] == list(range(1, retries + 1))
    assert {e["status"] for e in attempts if e["packages"] == ["seo 2.1.0"]} == {"passed"}
    assert all(e["reason"] == HELD_REASON for e in attempts if e["packages"] == ["shop-cart 1.2.0"])
    isolated = [e for e in log if e["event"] == "step.isolated"]
    assert len(isolated) == 1 and isolated[0]["status"] == "changed"
    # the run output and the report name the held package and why
    assert f"held back: shop-cart 1.2.0 ({HELD_REASON})" in capsys.readouterr().out
    report = build_report(shop.tmp / "state")
    messages = [a.message for s in report.sites for a in s.attention]
    assert f"held back: shop-cart 1.2.0 ({HELD_REASON}); retried when a newer version appears" in messages
    assert [(u.package, u.to_version, u.rolled_back) for s in report.sites for u in s.updates] == [
        ("seo", "2.1.0", False)
    ]

    # Wednesday: production receives exactly what staging validated
    wednesday = run(shop, inv, env="production", promote_from=monday.run_id)
    assert wednesday.ok, json.dumps(wednesday.to_dict(), indent=1)[-3000:]
    assert wp_plugin_version(shop.production.path, "seo") == "2.1.0"
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.0.0"
    assert tree_digest(shop.production.plugin_dir) == cart_tree["production"]
    assert seo_meta(shop.production) == "2.1.0"
    assert cart(shop.production).status_code == 200
    promoted = steps(wednesday, "production")["update"].data["promoted"]["packages"]
    assert [(p["name"], p["to"]) for p in promoted] == [("seo", "2.1.0")]

    # a second run changes nothing: the held version is not tried again
    trees = {env: tree_digest(shop.site(env).path, exclude=(".maint",)) for env in ("staging", "production")}
    again = run(shop, inv)
    assert again.ok, json.dumps(again.to_dict(), indent=1)[-3000:]
    assert again.changed == 0, [(s.env, s.step, s.status.value) for site in again.sites for s in site.steps]
    for env in ("staging", "production"):
        assert tree_digest(shop.site(env).path, exclude=(".maint",)) == trees[env]
    skipped = steps(again, "staging")["update"].data["skipped"]
    assert [(s["name"], s["candidate"], s["reason"]) for s in skipped] == [
        ("shop-cart", "1.2.0", f"held back since run {monday.run_id}: {HELD_REASON}")
    ]
    assert not [e for e in events(again) if e["event"].startswith("isolation.")]
    relock = json.loads((Path(str(again.run_dir)) / "locks" / "shop.json").read_text())
    assert relock["held"]["plugin:shop-cart"]["run_id"] == monday.run_id  # the hold goes on in the new lock
