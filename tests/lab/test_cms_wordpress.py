"""cms.update / compat.check / the monthly-update playbook on real WordPress sites over SSH.

Each test gets a staging and a production copy of a real WordPress 6.1 install (two trees,
two databases, two nginx server blocks, owned by ``deploy``) reached over SSH on two lab
hosts, plus a repository of ``shop-cart`` plugin zips: 1.1.0 is good, 1.2.0 dies with a PHP
fatal error on the cart page (and migrates its schema), and a variant needs PHP 9.0.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
from pathlib import Path

import pytest

from maintkit.playbook import playbook_from_text
from maintkit.results import StepStatus
from tests.cms_helpers import (
    WpSite,
    chown_tree,
    maintkit_tree_hash,
    make_shop_cart_zip,
    tree_digest,
    wp_plugin_version,
)
from tests.lab.recording import Recorder, trip_parts
from tests.lab.wp_fixtures import Shop, cart, events, run, steps, write_inventory

pytestmark = pytest.mark.lab


# ---------------------------------------------------------------------------- helpers
# (the fixtures wp_template, shop, core_zip and update_api live in tests/lab/wp_fixtures.py)


def schema_state(shop: Shop, site: WpSite) -> tuple[str, list[str]]:
    """(shop_cart_db_version option, shop-cart tables) of a site's database."""
    option = site.sql(shop.mariadb, "SELECT option_value FROM wp_options WHERE option_name='shop_cart_db_version'")
    tables = site.sql(shop.mariadb, "SHOW TABLES LIKE 'wp_shop_cart%'")
    return option.strip(), sorted(tables.split())


CMS_ONLY = """\
name: cms-only
stages:
  - env: staging
    steps:
      - {id: precheck, action: compat.check}
      - {id: update, action: cms.update}
  - env: production
    promote: staging
    steps:
      - {id: update, action: cms.update}
"""


# ---------------------------------------------------------------------------- tests


def test_good_update_reaches_production_identically_and_the_second_run_changes_nothing(shop: Shop) -> None:
    zip_path = make_shop_cart_zip(shop.repo, "1.1.0")
    make_shop_cart_zip(shop.repo, "2.0.0")  # a major release the minor policy refuses
    inv = write_inventory(shop)

    result = run(shop, inv)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    for env in ("staging", "production"):
        site = shop.site(env)
        assert wp_plugin_version(site.path, "shop-cart") == "1.1.0"
        page = cart(site)
        assert page.status_code == 200 and "shop-cart 1.1.0" in page.text
        assert not (site.path / ".maint" / "wp_helper.php").exists()
        assert not list((site.path / ".maint" / "snapshots").glob("*/db.cnf"))
    update = steps(result, "staging")["update"]
    assert [(u["name"], u["from"], u["to"]) for u in update.data["updates"]] == [("shop-cart", "1.0.0", "1.1.0")]
    assert any(
        s["name"] == "shop-cart" and s["candidate"] == "2.0.0" and not s["blocking"] for s in update.data["skipped"]
    )
    assert steps(result, "production")["update"].status is StepStatus.CHANGED
    # the change record names the dump's real file (zstd: the lab's hosts have it), which is there
    for env in ("staging", "production"):
        [dumped] = [c for c in steps(result, env)["update"].changes if c.summary == "dumped before the update"]
        snaps = shop.site(env).path / ".maint" / "snapshots"
        assert [str(p) for p in snaps.glob("*/database.sql*")] == [dumped.after]
        assert str(dumped.after).endswith("/database.sql.zst") and dumped.target == f"database:{shop.site(env).db_name}"
    # 1.1.0 changes no schema (staging compared it): production gets no maintenance window
    assert steps(result, "production")["maintenance-on"].status is StepStatus.SKIPPED
    assert steps(result, "production")["maintenance-off"].status is StepStatus.SKIPPED

    lock_file = Path(str(result.run_dir)) / "locks" / "shop.json"
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
    entry = json.loads(lock_file.read_text())["packages"]["plugin:shop-cart"]
    assert entry["version"] == "1.1.0"
    assert entry["sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert (
        entry["tree"] == maintkit_tree_hash(shop.staging.plugin_dir) == maintkit_tree_hash(shop.production.plugin_dir)
    )

    trees = {env: tree_digest(shop.site(env).path, exclude=(".maint",)) for env in ("staging", "production")}
    again = run(shop, inv)
    assert again.ok, json.dumps(again.to_dict(), indent=1)[-3000:]
    for env in ("staging", "production"):
        assert steps(again, env)["update"].status is StepStatus.UNCHANGED
        assert steps(again, env)["cache"].status is StepStatus.SKIPPED
        assert tree_digest(shop.site(env).path, exclude=(".maint",)) == trees[env]
    # nothing to promote: no maintenance window on production, no new backup: nothing changed at all
    assert again.changed == 0, [(s.env, s.step, s.status.value) for site in again.sites for s in site.steps]
    assert steps(again, "production")["maintenance-on"].status is StepStatus.SKIPPED
    assert steps(again, "production")["maintenance-off"].status is StepStatus.SKIPPED


def test_broken_update_is_rolled_back_on_staging_and_production_is_never_touched(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.2.0", broken=True, schema="2")
    inv = write_inventory(shop)
    staging_before = tree_digest(shop.staging.path, exclude=(".maint",))
    production_before = tree_digest(shop.production.path)
    schema_before = schema_state(shop, shop.staging)
    assert schema_before == ("1", ["wp_shop_cart_items_1"])

    result = run(shop, inv)

    assert result.exit_code == 1
    st = steps(result, "staging")
    assert st["update"].status is StepStatus.ROLLED_BACK
    assert st["compat"].status is StepStatus.FAILED
    assert "shop-cart" in str(st["compat"].error) and "/cart/" in str(st["compat"].error)
    assert "production" not in {s.env for site in result.sites for s in site.steps}
    # staging: the old code exactly, and the database from before the schema migration
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.0.0"
    assert tree_digest(shop.staging.path, exclude=(".maint",)) == staging_before
    assert schema_state(shop, shop.staging) == schema_before
    shop.web.reload_php()
    assert "shop-cart 1.0.0" in cart(shop.staging).text
    # production: byte-identical, never locked, never in maintenance
    assert tree_digest(shop.production.path) == production_before
    assert not (shop.production.path / ".maint").exists()
    # the audit log says why
    log = events(result)
    failed = [e for e in log if e["event"] == "step.failed"]
    assert [e["step"] for e in failed] == ["compat"]
    assert "shop-cart" in failed[0]["error"] and "Fatal error" in failed[0]["error"]
    rolled = [e for e in log if e["event"] == "cms.rolled_back"]
    assert rolled and rolled[0]["database"]["restored"] is True
    assert set(rolled[0]["database"]["schema_changed"]) == {"shop_cart_db_version", "wp_shop_cart_items_2"}
    assert rolled[0]["database"]["dropped_tables"] == ["wp_shop_cart_items_2"]
    assert {e["step"] for e in log if e["event"] == "step.rolled_back"} >= {"update"}
    lock = json.loads((Path(str(result.run_dir)) / "locks" / "shop.json").read_text())
    assert lock["status"] == "rolled-back"


def test_check_mode_lists_exact_versions_and_changes_nothing(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0")
    inv = write_inventory(shop)
    before = {env: tree_digest(shop.site(env).path) for env in ("staging", "production")}
    tables_before = {
        env: shop.site(env).sql(shop.mariadb, "CHECKSUM TABLE wp_options") for env in ("staging", "production")
    }

    result = run(shop, inv, check=True)

    staging = steps(result, "staging")["update"]
    assert staging.status is StepStatus.WOULD_CHANGE
    assert [(u["name"], u["type"], u["from"], u["to"]) for u in staging.data["updates"]] == [
        ("shop-cart", "plugin", "1.0.0", "1.1.0")
    ]
    assert staging.diff is not None and "plugin shop-cart: 1.0.0 -> 1.1.0" in staging.diff
    production = steps(result, "production")["update"]
    assert production.status is StepStatus.WOULD_CHANGE
    assert production.data["updates"][0]["to"] == "1.1.0" and "staging" in production.reason
    assert steps(result, "staging")["compat"].status is StepStatus.UNKNOWN
    for env in ("staging", "production"):
        assert tree_digest(shop.site(env).path) == before[env]
        assert shop.site(env).sql(shop.mariadb, "CHECKSUM TABLE wp_options") == tables_before[env]
        assert not (shop.site(env).path / ".maint").exists()


def test_requires_php_above_the_host_is_refused_by_compat_before_anything_is_installed(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0", requires_php="9.0")
    inv = write_inventory(shop)
    before = tree_digest(shop.staging.path, exclude=(".maint",))

    result = run(shop, inv)

    assert result.exit_code == 1
    st = steps(result, "staging")
    assert st["precheck"].status is StepStatus.FAILED
    assert "plugin shop-cart 1.1.0: requires PHP 9.0, the host runs PHP 8." in str(st["precheck"].error)
    assert "update" not in st
    assert tree_digest(shop.staging.path, exclude=(".maint",)) == before
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.0.0"


def test_cms_update_alone_skips_the_incompatible_candidate_with_a_reason(shop: Shop) -> None:
    make_shop_cart_zip(shop.repo, "1.1.0", requires_php="9.0")
    inv = write_inventory(shop)
    pb = playbook_from_text(CMS_ONLY.replace("      - {id: precheck, action: compat.check}\n", ""))

    result = run(shop, inv, pb, env="staging")

    assert result.ok
    update = steps(result, "staging")["update"]
    assert update.status is StepStatus.UNCHANGED
    assert update.data["skipped"][0]["blocking"] is True and "requires PHP 9.0" in update.data["skipped"][0]["reason"]
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.0.0"


def test_promote_from_an_earlier_run_installs_exactly_that_lock_and_refuses_a_changed_package(shop: Shop) -> None:
    host_repo = shop.host_dir / "zips"
    host_repo.mkdir()
    good = make_shop_cart_zip(host_repo, "1.1.0")
    chown_tree(host_repo, "deploy")
    inv = write_inventory(shop, {"repository": {"path": str(host_repo), "on": "host"}})
    pb = playbook_from_text(CMS_ONLY)

    monday = run(shop, inv, pb, env="staging")
    assert monday.ok, json.dumps(monday.to_dict(), indent=1)[-2000:]
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.1.0"
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.0.0"

    # the vendor rebuilt 1.1.0 in between: same version, other files -> refused, nothing changes
    original = good.read_bytes()
    files = {"readme.txt": "rebuilt\n"}
    from tests.cms_helpers import make_plugin_zip, shop_cart_files

    make_plugin_zip(host_repo, "shop-cart", "1.1.0", {**shop_cart_files("1.1.0"), **files})
    production_before = tree_digest(shop.production.path, exclude=(".maint",))
    refused = run(shop, inv, pb, env="production", promote_from=monday.run_id)
    assert refused.exit_code == 1
    error = str(steps(refused, "production")["update"].error)
    assert "shop-cart 1.1.0" in error and "refusing" in error
    assert tree_digest(shop.production.path, exclude=(".maint",)) == production_before

    # Wednesday: the identical package again -> production gets exactly what staging validated
    good.write_bytes(original)
    wednesday = run(shop, inv, pb, env="production", promote_from=monday.run_id)
    assert wednesday.ok, json.dumps(wednesday.to_dict(), indent=1)[-2000:]
    assert wp_plugin_version(shop.production.path, "shop-cart") == "1.1.0"
    lock = json.loads((Path(str(monday.run_dir)) / "locks" / "shop.json").read_text())
    assert maintkit_tree_hash(shop.production.plugin_dir) == lock["packages"]["plugin:shop-cart"]["tree"]
    assert tree_digest(shop.production.plugin_dir) == tree_digest(shop.staging.plugin_dir)
    promoted = steps(wednesday, "production")["update"]
    assert promoted.data["promoted"]["from_env"] == "staging"


def test_rollback_works_when_wordpress_dies_at_bootstrap(shop: Shop) -> None:
    """A plugin that fatals while WordPress loads: verify fails, rollback runs without PHP."""
    from tests.cms_helpers import shop_cart_files

    files = shop_cart_files("1.1.0")
    files["shop-cart.php"] += "\nshop_cart_boot_missing();\n"
    from tests.cms_helpers import make_plugin_zip

    make_plugin_zip(shop.repo, "shop-cart", "1.1.0", files)
    inv = write_inventory(shop)
    before = tree_digest(shop.staging.path, exclude=(".maint",))
    pb = playbook_from_text(CMS_ONLY)

    result = run(shop, inv, pb)

    assert result.exit_code == 1
    update = steps(result, "staging")["update"]
    assert update.status is StepStatus.FAILED
    assert "shop_cart_boot_missing" in str(update.error)
    assert tree_digest(shop.staging.path, exclude=(".maint",)) == before
    shop.web.reload_php()
    assert cart(shop.staging).status_code == 200
    assert not (shop.staging.path / ".maint" / "wp_helper.php").exists()


def core_version(site: WpSite) -> str:
    text = (site.path / "wp-includes" / "version.php").read_text()
    return text.split("$wp_version = '", 1)[1].split("'", 1)[0]


def test_core_update_through_core_upgrader_and_its_rollback(shop: Shop, core_zip: Path) -> None:
    shutil.copy(core_zip, shop.repo)
    inv = write_inventory(shop, {"core": "patch", "plugins": "none", "themes": "none"})
    before = tree_digest(shop.staging.path, exclude=(".maint",))
    failing = CMS_ONLY.replace(
        "      - {id: update, action: cms.update}\n  - env: production",
        "      - {id: update, action: cms.update}\n      - {id: boom, action: command, with: {argv: ['false']}}\n"
        "  - env: production",
    )

    broken = run(shop, inv, playbook_from_text(failing), env="staging")

    assert broken.exit_code == 1
    assert steps(broken, "staging")["update"].status is StepStatus.ROLLED_BACK
    assert core_version(shop.staging) == "6.1.9"
    assert tree_digest(shop.staging.path, exclude=(".maint",)) == before

    result = run(shop, inv, playbook_from_text(CMS_ONLY))

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    assert [(u["type"], u["from"], u["to"]) for u in update.data["updates"]] == [("core", "6.1.9", "6.1.10")]
    assert core_version(shop.staging) == core_version(shop.production) == "6.1.10"
    lock = json.loads((Path(str(result.run_dir)) / "locks" / "shop.json").read_text())
    assert lock["packages"]["core:wordpress"]["sha256"] == hashlib.sha256(core_zip.read_bytes()).hexdigest()
    shop.web.reload_php()
    assert cart(shop.production).status_code == 200


def test_wordpress_org_api_and_url_sources(shop: Shop, update_api: tuple[str, Path]) -> None:
    from tests.cms_helpers import make_plugin_zip

    base, zips = update_api
    make_shop_cart_zip(zips, "1.1.0")
    make_plugin_zip(zips, "akismet", "5.0.3", name="Akismet Anti-Spam")
    url = f"{base}/downloads/akismet-5.0.3.zip"
    inv = write_inventory(shop, {"repository": None, "api_url": base, "sources": {"akismet": {"url": url}}})

    result = run(shop, inv, playbook_from_text(CMS_ONLY), env="staging")

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    update = steps(result, "staging")["update"]
    assert sorted((u["name"], u["from"], u["to"], u["source"]) for u in update.data["updates"]) == [
        ("akismet", "5.0.2", "5.0.3", f"url:{url}"),
        ("shop-cart", "1.0.0", "1.1.0", "wordpress.org"),
    ]
    assert wp_plugin_version(shop.staging.path, "shop-cart") == "1.1.0"
    lock = json.loads((Path(str(result.run_dir)) / "locks" / "shop.json").read_text())
    assert lock["packages"]["plugin:akismet"]["source"] == f"url:{url}"


UPDATE_THEN_FAIL = """\
name: update-then-fail
on_failure: rollback
stages:
  - env: staging
    steps:
      - {id: update, action: cms.update}
      - {id: fail, action: command, with: {argv: ["false"]}}
"""


def test_the_database_part_costs_one_round_trip_per_read(shop: Shop) -> None:
    """cms.update's database work on the staging host, every mariadb command counted: the table
    list, the schema options and the dump in ONE shell (one client run with a random marker row
    between the two result sets), the last part of the round trip that prepares the folders,
    stages the package and writes the option file (the install's process); after the update and
    in the rollback, tables and options in ONE
    client run each, the one after the update in the same round trip as the re-activation that
    booted the new code, right after it (before: 3 + 2 + 2 + 3 = 10 commands, now 0 + 0 + 1 + 3 = 4
    of their own)."""
    make_shop_cart_zip(shop.repo, "1.2.0", schema="2")  # migrates: option 1 -> 2, a new table
    inv = write_inventory(shop)
    schema_before = schema_state(shop, shop.staging)
    rec = Recorder()

    result = run(shop, inv, playbook_from_text(UPDATE_THEN_FAIL), transport_factory=rec)

    assert result.exit_code == 1
    st = steps(result, "staging")
    assert st["update"].status is StepStatus.ROLLED_BACK
    # verify compared the schema after the new code booted (the data stays on the rolled-back step)
    assert st["update"].data["schema_changed"] is True
    assert st["update"].data["schema_changes"] == ["wp_shop_cart_items_2", "shop_cart_db_version"]
    # the rollback restored the dump and dropped the table the update created
    assert schema_state(shop, shop.staging) == schema_before
    rolled = [e for e in events(result) if e["event"] == "cms.rolled_back"]
    assert rolled[0]["database"]["restored"] is True
    assert rolled[0]["database"]["schema_changed"] == ["wp_shop_cart_items_2", "shop_cart_db_version"]
    assert rolled[0]["database"]["dropped_tables"] == ["wp_shop_cart_items_2"]

    sent = [(kind, text) for kind, text in rec.by_host[shop.staging_host.ip].sent if "mariadb" in text]
    cnf = re.escape(f"--defaults-file={shop.staging.path}/.maint/snapshots/") + r"[^/ ]+/db\.cnf"
    utf8 = "--default-character-set=utf8mb4"
    both = r"'SHOW TABLES; SELECT '\"'\"'@@mk-[0-9a-f]{32}'\"'\"'; SELECT option_name, option_value FROM `wp_options`"
    db = re.escape(shop.staging.db_name)
    assert [kind for kind, _ in sent] == ["shell", "shell", "run", "shell", "run", "run"], sent
    prepared, activation, undo, restore, tables, drop = (text for _, text in sent)
    # the folders, the zip with the snapshot, the install writing the option file, then the schema and the dump
    prep, snapshot, install, dump = trip_parts(prepared)
    assert "mariadb" not in prep + snapshot + install and " install " in install and '"dbcnf":' in install
    assert re.match(f"\\( mariadb {cnf} {utf8} --batch --skip-column-names -e {both}[^\n]* {db} \\|\\| exit", dump), (
        dump
    )
    pipe = r' \| if \[ "\$mk_o" = [^\n]+/database\.sql\.zst \]; then zstd -q -c; else gzip -1 -c; fi > "\$mk_o" '
    assert re.search(f"\nst=\\$\\( {{ {{ mariadb-dump {cnf} --single-transaction .*{pipe}", dump), dump
    _, helper, _, schema = trip_parts(activation)
    assert " activate " in helper and activation.index(helper) < activation.index(schema), activation
    after = schema.removeprefix("( ").removesuffix("\n) </dev/null").removesuffix(" 2>/dev/null")
    assert re.fullmatch(f"mariadb {cnf} {utf8} --batch --skip-column-names -e {both}[^\n]* {db}", after), after
    assert st["update"].data["verify_reads"] == "activation"
    assert undo == after.replace(after.split("@@mk-")[1][:32], undo.split("@@mk-")[1][:32])
    assert restore.startswith("umask 077\nif [ -f ") and "database.sql.zst ]; then zstd -q -dc -- " in restore
    assert "; else gzip -dc -- " in restore and "mariadb" in restore  # the dump was zstd: the lab has it
    assert re.fullmatch(f"mariadb {cnf} {utf8} --batch --skip-column-names -e 'SHOW TABLES' {db}", tables), tables
    assert "DROP TABLE `wp_shop_cart_items_2`" in drop
