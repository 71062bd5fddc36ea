"""staging.refresh's stream through the controller: zstd when both hosts have it, else gzip -1;
the target decompresses by the stream's first bytes. The scripts run through a real shell with
the real programs; the target's answer to the zstd read comes from a fake transport. And the
target's snapshot dump, with zstd on the host or not, names the file it wrote; the target's
snapshot folders, its zstd and the last refresh's record are read in one shell."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from maintkit.actions.staging.dbcopy import ZSTD_MAGIC, snapshot_database, stream_compressor, stream_decompressor
from maintkit.actions.staging.params import DbRef
from maintkit.actions.staging.sides import Side, Sides
from maintkit.errors import ApplyFailed, CheckFailed
from maintkit.inventory import Environment
from maintkit.testing import FakeTransport
from maintkit.transport.local import LocalTransport
from tests.hostile_names import hostile_names

READ = "command -v zstd >/dev/null 2>&1"
DATA = b"".join(b"INSERT INTO `t` VALUES (%d,'row');\n" % i for i in range(5000))


def sides(target_has_zstd: bool) -> tuple[Sides, FakeTransport]:
    target = FakeTransport({READ: (0 if target_has_zstd else 1, "", "")}, host="staging")
    env = Environment.model_validate({"host": "h", "path": "/srv/x"})
    return Sides(Side(env, FakeTransport(), None), Side(env, target, None), False, "generic"), target


def path_of(tmp: Path, with_zstd: bool) -> str:
    """A PATH of links to sh, gzip and (``with_zstd``) zstd only."""
    folder = Path(tempfile.mkdtemp(dir=tmp))
    for name in ("sh", "gzip", *(["zstd"] if with_zstd else [])):
        real = shutil.which(name)
        assert real is not None
        (folder / name).symlink_to(real)
    return str(folder)


@pytest.mark.parametrize(
    ("target", "source", "magic"),
    [(True, True, ZSTD_MAGIC), (True, False, b"\x1f\x8b"), (False, True, b"\x1f\x8b")],
)
def test_the_stream_is_zstd_only_when_both_hosts_have_it_and_unpacks_by_its_first_bytes(
    tmp_path: Path, target: bool, source: bool, magic: bytes
) -> None:
    both, fake = sides(target)
    script = stream_compressor(both, 5.0)
    assert stream_compressor(both, 5.0) == script and fake.commands == [READ]  # read once
    env = {**os.environ, "PATH": path_of(tmp_path, source)}
    with tempfile.TemporaryFile() as spool:
        subprocess.run(["sh", "-c", script], input=DATA, stdout=spool, env=env, check=True)
        spool.seek(100)
        unpack = stream_decompressor(spool)
        assert spool.tell() == 0  # rewound: the target's transport reads the spool from its start
        stream = spool.read()
    assert stream.startswith(magic)
    back = subprocess.run(["sh", "-c", unpack], input=stream, capture_output=True, check=True).stdout
    assert back == DATA
    assert unpack == ("zstd -q -dc" if magic == ZSTD_MAGIC else "gzip -dc")


def test_a_failed_read_of_the_target_means_gzip() -> None:
    target = FakeTransport({READ: (255, "", "ssh: connection reset")}, host="staging")
    env = Environment.model_validate({"host": "h", "path": "/srv/x"})
    both = Sides(Side(env, FakeTransport(), None), Side(env, target, None), False, "generic")
    assert stream_compressor(both, 5.0) == "gzip -1 -c"


def snapshot_tools(tmp_path: Path, with_zstd: bool) -> Path:
    """A PATH folder for the snapshot: sh, gzip, (zstd), cat, rm, and stand-ins for the MariaDB
    client (``SHOW TABLES``: two tables, one of them with a tab-escaped name; exit ``$SHOW_RC``)
    and ``mariadb-dump`` (writes ``dump.sql``)."""
    tools = Path(path_of(tmp_path, with_zstd))
    for name in ("cat", "rm"):
        real = shutil.which(name)
        assert real is not None
        (tools / name).symlink_to(real)
    scripts = {
        "mariadb": "printf '%s\\n' wp_options 'wp_odd\\tname'; exit \"${SHOW_RC:-0}\"\n",
        "mariadb-dump": f"cat {tmp_path / 'dump.sql'}\n",
    }
    for name, body in scripts.items():
        (tools / name).write_text("#!/bin/sh\n" + body)
        (tools / name).chmod(0o755)
    (tmp_path / "dump.sql").write_bytes(DATA)
    return tools


@pytest.mark.parametrize("with_zstd", [True, False])
def test_the_snapshot_lists_the_tables_and_records_the_file_it_wrote_in_one_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_zstd: bool
) -> None:
    """snapshot_database returns the tables and the one of the recorded path's two files the
    host wrote (``.gz`` where there is no zstd), through a real shell, in one command, and
    writes nothing else."""
    monkeypatch.setenv("PATH", str(snapshot_tools(tmp_path, with_zstd)))
    work = tmp_path / "work 'x'"
    work.mkdir()
    side = local_sides(tmp_path).target
    calls: list[str] = []
    shell = side.shell
    monkeypatch.setattr(side, "shell", lambda script, *a, **k: calls.append(script) or shell(script, *a, **k))

    tables, written = snapshot_database(side, DbRef(name="shop"), f"{work}/database.sql.zst", 30.0)

    assert tables == ["wp_options", "wp_odd\tname"] and len(calls) == 1  # the name the client escaped, unescaped
    assert written == f"{work}/database.sql.{'zst' if with_zstd else 'gz'}"
    assert [p.name for p in work.iterdir()] == [Path(written).name]
    unpack = ["zstd", "-q", "-dc"] if with_zstd else ["gzip", "-dc"]
    monkeypatch.undo()
    assert subprocess.run([*unpack, "--", written], capture_output=True, check=True).stdout == DATA


def test_a_failing_table_list_dumps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(snapshot_tools(tmp_path, True)))
    monkeypatch.setenv("SHOW_RC", "1")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(CheckFailed, match=r"^mariadb on .*\(shop\) failed"):
        snapshot_database(local_sides(tmp_path).target, DbRef(name="shop"), f"{work}/database.sql.zst", 30.0)
    assert list(work.iterdir()) == []


def local_sides(tmp_path: Path) -> Sides:
    env = Environment.model_validate({"connection": "local", "path": str(tmp_path)})
    return Sides(Side(env, LocalTransport(), None), Side(env, LocalTransport(), None), False, "generic")


@pytest.mark.parametrize("with_zstd", [True, False])
def test_the_target_is_prepared_in_one_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_zstd: bool
) -> None:
    """The snapshot folders (0700), the host's zstd and the last refresh's record: one shell."""
    site = tmp_path / "site"
    (site / ".maint").mkdir(parents=True)
    record = b'{"at": "2026-12-01T00:00:00+00:00"}\n\xc3\xa9'
    if with_zstd:
        (site / ".maint" / "staging-refresh.json").write_bytes(record)
    tools = path_of(tmp_path, with_zstd)
    for name in ("mkdir", "chmod", "cat"):
        real = shutil.which(name)
        assert real is not None
        (Path(tools) / name).symlink_to(real)
    monkeypatch.setenv("PATH", tools)
    both = local_sides(tmp_path)
    calls: list[str] = []
    shell = both.target.shell
    monkeypatch.setattr(both.target, "shell", lambda script, *a, **k: calls.append(script) or shell(script, *a, **k))
    parent, work = site / ".maint" / "staging-refresh", site / ".maint" / "staging-refresh" / "run-1"

    marker = both.prepare_target(str(parent), str(work), str(site / ".maint" / "staging-refresh.json"), 30.0)

    assert marker == (record if with_zstd else None)
    assert both.target_has_zstd(30.0) is with_zstd and len(calls) == 1  # the zstd read was in that trip
    assert stat.S_IMODE(parent.stat().st_mode) == stat.S_IMODE(work.stat().st_mode) == 0o700
    assert list(work.iterdir()) == []


def test_a_target_whose_folder_cannot_be_made_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".maint").write_text("a file where the folder goes\n")
    work = f"{tmp_path}/.maint/staging-refresh/run-1"
    with pytest.raises(ApplyFailed, match=f"cannot prepare the snapshot folder {re.escape(work)}: mkdir"):
        local_sides(tmp_path).prepare_target(f"{tmp_path}/.maint/staging-refresh", work, "/nonexistent", 30.0)
    assert (tmp_path / ".maint").read_text() == "a file where the folder goes\n"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile_names())
def test_hostile_target_paths_are_prepared_exactly_there(tmp_path: Path, name: str) -> None:
    """A target path a shell would get wrong: the two folders are made exactly there, the record
    read from exactly there, and nothing else is written."""
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    site = base / name
    (site / ".maint").mkdir(parents=True)
    (site / ".maint" / "staging-refresh.json").write_text("recorded\n")
    parent = site / ".maint" / "staging-refresh"

    marker = local_sides(site).prepare_target(
        str(parent), str(parent / "run"), str(site / ".maint" / "staging-refresh.json"), 30.0
    )

    assert marker == b"recorded\n"
    assert sorted(p.name for p in base.iterdir()) == [name]
    assert sorted(str(p.relative_to(site)) for p in site.rglob("*")) == [
        ".maint", ".maint/staging-refresh", ".maint/staging-refresh.json", ".maint/staging-refresh/run",
    ]  # fmt: skip
    assert stat.S_IMODE((parent / "run").stat().st_mode) == 0o700
