"""The cms driver plumbing: driver choice, typed plan facts, one MariaDB option builder, and the
shared apply-or-undo / prune of :class:`maintkit.actions.cms.drivers.base.DriverBase`, run with
real commands on the local machine."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from maintkit.action import Context
from maintkit.actions.cms import (
    WP_CLI_PROBE,
    ComposerDriver,
    PlanFacts,
    UpdatePlan,
    WordPressDriver,
    driver_probes,
    make_driver,
)
from maintkit.actions.cms.params import CmsUpdateParams
from maintkit.actions.cms.plan import Installed, Update
from maintkit.actions.cms.snapshots import PackageUndo, snapshot_path
from maintkit.actions.mariadb import client_argv, option_file_args
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.results import Change
from maintkit.testing import FakeTransport, make_context
from maintkit.transport.local import LocalTransport


def tree(root: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    """Every entry under ``root``: type, permission bits, content (files) or target (links)."""
    out: dict[str, tuple[str, int, bytes | str | None]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


# ---------------------------------------------------------------- driver choice


@pytest.mark.parametrize(
    ("platform", "cls", "probes"),
    [("wordpress", WordPressDriver, [WP_CLI_PROBE]), ("magento", ComposerDriver, []), ("bedrock", ComposerDriver, [])],
)
def test_the_driver_follows_the_platform(platform: str, cls: type, probes: list[object]) -> None:
    driver = make_driver(make_context(FakeTransport(), platform=platform), CmsUpdateParams())
    assert type(driver) is cls
    assert driver.name == ("wordpress" if cls is WordPressDriver else "composer")
    assert driver_probes(platform) == probes
    if isinstance(driver, ComposerDriver):
        assert driver.platform == platform


def test_a_platform_without_driver_is_refused_with_the_list_of_platforms() -> None:
    with pytest.raises(CheckFailed) as err:
        make_driver(make_context(FakeTransport(), platform="generic"), CmsUpdateParams())
    assert err.value.message == (
        "cms.update has no driver for platform 'generic' "
        "(wordpress, composer, magento, shopware, laravel, drupal, bedrock)"
    )
    assert driver_probes("generic") == []


# ---------------------------------------------------------------- plan data


def test_plan_data_carries_the_facts_that_are_set() -> None:
    pkg = Installed("acme/plugin", "composer", "1.0.0", "/srv/site/vendor/acme/plugin")
    plan = UpdatePlan(
        "composer",
        [pkg],
        updates=[Update(pkg, "1.1.0")],
        installed=[pkg],
        facts=PlanFacts(php_version="8.2.7", composer_version="2.5.5"),
    )
    assert plan.data() == {
        "driver": "composer",
        "updates": [
            {
                "name": "acme/plugin",
                "type": "composer",
                "from": "1.0.0",
                "to": "1.1.0",
                "path": "/srv/site/vendor/acme/plugin",
            }
        ],
        "skipped": [],
        "php_version": "8.2.7",
        "composer_version": "2.5.5",
    }
    assert plan.state == [pkg]
    assert plan.diff() == "composer acme/plugin: 1.0.0 -> 1.1.0\n"


# ---------------------------------------------------------------- MariaDB option files


def test_one_option_file_builder_decides_what_every_mariadb_client_reads() -> None:
    assert option_file_args("/snap/db.cnf") == ["--defaults-file=/snap/db.cnf"]
    assert option_file_args("/snap/db.cnf", explicit_user=True) == ["--defaults-file=/snap/db.cnf"]
    assert option_file_args(None, explicit_user=True) == ["--no-defaults"]
    assert option_file_args(None) == []
    assert client_argv("mariadb-dump", "-x.cnf") == ["mariadb-dump", "--defaults-file=-x.cnf"]
    assert client_argv("mariadb", None, explicit_user=True) == [
        "mariadb",
        "--no-defaults",
        "--default-character-set=utf8mb4",
    ]


# ---------------------------------------------------------------- apply-or-undo, prune (local commands)


def _project(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "vendor" / "acme").mkdir(parents=True)
    (site / "vendor" / "acme" / "plugin.php").write_text("<?php // 1.0.0\n")
    (site / "composer.json").write_text('{"require": {"acme/plugin": "^1.0"}}\n')
    os.symlink("acme/plugin.php", site / "vendor" / "entry.php")
    return site


def _half_update(ctx: Context, driver: ComposerDriver, changes: list[Change], *, lose_snapshot: bool) -> None:
    """Snapshot vendor/, change it half-way, then fail (as a broken ``composer update`` would)."""
    site = Path(ctx.path)
    snap, _ = driver.prepare_snapshot_dir(ctx)
    assert snapshot_path(ctx, str(site / "vendor"), f"{snap}/files/vendor") is True
    changes.append(
        Change(target="vendor", summary="snapshot", undo=PackageUndo([(f"{snap}/files/vendor", str(site / "vendor"))]))
    )
    (site / "vendor" / "acme" / "plugin.php").write_text("<?php // 1.1.0 half written")
    (site / "vendor" / "new.php").write_text("<?php // new\n")
    if lose_snapshot:
        LocalTransport().run(["rm", "-rf", "--", f"{snap}/files/vendor"])
    raise ApplyFailed("composer update failed (exit 2): boom")


def test_a_failed_apply_undoes_its_own_partial_work(tmp_path: Path) -> None:
    site = _project(tmp_path)
    before = tree(site)
    ctx = make_context(LocalTransport(), path=str(site), platform="composer")
    driver = ComposerDriver(CmsUpdateParams(), "composer")
    with pytest.raises(ApplyFailed) as err:
        driver.apply_or_undo(ctx, lambda changes: _half_update(ctx, driver, changes, lose_snapshot=False))
    assert err.value.message == "composer update failed (exit 2): boom"
    after = tree(site)
    assert {k: v for k, v in after.items() if not k.startswith(".maint")} == before
    snap = site / ".maint" / "snapshots" / "test"
    assert stat.S_IMODE(snap.stat().st_mode) == 0o700
    assert ctx.data == {"error_log_offsets": {}, "snapshot": str(snap)}


def test_a_failed_undo_is_named_in_the_apply_error(tmp_path: Path) -> None:
    site = _project(tmp_path)
    ctx = make_context(LocalTransport(), path=str(site), platform="composer")
    driver = ComposerDriver(CmsUpdateParams(), "composer")
    with pytest.raises(ApplyFailed) as err:
        driver.apply_or_undo(ctx, lambda changes: _half_update(ctx, driver, changes, lose_snapshot=True))
    lost = f"{site}/.maint/snapshots/test/files/vendor"
    assert err.value.message == (
        "composer update failed (exit 2): boom; undoing the partial update ALSO failed: "
        f"vendor: restoring {site}/vendor from {lost} failed: snapshot missing: {lost}"
    )
    assert (site / "vendor" / "new.php").read_text() == "<?php // new\n"  # nothing was guessed


def test_finish_removes_the_temporary_files_and_old_snapshots(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = "20240501T000000Z-e"
    root = site / ".maint" / "snapshots"
    for name in ("20240101T000000Z-a", "20240201T000000Z-b", run):
        (root / name).mkdir(parents=True)
    (root / run / "packages").mkdir()
    (root / run / "db.cnf").write_text("[client]\n")
    (site / ".maint" / "wp_helper.php").write_text("<?php\n")
    base = make_context(LocalTransport(), path=str(site), platform="wordpress")
    ctx = replace(base, options=replace(base.options, run_id=run))
    WordPressDriver(CmsUpdateParams(keep_snapshots=2)).finish(ctx)
    assert sorted(p.name for p in root.iterdir()) == ["20240201T000000Z-b", run]
    assert list((root / run).iterdir()) == [] and not (site / ".maint" / "wp_helper.php").exists()


def test_prune_keeps_the_newest_snapshots_and_never_this_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    root = site / ".maint" / "snapshots"
    this_run = "20230101T000000Z-this"  # sorts first: pruning must still keep it
    runs = [this_run, "20240101T000000Z-a", "20240201T000000Z-b", "20240301T000000Z-c", "20240401T000000Z-d"]
    for run in runs:
        (root / run).mkdir(parents=True)
        (root / run / "keep.txt").write_text(run)
    (root / "loose-file").write_text("not a snapshot\n")
    for foreign in ("0-mine", "20240101T000000Z"):  # not named like a run: not maint's, never removed
        (root / foreign).mkdir()
    base = make_context(LocalTransport(), path=str(site), platform="wordpress")
    ctx = replace(base, options=replace(base.options, run_id=this_run))
    driver = WordPressDriver(CmsUpdateParams(keep_snapshots=2))
    driver.prune(ctx)
    left = sorted(["0-mine", "20240101T000000Z", this_run, "20240301T000000Z-c", "20240401T000000Z-d", "loose-file"])
    assert sorted(p.name for p in root.iterdir()) == left
    assert (root / this_run / "keep.txt").read_text() == this_run
    driver.prune(ctx)  # a second prune changes nothing
    assert sorted(p.name for p in root.iterdir()) == left
