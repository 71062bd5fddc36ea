"""staging.refresh's stream through the controller: zstd when both hosts have it, else gzip -1;
the target decompresses by the stream's first bytes. The scripts run through a real shell with
the real programs; the target's answer to the zstd read comes from a fake transport. And the
target's snapshot dump, with zstd on the host or not, names the file it wrote."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from maintkit.actions.staging.dbcopy import ZSTD_MAGIC, dump_to, stream_compressor, stream_decompressor
from maintkit.actions.staging.params import DbRef
from maintkit.actions.staging.sides import Side, Sides
from maintkit.inventory import Environment
from maintkit.testing import FakeTransport
from maintkit.transport.local import LocalTransport

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


@pytest.mark.parametrize("with_zstd", [True, False])
def test_the_snapshot_dump_records_the_file_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_zstd: bool
) -> None:
    """dump_to returns the one of the recorded path's two files the host wrote (``.gz`` where
    there is no zstd), through a real shell, and writes nothing else."""
    tools = Path(path_of(tmp_path, with_zstd))
    for name in ("cat", "rm"):
        real = shutil.which(name)
        assert real is not None
        (tools / name).symlink_to(real)
    (tools / "mariadb-dump").write_text(f"#!/bin/sh\ncat {tmp_path / 'dump.sql'}\n")
    (tools / "mariadb-dump").chmod(0o755)
    (tmp_path / "dump.sql").write_bytes(DATA)
    work = tmp_path / "work 'x'"
    work.mkdir()
    monkeypatch.setenv("PATH", str(tools))
    env = Environment.model_validate({"connection": "local", "path": str(tmp_path)})
    side = Side(env, LocalTransport(), DbRef(name="shop"))

    written = dump_to(side, DbRef(name="shop"), f"{work}/database.sql.zst", 30.0)

    assert written == f"{work}/database.sql.{'zst' if with_zstd else 'gz'}"
    assert [p.name for p in work.iterdir()] == [Path(written).name]
    unpack = ["zstd", "-q", "-dc"] if with_zstd else ["gzip", "-dc"]
    monkeypatch.undo()
    assert subprocess.run([*unpack, "--", written], capture_output=True, check=True).stdout == DATA
