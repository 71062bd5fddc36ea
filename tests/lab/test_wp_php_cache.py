"""The WordPress helper's compiled-code cache (``<path>/.maint/php-cache``, OPcache's file cache).

Over SSH through maint runs: a real run fills it (0700 directory, 0600 manifest, owned by the
login user), the no-op run after it loads every compiled file without compiling it again, and
plan mode writes none. On the real PHP with the helper started as the driver starts it: a
source changed without changing its mtime or size (in place, or a copy swapped in by a
directory rename) is compiled again, where OPcache's own check alone would run the stale code
(the control runs show that it does); a directory that is a symlink or another user's is never
used.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from maintkit.actions.cms.drivers.php_cache import ini_settings, php_command
from maintkit.actions.cms.drivers.wordpress_state import parse_marked_json, wp_helper_source
from maintkit.results import StepStatus
from tests.cms_helpers import WpSite, WpTemplate, chown_tree, make_shop_cart_zip
from tests.lab.wp_fixtures import Shop, run, steps, write_inventory

pytestmark = pytest.mark.lab

VERSION_PHP = "wp-includes/version.php"


def bins(cache: Path) -> dict[str, tuple[int, int]]:
    """Every compiled file of the cache: source path -> (inode, mtime in ns) of the compiled file."""
    out = {}
    for sysid in cache.iterdir():
        if sysid.is_dir():
            for f in sysid.rglob("*.bin"):
                st = f.stat()
                out["/" + str(f.relative_to(sysid))[: -len(".bin")]] = (st.st_ino, st.st_mtime_ns)
    return out


def assert_manifest_true(cache: Path) -> None:
    """Every entry names its source as it is now, and every compiled file has an entry."""
    manifest = json.loads((cache / "manifest.json").read_text())
    for src, entry in manifest.items():
        st = os.lstat(src)
        assert entry == f"{st.st_dev}:{st.st_ino}:{st.st_size}:{int(st.st_mtime)}:{int(st.st_ctime)}", src
    assert set(bins(cache)) == set(manifest)


def test_a_real_run_fills_the_cache_and_the_no_op_run_compiles_nothing(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    caches = {env: shop.site(env).path / ".maint" / "php-cache" for env in ("staging", "production")}

    first = run(shop, inv)

    assert first.ok, json.dumps(first.to_dict(), indent=1)[-3000:]
    before = {}
    for env, cache in caches.items():
        assert steps(first, env)["update"].status is StepStatus.CHANGED
        site = shop.site(env)
        st = cache.lstat()
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == _uid("deploy")
        man = cache / "manifest.json"
        assert stat.S_IMODE(man.stat().st_mode) == 0o600 and man.stat().st_uid == _uid("deploy")
        manifest = json.loads(man.read_text())
        assert {str(site.path / "wp-load.php"), str(site.path / VERSION_PHP)} <= set(manifest)
        before[env] = bins(cache)
        assert set(before[env]) == set(manifest)
        assert_manifest_true(cache)

    for env in caches:  # OPcache keeps no file modified in the last 2 s (file_update_protection)
        until_second(int(os.stat(shop.site(env).plugin_dir / "shop-cart.php").st_mtime) + 3)

    again = run(shop, inv)

    assert again.ok and again.changed == 0
    after = {}
    for env, cache in caches.items():
        site = shop.site(env)
        after[env] = bins(cache)
        assert {k: after[env][k] for k in before[env]} == before[env]  # loaded, not compiled again
        # the plugin switched in by the update (too new to keep when the update's boots ran)
        # is kept now, under the 1.1.0 file's identity
        plugin = str(site.plugin_dir / "shop-cart.php")
        p = os.stat(plugin)
        entry = json.loads((cache / "manifest.json").read_text())[plugin]
        assert entry.split(":")[:3] == [str(p.st_dev), str(p.st_ino), str(p.st_size)]
        assert_manifest_true(cache)

    third = run(shop, inv)

    assert third.ok and third.changed == 0
    assert {env: bins(cache) for env, cache in caches.items()} == after


def test_plan_mode_writes_no_cache(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)

    result = run(shop, inv, check=True)

    assert result.ok
    for env in ("staging", "production"):
        assert steps(result, env)["update"].status is StepStatus.WOULD_CHANGE
        assert not (shop.site(env).path / ".maint" / "php-cache").exists()


def until_second(second: int) -> None:
    """Return once the clock reads ``second`` or later. Not a timing window: the rules waited for
    (a compiled file newer than its source's ctime, OPcache's 2-second protection) are defined on
    the clock's whole seconds, so a slower machine only makes them hold more surely."""
    while (left := second - time.time()) > 0:
        time.sleep(left)


def next_second() -> None:
    """Return once the clock's second is past the current one: files made before are then older
    than anything compiled after (the helper keeps a compiled file only when its source's ctime,
    in whole seconds, is older than the compiled file)."""
    until_second(int(time.time()) + 1)


@pytest.fixture()
def site(wp_template: WpTemplate) -> WpSite:
    made = wp_template.make_site(owner="root")
    next_second()
    return made


def helper(site: WpSite, cache: Path, *, managed: bool = True) -> dict[str, object]:
    """The helper's ``list`` started as the driver starts it (``managed=False``: the same PHP
    settings, but the helper is not told about the cache, so only OPcache's own check runs)."""
    args = {"readonly": True, **({"php_cache": str(cache)} if managed else {})}
    rest = ["--", str(site.path), "list", json.dumps(args)]
    argv = php_command("php", rest, str(cache)) if managed else ["php", *ini_settings(str(cache)), *rest]
    res = subprocess.run(argv, input=wp_helper_source(), capture_output=True, check=True)
    data = parse_marked_json(res.stdout.decode())
    assert data is not None and data["ok"], res.stdout[-2000:]
    return data


def core_version(data: dict[str, object]) -> str:
    core = data["core"]
    assert isinstance(core, dict)
    return str(core["version"])


def rewrite_keeping_mtime(path: Path, old: str, new: str) -> None:
    """Change the content (same size) and set the mtime back to what it was."""
    st = path.stat()
    text = path.read_text()
    assert old in text and len(old) == len(new)
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_a_file_changed_in_place_with_its_old_mtime_is_compiled_again(site: WpSite, tmp_path: Path) -> None:
    cache = site.path / ".maint" / "php-cache"
    assert core_version(helper(site, cache)) == "6.1.9"
    old = bins(cache)[str(site.path / VERSION_PHP)]

    rewrite_keeping_mtime(site.path / VERSION_PHP, "'6.1.9'", "'6.1.7'")

    # the hazard: OPcache's own check (the mtime) runs the stale compiled file
    control = tmp_path / "control"
    shutil.copytree(cache, control, symlinks=True)
    assert core_version(helper(site, control, managed=False)) == "6.1.9"
    # the manifest's ctime catches it
    assert core_version(helper(site, cache)) == "6.1.7"
    assert bins(cache).get(str(site.path / VERSION_PHP)) != old
    assert core_version(helper(site, cache)) == "6.1.7"


def test_a_copy_swapped_in_by_a_directory_rename_is_compiled_again(site: WpSite, tmp_path: Path) -> None:
    cache = site.path / ".maint" / "php-cache"
    nxt = site.path / "wp-includes.next"
    shutil.copytree(site.path / "wp-includes", nxt, symlinks=True, copy_function=shutil.copy2)
    rewrite_keeping_mtime(nxt / "version.php", "'6.1.9'", "'6.1.7'")
    next_second()
    assert core_version(helper(site, cache)) == "6.1.9"  # the compiled files are newer than the copy

    os.rename(site.path / "wp-includes", site.path / "wp-includes.prev")
    os.rename(nxt, site.path / "wp-includes")

    control = tmp_path / "control"
    shutil.copytree(cache, control, symlinks=True)
    assert core_version(helper(site, control, managed=False)) == "6.1.9"  # stale
    assert core_version(helper(site, cache)) == "6.1.7"  # another inode


@pytest.mark.parametrize("kind", ["symlink", "other owner"])
def test_a_cache_directory_maint_cannot_trust_is_not_used(site: WpSite, tmp_path: Path, kind: str) -> None:
    maint = site.path / ".maint"
    maint.mkdir()
    cache = maint / "php-cache"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if kind == "symlink":
        cache.symlink_to(elsewhere)
    else:
        cache.mkdir(mode=0o700)
        chown_tree(cache, "deploy")  # the helper runs as root here

    assert core_version(helper(site, cache)) == "6.1.9"

    assert list(elsewhere.iterdir()) == []
    if kind == "other owner":
        assert list(cache.iterdir()) == []


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def test_cache_clear_flushes_wordpress_through_the_helper_and_its_cache(shop: Shop) -> None:
    """Without wp-cli, cache.clear's WordPress flush is the helper's ``flush``: it boots through
    the compiled files cms.update left, and it really flushes (the rewrite rules are rebuilt)."""
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    assert run(shop, inv).ok
    site = shop.production
    cache = site.path / ".maint" / "php-cache"
    until_second(int(time.time()) + 3)  # OPcache keeps no file modified in the last 2 s
    warm = run(shop, inv)  # the no-op's state read compiles what the update's boots could not keep
    assert warm.ok and warm.changed == 0
    before = bins(cache)
    site.sql(shop.mariadb, "UPDATE wp_options SET option_value = 'junk' WHERE option_name = 'rewrite_rules'")

    result = run(shop, inv, _clear_playbook())

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    clear = steps(result, "production")["clear"]
    assert clear.status is StepStatus.CHANGED
    assert [c.get("commands") for c in clear.data["cleared"]] == [["php <wordpress flush>"]]
    rules = site.sql(shop.mariadb, "SELECT option_value FROM wp_options WHERE option_name = 'rewrite_rules'")
    assert rules.startswith("a:") and 's:11:"^wp-json/?$";s:22:"index.php?rest_route=/";' in rules  # rebuilt
    after = bins(cache)
    assert {k: after[k] for k in before} == before  # loaded, not compiled again
    assert_manifest_true(cache)


def _clear_playbook() -> object:
    from maintkit.playbook import playbook_from_text

    return playbook_from_text(
        "name: clear\n"
        "stages:\n"
        "  - env: production\n"
        "    steps:\n"
        "      - {id: clear, action: cache.clear, with: {targets: [platform]}}\n"
    )


def test_the_flush_uses_only_a_cache_directory_that_is_there(site: WpSite) -> None:
    """cache.clear's flush starts PHP with create=False: without cms.update's directory it runs
    without a cache and makes none."""
    cache = site.path / ".maint" / "php-cache"
    args = json.dumps({"url": site.url, "rewrite": False, "php_cache": str(cache)})
    argv = php_command("php", ["--", str(site.path), "flush", args], str(cache), create=False)

    res = subprocess.run(argv, input=wp_helper_source(), capture_output=True, check=True)

    assert parse_marked_json(res.stdout.decode()) == {"ok": True, "flushed": True, "rewrite": False}
    assert not (site.path / ".maint").exists()


def test_a_read_only_run_that_compiles_nothing_writes_no_manifest(site: WpSite) -> None:
    """A read-only run records only what it compiled (no second scan of the cache): the second
    read compiles nothing, so the manifest is not even written again, and stays true."""
    cache = site.path / ".maint" / "php-cache"
    helper(site, cache)
    manifest = cache / "manifest.json"
    before, compiled = manifest.stat(), bins(cache)
    assert str(site.path / "wp-load.php") in json.loads(manifest.read_text())
    assert_manifest_true(cache)

    helper(site, cache)

    after = manifest.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert bins(cache) == compiled
    assert_manifest_true(cache)


def test_a_read_only_run_records_what_it_compiled(site: WpSite) -> None:
    """A source the read loads for the first time: not kept while it is new (OPcache's 2-second
    protection), then recorded by the read that compiled it (its source older than the
    compiled file), and loaded from the cache by the read after that."""
    cache = site.path / ".maint" / "php-cache"
    helper(site, cache)
    extra = site.path / "wp-content" / "mu-plugins" / "extra.php"
    extra.parent.mkdir(exist_ok=True)
    extra.write_text("<?php\n// a must-use plugin added after the first read\n")

    helper(site, cache)

    assert str(extra) not in json.loads((cache / "manifest.json").read_text())
    assert str(extra) not in bins(cache)
    assert_manifest_true(cache)
    until_second(int(extra.stat().st_mtime) + 3)

    helper(site, cache)

    assert str(extra) in json.loads((cache / "manifest.json").read_text())
    assert_manifest_true(cache)
    compiled = bins(cache)[str(extra)]
    helper(site, cache)
    assert bins(cache)[str(extra)] == compiled
