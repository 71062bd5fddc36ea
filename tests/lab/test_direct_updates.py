"""Shops without staging: ``direct_updates: true`` runs the built-in monthly-update on production.

A production-only WordPress site (no staging environment in the inventory) is backed up,
updated in a maintenance window, checked with what staging would have checked, and rolled
back automatically when the release is broken; the run output and the client report warn that
the update was not tried on staging first. Without the opt-in the run is refused before
anything connects (exit 2, the error naming ``direct_updates``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from maintkit.results import StepStatus
from tests.cms_helpers import make_shop_cart_zip, tree_digest, wp_plugin_version
from tests.lab.wp_fixtures import Shop, events, run, steps, write_inventory
from tests.runs import maint_in_process

pytestmark = pytest.mark.lab

WARNING = "warning: site shop: production updated without trying on staging first (direct_updates: true)"


def production_only(shop: Shop, **site_fields: object) -> Path:
    """The inventory file of a shop that has only production."""
    inv = write_inventory(shop, envs=("production",), site_fields=dict(site_fields))
    assert inv.path is not None
    return Path(inv.path)


def test_without_the_opt_in_a_shop_without_staging_is_refused_before_anything_runs(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inventory = production_only(shop)
    before = tree_digest(shop.production.path)
    state = shop.tmp / "state"

    out = maint_in_process("run", "monthly-update", "-i", str(inventory), "--state-dir", str(state))

    assert out.exit_code == 2, out.output
    assert (
        "site 'shop' has no environment 'staging' to try the update on first: add it to the inventory, "
        "or opt in with `direct_updates: true` on the site (then the update runs without trying on staging "
        "first: backup, maintenance window, checks, automatic rollback)"
    ) in out.output
    assert tree_digest(shop.production.path) == before
    assert not (shop.production.path / ".maint").exists()
    assert not (state / "runs").exists() or not any((state / "runs").iterdir())


def test_a_broken_release_is_rolled_back_on_production_with_the_warning(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.2.0", broken=True, schema="2")
    inventory = production_only(shop, direct_updates=True)
    before = tree_digest(shop.production.path, exclude=(".maint",))

    from maintkit.inventory import load_inventory

    result = run(shop, load_inventory(inventory))

    assert result.exit_code == 1
    assert result.notes == [WARNING]
    prod = steps(result, "production")
    assert "staging" not in {s.env for site in result.sites for s in site.steps}
    # backup, window, update, cache: all done, then undone after the failed check (the backup is kept)
    assert {k: v.status.value for k, v in prod.items()} == {
        "backup": "rolled-back",
        "precheck": "unchanged",
        "maintenance-on": "rolled-back",
        "update": "rolled-back",
        "cache": "rolled-back",
        "maintenance-off": "rolled-back",
        "compat": "failed",
    }
    assert len(list((shop.production.path / ".maint" / "backups").rglob("db-*.sql.zst"))) == 1
    assert prod["update"].data["untried"] == "updated without trying on staging first"
    assert prod["compat"].status is StepStatus.FAILED
    assert "shop-cart" in str(prod["compat"].error) and "/cart/" in str(prod["compat"].error)
    assert "smoke" not in prod
    # production: the old code, the old schema, serving its cart, out of maintenance
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.0.0"
    assert tree_digest(shop.production.path, exclude=(".maint",)) == before
    option = shop.production.sql(
        shop.mariadb, "SELECT option_value FROM wp_options WHERE option_name='shop_cart_db_version'"
    )
    assert option.strip() == "1"
    assert not (shop.production.path / ".maintenance").exists()
    shop.web.reload_php()
    cart = requests.get(f"{shop.production.url}/cart/", timeout=20)
    assert cart.status_code == 200 and "shop-cart 1.0.0" in cart.text
    log = events(result)
    assert [e["notes"] for e in log if e["event"] == "run.started"] == [[WARNING]]
    rolled = [e for e in log if e["event"] == "cms.rolled_back"]
    assert rolled and rolled[0]["database"]["restored"] is True
    summary = json.loads((Path(str(result.run_dir)) / "summary.json").read_text())
    assert WARNING in json.dumps(summary)


def test_a_good_release_reaches_production_directly_and_the_report_warns(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inventory = production_only(shop, direct_updates=True)
    state = shop.tmp / "state"

    out = maint_in_process("run", "monthly-update", "-i", str(inventory), "--state-dir", str(state))

    assert out.exit_code == 0, out.output
    assert out.output.count(WARNING) >= 1
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.1.0"
    assert "shop-cart 1.1.0" in requests.get(f"{shop.production.url}/cart/", timeout=20).text
    assert not (shop.production.path / ".maintenance").exists()

    report = maint_in_process("report", "--state-dir", str(state), "-i", str(inventory))
    assert report.exit_code == 0, report.output
    assert (  # markdown escapes the underscore
        "| shop | soon | shop-cart 1.0.0 -> 1.1.0 on production: updated without trying on staging first "
        "(the site has no staging: direct\\_updates) |"
    ) in report.output

    # the second run has nothing to do (no backup, no window, no update); --env production alone
    # needs no --promote-from: there is no staging to promote from
    again = maint_in_process(
        "run", "monthly-update", "-i", str(inventory), "--state-dir", str(state), "--env", "production", "--json"
    )
    assert again.exit_code == 0, again.output
    final = json.loads(again.stdout.strip().splitlines()[-1])
    assert final["changed"] == 0, again.stdout[-3000:]
