"""One download per URL per run: the built-in monthly-update on two real WordPress shops (each a
staging and a production copy over SSH) against the update API stand-in, which records every
request it answers.

Before, a run asked the API about every package and downloaded the candidate zip once per step
that planned the update (the precheck, the update, and on production the maintenance window's
look too), per copy and per shop: here ten downloads of the same zip. Now each URL is asked for
once per run, whatever the number of steps, copies and shops; a second run asks again (a new
release must be seen).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from maintkit.inventory import load_inventory
from tests import runs
from tests.cms_helpers import WpTemplate, make_shop_cart_zip, wp_plugin_version
from tests.lab.sshd import LabHost
from tests.lab.wp_fixtures import Shop, make_shop, run, serve_update_api, site_entry

pytestmark = pytest.mark.lab


def test_a_run_asks_the_update_api_once_per_url_for_every_step_copy_and_shop(
    shop: Shop, wp_template: WpTemplate, ssh_hosts: list[tuple[LabHost, Path]], tmp_path: Path
) -> None:
    (h1, scratch1), (h2, _) = ssh_hosts[0], ssh_hosts[1]
    second = make_shop(wp_template, h1, h2, scratch1, tmp_path / "second")
    zips = tmp_path / "downloads"
    zips.mkdir()
    make_shop_cart_zip(zips, "1.1.0")
    served: list[str] = []
    with serve_update_api(zips, served=served) as base:
        settings = {"repository": None, "api_url": base}
        sites = {name: site_entry(s, settings) for name, s in (("shop-a", shop), ("shop-b", second))}
        inventory = load_inventory(runs.write_inventory(tmp_path, sites, unique=True))

        first = run(shop, inventory)
        asked_first = Counter(served)
        served.clear()
        again = run(shop, inventory)
        asked_again = Counter(served)

    assert first.ok, first.to_dict()
    for s in (shop, second):
        for site in (s.staging, s.production):
            assert wp_plugin_version(site.path, "shop-cart") == "1.1.0"
    zip_path = "/downloads/shop-cart-1.1.0.zip"
    assert asked_first[zip_path] == 1  # ten steps of two shops' copies planned with it
    assert sorted(p.split("?")[0] for p in asked_first) == [
        "/core/version-check/1.7/",
        zip_path,
        "/plugins/info/1.2/",  # akismet (not offered)
        "/plugins/info/1.2/",  # shop-cart
        "/themes/info/1.2/",
    ]
    assert set(asked_first.values()) == {1}
    assert again.ok and again.changed == 0
    # the next run asks again (nothing is kept between runs); 1.1.0 is installed: no download
    assert asked_again == asked_first - Counter({zip_path: 1})
