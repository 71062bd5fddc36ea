"""How backups compress (maintkit/actions/backup/codec.py): the choice, the argv, and what a
restore needs from the host, through a real shell and the real programs."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from maintkit.actions.backup.codec import (
    choose_compression,
    compress_argv,
    decompress_argv,
    item_compression,
    missing_decoders,
)
from maintkit.actions.backup.create import BackupJob, missing_for
from maintkit.actions.backup.db import DatabaseSpec, DbClient


@pytest.mark.parametrize(
    ("wanted", "tools", "chosen"),
    [
        ("auto", {"zstd", "gzip"}, "zstd"),
        ("auto", {"gzip"}, "gzip"),
        ("gzip", {"zstd", "gzip"}, "gzip"),
        ("zstd", {"gzip"}, "zstd"),  # asked for: missing_for names it missing
    ],
)
def test_auto_is_zstd_where_the_host_has_it(wanted: str, tools: set[str], chosen: str) -> None:
    assert choose_compression(wanted, frozenset(tools)) == chosen


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_what_is_compressed_decompresses_to_the_same_bytes(tmp_path: Path, compression: str) -> None:
    data = b"".join(b"INSERT INTO `wp_posts` VALUES (%d,'row %d');\n" % (i, i) for i in range(20000))
    out = tmp_path / "-dump 'x'.sql"  # a leading dash and a quote reach the programs as one operand
    script = f"{shlex.join(compress_argv(compression, threads=False))} > {shlex.quote(str(out))}"
    subprocess.run(["sh", "-c", script], input=data, check=True)
    back = subprocess.run(decompress_argv(compression, str(out)), capture_output=True, check=True).stdout
    assert back == data and out.stat().st_size < len(data) // 5


def test_the_argv_of_each_compression() -> None:
    assert compress_argv("zstd") == ["zstd", "-q", "-c", "-T0"]
    assert compress_argv("zstd", threads=False) == ["zstd", "-q", "-c"]
    assert compress_argv("gzip", threads=False) == ["gzip", "-c"]
    assert decompress_argv("zstd", "-f") == ["zstd", "-q", "-dc", "--", "-f"]
    assert decompress_argv("gzip", "-f") == ["gzip", "-dc", "--", "-f"]


def test_an_item_without_compression_is_gzip_and_a_restore_names_a_missing_zstd() -> None:
    old = {"type": "database", "file": "db-shop.sql.gz"}
    new = {"type": "database", "file": "db-shop.sql.zst", "compression": "zstd"}
    assert item_compression(old) == "gzip" and item_compression(new) == "zstd"
    assert missing_decoders([old, new], frozenset({"gzip"})) == ["zstd"]
    assert missing_decoders([old, new], frozenset({"gzip", "zstd"})) == []
    assert missing_decoders([old], frozenset({"gzip"})) == []


def test_a_dump_is_named_and_restored_by_its_compression() -> None:
    tools = frozenset({"mariadb-dump", "mariadb", "zstd", "gzip"})
    client = DbClient(DatabaseSpec(name="shop"), tools)
    assert client.dump_suffix() == ".sql.gz"  # a client of its own (a restore's, a verify's): gzip
    assert DbClient(DatabaseSpec(name="shop"), tools, compression="zstd").dump_suffix() == ".sql.zst"
    zstd = client.restore_script("/b/db-shop.sql.zst", "shop", strip_definers=False, clean=True, compression="zstd")
    gz = client.restore_script("/b/db-shop.sql.gz", "shop", strip_definers=False, clean=True)
    assert "{ zstd -q -dc -- /b/db-shop.sql.zst || " in zstd and "gzip" not in zstd
    assert "{ gzip -dc -- /b/db-shop.sql.gz || " in gz and "zstd" not in gz
    pg = DbClient(DatabaseSpec(name="shop", engine="postgresql"), frozenset({"pg_dump"}), compression="zstd")
    assert pg.dump_suffix() == ".pgdump"


def test_zstd_asked_for_is_needed_for_a_database_alone() -> None:
    job = BackupJob(databases=[DatabaseSpec(name="shop")], compression="zstd")
    tools = frozenset({"mariadb-dump", "mariadb", "gzip"})
    assert missing_for(job, tools) == ["zstd"]
    assert missing_for(BackupJob(databases=[DatabaseSpec(name="shop")]), tools) == []
    pg = BackupJob(databases=[DatabaseSpec(name="shop", engine="postgresql")], compression="zstd")
    assert missing_for(pg, frozenset({"pg_dump", "pg_restore", "psql"})) == []  # pg_dump -Fc compresses itself
