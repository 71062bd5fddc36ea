"""staging.refresh on a real WordPress shop over SSH (MariaDB, nginx, php-fpm).

Production gets real-looking data first: its own URL in the options, in a post and inside a
PHP-serialized option, a customer with billing data, an upload. The refresh must leave
staging equal to production (tables, row counts, files) with the URLs rewritten (the
serialized option still unserializes), the customer anonymised, the guards set; refuse a
production target; and restore staging exactly when a later step fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import requests

from maintkit.playbook import playbook_from_text
from maintkit.results import RunResult, StepStatus
from tests.cms_helpers import WpSite, chown_tree
from tests.lab.recording import Recorder
from tests.lab.wp_fixtures import Shop, events, run, steps, write_inventory

pytestmark = pytest.mark.lab

GUARD = "wp-content/mu-plugins/maint-staging-guard.php"


def _ser(value: str) -> str:
    return f's:{len(value.encode())}:"{value}";'


def serialized_probe(url: str) -> str:
    """A PHP-serialized array holding ``url`` twice (one nested)."""
    return f"a:2:{{{_ser('url')}{_ser(url + '/cart/')}{_ser('list')}a:1:{{i:0;{_ser(url + '/shop/')}}}}}"


def seed_production(shop: Shop) -> None:
    """Production's URL in options, a post and a serialized option; a customer; an upload."""
    site, url = shop.production, shop.production.url
    site.sql(shop.mariadb, f"UPDATE wp_options SET option_value='{url}' WHERE option_name IN ('home','siteurl')")
    site.sql(
        shop.mariadb,
        "INSERT INTO wp_options (option_name, option_value, autoload) VALUES "
        f"('shop_probe', '{serialized_probe(url)}', 'no')",
    )
    site.sql(
        shop.mariadb,
        "INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content, post_title, post_excerpt, "
        "post_status, post_name, post_modified, post_modified_gmt, to_ping, pinged, post_content_filtered, "
        "post_type, guid) VALUES (1, NOW(), NOW(), "
        f"'See <a href=\"{url}/cart/\">the cart</a>', 'Links', '', 'publish', 'links', NOW(), NOW(), '', '', '', "
        f"'post', '{url}/?p=999')",
    )
    site.sql(
        shop.mariadb,
        "INSERT INTO wp_users (user_login, user_pass, user_nicename, user_email, user_registered, display_name) "
        "VALUES ('jane', 'x', 'jane', 'jane@real-customer.test', NOW(), 'Jane Real')",
    )
    uid = site.sql(shop.mariadb, "SELECT ID FROM wp_users WHERE user_login='jane'").strip()
    meta = [
        ("wp_capabilities", 'a:1:{s:8:"customer";b:1;}'),
        ("billing_email", "jane@real-customer.test"),
        ("billing_phone", "+49 170 1234567"),
        ("billing_first_name", "Jane"),
    ]
    values = ", ".join(f"({uid}, '{k}', '{v}')" for k, v in meta)
    site.sql(shop.mariadb, f"INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES {values}")
    upload = site.path / "wp-content" / "uploads" / "2024" / "01" / "photo.txt"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_text("a customer's photo\n")
    chown_tree(site.path / "wp-content" / "uploads", "deploy")
    mu = site.path / "wp-content" / "mu-plugins" / "shop-tweaks.php"
    mu.parent.mkdir(parents=True, exist_ok=True)
    mu.write_text("<?php\n// production's own must-use plugin\n")
    chown_tree(mu.parent, "deploy")
    stale = shop.staging.path / "wp-content" / "staging-only.txt"
    stale.write_text("only on staging\n")
    chown_tree(stale, "deploy")
    # a live production has booted: WordPress keeps its schedule in the cron option
    assert requests.get(f"{url}/", timeout=20).status_code == 200


def table_counts(shop: Shop, site: WpSite) -> dict[str, int]:
    """Exact row count of every table."""
    tables = site.sql(shop.mariadb, "SHOW TABLES").split()
    counts = site.sql(shop.mariadb, " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM `{t}`" for t in tables))
    return {line.split("\t")[0]: int(line.split("\t")[1]) for line in counts.splitlines()}


def db_state(shop: Shop, site: WpSite) -> dict[str, str]:
    """CHECKSUM TABLE of every table (the database's exact content)."""
    tables = site.sql(shop.mariadb, "SHOW TABLES").split()
    out = site.sql(shop.mariadb, "CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables))
    return {line.split("\t")[0].split(".", 1)[1]: line.split("\t")[1] for line in out.splitlines()}


def files_digest(root: Path, exclude: tuple[str, ...]) -> str:
    """sha256 over relative path, mode and content of every file, leaving out ``exclude`` (relative paths)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(rel == e or rel.startswith(e + "/") for e in exclude):
            continue
        if p.is_file() and not p.is_symlink():
            h.update(f"F {rel} {p.stat().st_mode & 0o7777:o} ".encode() + hashlib.sha256(p.read_bytes()).digest())
        elif p.is_dir():
            h.update(f"D {rel}\n".encode())
    return h.hexdigest()


def both_states(shop: Shop, env: str) -> tuple[dict[str, str], str]:
    """(table checksums, file digest without .maint) of one environment."""
    return db_state(shop, shop.site(env)), files_digest(shop.site(env).path, (".maint",))


def php(site: WpSite, code: str) -> str:
    """Run PHP inside WordPress on ``site`` (as the site's owner) and return its output."""
    script = f"<?php require '{site.path}/wp-load.php';\n{code}\n"
    res = subprocess.run(
        ["runuser", "-u", "deploy", "--", "php", "-d", "display_errors=stderr", "--"],
        input=script.encode(),
        capture_output=True,
        timeout=60,
        check=False,
        cwd=str(site.path),
        env={**os.environ, "HTTP_HOST": "localhost"},
    )
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    return res.stdout.decode()


MAIL_PROBE = """
$reached = false;
add_action('phpmailer_init', function ($m) use (&$reached) {
    $reached = true;  // would send: point it at a closed port instead
    $m->isSMTP();
    $m->Host = '127.0.0.1';
    $m->Port = 9;
    $m->Timeout = 2;
}, PHP_INT_MAX);
$sent = wp_mail('someone@example.com', 'hello', 'body');
echo json_encode(array('sent' => $sent, 'reached' => $reached));
"""


def refresh_playbook(via: str, then_fail: bool = False, env: str = "staging", source: str = "production") -> str:
    fail = "\n      - {id: broken, action: command, with: {argv: ['false']}}" if then_fail else ""
    return (
        "name: refresh\non_failure: rollback\nstages:\n"
        f"  - env: {env}\n    steps:\n"
        f"      - {{id: refresh, action: staging.refresh, with: {{via: {via}, source: {source}}}}}{fail}\n"
    )


EXCLUDE_STAGING = (".maint", "wp-config.php", GUARD)


def refresh_error(result: RunResult, env: str) -> str:
    """The refresh step's error in a run it failed (exit status 1, the step failed)."""
    assert result.exit_code == 1
    step = steps(result, env)["refresh"]
    assert step.status is StepStatus.FAILED, step.status
    return str(step.error)


def helper_runs(recorder: Recorder) -> list[str]:
    """The commands that ran the PHP helper uploaded into the refresh's work folder."""
    return [t for rec in recorder.by_host.values() for kind, t in rec.sent if kind == "run" and "/wp_helper.php " in t]


def helper_call(command: str) -> list[str]:
    """The helper commands one run asked for: ``refresh``'s steps in order."""
    argv = shlex.split(command)
    assert argv[3] == "refresh", argv
    return [s["command"] for s in json.loads(argv[4])["steps"]]


def test_refresh_copies_rewrites_anonymises_guards_and_a_second_run_changes_nothing(shop: Shop) -> None:
    seed_production(shop)
    inv = write_inventory(shop)
    prod_db, prod_files = db_state(shop, shop.production), files_digest(shop.production.path, (".maint",))
    recorder = Recorder()

    result = run(shop, inv, playbook_from_text(refresh_playbook("host")), transport_factory=recorder)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    step = steps(result, "staging")["refresh"]
    assert step.status is StepStatus.CHANGED
    # the rewrite, the anonymisation and the guards: ONE PHP process (WordPress boots once)
    assert [helper_call(t) for t in helper_runs(recorder)] == [["replace", "anonymize", "staging_guards"]]
    assert step.data["refresh"]["anonymize"]["rows"] > 0 and step.data["refresh"]["guards"]["blog_public"] == "0"
    staging, production = shop.staging, shop.production
    # the database: same tables and row counts as production
    assert table_counts(shop, staging) == table_counts(shop, production)
    # URLs rewritten everywhere, also inside the serialized option (other lengths: it must still unserialize)
    probe = staging.sql(shop.mariadb, "SELECT option_value FROM wp_options WHERE option_name='shop_probe'").strip()
    assert probe == serialized_probe(staging.url)
    out = php(staging, "echo json_encode(get_option('shop_probe'));")
    assert json.loads(out.strip().splitlines()[-1]) == {"url": f"{staging.url}/cart/", "list": [f"{staging.url}/shop/"]}
    assert production.url not in staging.sql(shop.mariadb, "SELECT post_content FROM wp_posts WHERE post_name='links'")
    home = staging.sql(shop.mariadb, "SELECT option_value FROM wp_options WHERE option_name='home'").strip()
    assert home == staging.url
    # the customer anonymised, the administrator kept
    uid = staging.sql(shop.mariadb, "SELECT ID FROM wp_users WHERE user_login='jane'").strip()
    assert staging.sql(shop.mariadb, f"SELECT user_email FROM wp_users WHERE ID={uid}").strip() == (
        f"user{uid}@example.invalid"
    )
    billing = staging.sql(
        shop.mariadb, f"SELECT meta_key, meta_value FROM wp_usermeta WHERE user_id={uid} AND meta_key LIKE 'billing%'"
    )
    assert dict(line.split("\t") for line in billing.splitlines()) == {
        "billing_email": f"user{uid}@example.invalid",
        "billing_phone": f"+00 000 {int(uid):06d}",
        "billing_first_name": f"Customer {uid}",
    }
    admin_mail = "SELECT user_email FROM wp_users WHERE ID=1"
    assert staging.sql(shop.mariadb, admin_mail) == production.sql(shop.mariadb, admin_mail)
    # files: production's tree (uploads included), staging's own wp-config.php kept, the stale file gone
    assert files_digest(staging.path, EXCLUDE_STAGING) == files_digest(production.path, (".maint", "wp-config.php"))
    assert (staging.path / "wp-content/uploads/2024/01/photo.txt").read_text() == "a customer's photo\n"
    assert not (staging.path / "wp-content/staging-only.txt").exists()
    assert f"'{staging.db_name}'" in (staging.path / "wp-config.php").read_text()
    # guards: no indexing (option, header, meta tag, robots.txt), no mail
    assert (
        staging.sql(shop.mariadb, "SELECT option_value FROM wp_options WHERE option_name='blog_public'").strip() == "0"
    )
    shop.web.reload_php()
    page = requests.get(f"{staging.url}/", timeout=20)
    assert page.status_code == 200 and page.headers.get("X-Robots-Tag") == "noindex, nofollow"
    assert "noindex" in page.text
    robots = requests.get(f"{staging.url}/robots.txt", timeout=20)
    assert robots.status_code == 200 and "Disallow: /\n" in robots.text
    assert json.loads(php(staging, MAIL_PROBE).strip().splitlines()[-1]) == {"sent": False, "reached": False}
    assert json.loads(php(production, MAIL_PROBE).strip().splitlines()[-1])["reached"] is True
    assert requests.get(f"{production.url}/", timeout=20).headers.get("X-Robots-Tag") is None
    # production untouched; the snapshot removed after success
    assert db_state(shop, production) == prod_db
    assert files_digest(production.path, (".maint",)) == prod_files
    assert list((staging.path / ".maint" / "staging-refresh").iterdir()) == []
    # the second run: nothing changed on either side, so nothing to do
    again = run(shop, inv, playbook_from_text(refresh_playbook("host")))
    assert again.ok and again.changed == 0, json.dumps(again.to_dict(), indent=1)[-3000:]
    assert steps(again, "staging")["refresh"].status is StepStatus.UNCHANGED


def test_refresh_through_the_controller_rewrites_a_url_of_another_length(shop: Shop) -> None:
    seed_production(shop)
    longer = shop.staging.url + "/staging-copy"
    inv = write_inventory(shop)
    inv.sites["shop"].environments["staging"].url = longer

    recorder = Recorder()
    result = run(shop, inv, playbook_from_text(refresh_playbook("controller")), transport_factory=recorder)

    assert result.ok, json.dumps(result.to_dict(), indent=1)[-3000:]
    assert steps(result, "staging")["refresh"].data["refresh"]["via"] == "controller"
    # both hosts have zstd: the database and the files travel zstd-compressed (by their first
    # bytes); the target's zstd was read in the round trip that made its snapshot folder
    sent = [text for rec in recorder.by_host.values() for _, text in rec.sent]
    assert not any(t == "command -v zstd >/dev/null 2>&1" for t in sent)
    [prepared] = [t for t in sent if "mk-zstd-yes" in t]
    assert prepared.startswith("mkdir -p -m 700 -- ") and "/.maint/staging-refresh.json" in prepared
    assert not [t for t in sent if t.startswith(("mkdir -p -m 700", "chmod 700")) and t != prepared]
    stream = "{ if command -v zstd >/dev/null 2>&1; then zstd -q -c; else gzip -1 -c; fi 3>&-;"
    assert sum(stream in t and "mariadb-dump" in t for t in sent) == 1
    assert sum(stream in t and "tar -C" in t for t in sent) == 1
    loads = [t for t in sent if "{ zstd -q -dc 3>&- 4>&-;" in t]
    assert len(loads) == 2 and not any("gzip -dc" in t for t in loads), loads
    staging = shop.staging
    assert table_counts(shop, staging) == table_counts(shop, shop.production)
    probe = staging.sql(shop.mariadb, "SELECT option_value FROM wp_options WHERE option_name='shop_probe'").strip()
    assert probe == serialized_probe(longer)
    out = php(staging, "echo json_encode(get_option('shop_probe'));")
    assert json.loads(out.strip().splitlines()[-1]) == {"url": f"{longer}/cart/", "list": [f"{longer}/shop/"]}
    assert files_digest(staging.path, EXCLUDE_STAGING) == files_digest(
        shop.production.path, (".maint", "wp-config.php")
    )


def test_refreshing_production_or_a_protected_target_is_refused_before_anything_is_written(shop: Shop) -> None:
    inv = write_inventory(shop)
    before = {env: both_states(shop, env) for env in ("staging", "production")}

    result = run(shop, inv, playbook_from_text(refresh_playbook("host", env="production", source="staging")))

    assert refresh_error(result, "production") == (
        "check: staging.refresh refuses to write to shop/production: "
        "an environment named production is never a refresh target"
    )
    inv.sites["shop"].environments["staging"].protected = True
    refused = run(shop, inv, playbook_from_text(refresh_playbook("host")))
    assert str(steps(refused, "staging")["refresh"].error) == (
        "check: staging.refresh refuses to write to shop/staging: the inventory marks it protected: true"
    )
    after = {env: both_states(shop, env) for env in ("staging", "production")}
    assert after == before
    assert not (shop.staging.path / ".maint" / "staging-refresh").exists()


def test_a_later_failing_step_restores_staging_database_and_files_exactly(shop: Shop) -> None:
    seed_production(shop)
    inv = write_inventory(shop)
    staging_db, staging_files = db_state(shop, shop.staging), files_digest(shop.staging.path, (".maint",))
    assert staging_db != db_state(shop, shop.production)

    recorder = Recorder()
    result = run(
        shop, inv, playbook_from_text(refresh_playbook("controller", then_fail=True)), transport_factory=recorder
    )

    assert result.exit_code == 1
    st = steps(result, "staging")
    assert st["broken"].status is StepStatus.FAILED
    assert st["refresh"].status is StepStatus.ROLLED_BACK
    applied = [e for e in events(result) if e["event"] == "step.applied" and e.get("step") == "refresh"]
    assert applied, "the refresh really ran before the failure"
    sent = [text for rec in recorder.by_host.values() for _, text in rec.sent if "database.sql" in text]
    dumped, loaded = (t for t in sent if "mariadb-dump" in t), (t for t in sent if "zstd -q -dc" in t)
    snapshot = next(dumped)  # the target's tables and its dump: one round trip
    assert "command -v zstd >/dev/null 2>&1 && mk_o=" in snapshot  # zstd where the host has it
    assert snapshot.index("-e 'SHOW TABLES'") < snapshot.index("mariadb-dump"), snapshot
    assert f"{shop.staging.path}/.maint/staging-refresh/" in next(loaded)
    assert db_state(shop, shop.staging) == staging_db
    assert files_digest(shop.staging.path, (".maint",)) == staging_files
    assert (shop.staging.path / "wp-content/staging-only.txt").read_text() == "only on staging\n"
    assert not (shop.staging.path / ".maint" / "staging-refresh.json").exists()


def test_a_failing_wordpress_step_is_named_and_staging_restored_exactly(shop: Shop) -> None:
    """The anonymisation fails (a rule on a table without a one-column primary key) in the one
    PHP process after the URL rewrite changed rows: the error names the anonymisation, the
    guards' mu-plugin is never written, and staging's database and files are put back exactly."""
    seed_production(shop)
    inv = write_inventory(shop)
    staging = shop.staging
    staging_db, staging_files = db_state(shop, staging), files_digest(staging.path, (".maint",))
    playbook = (
        "name: refresh\non_failure: rollback\nstages:\n  - env: staging\n    steps:\n"
        "      - id: refresh\n        action: staging.refresh\n        with:\n          via: host\n"
        "          rules: [{table: term_relationships, column: term_order, kind: empty}]\n"
    )
    recorder = Recorder()

    result = run(shop, inv, playbook_from_text(playbook), transport_factory=recorder)

    assert refresh_error(result, "staging") == (
        "apply: WordPress anonymize on staging failed: an anonymisation rule failed "
        "(staging's previous state was restored)"
    )
    assert [helper_call(t) for t in helper_runs(recorder)] == [["replace", "anonymize", "staging_guards"]]
    assert db_state(shop, staging) == staging_db
    assert files_digest(staging.path, (".maint",)) == staging_files
    assert not (staging.path / GUARD).exists()
    assert not (staging.path / ".maint" / "staging-refresh.json").exists()


def test_a_failing_snapshot_changes_nothing_and_leaves_no_snapshot_folder(shop: Shop) -> None:
    """The target's dump fails (a view over a dropped table): the step fails naming the
    snapshot, before anything of staging's is touched, and the half-made snapshot folder of this
    run (the table list was read, the dump's file begun) is removed."""
    seed_production(shop)
    staging = shop.staging
    staging.sql(
        shop.mariadb,
        "CREATE TABLE doomed (id INT); CREATE VIEW broken_view AS SELECT * FROM doomed; DROP TABLE doomed;",
    )
    inv = write_inventory(shop)
    staging_db, staging_files = db_state(shop, staging), files_digest(staging.path, (".maint",))

    result = run(shop, inv, playbook_from_text(refresh_playbook("controller")))

    error = refresh_error(result, "staging")
    assert f"snapshot of database {staging.db_name} failed" in error and "broken_view" in error
    assert db_state(shop, staging) == staging_db
    assert files_digest(staging.path, (".maint",)) == staging_files
    assert list((staging.path / ".maint" / "staging-refresh").iterdir()) == []
    assert not (staging.path / ".maint" / "staging-refresh.json").exists()
    staging.sql(shop.mariadb, "DROP VIEW broken_view")


#: table names a hand-built query gets wrong: a backquote, a quote, a backslash, a space, a dash, unicode
HOSTILE_TABLES = ["we`ird", "it's", "back\\slash", "sp ace", "-dash", "ünï"]


def test_the_digests_count_and_checksum_tables_with_hostile_names(shop: Shop) -> None:
    """Each side is read in one client run whose count and CHECKSUM queries the server builds
    from information_schema: tables with hostile names are counted exactly (the step's data),
    a second run finds nothing to do, and a changed row in such a table is seen."""
    seed_production(shop)
    production = shop.production
    for i, name in enumerate(HOSTILE_TABLES):
        ident = "`" + name.replace("`", "``") + "`"
        production.sql(
            shop.mariadb, f"CREATE TABLE {ident} (id INT PRIMARY KEY, v TEXT); INSERT INTO {ident} VALUES ({i}, 'x')"
        )
    inv = write_inventory(shop)
    recorder = Recorder()

    first = run(shop, inv, playbook_from_text(refresh_playbook("host")), transport_factory=recorder)

    assert first.ok, json.dumps(first.to_dict(), indent=1)[-3000:]
    rows = steps(first, "staging")["refresh"].data["source_rows"]
    assert {name: rows.get(name) for name in HOSTILE_TABLES} == dict.fromkeys(HOSTILE_TABLES, 1), rows
    assert rows["wp_options"] > 0
    reads = [t for rec in recorder.by_host.values() for _, t in rec.sent if "information_schema.TABLES" in t]
    # one command per side and reading: check (both sides), the record, verify's check (both sides)
    assert len(reads) == 5 and all("find ." in t and "CHECKSUM TABLE" in t for t in reads), reads
    assert not [t for rec in recorder.by_host.values() for _, t in rec.sent if "SHOW FULL TABLES" in t]

    again = run(shop, inv, playbook_from_text(refresh_playbook("host")))
    assert steps(again, "staging")["refresh"].status is StepStatus.UNCHANGED

    production.sql(shop.mariadb, "UPDATE `back\\slash` SET v = 'y'")
    changed = run(shop, inv, playbook_from_text(refresh_playbook("host")))
    assert steps(changed, "staging")["refresh"].status is StepStatus.CHANGED
