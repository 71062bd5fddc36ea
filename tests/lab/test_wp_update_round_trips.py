"""The commands a WordPress update sends on staging (the monthly-update over SSH), counted.

Every transport of the run is wrapped in :class:`~tests.lab.recording.Recorder`. The update
step prepares its folders in ONE round trip (``.maint``, the private snapshot folder, the
folder for the staged zips, the error logs' sizes and whether ``wp-content/upgrade`` exists),
and after the update staging hashes the updated plugin and every other package the version
lock records in ONE read; the step ends removing its temporary files and listing the snapshots
in ONE round trip. ``wp-content/upgrade`` that is a dangling symlink is there: the
undo of a failed update leaves it alone (only what the step made is removed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from maintkit.probes.cms import tree_hash_script
from maintkit.results import StepStatus
from tests.cms_helpers import make_shop_cart_zip, wp_plugin_version
from tests.lab.recording import Recorder
from tests.lab.wp_fixtures import Shop, run, steps, write_inventory

pytestmark = pytest.mark.lab

TREE_HASH = tree_hash_script(["X"]).split("; do ", 1)[1]  # the per-path part every tree-hash read runs


def staging_commands(rec: Recorder, shop: Shop) -> list[str]:
    return [text for _, text in rec.by_host[shop.staging_host.ip].sent]


def test_staging_prepares_in_one_round_trip_and_hashes_once(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    site = shop.staging.path
    rec = Recorder()

    result = run(shop, inv, transport_factory=rec)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    assert update.status is StepStatus.CHANGED
    sent = staging_commands(rec, shop)
    snap = update.data["snapshot"]
    prepared = [c for c in sent if f"mkdir -p -- {snap}/packages" in c]
    assert len(prepared) == 1  # .maint, the snapshot folder, packages, the log sizes, the upgrade folder
    (prep,) = prepared
    assert f"chmod 700 -- {snap}" in prep and f"-e {site}/wp-content/upgrade" in prep
    assert str(shop.web.php_error_log) in prep
    assert not [c for c in sent if c.startswith("test -e") or c == f"mkdir -p -- {snap}/packages"]
    assert update.data["error_log_offsets"] == {str(shop.web.php_error_log): shop.web.php_error_log.stat().st_size}
    hashes = [c for c in sent if TREE_HASH in c]
    assert len(hashes) == 1  # verify and the version lock: one read
    plugins = site / "wp-content" / "plugins"
    assert f"{plugins}/shop-cart " in hashes[0] and f"{plugins}/akismet " in hashes[0]
    ends = [c for c in sent if c.startswith("rm -rf -- ") and "wp_helper.php" in c]
    assert len(ends) == 1 and "\nfind " in ends[0]  # the temporary files and the snapshots' listing: one
    assert not [c for c in sent if c.startswith("find ")]
    assert not (site / ".maint" / "wp_helper.php").exists() and not Path(snap, "packages").exists()
    lock = json.loads(Path(update.data["lock"]).read_text())
    trees = {p["name"]: p["tree"] for p in lock["packages"].values() if p["type"] != "core"}
    assert set(trees) == {"akismet", "shop-cart", "twentytwentythree"} and all(len(t) == 64 for t in trees.values())
    assert wp_plugin_version(site, "shop-cart") == "1.1.0"


def test_a_dangling_upgrade_link_survives_the_undo(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    link = shop.staging.path / "wp-content" / "upgrade"
    os.symlink("/nonexistent/maint-upgrade", link)
    os.lchown(link, *_deploy_ids())

    result = run(shop, inv)

    assert not result.ok
    update = steps(result, "staging")["update"]
    assert update.status is StepStatus.FAILED  # the upgrader cannot unpack into it; the step undid its work
    assert update.error is not None
    assert "install failed: Could not create directory." in update.error
    assert "undoing the partial update ALSO failed" not in update.error
    assert link.is_symlink() and os.readlink(link) == "/nonexistent/maint-upgrade"  # not maint's: left alone
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.0.0"


def _deploy_ids() -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam("deploy")
    return pw.pw_uid, pw.pw_gid
