"""The commands a WordPress update sends on staging (the monthly-update over SSH), counted.

Every transport of the run is wrapped in :class:`~tests.lab.recording.Recorder`. The update
step prepares its folders in ONE round trip (``.maint``, the private snapshot folder, the
folder for the staged zips, the error logs' sizes and whether ``wp-content/upgrade`` exists),
and after the update staging hashes the updated plugin and every other package the version
lock records in ONE read; the step ends removing its temporary files and listing the snapshots
in ONE round trip. The helper is uploaded with the folders, the zip with the plugin's snapshot,
and verify's reads (the tree hashes, the schema, the runner's reads for verify) are taken in the
round trip of the re-activation, right after its process: seven commands from the preparation to
the end of verify. ``wp-content/upgrade`` that is a dangling symlink is there: the
undo of a failed update leaves it alone (only what the step made is removed).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from maintkit.actions.cms.snapshots import zip_tree_hash
from maintkit.playbook import playbook_from_text
from maintkit.probes.cms import tree_hash_script
from maintkit.results import StepStatus
from tests.cms_helpers import make_shop_cart_zip, wp_plugin_version
from tests.lab.recording import Recorder
from tests.lab.wp_fixtures import Shop, run, steps, write_inventory

pytestmark = pytest.mark.lab

UPDATE_ONLY = """\
name: update-only
stages:
  - env: staging
    steps:
      - {id: update, action: cms.update}
"""

TREE_HASH = tree_hash_script(["X"]).split("; do ", 1)[1]  # the per-path part every tree-hash read runs


def tree_of(path: Path) -> str:
    """The tree hash of a local folder, as the host computes it."""
    out = subprocess.run(["sh", "-c", tree_hash_script([str(path)])], capture_output=True, text=True, check=True)
    return out.stdout.strip()


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


def test_the_update_sends_seven_commands_from_preparation_to_verify(shop: Shop) -> None:
    package = make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    plugins = shop.staging.path / "wp-content" / "plugins"
    rec = Recorder()

    result = run(shop, inv, transport_factory=rec)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    assert update.data["read_back"] == "activation" and update.data["verify_reads"] == "activation"
    sent = staging_commands(rec, shop)
    snap = update.data["snapshot"]
    first = next(i for i, c in enumerate(sent) if f"mkdir -p -- {snap}/packages" in c)
    last = next(i for i, c in enumerate(sent) if " activate " in c)
    prep, dbcnf, dump, snapshot, install, switch, activation = sent[first : last + 1]  # exactly seven
    assert "wp_helper.php.XXXXXX" in prep  # the helper, uploaded with the folders
    assert " dbcnf " in dbcnf and "mariadb-dump" in dump and " install " in install
    assert "packages/shop-cart-1.1.0.zip.XXXXXX" in snapshot and f"cp -a -- {plugins}/shop-cart " in snapshot
    assert switch.startswith("[ -d ") and ".maint-new-shop-cart" in switch
    helper = activation.index(" activate ")
    assert helper < activation.index(TREE_HASH) < activation.index("\nmariadb ")  # read after the process
    assert "command -v wp" in activation  # the runner's read for verify, in the same round trip
    assert sum("wp_helper.php.XXXXXX" in c for c in sent) == 1
    assert sum(TREE_HASH in c for c in sent) == 1
    after = sent[last + 1]  # cache.clear's first command: nothing of the update's verify
    assert TREE_HASH not in after and "mariadb" not in after and "command -v wp" not in after
    lock = json.loads(Path(update.data["lock"]).read_text())
    assert lock["packages"]["plugin:shop-cart"]["tree"] == zip_tree_hash(package.read_bytes(), "shop-cart")
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.1.0"


def test_post_update_commands_make_verify_read_afresh(shop: Shop) -> None:
    """A ``post_update`` command runs after the re-activation and may change what it saw: the
    activation's round trip reads nothing for verify, which reads the state, the tree hashes and
    the schema itself after the command (the command's mark is in what verify hashed)."""
    make_shop_cart_zip(shop.repo, "1.1.0")
    mark = shop.staging.path / "wp-content" / "plugins" / "shop-cart" / "post-update-mark.txt"
    inv = write_inventory(shop, {"post_update": [["sh", "-c", f"echo done > '{mark}'"]]}, envs=("staging",))
    rec = Recorder()

    result = run(shop, inv, playbook_from_text(UPDATE_ONLY), transport_factory=rec)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    assert update.data["read_back"] == "helper" and "verify_reads" not in update.data
    sent = staging_commands(rec, shop)
    (activation,) = [c for c in sent if " activate " in c]
    assert TREE_HASH not in activation and "mariadb" not in activation
    post = next(i for i, c in enumerate(sent) if "post-update-mark" in c)
    assert any(TREE_HASH in c for c in sent[post + 1 :])  # verify's own read, after the command
    assert any("mariadb" in c and "SHOW TABLES" in c for c in sent[post + 1 :])
    assert mark.read_text() == "done\n"
    lock = json.loads(Path(update.data["lock"]).read_text())
    assert lock["packages"]["plugin:shop-cart"]["tree"] == tree_of(shop.staging.path / "wp-content/plugins/shop-cart")


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
