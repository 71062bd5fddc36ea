"""A failing part of one of the WordPress update's round trips, against the real lab (over SSH).

The update sends two commands, each of several parts (see test_wp_update_round_trips.py):
a part runs only when the one before it succeeded, and each is read as when it ran alone. Here
one part fails for real, and the test proves the parts after it never ran, the step failed with
the message it always gave, and the undo left the site exactly as it was:

* ``dbcnf`` in a process of its own (the first update is WordPress core) finds no credentials
  (wp-config.php defines nothing in a SHORTINIT boot): no database client ran at all;
* the one install process cannot unpack the second of two packages (the upgrader refuses
  it): it writes no option file, so no database client ran, and the first package unpacked
  beside its folder is removed;
* the install's process finds that wp-config.php names another table prefix than the state
  read did: it writes no option file, so no database client ran, and the unpacked package is
  removed;
* the dump fails (a view that references a dropped table): its partial file is gone and
  nothing was switched in (the package unpacked beside the live folder is removed);
* the dump's compression fails (``zstd`` fails after reading part of the dump): the same;
* the zip cannot be written (``mktemp`` fails for it): nothing is copied, no PHP ran after the
  state read, no database client at all;
* the switch fails (its second rename): the re-activation never ran, the live folder is the
  one from before to the byte.

What ran on the host is read from PATH shims (:mod:`tests.lab.argv_shim`): every ``php``,
``mariadb`` and ``mariadb-dump`` start is recorded, and ``mktemp``, ``mv`` or ``zstd`` fail on cue.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from maintkit.inventory import Inventory, load_inventory
from maintkit.playbook import playbook_from_text
from maintkit.results import RunResult, StepResult, StepStatus
from tests import runs
from tests.cms_helpers import make_shop_cart_zip, make_theme_zip, tree_digest, wp_plugin_version
from tests.lab.argv_shim import ArgvShim, argv_shim
from tests.lab.sshd import SshLab
from tests.lab.test_cms_wordpress import UPDATE_THEN_FAIL
from tests.lab.test_wp_update_round_trips import UPDATE_ONLY
from tests.lab.wp_fixtures import Shop, run, site_entry, steps

pytestmark = pytest.mark.lab

#: the programs whose every start is recorded
WATCHED = ["php", "mariadb", "mariadb-dump"]


@pytest.fixture()
def watched(shop: Shop, ssh_lab: SshLab) -> Iterator[ArgvShim]:
    """PATH shims for the staging logins recording :data:`WATCHED`; shop-cart 1.1.0 offered."""
    make_shop_cart_zip(shop.repo, "1.1.0")
    with argv_shim(ssh_lab, shop.host_dir / "shim", WATCHED) as shim:  # a folder the login user reaches
        yield shim


def fail_on(shim: ArgvShim, name: str, case: str, message: str) -> None:
    """A shim of ``name`` that fails (exit 1, ``message`` on stderr) when its arguments match the
    shell pattern ``case`` and else runs the real program (it records nothing: the recording
    shims themselves run ``mktemp``)."""
    real = shutil.which(name)
    script = f'#!/bin/sh\ncase "$*" in {case}) echo "{message}" >&2; exit 1;; esac\nexec {real} "$@"\n'
    (shim.bin_dir / name).write_text(script)
    (shim.bin_dir / name).chmod(0o755)


def run_update(shop: Shop, shim: ArgvShim, cms_update: dict[str, str] | None = None) -> tuple[RunResult, StepResult]:
    """The update alone on staging, every command through the shims."""
    entry = site_entry(shop, cms_update, envs=("staging",))
    entry["environments"]["staging"]["key_file"] = str(shim.key_file)
    inv: Inventory = load_inventory(runs.write_inventory(shop.tmp, {"shop": entry}, unique=True))
    result = run(shop, inv, playbook_from_text(UPDATE_ONLY))
    return result, steps(result, "staging")["update"]


def started(shim: ArgvShim) -> Counter[str]:
    """How often each watched program started: ``php <helper command>`` or the program's name."""
    out: Counter[str] = Counter()
    for call in shim.calls():
        argv = call.argv
        if argv[0] == "php":
            rest = argv[1:]
            while rest and rest[0] == "-d":
                rest = rest[2:]
            out[f"php {rest[2]}"] += 1
        else:
            out[argv[0]] += 1
    return out


class Before:
    """The staging site before the update: its files (``.maint`` aside), wp_options and plugins."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        site = shop.staging
        self.tree = tree_digest(site.path, exclude=(".maint",))
        self.options = site.sql(shop.mariadb, "CHECKSUM TABLE wp_options")
        self.tables = site.sql(shop.mariadb, "SHOW TABLES")
        self.plugins = sorted(os.listdir(site.path / "wp-content" / "plugins"))

    def unchanged(self, update: StepResult, *, booted: bool = False) -> None:
        """Nothing changed (``booted``: WordPress booted for an install, which writes options
        such as its cron schedule, as it always did: then only the tables are compared)."""
        site = self.shop.staging
        assert update.status is StepStatus.FAILED
        assert "undoing the partial update ALSO failed" not in str(update.error)
        assert tree_digest(site.path, exclude=(".maint",)) == self.tree
        if not booted:
            assert site.sql(self.shop.mariadb, "CHECKSUM TABLE wp_options") == self.options
        assert site.sql(self.shop.mariadb, "SHOW TABLES") == self.tables
        assert sorted(os.listdir(site.path / "wp-content" / "plugins")) == self.plugins  # no sibling left
        assert wp_plugin_version(site.path, "shop-cart") == "1.0.0"
        assert not (site.path / ".maint" / "wp_helper.php").exists()
        snap = snapshot(self.shop)
        assert not (snap / "db.cnf").exists() and not (snap / "packages").exists()  # the step's temporary files


def snapshot(shop: Shop) -> Path:
    """The run's snapshot folder on staging (the only one)."""
    (folder,) = (shop.staging.path / ".maint" / "snapshots").iterdir()
    return folder


def test_dbcnf_without_credentials_stops_before_any_database_client(
    shop: Shop, watched: ArgvShim, core_zip: Path
) -> None:
    shutil.copy(core_zip, shop.repo)  # core first: dbcnf runs in its own process, before any install
    config = shop.staging.path / "wp-config.php"
    config.write_text(
        config.read_text().replace("<?php", "<?php\nif (defined('SHORTINIT') && SHORTINIT) { return; }", 1)
    )
    before = Before(shop)

    result, update = run_update(shop, watched, {"core": "patch", "plugins": "none", "themes": "none"})

    assert not result.ok
    assert "cannot read the database credentials from wp-config.php: wp-config.php does not define DB_NAME" in str(
        update.error
    )
    before.unchanged(update)
    assert started(watched) == Counter(["php list", "php dbcnf"])  # no schema read, no dump, no install
    assert not list(snapshot(shop).glob("database.sql*"))


def test_another_table_prefix_at_the_install_writes_no_credentials_and_dumps_nothing(
    shop: Shop, watched: ArgvShim
) -> None:
    """wp-config.php naming another table prefix when the install's process boots than when the
    state was read (here a must-use plugin sets it for the helper's install only, as an edited
    wp-config.php would): the process writes no option file, no database client runs, the step
    fails with the message it always gave and the unpacked package is removed."""
    mu = shop.staging.path / "wp-content" / "mu-plugins"
    mu.mkdir(exist_ok=True)
    moved = "<?php\nif (($GLOBALS['maintkit_cmd'] ?? '') === 'install') { $GLOBALS['table_prefix'] = 'moved_'; }\n"
    (mu / "maint-test-prefix.php").write_text(moved)
    before = Before(shop)

    result, update = run_update(shop, watched)

    assert not result.ok
    db = shop.staging.db_name
    wrong = f"wp-config.php now names database {db} (table prefix 'moved_'), not the {db} ('wp_') WordPress reported"
    assert wrong in str(update.error), update.error
    before.unchanged(update, booted=True)
    assert started(watched) == Counter(["php list", "php install"])  # no schema read, no dump
    assert not list(snapshot(shop).glob("database.sql*")) and not (snapshot(shop) / "db.cnf").exists()


def test_a_package_the_one_install_cannot_unpack_stops_it_before_any_database_client(
    shop: Shop, watched: ArgvShim
) -> None:
    """The plugin and the theme are unpacked by one process; the upgrader refuses the theme (a
    must-use plugin's ``upgrader_pre_install`` filter, as a security plugin may): the process
    stops there and writes no option file, so no database client runs; the error names the
    theme, and the undo removes the plugin that was unpacked beside its folder."""
    make_theme_zip(shop.staging.path, shop.repo, "1.0.1")
    mu = shop.staging.path / "wp-content" / "mu-plugins"
    mu.mkdir(exist_ok=True)
    (mu / "maint-test-refuse.php").write_text(
        "<?php\nadd_filter('upgrader_pre_install', function ($r, $extra) {\n"
        "    return ($extra['type'] ?? '') === 'theme' ? new WP_Error('maint_test', 'no themes today') : $r;\n"
        "}, 10, 2);\n"
    )
    before = Before(shop)

    result, update = run_update(shop, watched, {"isolate": "none"})

    assert not result.ok
    assert "theme twentytwentythree 1.0.1: install failed: no themes today" in str(update.error), update.error
    before.unchanged(update, booted=True)  # no .maint-new-shop-cart left either
    assert started(watched) == Counter(["php list", "php install"])  # one install, no schema read, no dump
    assert not list(snapshot(shop).glob("database.sql*"))


def test_a_failing_dump_removes_its_partial_file_and_switches_nothing(shop: Shop, watched: ArgvShim) -> None:
    site = shop.staging
    site.sql(shop.mariadb, "CREATE TABLE maint_gone (id INT)")
    site.sql(shop.mariadb, "CREATE VIEW maint_broken AS SELECT id FROM maint_gone")
    site.sql(shop.mariadb, "DROP TABLE maint_gone")
    before = Before(shop)

    result, update = run_update(shop, watched)

    assert not result.ok
    assert f"database dump of {site.db_name} failed: " in str(update.error) and "maint_broken" in str(update.error)
    before.unchanged(update, booted=True)  # the install's process booted WordPress before the dump
    assert started(watched) == Counter(["php list", "php install", "mariadb", "mariadb-dump"])  # no activate
    assert not list(snapshot(shop).glob("database.sql*"))  # the partial dump removed


def test_a_failing_compression_removes_the_partial_dump_and_switches_nothing(shop: Shop, watched: ArgvShim) -> None:
    real = shutil.which("zstd")  # the lab's hosts have zstd: the dump goes through it
    script = f'#!/bin/sh\ncase "$*" in "-q -c") head -c 100 | {real} -q -c; echo "zstd: No space left on device" >&2; exit 1;; esac\nexec {real} "$@"\n'
    (watched.bin_dir / "zstd").write_text(script)
    (watched.bin_dir / "zstd").chmod(0o755)
    before = Before(shop)

    result, update = run_update(shop, watched)

    assert not result.ok
    error = str(update.error)
    assert f"database dump of {shop.staging.db_name} failed: " in error and "zstd: No space left on device" in error
    before.unchanged(update, booted=True)
    assert started(watched) == Counter(["php list", "php install", "mariadb", "mariadb-dump"])  # no activate
    assert not list(snapshot(shop).glob("database.sql*"))  # the partial dump removed


def test_a_zip_that_cannot_be_written_copies_nothing_and_runs_nothing_after_it(shop: Shop, watched: ArgvShim) -> None:
    fail_on(watched, "mktemp", "*.zip.XXXXXX", "mktemp: No space left on device")
    before = Before(shop)

    result, update = run_update(shop, watched)

    assert not result.ok
    zip_path = f"{snapshot(shop)}/packages/shop-cart-1.1.0.zip"
    assert f"cannot write {zip_path} on the host: mktemp: No space left on device" in str(update.error)
    before.unchanged(update)
    # no install, no option file, no dump (so no undo of a dump either)
    assert started(watched) == Counter(["php list"])
    assert not (snapshot(shop) / "plugins" / "shop-cart").exists()  # nothing copied


def test_a_failing_switch_never_reactivates_and_the_undo_restores_the_folder(shop: Shop, watched: ArgvShim) -> None:
    fail_on(watched, "mv", "*/.maint-new-shop-cart\\ *", "mv: cannot move: Device or resource busy")
    before = Before(shop)

    result, update = run_update(shop, watched)

    assert not result.ok
    plugins = shop.staging.path / "wp-content" / "plugins"
    switching = f"switching {plugins}/.maint-new-shop-cart into {plugins}/shop-cart failed: "
    assert switching + "mv: cannot move: Device or resource busy" in str(update.error), update.error
    before.unchanged(update, booted=True)
    php = ["php list", "php install"]  # no activate; the second mariadb: the undo's schema comparison
    assert started(watched) == Counter([*php, "mariadb", "mariadb", "mariadb-dump"])


def test_a_host_that_cannot_exchange_switches_by_renames_and_the_step_says_so(shop: Shop, watched: ArgvShim) -> None:
    # perl answers as it does where renameat2(RENAME_EXCHANGE) is refused (NFS, an old kernel)
    fail_on(watched, "perl", "*", "renameat2: Invalid argument")

    result, update = run_update(shop, watched)

    assert result.ok, update.error
    assert update.status is StepStatus.CHANGED
    plugin = str(shop.staging.plugin_dir)
    # the folder was switched by the two renames: missing for a moment, and the audit says so
    assert (update.data["switched"], update.data["switched_by_renames"]) == ([plugin], [plugin])
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.1.0"
    assert sorted(p for p in os.listdir(shop.staging.path / "wp-content" / "plugins") if p.startswith(".maint-")) == []


@pytest.mark.parametrize("perl", ["exchanges", "refuses"])
def test_the_rollbacks_restore_says_whether_it_fell_back_to_renames(shop: Shop, watched: ArgvShim, perl: str) -> None:
    if perl == "refuses":
        fail_on(watched, "perl", "*", "renameat2: Invalid argument")
    site = shop.staging
    tree = tree_digest(site.plugin_dir)
    entry = site_entry(shop, envs=("staging",))
    entry["environments"]["staging"]["key_file"] = str(watched.key_file)
    inv = load_inventory(runs.write_inventory(shop.tmp, {"shop": entry}, unique=True))

    result = run(shop, inv, playbook_from_text(UPDATE_THEN_FAIL))

    assert result.exit_code == 1
    assert steps(result, "staging")["update"].status is StepStatus.ROLLED_BACK
    assert tree_digest(site.plugin_dir) == tree  # the folder from before, to the byte
    assert wp_plugin_version(site.path, "shop-cart") == "1.0.0"
    assert sorted(p for p in os.listdir(site.path / "wp-content" / "plugins") if p.startswith(".maint-")) == []
    [rolled] = [e for e in runs.events(result.run_dir) if e["event"] == "cms.rolled_back"]
    plugin = [str(site.plugin_dir)]
    upgrade = str(site.path / "wp-content" / "upgrade")  # the work folder the update made: removed
    assert (rolled["restored"], rolled["restored_by_renames"]) == (
        ["plugin:shop-cart", upgrade],
        plugin if perl == "refuses" else [],
    )
    assert steps(result, "staging")["update"].data["rollback"]["restored_by_renames"] == rolled["restored_by_renames"]
