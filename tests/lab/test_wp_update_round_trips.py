"""The commands a WordPress update sends on staging (the monthly-update over SSH), counted.

Every transport of the run is wrapped in :class:`~tests.lab.recording.Recorder`. From the
preparation to the end of verify an update of one plugin sends two commands, each a shell of
parts that run one after the other, a part only when the one before it succeeded
(:mod:`maintkit.actions.cms.trip`): the folders (``.maint``, the private snapshot folder, the
folder for the staged zips), the helper written from a here-document, the error logs' sizes and
whether ``wp-content/upgrade`` exists, then the zip (from stdin) with the plugin's snapshot, then
ONE helper process that unpacks the plugin beside the live folder and writes the database option
file, then the schema read and the dump; the switch, then the re-activation, then verify's reads
(the tree hashes, the schema, the runner's reads for verify). After the update staging hashes
the updated plugin and every other package the version lock records in ONE read; the step ends
removing its temporary files and listing the snapshots in ONE round trip. Several packages take
the same two commands: every zip and snapshot, then ONE install process for all of them, in the
first; every switch, then ONE re-activation process for all of them (it names the package whose
new code died), in the second. Without a dump the first one prepares and installs. ``wp-content/upgrade`` that is a
dangling symlink is there: the undo of a failed update leaves it alone (only what the step made
is removed).
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from maintkit.actions.cms.snapshots import zip_tree_hash
from maintkit.playbook import playbook_from_text
from maintkit.probes.cms import tree_hash_script
from maintkit.results import StepStatus
from tests.cms_helpers import make_shop_cart_zip, make_theme_zip, theme_version, tree_digest, wp_plugin_version
from tests.lab.recording import Recorder, trip_parts
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


def test_the_update_sends_two_commands_from_preparation_to_verify(shop: Shop) -> None:
    package = make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    site = shop.staging.path
    plugins = site / "wp-content" / "plugins"
    rec = Recorder()

    result = run(shop, inv, transport_factory=rec)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    assert update.data["read_back"] == "activation" and update.data["verify_reads"] == "activation"
    assert update.data["php_boots"] == 2  # install (it also wrote the option file), activate
    assert {"php", "dump", "switch"} <= set(update.data["timing_ms"])
    summaries = ["dumped before the update", "WordPress upgrade working directory", "plugin shop-cart 1.0.0 -> 1.1.0"]
    assert [c.summary for c in update.changes] == summaries  # as when the dump ran first: undone last
    sent = staging_commands(rec, shop)
    snap, cnf = update.data["snapshot"], f"{update.data['snapshot']}/db.cnf"
    first = next(i for i, c in enumerate(sent) if f"mkdir -p -- {snap}/packages" in c)
    assert " list '{" in sent[first - 1]  # before it: the state read the precheck and the update share
    prepared, activated = sent[first : first + 2]
    assert sent[first + 2].startswith("pid=$(cat -- ")  # then cache.clear's reload: the update sent two
    ours = (
        " install ",
        " activate ",
        f"command -v zstd >/dev/null 2>&1 && mk_o={snap}/database.sql.zst\n",
        "wp_helper.php.XXXXXX",
        f"cp -a -- {plugins}",
    )
    for word in ours:
        assert sum(word in c for c in sent) == 1, word  # nothing of the update's is sent anywhere else
    assert not [c for c in sent if " dbcnf " in c]  # no PHP start of its own for the credentials

    # 1: the folders and the helper (a here-document), then the zip (from stdin) with the
    # plugin's snapshot, then the install beside the live folder writing the option file, then
    # the schema read and the dump
    prep, snapshot, install, dump = trip_parts(prepared)
    assert f"chmod 700 -- {snap} " in prep and f"-e {site}/wp-content/upgrade" in prep
    assert "wp_helper.php.XXXXXX" in prep and str(shop.web.php_error_log) in prep
    assert "<<'MAINTKIT_WP_HELPER_SOURCE_END'\n<helper source>\nMAINTKIT_WP_HELPER_SOURCE_END\n" in prep
    assert prep.endswith(") </dev/null")  # the helper is in the command: stdin is the zip's
    assert "packages/shop-cart-1.1.0.zip.XXXXXX" in snapshot and f"cp -a -- {plugins}/shop-cart " in snapshot
    assert not snapshot.endswith("</dev/null")  # the only part that reads the round trip's stdin
    assert install.startswith(f"( rm -f -- {cnf} || exit $?\n") and " install '{" in install
    assert f'"into":"{plugins}/.maint-new-shop-cart"' in install
    expect = {"path": cnf, "database": shop.staging.db_name, "table_prefix": "wp_"}
    assert f'"dbcnf":{json.dumps(expect, separators=(",", ":"))}' in install
    assert install.endswith(") </dev/null") and dump.endswith(") </dev/null")
    assert prepared.index(install) < prepared.index(f"{{ [ -f {cnf} ]\n}} || ") < prepared.index(dump)  # it wrote it
    assert dump.startswith(f"( mariadb --defaults-file={cnf} --default-character-set=utf8mb4 --batch ")
    assert f"\nst=$( {{ {{ mariadb-dump --defaults-file={cnf} " in dump
    assert dump.index("SHOW TABLES") < dump.index("mariadb-dump")
    # 2: the switch, the re-activation, then verify's reads and the runner's reads for verify
    switch, activate, hashed, schema = trip_parts(activated)
    assert switch.startswith("( ( [ -d ") and f"{plugins}/.maint-new-shop-cart" in switch
    assert " activate '{" in activate and TREE_HASH in hashed and schema.startswith("( mariadb ")
    assert '"into"' not in activate and '"dbcnf"' not in activate
    assert activated.index(schema) < activated.index("command -v wp")  # the runner's read, after everything
    lock = json.loads(Path(update.data["lock"]).read_text())
    assert lock["packages"]["plugin:shop-cart"]["tree"] == zip_tree_hash(package.read_bytes(), "shop-cart")
    assert wp_plugin_version(site, "shop-cart") == "1.1.0"
    assert not Path(cnf).exists() and not (site / ".maint" / "wp_helper.php").exists()  # the stage's end


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
    assert len(trip_parts(activation)) == 2  # the switch and the re-activation only
    post = next(i for i, c in enumerate(sent) if "post-update-mark" in c)
    assert any(TREE_HASH in c for c in sent[post + 1 :])  # verify's own read, after the command
    assert any("mariadb" in c and "SHOW TABLES" in c for c in sent[post + 1 :])
    assert mark.read_text() == "done\n"
    lock = json.loads(Path(update.data["lock"]).read_text())
    assert lock["packages"]["plugin:shop-cart"]["tree"] == tree_of(shop.staging.path / "wp-content/plugins/shop-cart")


def test_a_plugin_and_a_theme_take_two_commands_and_two_php_starts_as_one_does(shop: Shop) -> None:
    """Several updates in one step: the folders, the helper, both zips (one after the other on
    stdin) with their snapshots, ONE install process unpacking both and writing the option file,
    then the dump; then both switches and ONE re-activation process for both, which reads for
    verify and flushes (nothing runs after it)."""
    site = shop.staging.path
    assert theme_version(site) == "1.0"
    plugin_zip = make_shop_cart_zip(shop.repo, "1.1.0")
    theme_zip = make_theme_zip(site, shop.repo, "1.0.1")
    inv = write_inventory(shop, {"flush_caches": True}, envs=("staging",))
    rec = Recorder()

    result = run(shop, inv, playbook_from_text(UPDATE_ONLY), transport_factory=rec)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    assert [u["name"] for u in update.data["updates"]] == ["shop-cart", "twentytwentythree"]
    # one install (it also wrote the option file) and one activation; the state read (a probe)
    # came with the stage's first read
    assert update.data["php_boots"] == 2 and update.data["verify_reads"] == "activation"
    plugins, themes = site / "wp-content" / "plugins", site / "wp-content" / "themes"
    assert update.data["switched"] == [f"{plugins}/shop-cart", f"{themes}/twentytwentythree"]
    summaries = [c.summary for c in update.changes]
    assert summaries == [
        "dumped before the update",
        "WordPress upgrade working directory",
        "plugin shop-cart 1.0.0 -> 1.1.0",
        "theme twentytwentythree 1.0 -> 1.0.1",
    ]
    sent = staging_commands(rec, shop)
    first = next(i for i, c in enumerate(sent) if f"mkdir -p -- {update.data['snapshot']}/packages" in c)
    prepared, switched = sent[first : first + 2]
    assert sent[first + 2].startswith("rm -rf -- ") and " install " not in sent[first + 2]  # the step's end
    _prep, to_plugin, to_theme, install, dump = trip_parts(prepared)
    sizes = (plugin_zip.stat().st_size, theme_zip.stat().st_size)
    assert f"head -c {sizes[0]} > " in to_plugin and f"cp -a -- {plugins}/shop-cart " in to_plugin
    assert f"head -c {sizes[1]} > " in to_theme and f"cp -a -- {themes}/twentytwentythree " in to_theme
    assert not to_plugin.endswith("</dev/null") and not to_theme.endswith("</dev/null")  # both read stdin
    batch = json.loads(install.split(" install '", 1)[1].split("'", 1)[0])
    assert [(p["type"], p["slug"], p["into"]) for p in batch["packages"]] == [
        ("plugin", "shop-cart", f"{plugins}/.maint-new-shop-cart"),
        ("theme", "twentytwentythree", f"{themes}/.maint-new-twentytwentythree"),
    ]
    assert batch["dbcnf"]["path"].endswith("/db.cnf") and "mariadb-dump" in dump
    assert sum(" install " in c for c in sent) == 1 and not [c for c in sent if " dbcnf " in c]
    to_plugin, to_theme, activate, hashed, schema = trip_parts(switched)
    assert ".maint-new-shop-cart" in to_plugin and ".maint-new-twentytwentythree" in to_theme
    assert sum(" activate " in c for c in sent) == 1 and " activate '{" in activate
    packages = json.loads(activate.split(" activate '", 1)[1].split("'", 1)[0])["packages"]
    assert [(p["type"], p["slug"]) for p in packages] == [("plugin", "shop-cart"), ("theme", "twentytwentythree")]
    assert '"flush":true' in activate and TREE_HASH in hashed and schema.startswith("( mariadb ")
    assert "command -v wp" in switched  # the runner's reads for verify, after everything
    assert wp_plugin_version(site, "shop-cart") == "1.1.0" and theme_version(site) == "1.0.1"
    assert tree_of(plugins / "shop-cart") == zip_tree_hash(plugin_zip.read_bytes(), "shop-cart")
    assert tree_of(themes / "twentytwentythree") == zip_tree_hash(theme_zip.read_bytes(), "twentytwentythree")


def test_the_one_activation_names_the_package_whose_new_code_died_and_everything_is_undone(shop: Shop) -> None:
    """The plugin and the theme are re-activated by one process; the theme's new code dies
    while WordPress loads: the step's error names the theme (the file of the fatal error is in
    its folder), and the undo puts both folders back to the byte."""
    site = shop.staging.path
    make_shop_cart_zip(shop.repo, "1.1.0")
    theme_zip = make_theme_zip(site, shop.repo, "1.0.1")
    with zipfile.ZipFile(theme_zip, "a") as zf:  # the active theme's functions.php loads at every boot
        zf.writestr("twentytwentythree/functions.php", "<?php\nmaint_theme_boot_missing();\n")
    inv = write_inventory(shop, {"isolate": "none"}, envs=("staging",))  # no retry of the plugin alone
    before = tree_digest(site, exclude=(".maint",))

    result = run(shop, inv, playbook_from_text(UPDATE_ONLY))

    update = steps(result, "staging")["update"]
    assert update.status is StepStatus.FAILED
    error = str(update.error)
    assert error.startswith("apply: theme twentytwentythree 1.0.1: activation failed: PHP fatal error: "), error
    assert "maint_theme_boot_missing" in error and "shop-cart 1.1.0" not in error
    assert tree_digest(site, exclude=(".maint",)) == before  # both folders back, nothing left beside them
    assert wp_plugin_version(site, "shop-cart") == "1.0.0" and theme_version(site) == "1.0"


def test_a_death_outside_the_packages_names_every_package_of_the_activation(shop: Shop) -> None:
    """The one re-activation process dies in a file of neither package (a must-use plugin that
    fails only in that process): the error names both packages, and both are put back."""
    site = shop.staging.path
    make_shop_cart_zip(shop.repo, "1.1.0")
    make_theme_zip(site, shop.repo, "1.0.1")
    mu = site / "wp-content" / "mu-plugins"
    mu.mkdir(exist_ok=True)
    (mu / "maint-test-dies.php").write_text(
        "<?php\nif (($GLOBALS['maintkit_cmd'] ?? '') === 'activate') { maint_activation_missing(); }\n"
    )
    inv = write_inventory(shop, {"isolate": "none"}, envs=("staging",))
    before = tree_digest(site, exclude=(".maint",))

    result = run(shop, inv, playbook_from_text(UPDATE_ONLY))

    update = steps(result, "staging")["update"]
    assert update.status is StepStatus.FAILED
    both = "plugin shop-cart 1.1.0, theme twentytwentythree 1.0.1: activation failed: PHP fatal error: "
    assert str(update.error).startswith(f"apply: {both}") and "maint_activation_missing" in str(update.error)
    assert tree_digest(site, exclude=(".maint",)) == before
    assert wp_plugin_version(site, "shop-cart") == "1.0.0" and theme_version(site) == "1.0"


def test_without_a_dump_and_the_code_cache_the_preparation_is_alone(shop: Shop) -> None:
    """``database: never`` and ``php_cache: false``: the first round trip prepares the folders,
    writes the helper and installs the plugin (no option file, no dump); the switch's is as
    ever, without the schema read."""
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop, {"database": "never", "php_cache": False}, envs=("staging",))
    rec = Recorder()

    result = run(shop, inv, playbook_from_text(UPDATE_ONLY), transport_factory=rec)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    # install, activate (the state read is a probe: it came with the stage's first read)
    assert update.data["php_boots"] == 2 and update.data["schema_changed"] is None
    sent = staging_commands(rec, shop)
    first = next(i for i, c in enumerate(sent) if f"mkdir -p -- {update.data['snapshot']}/packages" in c)
    prepared, activated = sent[first : first + 2]
    assert sent[first + 2].startswith("rm -rf -- ")
    prep, _snapshot, install = trip_parts(prepared)
    assert "wp_helper.php.XXXXXX" in prep and " install '{" in install and '"dbcnf"' not in install
    assert not [c for c in sent if "dbcnf" in c or "mariadb" in c]
    assert len(trip_parts(activated)) == 3  # the switch, the re-activation, the tree hashes: no schema read
    assert "php-cache" not in prepared + activated and not (shop.staging.path / ".maint" / "php-cache").exists()
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.1.0"


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
