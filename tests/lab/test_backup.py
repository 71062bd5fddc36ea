"""backup.* against real servers: MariaDB, two sshd hosts (source and offsite), the Runner.

The site lives on lab host h1 (as the ``deploy`` user, over SSH); its database is on the lab
MariaDB (TCP 127.0.0.1, a per-test database and user, password given as a secret). Offsite
copies go to lab host h2. The lab hosts are on this machine, so the tests read the files the
actions wrote directly from disk to check them independently.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from maintkit.actions.backup import new_backup_id
from maintkit.actions.backup.db import LOW_PRIORITY_SETUP
from maintkit.playbook import load_playbook_full
from maintkit.results import RunResult, StepStatus
from tests import runs
from tests.lab.argv_shim import argv_shim
from tests.lab.mariadb import MariaDB
from tests.lab.recording import Recorder
from tests.lab.sshd import SshLab, chown_login_user
from tests.runs import one_step

pytestmark = pytest.mark.lab

SECRET_VAR = "MAINT_TEST_SHOP_DB_PW"
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- helpers


@dataclass
class Shop:
    """One site on h1 with its database, its files and an inventory that reaches both hosts."""

    db: str
    user: str
    password: str
    path: Path
    offsite: Path
    inventory: Path
    state: Path
    mariadb: MariaDB
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def backup_dir(self) -> Path:
        return self.path / ".maint" / "backups"

    def environ(self) -> dict[str, str]:
        return {**os.environ, SECRET_VAR: self.password, **self.extra_env}

    def run(self, playbook: str | None = None, text: str | None = None, **kwargs: Any) -> RunResult:
        loaded = load_playbook_full(playbook) if playbook else text or ""
        return runs.run(loaded, self.inventory, self.state, environ=self.environ(), **kwargs)

    def sql(self, query: str) -> str:
        return self.mariadb.sql(query, self.db)

    def rows(self, table: str) -> int:
        return int(self.sql(f"SELECT COUNT(*) FROM `{table}`").strip())

    def tables(self) -> list[str]:
        return sorted(self.sql("SHOW TABLES").split())

    def manifests(self, where: Path | None = None) -> list[dict[str, Any]]:
        base = where or self.backup_dir
        found = [
            json.loads(p.read_text()) for p in base.glob("*/manifest.json") if not p.parent.name.endswith(".partial")
        ]
        return sorted(found, key=lambda m: m["created"], reverse=True)

    def run_text(self, result: RunResult) -> str:
        """Everything in the run folder (audit log, summary, playbook copy)."""
        folder = Path(str(result.run_dir))
        return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def step(result: RunResult, step_id: str) -> Any:
    return next(s for s in result.sites[0].steps if s.step == step_id)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scratch_databases(mariadb: MariaDB) -> list[str]:
    return mariadb.sql("SHOW DATABASES LIKE 'maint\\_verify\\_%'").split()


def give_to_deploy(path: Path) -> None:
    pw = pwd.getpwnam("deploy")
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


@pytest.fixture
def shop(mariadb: MariaDB, ssh_lab: SshLab, request: pytest.FixtureRequest) -> Iterator[Shop]:
    """A database with two tables and a view, site files on h1, an offsite directory on h2."""
    h1, h2 = ssh_lab.hosts[0], ssh_lab.hosts[1]
    name = f"shop_{secrets.token_hex(4)}"
    user, password = mariadb.create_database(name)
    for host in ("127.0.0.1", "localhost"):
        mariadb.sql(f"GRANT ALL PRIVILEGES ON `maint\\_verify\\_%`.* TO '{user}'@'{host}'")
    mariadb.sql(
        "CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(100) NOT NULL) ENGINE=InnoDB;"
        "CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT NOT NULL, total DECIMAL(10,2),"
        " FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB;"
        "INSERT INTO customers (email) SELECT CONCAT('c', seq, '@example.test') FROM seq_1_to_250;"
        "INSERT INTO orders (customer_id, total) SELECT 1 + seq % 250, seq / 7 FROM seq_1_to_600;",
        name,
    )
    # the site's own user creates its view (so the view's DEFINER is the site user, as in real life)
    subprocess.run(
        ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{mariadb.port}", f"-u{user}", name],
        input="CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 50;",
        env={**os.environ, "MYSQL_PWD": password},
        text=True,
        check=True,
        capture_output=True,
    )
    site_root = ssh_lab.scratch(h1, request.node.name)
    path = site_root / "site"
    (path / "wp-content" / "uploads").mkdir(parents=True)
    (path / "wp-content" / "cache").mkdir(parents=True)
    (path / "wp-content" / "uploads" / "logo.txt").write_text("the logo\n")
    (path / "wp-content" / "cache" / "page.html").write_text("cached\n")
    (path / "wp-config.php").write_text("<?php // config v1\n")
    give_to_deploy(path)
    offsite = ssh_lab.scratch(h2, request.node.name) / "offsite"
    offsite.mkdir()
    chown_login_user(offsite)
    env = h1.env(path)
    env["vars"] = {
        "db_name": name,
        "db_host": "127.0.0.1",
        "db_port": mariadb.port,
        "db_user": user,
        "db_password_secret": SECRET_VAR,
        "backup_files": ["wp-content", "wp-config.php"],
        "backup_excludes": ["wp-content/cache"],
        "offsite": {
            "host": h2.ip,
            "port": h2.port,
            "user": "deploy",
            "key_file": str(h2.client_key),
            "known_hosts": str(h2.known_hosts),
            "path": str(offsite),
        },
        "offsite_keep_last": 2,
    }
    inventory = runs.write_inventory(site_root, runs.one_site(env))
    state = site_root / "state"
    try:
        yield Shop(name, user, password, path, offsite, inventory, state, mariadb)
    finally:
        mariadb.drop_database(name, user)


# ---------------------------------------------------------------------------- the daily playbook


def test_backup_playbook_creates_verifies_copies_and_is_idempotent(shop: Shop) -> None:
    first = shop.run("backup")
    assert first.ok, first.sites[0].error
    assert [(s.step, s.status) for s in first.sites[0].steps] == [
        ("create", StepStatus.CHANGED),
        ("verify", StepStatus.CHANGED),
        ("offsite", StepStatus.CHANGED),
        ("prune", StepStatus.UNCHANGED),
    ]
    [manifest] = shop.manifests()
    bid = manifest["id"]
    assert step(first, "create").data["backup"]["id"] == bid
    assert manifest["site"] == "shop" and manifest["env"] == "production" and manifest["kind"] == "backup"
    db_item = next(i for i in manifest["items"] if i["type"] == "database")
    files_item = next(i for i in manifest["items"] if i["type"] == "files")
    # the manifest tells the truth about the database and the files on disk
    assert db_item["tables"]["customers"] == {"type": "table", "rows": 250}
    assert db_item["tables"]["orders"] == {"type": "table", "rows": 600}
    assert db_item["tables"]["big_orders"] == {"type": "view"}
    for item in manifest["items"]:
        f = shop.backup_dir / bid / item["file"]
        assert f.stat().st_size == item["size"] and sha256(f) == item["sha256"]
        assert f.stat().st_mode & 0o077 == 0
    assert files_item["file"] == "files.tar.zst"
    # the host has zstd: the dump is zstd too (compression: auto), and decompresses to the whole dump
    assert (db_item["file"], db_item["compression"]) == (f"db-{shop.db}.sql.zst", "zstd")
    text = subprocess.run(
        ["zstd", "-q", "-dc", "--", str(shop.backup_dir / bid / db_item["file"])], capture_output=True
    )
    assert text.returncode == 0 and b"CREATE TABLE `customers`" in text.stdout
    assert text.stdout.rstrip().splitlines()[-1].startswith(b"-- Dump completed")
    listing = subprocess.run(
        f"zstd -dc {shop.backup_dir / bid / 'files.tar.zst'} | tar -tf -",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "wp-content/uploads/logo.txt" in listing and "wp-config.php" in listing
    assert not any("cache" in entry for entry in listing)
    assert files_item["entries"] == len(listing)
    # verified through a scratch restore, which is gone again
    assert manifest["verified_at"]
    assert manifest["verification"]["db " + shop.db]["ok"] is True
    assert scratch_databases(shop.mariadb) == []
    # copied offsite, checksummed there
    copy_dir = shop.offsite / bid
    for item in manifest["items"]:
        assert sha256(copy_dir / item["file"]) == item["sha256"]
    assert not list(shop.offsite.glob("*.partial"))
    # no credentials file left behind; the password appears nowhere in the run folder
    assert not list(shop.backup_dir.glob(".cred-*"))
    assert shop.password not in shop.run_text(first)

    second = shop.run("backup")
    assert second.ok, second.sites[0].error
    assert second.changed == 0
    assert "is fresh (max_age 20h)" in step(second, "create").reason
    assert "already at" in step(second, "offsite").reason
    assert len(shop.manifests()) == 1


def test_plan_changes_nothing(shop: Shop) -> None:
    plan = shop.run("backup", check=True)
    assert plan.ok, plan.sites[0].error
    assert step(plan, "create").status is StepStatus.WOULD_CHANGE
    assert step(plan, "verify").status is StepStatus.UNKNOWN
    assert not shop.backup_dir.exists() or not shop.manifests()
    assert not list(shop.offsite.iterdir())


# ---------------------------------------------------------------------------- secrets


def test_password_is_never_on_a_command_line(shop: Shop, ssh_lab: SshLab) -> None:
    env = yaml.safe_load(shop.inventory.read_text())["sites"]["shop"]["environments"]["production"]
    with argv_shim(ssh_lab, shop.path.parent / "shim", ["mariadb-dump", "mysqldump", "mariadb", "mysql"]) as shim:
        env["key_file"] = str(shim.key_file)  # this login puts the shims first on the PATH
        runs.write_inventory(shop.inventory.parent, runs.one_site(env))
        result = shop.run(text=one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}"))
        calls = shim.calls()
    assert result.ok, result.sites[0].error
    [manifest] = shop.manifests()
    cred = re.compile(re.escape(f"--defaults-file={shop.backup_dir}/.cred-") + "[0-9a-f]{12}")
    dumps = [c.argv for c in calls if c.argv[0] == "mariadb-dump"]
    assert len(dumps) == 1, [c.argv for c in calls]
    # the credentials file is the ONLY option file read (the login user's ~/.my.cnf cannot override it)
    [dump] = dumps
    assert cred.fullmatch(dump[1]), dump
    assert dump[2:] == [
        "--host=127.0.0.1",
        f"--port={shop.mariadb.port}",
        f"--user={shop.user}",
        "--single-transaction",
        "--routines",
        "--triggers",
        "--no-tablespaces",
        "--hex-blob",
        shop.db,
    ]
    clients = [c.argv for c in calls if c.argv[0] == "mariadb"]
    assert clients and all(cred.fullmatch(argv[1]) for argv in clients), clients
    assert not [c.argv for c in calls if c.argv[0] in ("mysqldump", "mysql")]
    assert not [c.argv for c in calls if any(shop.password in arg for arg in c.argv)]
    assert not [c.argv for c in calls if any(shop.password in value for value in c.env.values())]
    assert shop.password not in shop.run_text(result)
    assert manifest["items"][0]["tables"]["orders"]["rows"] == 600
    assert not list(shop.backup_dir.glob(".cred-*"))


# ---------------------------------------------------------------------------- verify


def test_verify_detects_a_broken_backup_and_always_drops_the_scratch_database(shop: Shop) -> None:
    created = shop.run(text=one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}"))
    assert created.ok, created.sites[0].error
    [manifest] = shop.manifests()
    bid = manifest["id"]
    dump = shop.backup_dir / bid / f"db-{shop.db}.sql.zst"
    # a dump that matches its manifest but does not restore: the scratch database must still go
    dump.write_bytes(
        subprocess.run(["zstd", "-q", "-c"], input=b"CREATE TABLE broken (;\n", capture_output=True, check=True).stdout
    )
    manifest["items"][0]["sha256"] = sha256(dump)
    manifest["items"][0]["size"] = dump.stat().st_size
    (shop.backup_dir / bid / "manifest.json").write_text(json.dumps(manifest))
    verify = one_step("backup.verify", password="{{ secrets." + SECRET_VAR + " }}")

    broken = shop.run(text=verify)

    assert not broken.ok
    assert "does not restore" in str(broken.sites[0].steps[0].error)
    assert scratch_databases(shop.mariadb) == []
    assert not shop.manifests()[0].get("verified_at")

    dump.write_bytes(b"tampered")  # now the checksum is wrong
    tampered = shop.run(text=verify)
    assert not tampered.ok
    assert "sha256/size differ" in str(tampered.sites[0].steps[0].error)


# ---------------------------------------------------------------------------- prune


def fake_backup(directory: Path, created: datetime, *, verified: bool = False, kind: str = "backup") -> str:
    bid = new_backup_id(created)
    d = directory / bid
    d.mkdir(parents=True)
    (d / "db-x.sql.gz").write_bytes(b"x")
    manifest = {
        "format": 1,
        "id": bid,
        "kind": kind,
        "created": created.isoformat(timespec="seconds"),
        "items": [{"type": "database", "name": "x", "file": "db-x.sql.gz", "size": 1, "sha256": "0" * 64}],
        "verified_at": created.isoformat() if verified else None,
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    return bid


def test_prune_by_retention_with_pins(shop: Shop) -> None:
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    d = shop.backup_dir
    ids = {
        "today-2": fake_backup(d, now - timedelta(minutes=10)),
        "today-1": fake_backup(d, now - timedelta(minutes=20)),
        "d1": fake_backup(d, now - timedelta(days=1)),
        "d1-early": fake_backup(d, now - timedelta(days=1, hours=3)),
        "d2": fake_backup(d, now - timedelta(days=2)),
        "d9": fake_backup(d, now - timedelta(days=9)),
        "d40": fake_backup(d, now - timedelta(days=40)),
        "d50-verified": fake_backup(d, now - timedelta(days=50), verified=True),
        "d60-pinned": fake_backup(d, now - timedelta(days=60)),
        "d70": fake_backup(d, now - timedelta(days=70)),
    }
    (shop.path / ".maint").mkdir(exist_ok=True)
    (shop.path / ".maint" / "pinned").write_text(f"# kept for the audit\n{ids['d60-pinned']}\n")
    give_to_deploy(shop.path / ".maint")
    prune = one_step("backup.prune", keep_last=2, keep_daily=3, keep_weekly=0, keep_monthly=0)

    plan = shop.run(text=prune, check=True)
    assert plan.ok
    would = plan.sites[0].steps[0].data["prune"]["delete"]
    assert len(list(d.iterdir())) == len(ids)  # plan deleted nothing

    result = shop.run(text=prune)
    assert result.ok, result.sites[0].error
    left = {p.name for p in d.iterdir()}
    # last 2: today-2, today-1; daily 3: today (today-2), d1, d2; newest verified: d50; pinned: d60
    assert left == {ids[k] for k in ("today-2", "today-1", "d1", "d2", "d50-verified", "d60-pinned")}
    assert sorted(would) == sorted(ids[k] for k in ("d1-early", "d9", "d40", "d70"))
    assert shop.run(text=prune).changed == 0


def test_prune_keeps_what_this_run_created(shop: Shop) -> None:
    old = [fake_backup(shop.backup_dir, datetime.now(UTC) + timedelta(days=1, minutes=i)) for i in range(3)]
    give_to_deploy(shop.path / ".maint")
    text = yaml.safe_dump(
        {
            "name": "t",
            "stages": [
                {
                    "env": "production",
                    "steps": [
                        {"action": "backup.create", "with": {"files": ["wp-config.php"]}},
                        {"action": "backup.prune", "with": {"keep_last": 1}},
                    ],
                }
            ],
        }
    )
    result = shop.run(text=text)
    assert result.ok, result.sites[0].error
    created = step(result, "backup.create").data["backup"]["id"]
    left = {p.name for p in shop.backup_dir.iterdir() if p.is_dir()}
    assert created in left  # older by "created" than the fake future ones, but this run needs it
    assert left == {created, old[-1]}


# ---------------------------------------------------------------------------- restore


def test_restore_brings_back_rows_tables_and_files(shop: Shop) -> None:
    created = shop.run(
        text=one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}", files=True)
    )
    assert created.ok, created.sites[0].error
    bid = shop.manifests()[0]["id"]
    # destructive changes
    shop.sql("DELETE FROM orders WHERE id > 100; DROP VIEW big_orders; CREATE TABLE junk (id INT)")
    (shop.path / "wp-config.php").write_text("<?php // broken\n")
    (shop.path / "wp-content" / "uploads" / "logo.txt").unlink()
    assert shop.rows("orders") == 100
    restore = one_step("backup.restore", backup=bid, password="{{ secrets." + SECRET_VAR + " }}")

    refused = shop.run(text=restore)  # production without --yes
    assert not refused.ok
    assert "confirm with --yes" in str(refused.sites[0].steps[0].error)
    assert shop.rows("orders") == 100

    result = shop.run(text=restore, extra={"yes": True})

    assert result.ok, result.sites[0].error
    assert shop.rows("orders") == 600 and shop.rows("customers") == 250
    assert shop.tables() == ["big_orders", "customers", "orders"]
    assert (shop.path / "wp-config.php").read_text() == "<?php // config v1\n"
    assert (shop.path / "wp-content" / "uploads" / "logo.txt").read_text() == "the logo\n"
    safety_id = step(result, "backup.restore").data["safety_backup"]["id"]
    safety = next(m for m in shop.manifests() if m["id"] == safety_id)
    assert safety["kind"] == "safety" and bid in safety["note"]
    assert safety["items"][0]["tables"]["orders"]["rows"] == 100  # the state before the restore
    assert shop.password not in shop.run_text(result)


def test_gzip_dumps_and_dumps_from_before_zstd_still_restore(shop: Shop) -> None:
    """``compression: gzip`` writes ``db-<name>.sql.gz``; a manifest item without ``compression``
    (written before database dumps could be zstd) is read as gzip, so such a backup restores."""
    password = "{{ secrets." + SECRET_VAR + " }}"
    created = shop.run(text=one_step("backup.create", database=True, password=password, compression="gzip"))
    assert created.ok, created.sites[0].error
    [manifest] = shop.manifests()
    [item] = manifest["items"]
    assert (item["file"], item["compression"]) == (f"db-{shop.db}.sql.gz", "gzip")
    dump = shop.backup_dir / manifest["id"] / item["file"]
    assert b"CREATE TABLE `orders`" in gzip.decompress(dump.read_bytes())
    del manifest["items"][0]["compression"]  # as an older maint wrote it
    (shop.backup_dir / manifest["id"] / "manifest.json").write_text(json.dumps(manifest))
    shop.sql("DELETE FROM orders WHERE id > 100; CREATE TABLE junk (id INT)")

    result = shop.run(text=one_step("backup.restore", backup=manifest["id"], password=password), extra={"yes": True})

    assert result.ok, result.sites[0].error
    assert shop.rows("orders") == 600 and shop.tables() == ["big_orders", "customers", "orders"]
    safety_id = step(result, "backup.restore").data["safety_backup"]["id"]
    [safety] = [m["items"][0] for m in shop.manifests() if m["id"] == safety_id]
    assert (safety["file"], safety["compression"]) == (f"db-{shop.db}.sql.zst", "zstd")  # auto, as before


def test_restore_is_rolled_back_when_a_later_step_fails(shop: Shop) -> None:
    created = shop.run(text=one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}"))
    assert created.ok, created.sites[0].error
    shop.sql("DELETE FROM orders WHERE id > 10; CREATE TABLE added_later (id INT)")
    text = yaml.safe_dump(
        {
            "name": "restore-then-fail",
            "on_failure": "rollback",
            "stages": [
                {
                    "env": "production",
                    "steps": [
                        {
                            "action": "backup.restore",
                            "with": {"what": "db", "password": "{{ secrets." + SECRET_VAR + " }}"},
                        },
                        {"action": "command", "with": {"argv": ["false"]}},
                    ],
                }
            ],
        }
    )

    result = shop.run(text=text, extra={"yes": True})

    assert not result.ok
    assert step(result, "backup.restore").status is StepStatus.ROLLED_BACK
    assert shop.rows("orders") == 10  # the safety backup was put back
    assert "added_later" in shop.tables()


def test_maint_restore_command(shop: Shop) -> None:
    created = shop.run(text=one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}"))
    assert created.ok, created.sites[0].error
    bid = shop.manifests()[0]["id"]
    shop.sql("DELETE FROM orders; DELETE FROM customers")
    argv = [
        "maint", "restore", "shop", "--env", "production", "--backup", bid, "--what", "db",
        "--password-env", SECRET_VAR, "-i", str(shop.inventory), "--state-dir", str(shop.state),
    ]  # fmt: skip
    env = {**shop.environ(), "MAINT_PLAIN": "1"}

    refused = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert shop.rows("orders") == 0

    done = subprocess.run([*argv, "--yes"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert shop.rows("orders") == 600 and shop.rows("customers") == 250
    assert shop.password not in done.stdout + done.stderr


def test_copy_applies_retention_at_the_destination(shop: Shop) -> None:
    old = [fake_backup(shop.offsite, datetime.now(UTC) - timedelta(days=10 - i)) for i in range(3)]
    give_to_deploy(shop.offsite)
    created = shop.run(text=one_step("backup.create", files=["wp-config.php"]))
    assert created.ok, created.sites[0].error
    bid = shop.manifests()[0]["id"]
    h2 = yaml.safe_load(shop.inventory.read_text())["sites"]["shop"]["environments"]["production"]["vars"]["offsite"]
    text = one_step("backup.copy", destination=h2, keep_last=2)

    result = shop.run(text=text)

    assert result.ok, result.sites[0].error
    left = sorted(p.name for p in shop.offsite.iterdir())
    assert left == sorted([old[-1], bid])
    assert sha256(shop.offsite / bid / "files.tar.zst") == shop.manifests()[0]["items"][0]["sha256"]
    assert shop.run(text=text).changed == 0
    shutil.rmtree(shop.offsite / bid)  # lost at the destination: copied again
    repaired = shop.run(text=text)
    assert repaired.ok and repaired.changed == 1


def test_a_new_backup_costs_these_round_trips(shop: Shop, ssh_lab: SshLab) -> None:
    """backup.create of the database and the files, every session counted: the tools and the
    listing come from the stage's reads; the folders are made in front of the first command that
    writes into them (here the option file with the password); the database part (tables and
    exact row counts, the dump, the counts again, size and sha256 of the dump) is ONE round trip
    (it was five: two client runs, the dump, two client runs, and a share of the checksums); the
    manifest, the rename that completes the backup, and what verify reads after it (the listing,
    the size and sha256 of every item) are one more."""
    rec = Recorder()
    text = one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}", files=True)
    result = shop.run(text=text, transport_factory=rec)
    assert result.ok, result.sites[0].error
    [manifest] = shop.manifests()
    h1 = ssh_lab.hosts[0]
    kinds = rec.kinds(h1, shop.path, result.run_id)
    # no max_age: a backup is due, so the stage takes its lock in its first round trip (every
    # probe read under it) instead of a read first and the lock before the change
    assert kinds[:2] == ["lock+read", "step"] and kinds[-1] == "unlock" and "read" not in kinds
    events = [json.loads(line) for line in (Path(str(result.run_dir)) / "events.jsonl").read_text().splitlines()]
    [acquired] = [e for e in events if e["event"] == "lock.acquired"]
    assert (acquired["for_step"], acquired["early"]) == ("backup.create", "a new backup every run (no max_age)")
    steps = [text for kind, text in rec.by_host[h1.ip].sent[1:-1]]
    firsts = [s.split()[0] for s in steps]
    assert firsts == [
        "mkdir",  # the backup folder (0700) and its .partial folder, then the password into a 0600 option file
        "echo",  # tables and exact counts, the dump | gzip, the counts again, size and sha256 of the dump
        "rm",  # the option file
        'mk_low="nice', "umask",  # the archive of the files (at low priority), then its members counted back
        "printf",  # size and sha256 of the archive
        "(",  # the manifest, the rename of the .partial folder, then the listing and the items' facts verify reads
    ], steps  # fmt: skip
    folder, final = str(shop.backup_dir), f"{shop.backup_dir}/{manifest['id']}"
    assert shlex.quote(final) == final  # a plain path, quoted as it is
    prepare = f"mkdir -p -- {folder} && chmod 700 -- {folder} && mkdir -m 700 -- {final}.partial || exit $?\n"
    made = r"echo '@@mk-[0-9a-f]{32} made'\n"
    assert re.fullmatch(
        re.escape(prepare) + made + re.escape(f"umask 077; cat > {folder}/.cred-") + "[0-9a-f]{12}", steps[0]
    )
    db = steps[1]
    marker = re.match(r"echo '(@@mk-[0-9a-f]{32}) before'", db)
    assert marker, db
    # one client run per read (the server builds the COUNT(*) union), the dump between them
    assert [line.split()[0] for line in db.splitlines() if f"{marker[1]} " in line and "echo" in line] == ["echo"] * 4
    assert [re.search(f"{marker[1]} (\\w+)", line)[1] for line in db.splitlines() if f"{marker[1]} " in line] == [  # type: ignore[index]
        "before", "dump", "after", "facts"
    ]  # fmt: skip
    assert db.count("| mariadb --defaults-file=") == 2 and db.count("EXECUTE mk_counts;") == 2
    assert db.count("mariadb-dump --defaults-file=") == 1 and "sha256sum <" in db
    assert f"{manifest['id']}.partial/db-{shop.db}.sql.zst" in db and "mkdir" not in db
    assert "| $mk_low zstd -q -c > " in db and "-T0" not in db  # one thread keeps up with the dump
    # the dump, its compressor, tar and the archive's compressor at low priority (the default)
    assert db.count(LOW_PRIORITY_SETUP) == 1 and "{ $mk_low mariadb-dump --defaults-file=" in db
    assert steps[3].startswith(LOW_PRIORITY_SETUP) and "( $mk_low tar --no-unquote " in steps[3]
    assert "| $mk_low zstd -q -c -T0 > " in steps[3] and "mk_low" not in steps[4]  # the count reads at normal
    assert "files.tar" not in db and "files.tar" in steps[3] and f"db-{shop.db}" not in steps[3]
    finish = steps[6]
    assert "manifest.json" in finish and "mv -T" in finish
    renamed = finish.index("mv -T")
    assert renamed < finish.index("@@maint-nodir")  # the listing, read after the rename
    # verify's size and sha256 of every item: read after the rename, in its round trip, of the final folder
    facts = [finish.index(f"sha256sum < {final}/{item['file']}") for item in manifest["items"]]
    assert len(facts) == 2 and min(facts) > renamed and finish.count("sha256sum <") == 2
    assert rec.sessions(h1) == len(kinds) == 9  # the lock in the first round trip: 9 (was 10: a read, then the lock)
    # what the manifest says is unchanged: exact counts, the view, the dump's size and sha256
    item = next(i for i in manifest["items"] if i["type"] == "database")
    assert item["counts"] == "exact"
    assert item["tables"] == {
        "big_orders": {"type": "view"},
        "customers": {"type": "table", "rows": 250},
        "orders": {"type": "table", "rows": 600},
    }
    dump = shop.backup_dir / manifest["id"] / item["file"]
    assert dump.stat().st_size == item["size"] and sha256(dump) == item["sha256"]


def test_the_one_round_trip_dump_counts_any_table_name_and_restores(shop: Shop, ssh_lab: SshLab) -> None:
    """Table names with quotes, backticks, spaces, a leading dash and wildcards are counted by the
    server-built COUNT(*) union; ignored tables are neither counted nor dumped; above
    ``count_limit`` the estimates are stored (and no COUNT runs); the dump restores (verify)."""
    odd = ["it's", "back`tick", "-dash table", "100%_*", "café", "日本", "back\\slash"]
    for i, name in enumerate(odd):
        ident = "`" + name.replace("`", "``") + "`"
        shop.sql(f"CREATE TABLE {ident} (id INT PRIMARY KEY); INSERT INTO {ident} SELECT seq FROM seq_1_to_{i + 3};")
    shop.sql("CREATE TABLE skipped (id INT); INSERT INTO skipped VALUES (1);")
    shop.sql("ANALYZE TABLE customers, orders")
    spec = {"name": shop.db, "host": "127.0.0.1", "port": shop.mariadb.port, "user": shop.user}
    password = "{{ secrets." + SECRET_VAR + " }}"
    text = yaml.safe_dump(
        {
            "name": "t-odd",
            "stages": [
                {
                    "env": "production",
                    "steps": [
                        {
                            "id": "create",
                            "action": "backup.create",
                            "with": {"databases": [{**spec, "password": password, "ignore_tables": ["skipped"]}]},
                        },
                        {"id": "verify", "action": "backup.verify", "with": {"password": password}},
                    ],
                }
            ],
        }
    )
    rec = Recorder()
    result = shop.run(text=text, transport_factory=rec)
    assert result.ok, result.sites[0].error
    [manifest] = shop.manifests()
    [item] = manifest["items"]
    assert item["counts"] == "exact" and item["ignored_tables"] == ["skipped"]
    assert item["tables"] == {
        "big_orders": {"type": "view"},
        "customers": {"type": "table", "rows": 250},
        "orders": {"type": "table", "rows": 600},
        **{name: {"type": "table", "rows": i + 3} for i, name in enumerate(odd)},
    }
    assert manifest["verification"]["db " + shop.db]["ok"] is True  # the dump restored, same tables and rows
    dump = subprocess.run(
        ["zstd", "-q", "-dc", str(shop.backup_dir / manifest["id"] / item["file"])], capture_output=True
    )
    assert b"CREATE TABLE `skipped`" not in dump.stdout and b"CREATE TABLE `back``tick`" in dump.stdout
    creates = [t for _, t in rec.by_host[ssh_lab.hosts[0].ip].sent if "{ $mk_low mariadb-dump --" in t]
    assert len(creates) == 1 and "AND table_name NOT IN (" in creates[0]
    assert f"--ignore-table={shop.db}.skipped" in creates[0]

    # above count_limit: the estimates, and the counts after the dump are not read
    estimate = yaml.safe_dump(
        {
            "name": "t-estimate",
            "stages": [
                {
                    "env": "production",
                    "steps": [
                        {
                            "action": "backup.create",
                            "with": {"databases": [{**spec, "password": password, "count_limit": 1}]},
                        }
                    ],
                }
            ],
        }
    )
    rec = Recorder()
    again = shop.run(text=estimate, transport_factory=rec)
    assert again.ok, again.sites[0].error
    (newest,) = [m for m in shop.manifests() if m["id"] != manifest["id"]]  # both may carry the same second
    [item] = newest["items"]
    assert item["counts"] == "estimate"
    assert item["tables"]["customers"] == {"type": "table", "rows_estimate": 250}
    assert set(item["tables"]) == {"big_orders", "customers", "orders", "skipped", *odd}
    [db] = [t for _, t in rec.by_host[ssh_lab.hosts[0].ip].sent if "{ $mk_low mariadb-dump --" in t]
    marker = re.match(r"echo '(@@mk-[0-9a-f]{32}) before'", db)
    assert marker and f"{marker[1]} after" in db  # in the script, run only when the first read was exact


def test_a_failing_part_of_the_one_round_trip_dump_fails_as_before(shop: Shop) -> None:
    """The dump failing after the counts: ApplyFailed with the dump's stderr, as when the dump ran
    alone; the counts failing (a wrong password): the client's CommandFailed, as before. Either
    way the .partial folder and the option file are gone."""
    shop.sql("CREATE TABLE doomed (id INT); CREATE VIEW broken_view AS SELECT * FROM doomed; DROP TABLE doomed;")
    result = shop.run(text=one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}"))
    assert not result.ok
    error = str(result.sites[0].error)
    assert f"dumping database {shop.db} failed (exit " in error and "broken_view" in error, error
    assert not list(shop.backup_dir.iterdir())  # neither the .partial folder nor the option file
    shop.sql("DROP VIEW broken_view")

    shop.extra_env[SECRET_VAR] = "not-the-password"
    denied = shop.run(text=one_step("backup.create", database=True, password="{{ secrets." + SECRET_VAR + " }}"))
    assert not denied.ok
    error = str(denied.sites[0].error)
    assert re.search(r"backup \S+ failed: .*command failed with exit 1: mariadb --defaults-file=\S+/\.cred-", error), (
        error
    )
    assert f"--batch --skip-column-names {shop.db}" in error and "Access denied" in error, error
    assert not list(shop.backup_dir.iterdir())
